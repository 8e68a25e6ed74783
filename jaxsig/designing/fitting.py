"""Fitting a parametrised family to a function under the Gaussian weight: :func:`fit`.

``fit(family, target, sigma)`` minimises ``E[(phi(X; theta) - target(X))^2]``,
``X = mu + sigma Z``: the least-squares projection of ``target`` onto the
family in ``L2(N(mu, sigma^2))``, the norm in which the Gaussian statistics of
the signature are measured. Use it for starting points (a family member close
to a known activation) and to check that a family contains an activation.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxsig.core import activations as _activations
from jaxsig.core import quadrature as _quadrature
from jaxsig.designing import constraints as _constraints

__all__ = ["Fit", "fit"]


class Fit(NamedTuple):
    """The result of :func:`fit`.

    Attributes:
      params: the fitted parameters (float NumPy pytree, the family's structure).
      mse: ``E[(phi(X; params) - target(X))^2]`` at the fit.
      iterations: Levenberg–Marquardt iterations taken.
      converged: the step fell below ``xtol`` (relative) or the error to zero (not: the
        iteration limit, or a damping that grew past ``1e16``).
    """

    params: Any
    mse: float
    iterations: int
    converged: bool


@functools.partial(jax.jit, static_argnums=(0, 7))
def _levenberg_marquardt(fn, params, free, x, sqrt_w, y, xtol, max_iter):
    """Minimise ``sum_i w_i (fn(x_i, theta) - y_i)^2`` over the ``free`` entries of ``theta``.

    Returns ``(params, cost, iterations, converged)``.
    """
    x0, unravel = ravel_pytree(params)
    free = ravel_pytree(free)[0].astype(bool)

    def residual(theta):
        return sqrt_w * (fn(x, unravel(theta)) - y)

    def cost(theta):
        r = residual(theta)
        return jnp.sum(r * r)

    def cond(state):
        return (state[3] < max_iter) & ~state[4]

    def body(state):
        theta, c, lam, it, _ = state
        J = jnp.where(free[None, :], jax.jacfwd(residual)(theta), 0.0)
        H = J.T @ J
        # Marquardt's scaling by diag(H), plus the identity on fixed or flat directions.
        damp = lam * (jnp.diag(H) + jnp.where(free, jnp.finfo(theta.dtype).eps, 1.0))
        dx = -jnp.linalg.solve(H + jnp.diag(damp), J.T @ residual(theta))
        dx = jnp.where(free & jnp.all(jnp.isfinite(dx)), dx, 0.0)
        c_new = cost(theta + dx)
        better = c_new < c
        small = jnp.sqrt(jnp.sum(dx * dx)) <= xtol * (jnp.sqrt(jnp.sum(theta * theta)) + xtol)
        c = jnp.where(better, c_new, c)
        # A small step, taken or refused (the cost is at its rounding floor), ends the search.
        done = small | (c == 0) | (lam > 1e16)
        lam = jnp.where(better, jnp.maximum(lam / 3.0, 1e-12), lam * 4.0)
        return jnp.where(better, theta + dx, theta), c, lam, it + 1, done

    state = (x0, cost(x0), jnp.asarray(1e-3, x0.dtype), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    theta, c, lam, it, done = jax.lax.while_loop(cond, body, state)
    return unravel(theta), c, it, done & (lam <= 1e16)


def fit(
    family,
    target,
    sigma: float = 1.0,
    *,
    mu: float = 0.0,
    init_params=None,
    fixed=None,
    rule=None,
    max_iter: int = 200,
    xtol: float | None = None,
) -> Fit:
    """Fit a family to a function under the Gaussian weight: ``argmin E[(phi(X; theta) - target(X))^2]``.

    ``X = mu + sigma Z``. The expectation is the quadrature of
    :func:`jaxsig.moments` (panels split at the kinks of both functions), so
    the problem is the finite least-squares problem
    ``min_theta sum_i w_i (phi(x_i; theta) - target(x_i))^2``, solved by
    Levenberg–Marquardt (Gauss–Newton steps ``(J^T J + lam diag(J^T J)) dx = -J^T r``
    with the forward-mode Jacobian ``J``, ``lam`` divided by 3 on success and
    multiplied by 4 on failure). A target that is a member of the family is
    recovered to rounding (Gauss–Newton converges quadratically on
    zero-residual problems).

    Args:
      family: a :class:`Family`, a family name, or an :class:`~jaxsig.Activation` with params.
      target: the function to fit: a name, an :class:`~jaxsig.Activation` or a callable ``f(x)``.
      sigma: input scale of the Gaussian weight (``> 0``).
      mu: its mean.
      init_params: the starting point (default: the family's ``init_params``).
      fixed: ``{name: value}`` parameters held fixed (names as in :func:`jaxsig.design`).
      rule: quadrature rule (default: the composite rule).
      max_iter: iteration limit.
      xtol: relative step size at which to stop (default ``sqrt(eps)``-scaled: ``1e-13`` in
        float64, ``1e-6`` in float32).

    Returns:
      :class:`Fit`.

    Examples:
      >>> import jaxsig
      >>> f = jaxsig.families.fit("scaled_elu", "elu", sigma=1.0)   # ELU is lam = alpha = 1
      >>> [round(float(f.params[k]), 8) for k in ("lam", "alpha", "shift")]
      [1.0, 1.0, 0.0]
    """
    fam = _activations.family(family) if isinstance(family, str) else family
    if not isinstance(fam, _activations.Activation) or fam.params is None:
        raise TypeError(f"family must be a Family or an Activation with params, got {type(fam).__name__}")
    tgt = _activations.as_activation(target)
    sigma, mu = float(sigma), float(mu)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma=}")
    if not math.isfinite(mu):
        raise ValueError(f"mu must be finite, got {mu=}")
    dtype = jnp.result_type(float)
    start = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), fam.params if init_params is None else init_params)
    box, _, _ = _constraints.build(start, fixed)
    start = _constraints.project(box, start)
    # The nodes with non-negligible weight, in float64 (the residual's scale is sqrt(w)).
    r = _quadrature.get_rule(rule).with_kinks(tuple(fam.kinks) + tuple(tgt.kinks))
    nodes, weights = (np.asarray(a, np.float64) for a in r.gaussian(np.float64(sigma), np.float64(mu), jnp.float64))
    nodes, weights = np.broadcast_arrays(nodes.ravel(), weights.ravel())
    keep = weights > 1e-300
    x = jnp.asarray(nodes[keep], dtype)
    sqrt_w = jnp.asarray(np.sqrt(weights[keep]), dtype)
    y = jnp.asarray(tgt(x), dtype)
    xtol = (1e-13 if jnp.finfo(dtype).eps < 1e-10 else 1e-6) if xtol is None else float(xtol)
    params, cost, it, ok = _levenberg_marquardt(fam.fn, start, box.free, x, sqrt_w, y, xtol, int(max_iter))
    return Fit(jax.tree_util.tree_map(np.asarray, params), float(cost), int(it), bool(ok))

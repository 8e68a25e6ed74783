"""The scalar recursion ``T(x) = phi(a x + b)``: fixed point, contraction and Lyapunov functions."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import limits, quadrature
from jaxsig.theory.meanfield._common import (
    ScalarRecursion,
    _bracketed_newton,
    _inverse,
    _is_concrete,
    _resolve,
)


# --- Scalar recursion -------------------------------------------------------------------


def _sup_abs_derivative(f, kinks, dtype):
    """``sup |phi'|`` over R.

    ``|phi'|`` is evaluated on the partition of R used for ``tv`` (the composite
    grid, ~2,000 points, plus geometric ladders toward every kink and out to
    ``2**48``). The best point is polished by Newton steps on ``phi'' = 0`` kept
    between its neighbours, which makes smooth interior maxima exact (GELU:
    ``1.1289`` at ``x = 1.4``); kinked maxima are reached along the ladders to
    within ``2**-40``. A ladder on which ``|phi'|`` diverges (``x^2`` outward,
    ``sign(x) sqrt|x|`` toward ``0``) makes the supremum ``inf``
    (:func:`jaxsig.limits.ladder_limit`). Otherwise the value is a lower bound,
    exact for every built-in activation.
    """
    line = quadrature.Composite(kinks=tuple(kinks)).line(dtype)
    x = jnp.asarray(line.x, dtype)
    d1 = lambda t: jax.jvp(f, (t,), (jnp.ones_like(t),))[1]  # noqa: E731
    d2 = lambda t: jax.jvp(d1, (t,), (jnp.ones_like(t),))[1]  # noqa: E731
    d3 = lambda t: jax.jvp(d2, (t,), (jnp.ones_like(t),))[1]  # noqa: E731
    g = jnp.abs(d1(x))
    g = jnp.where(jnp.isfinite(g), g, jnp.inf)
    eps = jnp.finfo(dtype).eps
    ladders = [line.pos, line.neg] + [side for kink in line.inner for side in kink]
    diverges = jnp.zeros((), bool)
    for idx in ladders:
        seq = g[jnp.asarray(idx)]
        lim = limits.ladder_limit(seq, eps * seq, rtol=1e3 * eps)
        diverges = diverges | (lim.status == limits.DIVERGENT) & (lim.value > 0)
    i = jnp.argmax(g)
    n = x.shape[0]
    left, right = x[jnp.maximum(i - 1, 0)], x[jnp.minimum(i + 1, n - 1)]

    def newton(t, _):
        s2, s3 = d2(t), d3(t)
        t_new = t - s2 / jnp.where(s3 == 0, 1.0, s3)
        ok = (s3 != 0) & jnp.isfinite(t_new) & (t_new > left) & (t_new < right)
        return jnp.where(ok, t_new, t), None

    t, _ = jax.lax.scan(newton, x[i], None, length=8)
    polished = jnp.abs(d1(t))
    sup = jnp.maximum(g[i], jnp.where(jnp.isfinite(polished), polished, 0.0))
    return jnp.where(diverges, jnp.inf, sup)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _scalar_fixed_point(f, a, b, x_init, radius, params):
    return _solve_scalar_fixed_point(f, a, b, x_init, radius, params)


def _solve_scalar_fixed_point(f, a, b, x_init, radius, params):
    dtype = x_init.dtype
    T = lambda x: f(a * x + b, params)  # noqa: E731

    def fun(x):
        y, dy = jax.jvp(T, (x,), (jnp.ones_like(x),))
        return y - x, dy - 1.0

    # Contraction: h(x) = T(x) - x is strictly decreasing and its root lies within
    # |T(x) - x| / (1 - L) of any x, a valid bracket. Otherwise Newton from the
    # end of the trajectory inside a wide bracket (see _scalar_recursion);
    # `converged` reports whether it found a fixed point.
    lo, hi = x_init - radius, x_init + radius
    x, _, _ = _bracketed_newton(fun, lo, hi, jnp.ones((), dtype), x_init, max_iter=100, xtol=4 * jnp.finfo(dtype).eps)
    h = fun(x)[0]
    ok = jnp.abs(h) <= 64 * jnp.finfo(dtype).eps * jnp.maximum(1.0, jnp.abs(x))
    return x, ok.astype(dtype)  # a float: custom_jvp outputs need float tangents


@_scalar_fixed_point.defjvp
def _scalar_fixed_point_jvp(f, primals, tangents):
    a, b, x_init, radius, params = primals
    da, db, _, _, dparams = tangents
    x, ok = _scalar_fixed_point(f, a, b, x_init, radius, params)
    # x = T(x; a, b, params): dx = (dT/dtheta . dtheta) / (1 - T'(x)).
    _, dt = jax.jvp(lambda aa, bb, p: f(aa * x + bb, p), (a, b, params), (da, db, dparams))
    _, slope = jax.jvp(lambda xx: f(a * xx + b, params), (x,), (jnp.ones_like(x),))
    return (x, ok), (dt * _inverse(1.0 - slope), jnp.zeros_like(ok))


def scalar_recursion(phi, a, b, x0, steps: int, *, params: Any = None) -> ScalarRecursion:
    """The recursion ``x_{t+1} = T(x_t) = phi(a x_t + b)``: fixed point, contraction, Lyapunov descent.

    * ``L = |a| sup_x |phi'(x)|`` is a Lipschitz constant of ``T``; ``sup`` is
      taken over a fine partition of R with ladders toward kinks and out to
      ``2**48``, polished by Newton steps at smooth maxima (a lower bound that is
      exact for the built-in activations).
    * When ``L < 1``, ``T`` is a contraction (Banach): a unique fixed point
      ``x*``, and ``V(x) = (x - x*)^2`` is a Lyapunov function,
      ``V(T x) = (T x - T x*)^2 <= L^2 V(x)``: ``descent = L^2``.
    * ``x*`` is found by safeguarded Newton on ``T(x) - x`` from the last iterate
      (bracketed by ``|T(x) - x| / (1 - L)`` when contracting), and is
      differentiable in ``a``, ``b`` and ``params`` (implicit differentiation).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      a, b: scalars (gain and offset).
      x0: starting point.
      steps: number of iterations recorded in ``trajectory`` (static).
      params: parameters of ``phi``.

    Returns:
      :class:`ScalarRecursion`.

    Examples:
      >>> import jaxsig
      >>> r = jaxsig.dynamics.scalar_recursion("tanh", 0.5, 0.2, 3.0, 50)
      >>> float(r.lipschitz), bool(r.contracts)
      (0.5, True)
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps=}")
    act, params, dtype = _resolve(phi, params, a, b, x0)
    for name, v in (("a", a), ("b", b), ("x0", x0)):
        if jnp.ndim(v) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(v)}; use jax.vmap for batches")
        if _is_concrete(v) and not np.isfinite(np.asarray(v)):
            raise ValueError(f"{name} must be finite, got {name}={v}")
    f = act.fn if act.params is not None else _ignore_params(act.fn)
    return _scalar_recursion(f, tuple(act.kinks), steps, *(jnp.asarray(v, dtype) for v in (a, b, x0)), params)


@functools.lru_cache(maxsize=None)
def _ignore_params(fn):
    return lambda x, params: fn(x)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _scalar_recursion(f, kinks, steps, a, b, x0, params):
    dtype = x0.dtype
    T = lambda x: f(a * x + b, params)  # noqa: E731
    sup = _sup_abs_derivative(lambda x: f(x, params), kinks, dtype)
    lip = jnp.abs(a) * sup
    contracts = lip < 1

    def step(x, _):
        y = T(x)
        return y, y

    x_end, xs = jax.lax.scan(step, x0, None, length=steps)
    traj = jnp.concatenate([x0[None], xs])
    h_end = T(x_end) - x_end
    wide = 1e3 * (1.0 + jnp.abs(x_end))  # no bound on |x - x*| without a contraction
    radius = jnp.where(contracts, jnp.abs(h_end) / jnp.where(contracts, 1.0 - lip, 1.0), wide)
    radius = jax.lax.stop_gradient(radius * (1.0 + 1e-6) + jnp.finfo(dtype).tiny)
    x_init = jax.lax.stop_gradient(x_end)
    x_star, ok = _scalar_fixed_point(f, a, b, x_init, radius, params)
    ok = jax.lax.stop_gradient(ok) > 0
    return ScalarRecursion(x_star, lip, contracts, lip * lip, traj, ok)


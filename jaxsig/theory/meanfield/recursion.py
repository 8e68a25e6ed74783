"""The scalar recursion ``T(x) = phi(a x + b)``: fixed point, contraction and Lyapunov functions.

Two Lyapunov functions are reported: the squared distance ``V(x) = (x - x*)^2``
with the global Lipschitz constant, and the Bregman divergence of the primitive
``D(x) = F(x) - F(x*) - phi(x*)(x - x*)``, ``F = int_0^x phi``, with the constant
of the descent theorem of :mod:`jaxsig.theory.meanfield.lyapunov` (stated and
proved there).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import limits, quadrature
from jaxsig.core._numerics import derivative, inverse, is_concrete
from jaxsig.theory.meanfield._common import (
    bracketed_newton,
    resolve_activation,
)
from jaxsig.theory.meanfield.lyapunov import bregman_values, descent_rate


class ScalarRecursion(NamedTuple):
    """The scalar recursion ``x_{t+1} = T(x_t) = phi(a x_t + b)``.

    Attributes:
      fixed_point: ``x* = T(x*)`` (unique when ``contracts``).
      lipschitz: ``L = |a| sup_x |phi'(x)|``.
      contracts: ``L < 1``.
      descent: ``L^2``: ``V(T x) <= L^2 V(x)`` for ``V(x) = (x - x*)^2``.
      trajectory: ``x_0, ..., x_steps``.
      converged: ``|T(x*) - x*|`` is at rounding level.
      bregman: ``D(x_t) = F(x_t) - F(x*) - phi(x*)(x_t - x*)``, ``F = int_0^x phi``,
        along the trajectory (``steps + 1`` values; ``>= 0`` for nondecreasing ``phi``).
      bregman_rate: the proven constant ``rho`` with ``D(x_{t+1}) <= rho D(x_t)``
        for every ``t`` (descent theorem of :mod:`~jaxsig.theory.meanfield.lyapunov`:
        ``rho = (M / m) L_I^2`` from the range ``[m, M]`` of ``phi'`` on an invariant
        interval around ``x*`` and the Lipschitz constant ``L_I`` of ``T`` on it);
        ``inf`` where the theorem's conditions fail (``phi'`` not bounded below by a
        positive ``m`` there, no invariant interval proven, or no converged ``x*``).
    """

    fixed_point: jax.Array
    lipschitz: jax.Array
    contracts: jax.Array
    descent: jax.Array
    trajectory: jax.Array
    converged: jax.Array
    bregman: jax.Array
    bregman_rate: jax.Array


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
    d1, d2, d3 = (derivative(f, n) for n in (1, 2, 3))
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


@jax.custom_jvp
def _scalar_fixed_point(act, a, b, x_init, radius):
    return _solve_scalar_fixed_point(act, a, b, x_init, radius)


def _solve_scalar_fixed_point(act, a, b, x_init, radius):
    dtype = x_init.dtype

    def T(x):
        return act(a * x + b)

    def fun(x):
        y, dy = jax.jvp(T, (x,), (jnp.ones_like(x),))
        return y - x, dy - 1.0

    # Contraction: h(x) = T(x) - x is strictly decreasing and its root lies within
    # |T(x) - x| / (1 - L) of any x, a valid bracket. Otherwise Newton from the
    # end of the trajectory inside a wide bracket (see _scalar_recursion);
    # `converged` reports whether it found a fixed point.
    lo, hi = x_init - radius, x_init + radius
    x, _, _ = bracketed_newton(fun, lo, hi, jnp.ones((), dtype), x_init, max_iter=100, xtol=4 * jnp.finfo(dtype).eps)
    h = fun(x)[0]
    ok = jnp.abs(h) <= 64 * jnp.finfo(dtype).eps * jnp.maximum(1.0, jnp.abs(x))
    return x, ok.astype(dtype)  # a float: custom_jvp outputs need float tangents


@_scalar_fixed_point.defjvp
def _scalar_fixed_point_jvp(primals, tangents):
    act, a, b, x_init, radius = primals
    dact, da, db, _, _ = tangents
    x, ok = _scalar_fixed_point(act, a, b, x_init, radius)
    # x = T(x; a, b, params): dx = (dT/dtheta . dtheta) / (1 - T'(x)).
    _, dt = jax.jvp(lambda p, aa, bb: p(aa * x + bb), (act, a, b), (dact, da, db))
    _, slope = jax.jvp(lambda xx: act(a * xx + b), (x,), (jnp.ones_like(x),))
    return (x, ok), (dt * inverse(1.0 - slope), jnp.zeros_like(ok))


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
      >>> r = jaxsig.dynamics.scalar_recursion("tanh", 2.0, 1.0, 0.5, 50)  # L = 2: V proves nothing
      >>> bool(r.contracts), round(float(r.bregman_rate), 4)
      (False, 0.0371)
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps=}")
    act, dtype = resolve_activation(phi, params, a=a, b=b, x0=x0)
    for name, v in (("a", a), ("b", b), ("x0", x0)):
        if jnp.ndim(v) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(v)}; use jax.vmap for batches")
        if is_concrete(v) and not np.isfinite(np.asarray(v)):
            raise ValueError(f"{name} must be finite, got {name}={v}")
    return _scalar_recursion(act, steps, *(jnp.asarray(v, dtype) for v in (a, b, x0)))


@functools.partial(jax.jit, static_argnums=(1,))
def _scalar_recursion(act, steps, a, b, x0):
    dtype = x0.dtype

    def T(x):
        return act(a * x + b)

    sup = _sup_abs_derivative(act, act.kinks, dtype)
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
    x_star, ok = _scalar_fixed_point(act, a, b, x_init, radius)
    ok = jax.lax.stop_gradient(ok) > 0
    bregman = jax.vmap(lambda x: bregman_values(act, x, x_star))(traj)
    rate = jnp.where(ok & jnp.isfinite(x_star), descent_rate(act, a, b, x_star, x0), jnp.inf)
    return ScalarRecursion(x_star, lip, contracts, lip * lip, traj, ok, bregman, rate)

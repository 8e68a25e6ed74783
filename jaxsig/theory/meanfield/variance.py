"""The variance map ``V(q) = sW^2 m2(sqrt q) + sb^2``, its trajectory and its fixed point ``q*``."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core._numerics import inverse, is_concrete
from jaxsig.theory.meanfield._common import (
    Q_MIN,
    V,
    V_and_slope,
    V_jit,
    bracketed_newton,
    bucketed,
    check_nonneg,
    check_pos,
    default_q_max_log2,
    depth_scale,
    flat_vmap,
    log_grid,
    probe_points,
    read_at,
    rounding_noise,
    setup,
    slope_jit,
    stats_jit,
)


class FixedPoint(NamedTuple):
    """The variance fixed point ``q* = V(q*)`` and what it implies.

    Attributes:
      q_star: the fixed point reached by iterating ``V`` from ``q0`` (``0`` when
        the variance dies out, ``inf`` when it grows without bound).
      slope: ``V'(q*)``, the rate at which ``q_l -> q*``; ``< 1`` for a stable
        fixed point.
      chi1: ``sW^2 g2(sqrt q*)^2``, the per-layer growth of squared
        perturbations.
      phase: index into :data:`PHASES`: ``0`` ordered (``chi1 < 1 - tol``),
        ``1`` critical (``|chi1 - 1| <= tol``), ``2`` chaotic.
      xi_q: depth scale of the variance, ``-1 / log V'(q*)`` (``inf`` when
        ``V'(q*) >= 1``).
      converged: the solver met its tolerance (always ``True`` for the exact
        answers ``0``, ``inf`` and ``q0``).
    """

    q_star: jax.Array
    slope: jax.Array
    chi1: jax.Array
    phase: jax.Array
    xi_q: jax.Array
    converged: jax.Array


# --- Variance map -----------------------------------------------------------------


def variance_map(phi, q, sigma_w2, sigma_b2, *, params: Any = None, rule=None):
    """The variance map ``V(q) = sW^2 m2(sqrt q) + sb^2``.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      q: pre-activation variance(s) ``>= 0`` (values below :data:`Q_MIN` are
        evaluated at ``Q_MIN``).
      sigma_w2: weight variance ``sW^2``.
      sigma_b2: bias variance ``sb^2``.
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature (see :func:`jaxsig.moments`).

    Returns:
      ``V(q)``, shape ``broadcast(q, sigma_w2, sigma_b2).shape``.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.variance_map("relu", 3.0, 2.0, 0.5)), 6)  # 2 * 3/2 + 0.5
      3.5
    """
    st = setup(phi, params, rule, q=q, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    check_nonneg(q=q, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    q, sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_w2, sigma_b2))
    shape = jnp.broadcast_shapes(q.shape, sw2.shape, sb2.shape)
    return V_jit(st.act, st.rule, jnp.broadcast_to(q, shape), sw2, sb2)


def variance_map_slope(phi, q, sigma_w2, *, params: Any = None, rule=None):
    """Slope of the variance map, ``V'(q) = sW^2 d m2(sqrt q)/dq = sW^2 (dm2/dsigma) / (2 sqrt q)``.

    By Gaussian integration by parts this is ``sW^2 E[phi'(u)^2 + phi(u) phi''(u)]``,
    ``u ~ N(0, q)``; it is computed from ``dm2/dsigma`` (no second derivatives).
    Arguments as in :func:`variance_map`.
    """
    st = setup(phi, params, rule, q=q, sigma_w2=sigma_w2)
    check_nonneg(q=q, sigma_w2=sigma_w2)
    q, sw2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_w2))
    q = jnp.broadcast_to(q, jnp.broadcast_shapes(q.shape, sw2.shape))
    return slope_jit(st.act, st.rule, q, sw2)


def perturbation_gain(phi, q, sigma_w2, *, params: Any = None, rule=None):
    """Per-layer growth of squared perturbations at variance ``q``: ``sW^2 g2(sqrt q)^2``.

    At the fixed point this is ``chi1``. For an infinitesimal perturbation ``dh``
    of pre-activations with variance ``q``, ``E|dh^{l+1}|^2 = sW^2 E[phi'(u)^2] |dh^l|^2``.
    Arguments as in :func:`variance_map`.
    """
    st = setup(phi, params, rule, q=q, sigma_w2=sigma_w2)
    check_nonneg(q=q, sigma_w2=sigma_w2)
    q, sw2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_w2))
    q = jnp.broadcast_to(q, jnp.broadcast_shapes(q.shape, sw2.shape))
    return sw2 * stats_jit(st.act, st.rule, q).g2sq


def variance_trajectory(phi, q0, sigma_w2, sigma_b2, depth: int, *, params: Any = None, rule=None):
    """Iterates of the variance map: ``q_0 = q0``, ``q_{l+1} = V(q_l)``, ``l < depth``.

    Args:
      phi, params, rule: as in :func:`variance_map`.
      q0: initial variance (scalar).
      sigma_w2, sigma_b2: scalars.
      depth: number of layers (static).

    Returns:
      Array ``(depth + 1,)``.
    """
    if not (isinstance(depth, int) and depth >= 0):
        raise ValueError(f"depth must be a non-negative int, got {depth=}")
    st = setup(phi, params, rule, q0=q0, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    check_nonneg(q0=q0, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    q0, sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (q0, sigma_w2, sigma_b2))
    return _trajectory(st.act, st.rule, depth, q0, sw2, sb2)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _trajectory(act, rule, depth, q0, sw2, sb2):
    def step(q, _):
        q_next = V(act, rule, q, sw2, sb2)
        return q_next, q_next

    _, qs = jax.lax.scan(step, q0, None, length=depth)
    return jnp.concatenate([q0[None], qs])


# --- Variance fixed point -----------------------------------------------------------


def _solve_q_star(act, rule, q_max_log2, sw2, sb2, q0):
    """The fixed point of ``V`` reached from ``q0``, and a convergence flag.

    ``V`` is nondecreasing for every activation whose ``m2(sigma)`` is (all the
    built-in ones), so iterating from ``q0`` converges monotonically to the
    first root of ``F(q) = V(q) - q`` in the direction of ``sign F(q0)``. That
    root is bracketed on a geometric grid (two points per octave, from
    ``Q_MIN`` to ``2**q_max_log2``) and polished by safeguarded Newton in
    ``log q``. No root upward means divergence (``inf``), none downward means
    the variance dies out (``0``).
    """
    dtype = sw2.dtype
    grid = jnp.asarray(log_grid(q_max_log2, 2), dtype)
    v = V(act, rule, jnp.concatenate([grid, q0[None]]), sw2, sb2)
    f_grid, v0 = v[:-1] - grid, v[-1]
    f0 = v0 - q0
    tol0 = rounding_noise(dtype, v0, q0)
    tol_g = rounding_noise(dtype, f_grid + grid, grid)
    up, down = f0 > tol0, f0 < -tol0
    n = grid.shape[0]
    # Upward: first grid point above q0 where F <= 0.
    cand_up = (grid > q0) & (f_grid <= tol_g)
    has_up = jnp.any(cand_up)
    j_up = jnp.argmax(cand_up)
    hi_up = grid[j_up]
    lo_up = jnp.where(j_up > 0, jnp.maximum(q0, grid[jnp.maximum(j_up - 1, 0)]), q0)
    # Downward: last grid point below q0 where F >= 0 (to rounding). When F is
    # rounding noise at that point and at every grid point below it, the root
    # cannot be told from 0 at this precision (tanh at sW^2 = 1, sb^2 = 0, in
    # float32: F = -2 q^2 is noise below q ~ 64 eps): the variance dies out.
    cand_dn = (grid < q0) & (f_grid >= -tol_g)
    j_dn = n - 1 - jnp.argmax(cand_dn[::-1])
    noise_floor = jnp.all(jnp.where(jnp.arange(n) <= j_dn, jnp.abs(f_grid) <= tol_g, True))
    has_dn = jnp.any(cand_dn) & ~noise_floor
    lo_dn = grid[j_dn]
    hi_dn = jnp.where(j_dn < n - 1, jnp.minimum(q0, grid[jnp.minimum(j_dn + 1, n - 1)]), q0)
    lo = jnp.log(jnp.where(up, lo_up, lo_dn))
    hi = jnp.log(jnp.where(up, hi_up, hi_dn))
    lo = jnp.minimum(lo, hi)

    def fun(x):
        q = jnp.exp(x)
        v, dv, _ = V_and_slope(act, rule, q, sw2, sb2)
        return v - q, (dv - 1.0) * q

    # In the up case F(lo) > 0 > F(hi); in the down case F(lo) >= 0 > F(hi).
    f_lo_sign = jnp.ones((), dtype)
    x, ok, _ = bracketed_newton(fun, lo, hi, f_lo_sign, 0.5 * (lo + hi), max_iter=100, xtol=8 * jnp.finfo(dtype).eps)
    q_newton = jnp.exp(x)
    q_star = jnp.where(
        up,
        jnp.where(has_up, q_newton, jnp.inf),
        jnp.where(down, jnp.where(has_dn, q_newton, 0.0), q0),
    )
    converged = jnp.where((up & has_up) | (down & has_dn), ok, True)
    # The flag travels as a float: custom_jvp outputs need float tangents.
    return q_star, converged.astype(dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _q_star(rule, q_max_log2, act, sw2, sb2, q0):
    return _solve_q_star(act, rule, q_max_log2, sw2, sb2, q0)


@_q_star.defjvp
def _q_star_jvp(rule, q_max_log2, primals, tangents):
    act, sw2, sb2, q0 = primals
    dact, dsw2, dsb2, _ = tangents
    q, converged = _q_star(rule, q_max_log2, act, sw2, sb2, q0)
    q_eval = jnp.clip(q, Q_MIN, 2.0**q_max_log2)
    # Implicit function theorem on q = V(q; theta):
    # dq = (dV/dtheta . dtheta) / (1 - V'(q)).
    _, dv = jax.jvp(lambda a, b, p: V(p, rule, q_eval, a, b), (sw2, sb2, act), (dsw2, dsb2, dact))
    slope = read_at(q, V_and_slope(act, rule, probe_points(q, q_max_log2), sw2, sb2)[1])
    # V'(q*) = 1 to rounding (a critical q* = 0): the derivative is infinite.
    den = 1.0 - slope
    den = jnp.where(jnp.abs(den) <= 64 * jnp.finfo(den.dtype).eps, 0.0, den)
    dq = jnp.where(jnp.isfinite(q), dv * inverse(den), 0.0)
    return (q, converged), (dq, jnp.zeros_like(converged))


def _fixed_point_scalar(act, rule, q_max_log2, sw2, sb2, q0, phase_tol):
    q_star, converged = _q_star(rule, q_max_log2, act, sw2, sb2, q0)
    converged = jax.lax.stop_gradient(converged) > 0
    # q* = 0 or inf: chi1 and V' are their limits (see at).
    _, slopes, st = V_and_slope(act, rule, probe_points(q_star, q_max_log2), sw2, sb2)
    chi1, slope = read_at(q_star, sw2 * st.g2sq), read_at(q_star, slopes)
    phase = jnp.where(chi1 < 1 - phase_tol, 0, jnp.where(chi1 > 1 + phase_tol, 2, 1)).astype(jnp.int32)
    return FixedPoint(q_star, slope, chi1, phase, depth_scale(slope), converged)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _fixed_point_batched(act, rule, q_max_log2, sw2, sb2, q0, phase_tol):
    def f(a, b, c):
        return _fixed_point_scalar(act, rule, q_max_log2, a, b, c, phase_tol)

    return flat_vmap(f, sw2, sb2, q0)


def fixed_point(
    phi,
    sigma_w2,
    sigma_b2,
    *,
    params: Any = None,
    q0=1.0,
    rule=None,
    q_max_log2: Optional[int] = None,
    phase_tol=None,
) -> FixedPoint:
    """Fixed point ``q* = V(q*)`` of the variance map, its stability, ``chi1`` and phase.

    ``q*`` is the limit of ``q_{l+1} = V(q_l)`` from ``q_0 = q0``: the first
    root of ``V(q) = q`` from ``q0`` in the direction of ``V(q0) - q0`` (the
    iteration is monotone since ``m2`` increases with ``sigma``). Then

    * ``slope = V'(q*)``, ``xi_q = -1 / log V'(q*)``;
    * ``chi1 = sW^2 g2(sqrt q*)^2``; phase ordered / critical / chaotic by
      ``chi1 < 1 - phase_tol``, ``|chi1 - 1| <= phase_tol``, ``chi1 > 1 + phase_tol``.

    Special cases, exact rather than approximate:

    * ``q* = 0`` when the variance dies out (odd bounded-derivative activations
      with ``sb^2 = 0`` and ``sW^2 phi'(0)^2 <= 1``, e.g. tanh with
      ``sW^2 <= 1``). Roots below :data:`Q_MIN`, or so small that ``V(q) - q``
      is rounding noise from them down to ``Q_MIN`` (tanh at ``sW^2 = 1`` in
      float32), are reported as ``0``; ``chi1`` and ``slope`` are then their
      limits ``q -> 0`` (equal there: ``V'(0) = sW^2 phi'(0)^2``).
    * ``q* = inf`` when ``V(q) > q`` up to ``q_max = 2**q_max_log2``: superlinear
      activations, or ReLU-like ones with ``sW^2 (alpha_+^2 + alpha_-^2)/2 > 1``.
      ``chi1`` and ``slope`` are then their limits ``q -> inf`` (read at
      ``q_max``), or ``inf`` where they still grow there.
    * ``q* = q0`` when ``V(q0) = q0`` to rounding (ReLU at ``sW^2 = 2``,
      ``sb^2 = 0``, where every ``q`` is fixed).

    Differentiable with respect to ``sigma_w2``, ``sigma_b2`` and ``params`` by
    implicit differentiation, ``dq* = (dV/dtheta . dtheta) / (1 - V'(q*))``
    (zero tangent where ``q*`` is infinite; ``+-inf`` where ``V'(q*) = 1`` to
    rounding, e.g. ``dq*/dsb^2`` for ReLU at ``sW^2 = 2``, ``sb^2 = 0``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma_w2: weight variance(s) ``sW^2 >= 0``; any shape, broadcast with
        ``sigma_b2`` and ``q0``.
      sigma_b2: bias variance(s) ``sb^2 >= 0``.
      params: parameters of ``phi`` (shared by all entries; ``jax.vmap`` over
        them for a batch).
      q0: the input variance the iteration starts from (``> 0``).
      rule: 1-D Gaussian quadrature (see :func:`jaxsig.moments`).
      q_max_log2: ``log2`` of the largest finite ``q*`` (static); default from the
        rule's grid (``11`` for the default rule, ``q_max = 2048``).
      phase_tol: tolerance on ``|chi1 - 1|`` for the critical phase; default
        ``max(1e-6, 64 eps)`` of the working dtype (``1e-6`` in float64,
        ``7.6e-6`` in float32, the rounding level of ``chi1`` there).

    Returns:
      A :class:`FixedPoint` whose fields have the broadcast shape.

    Examples:
      >>> import jaxsig
      >>> fp = jaxsig.dynamics.fixed_point("relu", 1.5, 0.1)  # q* = 0.1 / (1 - 0.75)
      >>> round(float(fp.q_star), 6), round(float(fp.chi1), 6), jaxsig.dynamics.PHASES[int(fp.phase)]
      (0.4, 0.75, 'ordered')
    """
    st = setup(phi, params, rule, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    check_pos(q0=q0)
    qml = default_q_max_log2(st.rule) if q_max_log2 is None else int(q_max_log2)
    if not -39 <= qml <= 100:
        raise ValueError(f"q_max_log2 must be an int in [-39, 100], got {q_max_log2=}")
    if is_concrete(q0) and np.any(np.asarray(q0) > 2.0**qml):
        raise ValueError(
            f"q0 must be at most q_max = 2**{qml} = {2.0**qml:g} (the largest variance the rule "
            f"resolves), got {q0=}; pass a larger q_max_log2 with a wider rule, e.g. "
            "rule=jaxsig.quadrature.Composite(x_max=4096)"
        )
    if phase_tol is None:
        phase_tol = max(1e-6, 64 * float(jnp.finfo(st.dtype).eps))
    sw2, sb2, q0, tol = (jnp.asarray(a, st.dtype) for a in (sigma_w2, sigma_b2, q0, phase_tol))

    def solve(a, b, c):
        return _fixed_point_batched(st.act, st.rule, qml, a, b, c, tol)

    return bucketed(solve, sw2, sb2, q0)

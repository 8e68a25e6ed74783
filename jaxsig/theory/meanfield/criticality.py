"""The edge of chaos ``chi1 = 1`` and initialisation advice (fixed ``q``, or critical)."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core._numerics import inverse, is_concrete
from jaxsig.theory.meanfield._common import (
    Q_MIN,
    V_and_slope,
    bracketed_newton,
    bucketed,
    check_nonneg,
    check_pos,
    default_q_max_log2,
    flat_vmap,
    gaussian_stats,
    rounding_noise,
    setup,
    stats_jit,
)
from jaxsig.theory.meanfield.variance import (
    log_grid,
    probe_points,
    read_at,
)


class EdgeOfChaos(NamedTuple):
    """A point of the critical line ``chi1 = 1``.

    Attributes:
      sigma_w2: the critical ``sW^2`` for the requested ``sb^2``.
      q_star: the fixed point there (``0`` at the small-``q`` end of the line,
        e.g. tanh with ``sb^2 = 0``; ``inf`` when no finite fixed point is
        critical, e.g. ReLU with ``sb^2 > 0``).
      slope: ``V'(q*)`` there. Below 1 the critical fixed point attracts the
        variance; above 1 it repels it (GELU and Swish with ``sb^2 > 0``: a
        network settles at an ordered fixed point below ``q*`` or its variance
        diverges above), so the network is never at the edge of chaos.
    """

    sigma_w2: jax.Array
    q_star: jax.Array
    slope: jax.Array


class Init(NamedTuple):
    """Initialisation advice: weight and bias variances and what they give.

    Attributes:
      sigma_w2: weight variance ``sW^2`` (weights ``N(0, sW^2 / fan_in)``).
      sigma_b2: bias variance ``sb^2``.
      q_star: the pre-activation variance kept fixed.
      chi1: ``sW^2 g2(sqrt q*)^2`` there.
    """

    sigma_w2: jax.Array
    sigma_b2: jax.Array
    q_star: jax.Array
    chi1: jax.Array


# --- Edge of chaos -------------------------------------------------------------------


def _critical_curve(act, rule, q):
    """``(sW^2(q), sb^2(q))`` on the critical line, parametrised by ``q*``.

    ``chi1 = 1`` gives ``sW^2 = 1 / g2(sqrt q)^2``; ``V(q) = q`` then gives
    ``sb^2 = q - sW^2 m2(sqrt q)``.
    """
    s = gaussian_stats(act, rule, q)
    sw2 = 1.0 / s.g2sq
    return sw2, q - sw2 * s.m2


def _solve_edge(act, rule, q_max_log2, target):
    """``log q`` on the critical line with ``sb^2(q) = target`` (first crossing)."""
    dtype = target.dtype
    grid = jnp.asarray(log_grid(q_max_log2, 4), dtype)
    sw2_g, sb2_g = _critical_curve(act, rule, grid)
    tol = rounding_noise(dtype, grid, sb2_g)
    above = sb2_g >= target - tol
    has = jnp.any(above)
    j = jnp.argmax(above)
    lo = jnp.log(grid[jnp.maximum(j - 1, 0)])
    hi = jnp.log(grid[j])

    def fun(x):
        h, dh = jax.jvp(lambda t: _critical_curve(act, rule, jnp.exp(t))[1], (x,), (jnp.ones_like(x),))
        return h - target, dh

    x, ok, _ = bracketed_newton(
        fun, lo, hi, -jnp.ones((), dtype), 0.5 * (lo + hi), max_iter=100, xtol=8 * jnp.finfo(dtype).eps
    )
    # Below the whole curve (target <= sb^2 at Q_MIN): the q* -> 0 end of the line.
    q = jnp.where(~has, jnp.inf, jnp.where(j == 0, 0.0, jnp.exp(x)))
    return q, (j == 0) | ~has | ok


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _edge_q(rule, q_max_log2, act, target):
    return _solve_edge(act, rule, q_max_log2, target)[0]


@_edge_q.defjvp
def _edge_q_jvp(rule, q_max_log2, primals, tangents):
    act, target = primals
    dact, dtarget = tangents
    q = _edge_q(rule, q_max_log2, act, target)
    q_eval = jnp.clip(q, Q_MIN, 2.0**q_max_log2)
    # sb^2(q; params) = target: dq = (dtarget - d_params sb^2 . dparams) / (d sb^2 / dq).

    def curve(qq, a):
        return _critical_curve(a, rule, qq)[1]

    _, d_q = jax.jvp(lambda qq: curve(qq, act), (q_eval,), (jnp.ones_like(q_eval),))
    _, d_p = jax.jvp(lambda a: curve(q_eval, a), (act,), (dact,))
    dq = (dtarget - d_p) * inverse(d_q)
    inside = (q > 0) & jnp.isfinite(q)
    return q, jnp.where(inside, dq, 0.0)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _edge_batched(act, rule, q_max_log2, targets):
    def one(t):
        q = _edge_q(rule, q_max_log2, act, t)
        qs = probe_points(q, q_max_log2)
        sw2s = _critical_curve(act, rule, qs)[0]
        slopes = V_and_slope(act, rule, qs, sw2s, t)[1]
        return EdgeOfChaos(read_at(q, sw2s), q, read_at(q, slopes))

    return flat_vmap(one, targets)


def edge_of_chaos(phi, sigma_b2, *, params: Any = None, rule=None, q_max_log2: Optional[int] = None) -> EdgeOfChaos:
    """The critical line ``chi1 = 1`` (edge of chaos): critical ``sW^2`` for each ``sb^2``.

    Parametrised by the fixed point ``q``: ``chi1 = 1`` and ``V(q) = q`` give

    .. math:: \\sigma_w^2(q) = 1 / g_2(\\sqrt q)^2, \\qquad
              \\sigma_b^2(q) = q - \\sigma_w^2(q)\\, m_2(\\sqrt q).

    The curve is sampled on a geometric grid of ``q`` (four points per octave,
    ``Q_MIN`` to ``q_max``), the first grid interval where ``sb^2(q)`` reaches
    the requested value is located, and Newton steps in ``log q`` (bisection
    safeguarded) make it exact. ``sb^2(q)`` is increasing for the standard
    activations; where it is not, the smallest such ``q`` is returned.

    The critical point is a fixed point with ``chi1 = 1``; whether a network
    reaches it is another matter, reported as ``slope = V'(q*)`` (``< 1``:
    attracting). For tanh and erf it attracts; for GELU and Swish with
    ``sb^2 > 0`` it repels (``V'(q*) > 1``).

    Limits: when the requested ``sb^2`` is at or below ``sb^2(Q_MIN)`` the
    answer is the ``q -> 0`` end of the line, ``q* = 0``,
    ``sW^2 = 1 / phi'(0)^2`` (tanh, ``sb^2 = 0``: ``sW^2 = 1``); when it is above
    the whole curve, ``q* = inf`` and ``sW^2`` is the ``q -> inf`` limit (ReLU:
    ``sb^2(q) = 0`` for all ``q``, so every ``sb^2 > 0`` gives ``sW^2 = 2``,
    ``q* = inf``).

    Differentiable with respect to ``sigma_b2`` and ``params`` (implicit
    differentiation of ``sb^2(q) = sigma_b2``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma_b2: bias variance(s) ``>= 0``, any shape.
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature.
      q_max_log2: ``log2`` of the largest ``q*`` considered (static).

    Returns:
      :class:`EdgeOfChaos` ``(sigma_w2, q_star, slope)``, each of ``sigma_b2``'s shape.

    Examples:
      >>> import jaxsig
      >>> e = jaxsig.dynamics.edge_of_chaos("relu", 0.0)
      >>> round(float(e.sigma_w2), 6)  # He initialisation
      2.0
    """
    st = setup(phi, params, rule, sigma_b2=sigma_b2)
    check_nonneg(sigma_b2=sigma_b2)
    qml = default_q_max_log2(st.rule) if q_max_log2 is None else int(q_max_log2)
    sb2 = jnp.asarray(sigma_b2, st.dtype)
    return bucketed(lambda t: _edge_batched(st.act, st.rule, qml, t), sb2)


# --- Initialisation advice --------------------------------------------------------------


def init_for_fixed_q(phi, q, sigma_b2=0.0, *, params: Any = None, rule=None) -> Init:
    """Weight variance that keeps the pre-activation variance at ``q``.

    ``V(q) = q`` gives ``sW^2 = (q - sb^2) / m2(sqrt q)`` (design principle 2 of
    SPEC). Requires ``q > sb^2``; under ``jit`` a negative ``sigma_w2`` flags
    ``q <= sb^2``.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      q: the variance to keep (``> 0``).
      sigma_b2: the bias variance (``0 <= sb^2 < q``).
      params, rule: as in :func:`variance_map`.

    Returns:
      :class:`Init` with ``sigma_w2``, ``sigma_b2``, ``q_star = q`` and the
      resulting ``chi1``.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.init_for_fixed_q("relu", 1.0).sigma_w2), 6)
      2.0
    """
    st = setup(phi, params, rule, q=q, sigma_b2=sigma_b2)
    check_pos(q=q)
    check_nonneg(sigma_b2=sigma_b2)
    if is_concrete(q) and is_concrete(sigma_b2) and np.any(np.asarray(q) <= np.asarray(sigma_b2)):
        raise ValueError(
            f"q must exceed sigma_b2 (the bias alone contributes sigma_b2 to the variance), got {q=}, {sigma_b2=}"
        )
    q, sb2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_b2))
    shape = jnp.broadcast_shapes(q.shape, sb2.shape)
    q, sb2 = jnp.broadcast_to(q, shape), jnp.broadcast_to(sb2, shape)
    s = stats_jit(st.act, st.rule, q)
    sw2 = (q - sb2) / s.m2
    return Init(sw2, sb2, q, sw2 * s.g2sq)


def critical_init(phi, sigma_b2=0.0, *, q=None, params: Any = None, rule=None) -> Init:
    """Critical initialisation: ``(sW^2, sb^2)`` on the edge of chaos.

    With ``q`` given: the critical point whose fixed point is ``q``,
    ``sW^2 = 1 / g2(sqrt q)^2``, ``sb^2 = q - sW^2 m2(sqrt q)`` (``sigma_b2`` is
    then ignored, and a negative ``sb^2`` means no critical point has that ``q``).
    Otherwise the critical ``sW^2`` for the given ``sb^2``, from
    :func:`edge_of_chaos`.

    Returns:
      :class:`Init` with ``chi1`` recomputed at ``q*`` (``1`` up to rounding;
      its limit when ``q*`` is ``0`` or ``inf``).

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.critical_init("tanh").sigma_w2), 6)
      1.0
    """
    if q is not None:
        st = setup(phi, params, rule, q=q)
        check_pos(q=q)
        q = jnp.asarray(q, st.dtype)
        s = stats_jit(st.act, st.rule, q)
        sw2 = 1.0 / s.g2sq
        sb2 = q - sw2 * s.m2
        # A bias variance within rounding of 0 is 0 (ReLU: q - 2 (q / 2) exactly).
        sb2 = jnp.where(jnp.abs(sb2) <= rounding_noise(st.dtype, q), 0.0, sb2)
        return Init(sw2, sb2, q, sw2 * s.g2sq)
    st = setup(phi, params, rule, sigma_b2=sigma_b2)
    e = edge_of_chaos(phi, sigma_b2, params=params, rule=rule)
    s = stats_jit(st.act, st.rule, probe_points(e.q_star, default_q_max_log2(st.rule)))
    sb2 = jnp.broadcast_to(jnp.asarray(sigma_b2, st.dtype), e.sigma_w2.shape)
    return Init(e.sigma_w2, sb2, e.q_star, e.sigma_w2 * read_at(e.q_star, s.g2sq))

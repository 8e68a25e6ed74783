"""The correlation map ``c -> (sW^2 E[phi(u) phi(v)] + sb^2) / q*``, its fixed point and the depth scales."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxsig.theory import kernels as _kernels
from jaxsig.theory.meanfield._common import (
    Q_MIN,
    bracketed_newton,
    bucketed,
    check_nonneg,
    default_q_max_log2,
    depth_scale,
    flat_vmap,
    setup,
)
from jaxsig.theory.meanfield.variance import (
    fixed_point,
    rounding_noise,
)


class CorrelationFixedPoint(NamedTuple):
    """The stable fixed point of the correlation map and its rate.

    Attributes:
      c_star: ``1`` in the ordered and critical phases; in the chaotic phase
        the root of ``C(c) = c`` in ``[0, 1)`` (``0`` for odd activations with
        ``sb^2 = 0``).
      slope: ``C'(c*) = sW^2 E[phi'(u) phi'(v)]`` (``= chi1`` when ``c* = 1``).
      xi_c: depth scale of correlations, ``-1 / log C'(c*)``.
      converged: the solver met its tolerance.
    """

    c_star: jax.Array
    slope: jax.Array
    xi_c: jax.Array
    converged: jax.Array


class DepthScales(NamedTuple):
    """Depth scales (in layers) over which signals are forgotten.

    Attributes:
      xi_q: ``-1 / log V'(q*)``: the variance approaches ``q*``.
      xi_c: ``-1 / log C'(c*)``: correlations approach ``c*``; infinite at the
        edge of chaos.
    """

    xi_q: jax.Array
    xi_c: jax.Array


# --- Correlation map ----------------------------------------------------------------


def _resolve_q_star(st, sw2, sb2, q_star):
    """The variance the correlation map is read at: ``q_star`` or the fixed point from ``q0 = 1``.

    Clipped to ``[Q_MIN, q_max]`` inside the compiled maps.
    """
    if q_star is None:
        q_star = fixed_point(st.act, sw2, sb2, rule=st.rule).q_star
    return jnp.asarray(q_star, st.dtype)


def _dual(act, polar, c, q, derivative):
    return _kernels.dual(act, c, q=q, derivative=derivative, rule=polar)


def _corr_and_slope(act, polar, c, q, sw2, sb2):
    """``C(c)`` and ``C'(c)`` at variance ``q``.

    Normalised by ``V(q) = sW^2 E[phi(u)^2] + sb^2`` (the variance of the next
    layer), which is ``q`` at a fixed point, so that ``C(1) = 1`` also in the
    limits ``q* = 0`` and ``q* = inf``. The slope is Price's theorem,
    ``C'(c) = sW^2 q E[phi'(u) phi'(v)] / V(q)``.
    """
    e = _dual(act, polar, jnp.stack([c, jnp.ones_like(c)]), q, False)
    d = _dual(act, polar, c, q, True)
    v = sw2 * e[1] + sb2
    return (sw2 * e[0] + sb2) / v, sw2 * q * d / v


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _corr_batched(act, polar, q_max_log2, slope, c, q, sw2, sb2):
    shape = jnp.broadcast_shapes(c.shape, q.shape, sw2.shape, sb2.shape)
    c, q = jnp.broadcast_to(c, shape), jnp.broadcast_to(jnp.clip(q, Q_MIN, 2.0**q_max_log2), shape)
    return _corr_and_slope(act, polar, c, q, sw2, sb2)[int(slope)]


def correlation_map(
    phi,
    c,
    sigma_w2,
    sigma_b2,
    *,
    params: Any = None,
    q_star=None,
    rule=None,
    polar: _kernels.PolarRule = _kernels.DEFAULT_RULE,
):
    """The correlation map ``C(c) = (sW^2 E[phi(u) phi(v)] + sb^2) / q*``.

    ``(u, v)`` is a centred Gaussian pair with variances ``q*`` and correlation
    ``c`` (:func:`jaxsig.kernels.dual`). ``C(1) = 1`` and ``C'(1) = chi1``.

    The denominator is computed as ``V(q*) = sW^2 E[phi(u)^2] + sb^2``, the
    variance of the next layer: equal to ``q*`` at a fixed point, and the right
    normalisation (``C(1) = 1``) where ``q*`` is ``0`` or ``inf`` and the map is
    read at ``Q_MIN`` or ``q_max``, or at a ``q_star`` that is not a fixed point.
    In the limit ``q* -> 0`` a network is linear and ``C`` tends to the identity
    (tanh, ``sb^2 = 0``, ``sW^2 < 1``: correlations are kept while the variance
    dies out); for ReLU with ``sb^2 = 0`` it is the normalised arc-cosine map
    whatever ``sW^2``.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      c: correlation(s) in ``[-1, 1]``.
      sigma_w2, sigma_b2: variances (broadcast with ``c``).
      params: parameters of ``phi``.
      q_star: the variance to use; default the fixed point from
        :func:`fixed_point` (``q0 = 1``), clipped to ``[Q_MIN, q_max]`` (so a
        divergent ``q*`` uses the ``q -> inf`` limit, read at ``q_max``).
      rule: 1-D rule for the fixed point.
      polar: 2-D rule (:class:`jaxsig.kernels.PolarRule`).

    Returns:
      ``C(c)``, broadcast shape.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.correlation_map("relu", 0.0, 2.0, 0.0, q_star=1.0)), 6)  # 1/pi
      0.31831
    """
    return _correlation(phi, c, sigma_w2, sigma_b2, params, q_star, rule, polar, slope=False)


def correlation_slope(
    phi,
    c,
    sigma_w2,
    sigma_b2,
    *,
    params: Any = None,
    q_star=None,
    rule=None,
    polar: _kernels.PolarRule = _kernels.DEFAULT_RULE,
):
    """Slope of the correlation map, ``C'(c) = sW^2 E[phi'(u) phi'(v)]`` (Price's theorem).

    Computed as ``sW^2 q* E[phi'(u) phi'(v)] / V(q*)`` (see
    :func:`correlation_map`). At a fixed point and ``c = 1`` it is
    ``chi1 = sW^2 g2(sqrt q*)^2``. Arguments as in :func:`correlation_map`.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.correlation_slope("relu", 1.0, 1.5, 0.1)), 6)  # chi1 = 1.5 / 2
      0.75
    """
    return _correlation(phi, c, sigma_w2, sigma_b2, params, q_star, rule, polar, slope=True)


def _correlation(phi, c, sigma_w2, sigma_b2, params, q_star, rule, polar, slope):
    st = setup(phi, params, rule, c=c, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    c, sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (c, sigma_w2, sigma_b2))
    q = _resolve_q_star(st, sw2, sb2, q_star)
    qml = default_q_max_log2(st.rule)
    return _corr_batched(st.act, polar, qml, slope, c, q, sw2, sb2)


def _corr_fixed_point_scalar(act, polar, q, sw2, sb2):
    dtype = q.dtype
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    ends, slopes = _corr_and_slope(act, polar, jnp.stack([one, zero]), q, sw2, sb2)
    chi1, g0 = slopes[0], ends[1]

    def fun(c):
        cc, slope = _corr_and_slope(act, polar, c, q, sw2, sb2)
        return cc - c, slope - 1.0

    # C is convex on [0, 1] (its Mehler series has non-negative coefficients),
    # C(0) >= 0 and C(1) = 1: for chi1 <= 1, c* = 1; otherwise the only other
    # root in [0, 1) is attracting, with G = C - c > 0 below it and < 0 above.
    # C'(c*) is the last Newton derivative plus 1: already computed at the root.
    c_root, ok, dg = bracketed_newton(fun, zero, one, one, 0.5 * one, max_iter=100, xtol=8 * jnp.finfo(dtype).eps)
    # chi1 within rounding of 1 is critical: c = 1 is then a double root of
    # C(c) - c, where Newton converges only linearly and would stop short.
    ordered = chi1 <= 1 + rounding_noise(dtype, one)
    chi1 = jnp.where(jnp.abs(chi1 - 1) <= rounding_noise(dtype, one), 1.0, chi1)
    at_zero = g0 <= rounding_noise(dtype, one)
    c_star = jnp.where(ordered, 1.0, jnp.where(at_zero, 0.0, c_root))
    slope = jnp.where(ordered, chi1, jnp.where(at_zero, slopes[1], dg + 1.0))
    return CorrelationFixedPoint(c_star, slope, depth_scale(slope), ordered | at_zero | ok)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _corr_fixed_point_batched(act, polar, q_max_log2, q, sw2, sb2):
    def f(qq, a, b):
        return _corr_fixed_point_scalar(act, polar, qq, a, b)

    return flat_vmap(f, jnp.clip(q, Q_MIN, 2.0**q_max_log2), sw2, sb2)


def correlation_fixed_point(
    phi,
    sigma_w2,
    sigma_b2,
    *,
    params: Any = None,
    q_star=None,
    rule=None,
    polar: _kernels.PolarRule = _kernels.DEFAULT_RULE,
) -> CorrelationFixedPoint:
    """Stable fixed point ``c*`` of the correlation map and the depth scale ``xi_c``.

    ``c* = 1`` when ``C'(1) <= 1`` (ordered and critical); otherwise the root of
    ``C(c) = c`` in ``[0, 1)``, found by safeguarded Newton with
    ``C'(c) = sW^2 E[phi'(u) phi'(v)]``. ``xi_c = -1 / log C'(c*)``, so in the
    ordered phase ``xi_c = -1 / log chi1`` and at the edge of chaos
    ``xi_c = inf`` (Schoenholz et al. 2017). ``C'(1) = chi1`` at a positive,
    finite fixed point; where ``q* = 0`` or ``inf`` see :func:`correlation_map`.

    Examples:
      >>> import jaxsig
      >>> cf = jaxsig.dynamics.correlation_fixed_point("tanh", 1.5, 0.0)
      >>> float(cf.c_star)  # odd activation, no bias: chaotic inputs decorrelate fully
      0.0

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma_w2, sigma_b2: variances, any broadcastable shapes.
      params, q_star, rule, polar: as in :func:`correlation_map`.

    Returns:
      A :class:`CorrelationFixedPoint`.
    """
    st = setup(phi, params, rule, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (sigma_w2, sigma_b2))
    q = _resolve_q_star(st, sw2, sb2, q_star)
    qml = default_q_max_log2(st.rule)

    def solve(qq, a, b):
        return _corr_fixed_point_batched(st.act, polar, qml, qq, a, b)

    return bucketed(solve, q, sw2, sb2)


def depth_scales(phi, sigma_w2, sigma_b2, *, params: Any = None, rule=None, polar=_kernels.DEFAULT_RULE) -> DepthScales:
    """Depth scales ``xi_q = -1 / log V'(q*)`` and ``xi_c = -1 / log C'(c*)``.

    Combines :func:`fixed_point` and :func:`correlation_fixed_point`
    (Schoenholz et al. 2017, eqs. 5 and 9). Both are ``inf`` where the rate is
    ``>= 1``; ``xi_c`` diverges at the edge of chaos.
    """
    fp = fixed_point(phi, sigma_w2, sigma_b2, params=params, rule=rule)
    cfp = correlation_fixed_point(phi, sigma_w2, sigma_b2, params=params, q_star=fp.q_star, rule=rule, polar=polar)
    return DepthScales(fp.xi_q, cfp.xi_c)

"""The correlation map ``c -> (sW^2 E[phi(u) phi(v)] + sb^2) / q*``, its fixed point and the depth scales."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxsig.core import activations as _activations
from jaxsig.theory import kernels as _kernels
from jaxsig.theory.meanfield._common import (
    CorrelationFixedPoint,
    DepthScales,
    Q_MIN,
    _bracketed_newton,
    _bucketed,
    _check_nonneg,
    _depth_scale,
    _flat_vmap,
    _q_max_log2,
    _setup,
)
from jaxsig.theory.meanfield.variance import (
    _fixed_point_batched,
    _noise,
    fixed_point,
)


# --- Correlation map ----------------------------------------------------------------


def _resolve_q_star(st, sw2, sb2, q_star):
    """The variance the correlation map is read at: ``q_star`` or the fixed point from ``q0 = 1``.

    Clipped to ``[Q_MIN, q_max]`` inside the compiled maps.
    """
    if q_star is None:
        one = jnp.ones((), st.dtype)
        solve = lambda a, b, c: _fixed_point_batched(  # noqa: E731
            st.fn, st.has_params, st.rule, _q_max_log2(st.rule), a, b, c, 1e-6 * one, st.params
        )
        q_star = _bucketed(solve, sw2, sb2, one).q_star
    return jnp.asarray(q_star, st.dtype)


def _dual(fn, has_params, kinks, polar, c, q, params, derivative):
    act = _activations.Activation("phi", fn, None, kinks)
    return _kernels.dual(act, c, q=q, params=params if has_params else None, derivative=derivative, rule=polar)


def _corr_and_slope(fn, has_params, kinks, polar, c, q, sw2, sb2, params):
    """``C(c)`` and ``C'(c)`` at variance ``q``.

    Normalised by ``V(q) = sW^2 E[phi(u)^2] + sb^2`` (the variance of the next
    layer), which is ``q`` at a fixed point, so that ``C(1) = 1`` also in the
    limits ``q* = 0`` and ``q* = inf``. The slope is Price's theorem,
    ``C'(c) = sW^2 q E[phi'(u) phi'(v)] / V(q)``.
    """
    e = _dual(fn, has_params, kinks, polar, jnp.stack([c, jnp.ones_like(c)]), q, params, False)
    d = _dual(fn, has_params, kinks, polar, c, q, params, True)
    v = sw2 * e[1] + sb2
    return (sw2 * e[0] + sb2) / v, sw2 * q * d / v


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _corr_batched(fn, has_params, kinks, polar, q_max_log2, slope, c, q, sw2, sb2, params):
    shape = jnp.broadcast_shapes(c.shape, q.shape, sw2.shape, sb2.shape)
    c, q = jnp.broadcast_to(c, shape), jnp.broadcast_to(jnp.clip(q, Q_MIN, 2.0**q_max_log2), shape)
    return _corr_and_slope(fn, has_params, kinks, polar, c, q, sw2, sb2, params)[int(slope)]


def correlation_map(
    phi, c, sigma_w2, sigma_b2, *, params: Any = None, q_star=None, rule=None, polar: _kernels.PolarRule = _kernels.DEFAULT_RULE
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
    phi, c, sigma_w2, sigma_b2, *, params: Any = None, q_star=None, rule=None, polar: _kernels.PolarRule = _kernels.DEFAULT_RULE
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
    st = _setup(phi, params, rule, c, sigma_w2, sigma_b2)
    _check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    c, sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (c, sigma_w2, sigma_b2))
    q = _resolve_q_star(st, sw2, sb2, q_star)
    qml = _q_max_log2(st.rule)
    return _corr_batched(st.fn, st.has_params, st.kinks, polar, qml, slope, c, q, sw2, sb2, st.params)


def _corr_fixed_point_scalar(fn, has_params, kinks, polar, q, sw2, sb2, params):
    dtype = q.dtype
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    ends, slopes = _corr_and_slope(fn, has_params, kinks, polar, jnp.stack([one, zero]), q, sw2, sb2, params)
    chi1, g0 = slopes[0], ends[1]

    def fun(c):
        cc, slope = _corr_and_slope(fn, has_params, kinks, polar, c, q, sw2, sb2, params)
        return cc - c, slope - 1.0

    # C is convex on [0, 1] (its Mehler series has non-negative coefficients),
    # C(0) >= 0 and C(1) = 1: for chi1 <= 1, c* = 1; otherwise the only other
    # root in [0, 1) is attracting, with G = C - c > 0 below it and < 0 above.
    # C'(c*) is the last Newton derivative plus 1: already computed at the root.
    c_root, ok, dg = _bracketed_newton(fun, zero, one, one, 0.5 * one, max_iter=100, xtol=8 * jnp.finfo(dtype).eps)
    ordered = chi1 <= 1
    at_zero = g0 <= _noise(dtype, one)
    c_star = jnp.where(ordered, 1.0, jnp.where(at_zero, 0.0, c_root))
    slope = jnp.where(ordered, chi1, jnp.where(at_zero, slopes[1], dg + 1.0))
    return CorrelationFixedPoint(c_star, slope, _depth_scale(slope), ordered | at_zero | ok)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _corr_fixed_point_batched(fn, has_params, kinks, polar, q_max_log2, q, sw2, sb2, params):
    f = lambda qq, a, b: _corr_fixed_point_scalar(fn, has_params, kinks, polar, qq, a, b, params)  # noqa: E731
    return _flat_vmap(f, jnp.clip(q, Q_MIN, 2.0**q_max_log2), sw2, sb2)


def correlation_fixed_point(
    phi, sigma_w2, sigma_b2, *, params: Any = None, q_star=None, rule=None, polar: _kernels.PolarRule = _kernels.DEFAULT_RULE
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
    st = _setup(phi, params, rule, sigma_w2, sigma_b2)
    _check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (sigma_w2, sigma_b2))
    q = _resolve_q_star(st, sw2, sb2, q_star)
    qml = _q_max_log2(st.rule)
    solve = lambda qq, a, b: _corr_fixed_point_batched(st.fn, st.has_params, st.kinks, polar, qml, qq, a, b, st.params)  # noqa: E731
    return _bucketed(solve, q, sw2, sb2)


def depth_scales(phi, sigma_w2, sigma_b2, *, params: Any = None, rule=None, polar=_kernels.DEFAULT_RULE) -> DepthScales:
    """Depth scales ``xi_q = -1 / log V'(q*)`` and ``xi_c = -1 / log C'(c*)``.

    Combines :func:`fixed_point` and :func:`correlation_fixed_point`
    (Schoenholz et al. 2017, eqs. 5 and 9). Both are ``inf`` where the rate is
    ``>= 1``; ``xi_c`` diverges at the edge of chaos.
    """
    fp = fixed_point(phi, sigma_w2, sigma_b2, params=params, rule=rule)
    cfp = correlation_fixed_point(phi, sigma_w2, sigma_b2, params=params, q_star=fp.q_star, rule=rule, polar=polar)
    return DepthScales(fp.xi_q, cfp.xi_c)


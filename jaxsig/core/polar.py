"""A polar product rule for 2-D Gaussian expectations ``E[F(z1, z2)]``.

For ``u = s1 z1`` and ``v = s2 (c z1 + sqrt(1 - c^2) z2)`` the rule splits the
angle at the rays ``u = 0`` and ``v = 0`` (where kinks at 0 lie) and the radius
at every other kink, with panels graded geometrically toward the rays and toward
``r = 0``; :mod:`jaxsig.theory.kernels` explains the construction and its accuracy.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxsig.core._numerics import safe_div, safe_sqrt
from jaxsig.core.quadrature import legendre01

__all__ = ["PolarRule", "DEFAULT_RULE", "polar_nodes", "symmetric_products"]


class PolarRule(NamedTuple):
    """Sizes of the polar product rule for 2-D Gaussian expectations.

    All entries are static Python numbers (they fix the shapes).

    Attributes:
      angular_levels: geometric levels (ratio 2) toward each end of each
        angular sector; the smallest angular panel is ``2**-levels`` of its
        sector.
      angular_order: Gauss–Legendre nodes per angular panel.
      radial_levels: geometric levels toward ``r = 0`` (smallest panel
        ``[0, 2**-radial_levels]``).
      radial_step: width of the uniform radial panels on ``[1, r_max]``.
      radial_order: Gauss–Legendre nodes per radial panel.
      r_max: radial cut-off; the Gaussian mass beyond is ``exp(-r_max^2 / 2)``.
    """

    angular_levels: int = 10
    angular_order: int = 10
    radial_levels: int = 20
    radial_step: float = 0.75
    radial_order: int = 12
    r_max: float = 10.0


DEFAULT_RULE = PolarRule()


@functools.lru_cache(maxsize=None)
def _angular_reference(levels: int, order: int):
    """Nodes and weights on ``[0, 1]``, panels graded toward both ends."""
    half = 2.0 ** -np.arange(levels, 0, -1)  # 2^-L, ..., 1/2
    edges = np.unique(np.concatenate([[0.0], half, 1.0 - half, [1.0]]))
    t, w = legendre01(order)
    a, b = edges[:-1, None], edges[1:, None]
    return (a + (b - a) * t).ravel(), ((b - a) * w).ravel()


@functools.lru_cache(maxsize=None)
def _radial_edges(rule: PolarRule) -> np.ndarray:
    inner = 2.0 ** -np.arange(rule.radial_levels, -1, -1)  # 2^-L, ..., 1
    n = max(1, int(math.ceil((rule.r_max - 1.0) / rule.radial_step)))
    outer = np.linspace(1.0, rule.r_max, n + 1)
    return np.unique(np.concatenate([[0.0], inner, outer]))


def _panel_nodes(edges, t, w):
    """Gauss–Legendre nodes/weights on the panels ``edges[..., :-1] -> edges[..., 1:]``."""
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    x = a + (b - a) * t
    return x.reshape(*x.shape[:-2], -1), ((b - a) * w).reshape(*x.shape[:-2], -1)


def polar_nodes(s1, s2, c, kinks_u, kinks_v, rule: PolarRule):
    """Nodes ``(z1, z2)`` and weights of a half-plane rule for ``E[F(z)]``.

    ``E[F(z)] ~ sum w (F(z) + F(-z))``: the angle runs over
    ``[-pi/2, pi/2]`` and the reflection ``z -> -z`` covers the other half.
    The angle is split at ``theta_s = arccos(c) - pi/2`` (the ray ``v = 0``),
    and the radius at every nonzero kink of either factor, for both signs.
    Shapes: ``(n_theta, n_r)``.
    """
    dtype = jnp.result_type(s1, s2, c)
    cc = jnp.clip(c, -1.0, 1.0)
    # sqrt(1 - c^2) has an infinite derivative at c = +-1; the c-derivatives of
    # the expectations come from Price's theorem instead (see jaxsig.theory.kernels), so a
    # zero gradient here (double-where) only keeps NaN out of tangents that are
    # multiplied by a vanishing dc.
    sn = safe_sqrt((1.0 - cc) * (1.0 + cc))
    # beta = arccos(c), written with atan2 so that c = +-1 is exact.
    beta = jnp.arctan2(sn, cc)
    theta_s = beta - 0.5 * jnp.pi
    t_ref, w_ref = (jnp.asarray(a, dtype) for a in _angular_reference(rule.angular_levels, rule.angular_order))
    lo = -0.5 * jnp.pi
    hi = 0.5 * jnp.pi
    theta = jnp.concatenate([lo + (theta_s - lo) * t_ref, theta_s + (hi - theta_s) * t_ref])
    w_theta = jnp.concatenate([(theta_s - lo) * w_ref, (hi - theta_s) * w_ref])
    cos_t, sin_t = jnp.cos(theta), jnp.sin(theta)
    # Radial breakpoints: u = +-k at r = +-k / (s1 cos theta), and likewise for v.
    a_u = s1 * cos_t
    a_v = s2 * (cc * cos_t + sn * sin_t)
    breaks = []
    for k in kinks_u:
        breaks += [safe_div(jnp.asarray(k, dtype), a_u, jnp.inf), safe_div(jnp.asarray(-k, dtype), a_u, jnp.inf)]
    for k in kinks_v:
        breaks += [safe_div(jnp.asarray(k, dtype), a_v, jnp.inf), safe_div(jnp.asarray(-k, dtype), a_v, jnp.inf)]
    edges = jnp.asarray(_radial_edges(rule), dtype)
    edges = jnp.broadcast_to(edges, theta.shape + edges.shape)
    if breaks:
        # Breakpoints that are not in (0, r_max) collapse onto r_max and add empty
        # panels there (zero weight, and nodes where phi is finite: at r = 0 a
        # singular phi' would make 0 * inf = NaN).
        b = jnp.stack(breaks, axis=-1)
        b = jnp.where(b > 0, jnp.minimum(b, rule.r_max), rule.r_max)
        edges = jnp.sort(jnp.concatenate([edges, b], axis=-1), axis=-1)
    tr, wr = (jnp.asarray(a, dtype) for a in legendre01(rule.radial_order))
    r, w_r = _panel_nodes(edges, tr, wr)
    w = w_theta[:, None] * w_r * r * jnp.exp(-0.5 * r * r) / (2.0 * jnp.pi)
    return r * cos_t[:, None], r * sin_t[:, None], w, sn


def symmetric_products(f, u, v):
    """``f(u) f(v) + f(-u) f(-v)``: the integrand over the half-plane and its reflection.

    ``f`` is evaluated once, on the four arrays stacked: one fused kernel
    instead of four, which compiles several times faster for activations
    built from special functions.
    """
    y = f(jnp.stack([u, v, -u, -v]))
    return y[0] * y[1] + y[2] * y[3]

"""``c`` and the signed areas ``b_+-``: the tail-compensated integrals of ``phi``.

``c = int_0^inf |phi - alpha_+ x - beta_+| dx + int_-inf^0 |phi - alpha_- x - beta_-| dx``
and ``b_+- = int (phi - alpha_+- x - beta_+-) dx`` over each half-line are
Gauss–Legendre integrals over the panels of the :class:`~jaxsig.core.quadrature.Line`
up to ``x_max``, summed in dyadic shells:

* panels where the integrand changes sign are integrated exactly on their
  Legendre interpolant (:func:`_abs_integral_with_crossings`);
* the shells' cumulative sums are limits (:func:`jaxsig.core.limits.ladder_limits`),
  with the float32 noise floor cut (:func:`_reliable_window`), rough estimates
  where the panels do not resolve ``phi``, and beyond ``x_max`` trapezoid sums
  over the dyadic rungs (:func:`_beyond_grid`).

The slopes and intercepts come from :func:`jaxsig.core.functionals.slopes`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import limits, quadrature
from jaxsig.core._numerics import HIGHEST as _HIGHEST
from jaxsig.core._numerics import dot as _dot
from jaxsig.core._numerics import eps as _eps
from jaxsig.core._numerics import safe_div as _safe_div
from jaxsig.core.functionals import legendre_coefficients, unresolved_panels

__all__ = ["tail_compensation", "N_CROSSING_PANELS", "N_ROOTS"]


#: Panels where phi crosses its asymptote, integrated exactly piece by piece
#: (static cap). Every registered activation and family has at most 5; panels
#: beyond the cap keep Gauss–Legendre on ``|g|``, accurate to about ``h^2`` there.
#: Each padded slot costs as much as a real one (8 instead of 32 halves the time
#: of a batched signature).
N_CROSSING_PANELS = 8
#: Crossings located per such panel (a panel with more keeps Gauss–Legendre on
#: ``|g|``, and ``c`` is APPROXIMATE).
N_ROOTS = 3


def _panel_sides(line):
    """``(2, P)`` masks of the panels right and left of ``0``."""
    mid = jnp.asarray(line.panel_edges).mean(axis=1)
    return jnp.stack([mid > 0, mid < 0])


def _legendre_all(tau, degree):
    """``P_0(tau) .. P_degree(tau)`` stacked on a new last axis (three-term
    recurrence, rolled into a scan)."""

    def step(carry, k):
        p_prev, p = carry
        p_next = ((2 * k + 1) * tau * p - k * p_prev) / (k + 1)
        return (p, p_next), p_next

    one = jnp.ones_like(tau)
    _, rest = jax.lax.scan(step, (one, tau), jnp.arange(1, degree, dtype=tau.dtype))
    return jnp.moveaxis(jnp.concatenate([one[None], tau[None], rest])[: degree + 1], 0, -1)


def _abs_integral_with_crossings(g, line, dtype):
    """``sum over panels of int |g|`` corrected on panels where ``g`` changes sign.

    Gauss–Legendre applied to ``|g|`` loses its order where ``g`` crosses zero.
    On the first :data:`N_CROSSING_PANELS` panels with 1 to :data:`N_ROOTS` sign
    changes (among the nodes and the panel ends), counting only panels whose
    ``|g|`` can move the sum (half-width times ``max |g|`` above
    ``eps sum_i w_i |g_i|``), ``g`` is replaced by its Legendre interpolant
    ``sum_k a_k P_k(t)`` through the panel's nodes; its roots in the intervals
    where the sampled sign changes are found by Newton's method,
    and ``int |g| = sum_pieces sign_piece (F(r_{j+1}) - F(r_j))`` with the exact
    primitive ``F`` (``int P_k = (P_{k+1} - P_{k-1}) / (2k + 1)``). Roots carry no
    gradient (``|g|`` has zero derivative in their position).
    """
    order = line.panels.shape[1]
    t = jnp.asarray(quadrature.legendre_tables(order)[0], dtype)
    G = g[line.panels]  # (P, n)
    coef = legendre_coefficients(g, line, dtype)
    ends = _dot(_legendre_all(jnp.asarray([-1.0, 1.0], dtype), order - 1), coef.T)  # (2, P)
    vals = jnp.concatenate([ends[0][:, None], G, ends[1][:, None]], axis=1)  # (P, n + 2)
    taus = jnp.concatenate([jnp.asarray([-1.0], dtype), t, jnp.asarray([1.0], dtype)])
    half = jnp.asarray((line.panel_edges[:, 1] - line.panel_edges[:, 0]) / 2, dtype)
    abs_w = jnp.abs(g) * jnp.asarray(line.w, dtype)
    # A panel whose |g| integrates to less than the rounding of the whole sum
    # cannot move c, and its sign changes take no slot: often they are only the
    # interpolant's end values, extrapolated across a steep exponential
    # (softplus with beta = 100: g ~ 1e-100 on panels near x = -2).
    content = half * jnp.max(jnp.abs(G), axis=1)
    change = (vals[:, :-1] * vals[:, 1:] < 0) & (content > _eps(dtype) * jnp.sum(abs_w))[:, None]
    # A panel with more sign changes than N_ROOTS keeps Gauss–Legendre on |g|
    # (a correction that missed a root would integrate g, not |g|, past it).
    n_change = jnp.sum(change, axis=1)
    fixable = (n_change > 0) & (n_change <= N_ROOTS)
    # The slots go to the panels of largest content: Gauss–Legendre's error
    # at a crossing scales with it.
    top, pi = jax.lax.top_k(jnp.where(fixable, content, -1.0), N_CROSSING_PANELS)
    pi = jnp.where(top >= 0, pi, G.shape[0])
    sel = jnp.minimum(pi, G.shape[0] - 1)
    a, v, ch = coef[sel], vals[sel], change[sel]  # (K, n), (K, n+2), (K, n+1)

    def poly(tau):  # value and derivative of the interpolants at tau (K, m)
        p = _legendre_all(tau, order)
        val = jnp.einsum("kmj,kj->km", p[..., :order], a, precision=_HIGHEST)
        # P_k' from (1 - t^2) P_k' = k (P_{k-1} - t P_k), safe at |t| < 1.
        k = jnp.arange(order, dtype=dtype)
        dp = k * (p[..., jnp.maximum(jnp.arange(order) - 1, 0)] - tau[..., None] * p[..., :order])
        dval = jnp.einsum("kmj,kj->km", dp, a, precision=_HIGHEST) / jnp.maximum(1 - tau * tau, 1e-30)
        return val, dval

    # Newton's method only on the first N_ROOTS intervals (between nodes) where the
    # sampled sign changes, not on all n + 1 of every selected panel.
    slot = jnp.argsort(~ch, axis=1, stable=True)[:, :N_ROOTS]  # (K, R), in order
    has = jnp.take_along_axis(ch, slot, axis=1)
    lo, hi = taus[:-1][slot], taus[1:][slot]
    v_lo, v_hi = jnp.take_along_axis(v[:, :-1], slot, axis=1), jnp.take_along_axis(v[:, 1:], slot, axis=1)
    # Start from the secant root; Newton steps kept inside the bracket.
    r = lo - v_lo * (hi - lo) / jnp.where(has, v_hi - v_lo, 1.0)
    r = jnp.where(has, r, lo)

    def newton(_, r):
        val, dval = poly(r)
        r_new = r - val / jnp.where(dval == 0, 1.0, dval)
        return jnp.where(has & (r_new > lo) & (r_new < hi), r_new, r)

    r = jax.lax.fori_loop(0, 4, newton, jax.lax.stop_gradient(r))
    # Unused slots sit at the right end: pieces of width 0.
    r = jax.lax.stop_gradient(jnp.where(has, r, 1.0))
    k_sel = r.shape[0]
    bounds = jnp.concatenate([jnp.full((k_sel, 1), -1.0, dtype), r, jnp.ones((k_sel, 1), dtype)], axis=1)
    # Each piece [bounds_j, bounds_{j+1}] has one sign: the interpolant's at its middle.
    signs = jnp.sign(poly(0.5 * (bounds[:, 1:] + bounds[:, :-1]))[0])
    p = _legendre_all(bounds, order)  # (K, R + 2, order + 1)
    kk = np.arange(1, order)
    prim = jnp.concatenate(
        [p[..., :1] * bounds[..., None] + 1.0, (p[..., kk + 1] - p[..., kk - 1]) / (2 * kk + 1)], axis=-1
    )
    F = jnp.einsum("kmj,kj->km", prim, a, precision=_HIGHEST)
    exact = jnp.sum(signs * (F[:, 1:] - F[:, :-1]), axis=1)
    w = jnp.asarray(line.w, dtype)[line.panels]
    naive = jnp.sum(w * jnp.abs(G), axis=1)
    correction = jnp.where(pi < G.shape[0], half[sel] * exact - naive[sel], 0.0)
    capped = (jnp.sum(fixable) > N_CROSSING_PANELS) | jnp.any(n_change > N_ROOTS)
    return abs_w, correction, sel, capped, coef


#: Shell ratios of a side that :func:`unresolved_panels` flags must stay below
#: this for its ``c`` to count as finite (a ``1/x`` envelope gives ratios ~1).
_ROUGH_RATIO = 0.8

#: Above this eps (float32) :func:`tail_compensation` cuts at the noise floor.
_FLOAT64_EPS_MAX = 1e-10

#: Terms of the cumulative shell sums that :func:`_reliable_window` keeps up to
#: its cut: enough for the ratio test there and one Aitken step.
_SHELL_WINDOW = 6


def _reliable_window(a_abs, a_sgn, a_noise, eps):
    """Cut the cumulative shell sums where the working precision loses their tail.

    Beyond the last shell whose content exceeds ``8x`` the noise integrated over
    it, ``phi - alpha x - beta`` was zeroed as noise. That is harmless where the
    sums had converged by then (the last such shell holds under ``1e3 eps`` of
    the sum: exponential tails), but it freezes a power-law tail (float32
    ``x arctan x`` beyond ``|x| ~ 32``) at a wrong value: there the limit is to
    be extrapolated from the last :data:`_SHELL_WINDOW` sums up to that shell.
    ``a_abs, a_sgn, a_noise`` are ``(2, k)`` cumulative sums (side, shell) of
    ``|g|``, ``g`` and the noise of ``g``; returns the two windows and a ``(2,)``
    mask ``cut`` of the sides to take from them.
    """
    n = a_abs.shape[-1]
    content, noise = jnp.diff(a_abs, axis=-1), jnp.diff(a_noise, axis=-1)
    last = jnp.max(jnp.where(content > 8.0 * noise, jnp.arange(1, n), 0), axis=-1)
    end = jnp.clip(last, _SHELL_WINDOW - 1, n - 1)
    idx = end[:, None] + jnp.arange(1 - _SHELL_WINDOW, 1)
    w_abs, w_sgn = jnp.take_along_axis(a_abs, idx, axis=-1), jnp.take_along_axis(a_sgn, idx, axis=-1)
    shells = jax.lax.stop_gradient(jnp.diff(w_abs, axis=-1))
    unsettled = shells[:, -1] > 1e3 * eps * jnp.abs(w_abs[:, -1])
    # Power-law shells shrink by a ratio that has settled (2^(1-p)); exponential
    # ones by ratios that themselves fall fast, and leave nothing to extrapolate.
    q1, q0 = _safe_div(shells[:, -1], shells[:, -2]), _safe_div(shells[:, -2], shells[:, -3])
    power_law = (q1 >= 0.05) & (q1 < limits.R_MAX) & (jnp.abs(q1 - q0) <= 0.25 * q1)
    return w_abs, w_sgn, (end < n - 1) & unsettled & power_law


class _Beyond(NamedTuple):
    """:func:`_beyond_grid`'s sums per side and whether they settle."""

    abs: jax.Array
    signed: jax.Array
    settled: jax.Array


def _beyond_grid(line, g, eps) -> _Beyond:
    """Per side, ``int |g|`` and ``int g`` over ``x_max <= |x| <= 2**48`` by the
    trapezoid rule on the rungs ``2^k`` (first order: a rough estimate), and
    whether those shells settle: the last holds at most ``1e3 eps`` of the sum,
    and no shell has content (``phi`` is on its asymptote beyond ``x_max``:
    ``relu(x - 300)``), or only the first (``relu(x - 1000)``), or the last with
    content holds under 5% of the one before.

    A power-law remainder ``x^-p`` does not settle: it sinks into the rounding
    noise of ``phi`` (zeroed, :func:`tail_compensation`) with shells that shrink
    by ``2^(1-p)`` up to there, and then the last has one zero end (ratio
    ``2^(1-p) / (1 + 2^-p)``: 0.67 for ``1/x``, whose ``c`` diverges)."""
    first = int(np.log2(line.x_max)) - 1  # line.pos[j] is 2^(j + 1)
    idx = jnp.stack([line.pos[first:], line.neg[first:]])
    width = jnp.diff(jnp.abs(line.x[idx]), axis=-1)
    rung = g[idx]
    shells_abs = 0.5 * width * (jnp.abs(rung[:, 1:]) + jnp.abs(rung[:, :-1]))
    shells = 0.5 * width * (rung[:, 1:] + rung[:, :-1])
    total = jnp.sum(shells_abs, axis=-1)
    last = jnp.max(jnp.where(shells_abs > 0, jnp.arange(shells_abs.shape[-1]), -1), axis=-1)
    at = jnp.take_along_axis(shells_abs, jnp.clip(jnp.stack([last - 1, last], axis=-1), 0), axis=-1)
    collapsed = (last <= 0) | (at[:, 1] < 0.05 * at[:, 0])
    settled = jnp.isfinite(total) & (shells_abs[:, -1] <= 1e3 * eps * total) & collapsed
    return _Beyond(total, jnp.sum(shells, axis=-1), settled)


def tail_compensation(line, x, f0, slopes, dtype, unit=1.0):
    """``c`` (absolute) and the signed areas ``b_+``, ``b_-`` over dyadic shells.
    ``unit``: as in :func:`slopes`."""
    eps = _eps(dtype)
    alpha_p, alpha_m, beta_p, beta_m = slopes[:4]
    right = x > 0

    def fin(v):
        return jnp.where(jnp.isfinite(v), v, 0.0)

    alpha = jnp.where(right, fin(alpha_p), fin(alpha_m))
    beta = jnp.where(right, fin(beta_p), fin(beta_m))
    g = f0 - alpha * x - beta
    # Below the rounding noise of its terms g carries no information (float32
    # far tails); counting that noise would add O(eps x^2) to c. The slope is
    # itself a difference quotient, good to a few ulp: its error times x is
    # noise too, else a linear drift of 1e-15 x would make c diverge.
    noise = 2 * eps * (jnp.abs(f0) + jnp.abs(beta)) + 8 * eps * jnp.abs(alpha * x)
    g = jnp.where((jnp.abs(g) <= noise) | ~jnp.isfinite(g), 0.0, g)
    w = jnp.asarray(line.w, dtype)
    abs_w, correction, panel, capped, coef = _abs_integral_with_crossings(g, line, dtype)
    # Cumulative integrals over 0 < +-x <= 2**k, k = 0..log2(x_max): one static
    # mask row per (side, k), the right side first; crossing corrections are
    # booked at their panel's midpoint.
    edges = 2.0 ** np.arange(0, int(np.log2(line.x_max)) + 1)
    signed = jnp.stack([x, -x])[:, None, :]
    masks = ((signed > 0) & (signed <= jnp.asarray(edges, dtype)[:, None])).astype(dtype)
    mid = jnp.asarray(line.panel_edges.mean(axis=1), dtype)[panel]
    pmask = jnp.stack(
        [
            (sign * mid[None, :] > 0) & (sign * mid[None, :] <= jnp.asarray(edges, dtype)[:, None])
            for sign in (1.0, -1.0)
        ]
    ).astype(dtype)
    a_abs = _dot(masks, abs_w) + _dot(pmask, correction)
    a_sgn = _dot(masks, w * g)
    c_lim, b_lim = limits.ladder_limits(
        (a_abs, eps * a_abs),
        (a_sgn, eps * a_abs),
        rtol=1e3 * eps,
        monotone=(True, False),
        window=2,
        accelerate=True,
        unit=unit,
    )
    c_pm, b_pm = c_lim.value, b_lim.value
    cut = False
    if eps > _FLOAT64_EPS_MAX:
        # The cut of _reliable_window, good to a few digits (float32 x arctan x:
        # 1e-3) and flagged; shells that had stopped shrinking mean a divergent
        # c. In float64 the noise floor falls inside |x| <= 512 only for
        # remainders too steep or too small for the cut to apply.
        w_abs, w_sgn, cut = _reliable_window(a_abs, a_sgn, _dot(masks, w * noise), eps)
        (c_tail, b_tail), (shrinking, _) = limits.extrapolate(jnp.stack([w_abs, w_sgn]))
        c_pm = jnp.where(cut, jnp.where(shrinking, c_tail, jnp.inf), c_pm)
        b_pm = jnp.where(cut, jnp.where(shrinking, b_tail, jnp.nan), b_pm)
        cut_status = jnp.where(shrinking, limits.APPROXIMATE, limits.DIVERGENT)
        c_lim = c_lim._replace(status=jnp.where(cut, cut_status, c_lim.status))
    # Where the tail panels do not resolve phi (oscillation), the shells are rough
    # estimates, and a monotone ladder that does not settle is no proof of
    # divergence: shells that still shrink by a ratio clearly below 1 (2^-p for
    # an x^-(1+p) envelope) give a finite c, extrapolated geometrically; ratios
    # near 1 (sin(x)/x) remain a divergence. Either way the side is APPROXIMATE.
    rough = jnp.any(unresolved_panels(coef, noise, line, dtype)[None, :] & _panel_sides(line), axis=1)
    shells = jnp.diff(a_abs, axis=-1)[:, -4:]
    q = _safe_div(shells[:, 1:], shells[:, :-1])
    q_mean = jnp.clip(jnp.mean(q, axis=-1), 0.0, 0.5 * (1 + _ROUGH_RATIO))
    shrinking = jnp.all((q >= 0) & (q < _ROUGH_RATIO), axis=-1)
    rough_c = a_abs[:, -1] + shells[:, -1] * q_mean / (1 - q_mean)
    rescued = rough & shrinking & ~jnp.isfinite(c_pm)
    c_pm = jnp.where(rescued, rough_c, c_pm)
    b_pm = jnp.where(rescued & ~jnp.isfinite(b_pm), a_sgn[:, -1], b_pm)
    c_status = jnp.where(rough, jnp.where(jnp.isfinite(c_pm), limits.APPROXIMATE, limits.DIVERGENT), c_lim.status)
    # A remainder that decays on a scale longer than the grid (tanh(0.01 x):
    # e^(-x/50), still 4e-5 at x_max = 512), or that ends at a kink in the last
    # shells (relu(x - 300)), leaves the shells unsettled, which the monotone
    # ladder calls divergent. Beyond x_max the line has the rungs 2^k only: where
    # the trapezoid sums over them settle, they are the rest of the integral, a
    # rough estimate (tanh(0.01 x): 2e-4 relative), or exactly 0 (relu(x - 300):
    # c is then converged); where they do not (a 1/x remainder: equal shells),
    # c diverges.
    # (Not where float32 cut the shells at its noise floor: that verdict stands.
    # Where the panels do not resolve phi, a transition far out as tanh(x - 300),
    # the grid's part is rough, and so is c.)
    beyond = _beyond_grid(line, g, eps)
    slow = ~jnp.isfinite(c_pm) & ~jnp.asarray(cut) & beyond.settled
    c_pm = jnp.where(slow, a_abs[:, -1] + beyond.abs, c_pm)
    b_pm = jnp.where(slow, a_sgn[:, -1] + beyond.signed, b_pm)
    c_status = jnp.where(slow, jnp.where((beyond.abs > 0) | rough, limits.APPROXIMATE, limits.CONVERGED), c_status)
    c_lim = c_lim._replace(status=c_status)
    (c_p, c_m), (b_p, b_m) = c_pm, b_pm
    ok_p = jnp.isfinite(alpha_p) & jnp.isfinite(beta_p)
    ok_m = jnp.isfinite(alpha_m) & jnp.isfinite(beta_m)
    inf = jnp.asarray(jnp.inf, dtype)
    c_p = jnp.where(ok_p, c_p, inf)
    c_m = jnp.where(ok_m, c_m, inf)
    b_p = jnp.where(ok_p, b_p, jnp.nan)
    b_m = jnp.where(ok_m, b_m, jnp.nan)
    # A side whose slope or intercept is not finite inherits that limit's status.
    side = jnp.stack([ok_p, ok_m])
    asym = limits.worst(slopes.alpha_status, slopes.beta_status)
    status = jnp.max(jnp.where(side, c_lim.status, asym))
    status = jnp.where(capped & (status < limits.APPROXIMATE), limits.APPROXIMATE, status)
    return c_p + c_m, b_p + b_m, b_p, b_m, status

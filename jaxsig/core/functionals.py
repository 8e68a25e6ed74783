"""The non-Gaussian components: slopes, intercepts, growth class and ``TV(phi')``.

All of them read ``phi`` (and ``phi'``, ``phi''``) on one sorted partition of R,
the :class:`~jaxsig.core.quadrature.Line`: the composite nodes, dyadic ladders
``+-2**k`` (``k <= 48``) and ladders ``b +- 2**-k`` toward every kink ``b``.

* Slopes ``alpha_+- = lim phi(x)/x`` and intercepts ``beta_+- = lim (phi(x) - alpha x)``
  are limits along the dyadic ladders (:func:`jaxsig.core.limits.ladder_limit`).
* ``tv = TV(phi') = sup sum |phi'(x_{i+1}) - phi'(x_i)|`` is the partition sum on
  the line refined by the extrema of ``phi'`` (located on the cubic Hermite
  interpolant of ``(phi', phi'')`` and Newton-polished), so it is exact on
  monotone pieces; jumps at kinks are counted through the one-sided limits.
* The Legendre coefficients of a function sampled on the line's panels, and the
  test of whether the panels resolve it, which ``tv`` and ``c``
  (:mod:`jaxsig.core.compensation`) share.

Each function returns its values with a :class:`~jaxsig.core.limits.Status`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import kinks as _kinks
from jaxsig.core import limits, quadrature
from jaxsig.core._numerics import derivatives, first_true
from jaxsig.core._numerics import dot as _dot
from jaxsig.core._numerics import eps as _eps

__all__ = [
    "Slopes",
    "slopes",
    "growth_class",
    "extrema_of_slope",
    "total_variation",
    "legendre_coefficients",
    "unresolved_panels",
    "N_EXTREMA",
]


class Slopes(NamedTuple):
    """Asymptotic slopes and intercepts, with the status of each side's limit.

    ``alpha_status`` and ``beta_status`` have a leading axis of 2: ``(+inf, -inf)``.
    """

    alpha_plus: jax.Array
    alpha_minus: jax.Array
    beta_plus: jax.Array
    beta_minus: jax.Array
    alpha_status: jax.Array
    beta_status: jax.Array


def slopes(line, x, f0, dtype, unit=1.0) -> Slopes:
    """Slopes ``alpha_+- = lim phi(x)/x`` and intercepts ``beta_+- = lim (phi(x) - alpha_+- x)``
    as ``x -> +-inf``, from the dyadic ladders ``x_k = +-2**k``.

    * ``alpha`` is the limit of the difference quotient
      ``(phi(x_{k+1}) - phi(x_k)) / (x_{k+1} - x_k)``; a rung where ``phi``
      overflowed to ``+-inf`` makes it ``+-inf`` (``exp``: superlinear).
    * ``beta`` is the limit of ``phi(x_k) - alpha x_k`` on the rungs where that
      has no catastrophic cancellation (``k <= 32`` in float64); where ``alpha``
      is exactly ``0`` (bounded and sublinear ``phi``) it is the limit of ``phi``
      itself along the whole ladder, so slowly damped tails (``sin(x)/x``) reach
      ``2**-48``.

    Both sides at once: row 0 is ``x = +2**k``, row 1 is ``x = -2**k``.
    ``unit``: the scale of ``phi`` (:func:`jaxsig.core._numerics.unit_scale`),
    below which the limits' tolerances are absolute.
    """
    eps = _eps(dtype)
    # Intercepts need phi(x) - alpha x without catastrophic cancellation: stop
    # their ladder where eps * x reaches ~1e-6 (float64) or ~1e-3 (float32).
    k_beta = 32 if eps < 1e-10 else 12
    idx = jnp.stack([line.pos, line.neg])
    xs, fs = x[idx], f0[idx]
    dx = xs[:, 1:] - xs[:, :-1]
    slope = jnp.where(jnp.isinf(fs[:, 1:]), fs[:, 1:] * jnp.sign(dx), (fs[:, 1:] - fs[:, :-1]) / dx)
    noise = eps * (jnp.abs(fs[:, 1:]) + jnp.abs(fs[:, :-1])) / jnp.abs(dx)
    alpha_lim, level = limits.ladder_limits(
        (slope, noise), (fs, eps * jnp.abs(fs)), rtol=(1e3 * eps, 64 * eps), unit=unit
    )
    alpha, alpha_status = alpha_lim.value, alpha_lim.status
    # phi(x)/x -> 0 at the end of the ladder: bounded or sublinear (sin x,
    # tanh); report the slope as exactly 0. "Zero" is relative to the side's
    # scale of slopes, max |phi(x)/x| over its rungs, so that the slope of
    # a phi is a times that of phi (1e9 sin x is bounded; 1e-14 softplus has
    # slope 1e-14).
    ratio = jnp.abs(fs / xs)
    scale = jnp.max(jnp.where(jnp.isfinite(ratio), ratio, 0.0), axis=1)
    vanishing = ratio[:, -1] <= 1e3 * eps * scale
    zero = vanishing | (jnp.abs(alpha) <= 1e3 * eps * scale)
    alpha = jnp.where(zero, 0.0, alpha)
    alpha_status = jnp.where(zero, limits.CONVERGED, alpha_status)
    a_fin = jnp.where(jnp.isfinite(alpha), alpha, 0.0)[:, None]
    r = fs[:, :k_beta] - a_fin * xs[:, :k_beta]
    rnoise = eps * (jnp.abs(fs[:, :k_beta]) + jnp.abs(a_fin * xs[:, :k_beta]))
    beta_lim = limits.ladder_limit(r, rnoise, rtol=64 * eps, refine=True, unit=unit)
    beta_value = jnp.where(zero, level.value, beta_lim.value)
    beta_stat = jnp.where(zero, level.status, beta_lim.status)
    # With an infinite slope the intercept is the limit of phi itself.
    beta_inf = jnp.where(jnp.isnan(alpha), jnp.nan, jnp.sign(fs[:, -1]) * jnp.inf)
    beta = jnp.where(jnp.isfinite(alpha), beta_value, beta_inf)
    beta_status = jnp.where(jnp.isfinite(alpha), beta_stat, alpha_status)
    return Slopes(alpha[0], alpha[1], beta[0], beta[1], alpha_status, beta_status)


#: Boundedness where phi has no limit at +-inf (sin x) is decided by comparing
#: sup |phi| over the rungs ``2**k``, ``k >= 32``, with sup |phi| over the line
#: closer in: a bounded function cannot exceed its sup, while a slowly growing
#: one (``log|x| sin x``) gains far more than 1% over that range.
_FAR_RUNG, _SUP_GROWTH = 32, 1.01


def growth_class(line, x, f0, slopes):
    """Growth class index (0: A0 bounded, 1: A1 at most linear, 2: A>1 superlinear).

    Per side: superlinear when the slope is infinite, or has no limit and
    ``sup |phi(x)/x|`` keeps growing along the ladder (``x^2 sin x``); bounded
    when the slope is 0 and the intercept finite, or has no limit while
    ``sup |phi|`` has stopped growing (``sin x``).
    """
    alpha_p, alpha_m, beta_p, beta_m = slopes[:4]
    ok = jnp.isfinite(f0)
    f0 = jnp.where(ok, f0, jnp.inf)
    ratio = jnp.abs(f0) / jnp.where(x == 0, 1.0, jnp.abs(x))

    def settled(a, ladder, side):
        far = ladder[_FAR_RUNG - 1 :]
        near = jnp.max(jnp.where(side & (jnp.abs(x) < 2.0**_FAR_RUNG), a, -jnp.inf))
        return jnp.max(a[far]) <= _SUP_GROWTH * near

    sides = []
    for ladder, side, alpha, beta in (
        (line.pos, x > 0, alpha_p, beta_p),
        (line.neg, x < 0, alpha_m, beta_m),
    ):
        superlinear = jnp.isinf(alpha) | (jnp.isnan(alpha) & ~settled(ratio, ladder, side))
        bounded = (alpha == 0) & (jnp.isfinite(beta) | (jnp.isnan(beta) & settled(jnp.abs(f0), ladder, side)))
        sides.append((superlinear, bounded))
    (sup_p, bd_p), (sup_m, bd_m) = sides
    return jnp.where(sup_p | sup_m, 2, jnp.where(bd_p & bd_m, 0, 1)).astype(jnp.int32)


def _hermite_extremum(h, f_a, f_b, d_a, d_b):
    """Value of ``phi'`` at the extremum inside an interval (and its location
    ``t`` in ``[0, 1]``), from cubic Hermite data.

    On ``[0, 1]`` the interpolant of ``phi'`` has derivative
    ``p'(t) = A t^2 + B t + C`` with ``C = h d_a`` and ``p'(1) = h d_b`` of the
    opposite sign, so it has exactly one root in ``(0, 1)``; solved stably.
    """
    A = 6.0 * (f_a - f_b) + 3.0 * h * (d_a + d_b)
    B = 6.0 * (f_b - f_a) - h * (4.0 * d_a + 2.0 * d_b)
    C = h * d_a
    disc = jnp.maximum(B * B - 4.0 * A * C, 0.0)
    sq = jnp.sqrt(jnp.where(disc > 0, disc, 1.0)) * (disc > 0)
    q = -0.5 * (B + jnp.where(B >= 0, sq, -sq))
    q_safe = jnp.where(q == 0, 1.0, q)
    A_safe = jnp.where(A == 0, 1.0, A)
    t1 = jnp.where(A == 0, 0.5, q / A_safe)
    t2 = C / q_safe

    def inside(t):
        return (t > 0) & (t < 1)

    t = jnp.where(inside(t2), t2, jnp.where(inside(t1), t1, d_a / jnp.where(d_a == d_b, 1.0, d_a - d_b)))
    # The extremum's location carries no gradient (p'(t*) = 0: envelope theorem),
    # and differentiating the root formula would divide by vanishing terms.
    t = jax.lax.stop_gradient(jnp.clip(t, 0.0, 1.0))
    h00 = (1 + 2 * t) * (1 - t) ** 2
    h10 = t * (1 - t) ** 2
    h01 = t * t * (3 - 2 * t)
    h11 = t * t * (t - 1)
    return h00 * f_a + h10 * h * d_a + h01 * f_b + h11 * h * d_b, t


#: Turning points of phi' polished by Newton's method (static cap: smooth
#: activations have a handful; any beyond keep the O(h^4) Hermite estimate).
N_EXTREMA = 64


def _polish_extrema(f, x, h, t, turn, peak):
    """Replace Hermite estimates of the extrema of ``phi'`` by exact values.

    Up to :data:`N_EXTREMA` turning intervals get three Newton steps on
    ``phi''(x) = 0`` from the Hermite location, kept inside the interval; the
    value ``phi'(x*)`` is then exact to rounding. The location carries no
    gradient (``phi''(x*) = 0``: envelope theorem), the value does.
    """
    n = peak.shape[0]
    ii = first_true(turn, N_EXTREMA)
    safe = jnp.minimum(ii, n - 1)
    lo, hi = x[safe], x[safe + 1]

    def slope(u):
        return derivatives(f, u, 1)[1]

    def newton(_, x0):
        _, d2, d3 = derivatives(slope, x0, 2)
        x1 = x0 - d2 / jnp.where(d3 == 0, 1.0, d3)
        return jnp.where((x1 > lo) & (x1 < hi) & jnp.isfinite(x1), x1, x0)

    x0 = jax.lax.stop_gradient(lo + t[safe] * h[safe])
    x0 = jax.lax.stop_gradient(jax.lax.fori_loop(0, 3, newton, x0))
    val = slope(x0)
    val = jnp.where(jnp.isfinite(val), val, peak[safe])
    # Padding entries (ii == n) are dropped by the scatter; zero them so that no
    # cotangent reaches them through a clamped gather in the transpose.
    val = jnp.where(ii < n, val, 0.0)
    return peak.at[ii].set(val, mode="drop")


def _intervals(line, f1, f2):
    """Where ``phi'`` and ``phi''`` are finite, ``phi'`` (0 elsewhere), and per
    interval of the line: ``phi'`` and ``phi''`` at its left and right ends and
    whether it holds a kink. What :func:`extrema_of_slope` and
    :func:`total_variation` test the sign of ``phi''`` on:
    ``(ok, f1, (fa, fb, da, db), split)``."""
    ok = jnp.isfinite(f1) & jnp.isfinite(f2)
    f1, f2 = jnp.where(ok, f1, 0.0), jnp.where(ok, f2, 0.0)
    return ok, f1, (f1[:-1], f1[1:], f2[:-1], f2[1:]), jnp.asarray(line.split)


def extrema_of_slope(f, line, x, f1, f2):
    """Per interval of the line: the extremum of ``phi'`` inside it where
    ``phi''`` changes sign (Hermite estimate, then Newton-polished), else
    ``phi'`` at the interval's left end. Intervals containing a kink are skipped.

    Returns ``(peak, capped)``: ``capped`` is true when there were more turning
    intervals than the :data:`N_EXTREMA` polished slots (the rest keep the
    ``O(h^4)`` Hermite estimate: ``tv`` is then ``APPROXIMATE``)."""
    h = x[1:] - x[:-1]
    *_, (fa, fb, da, db), split = _intervals(line, f1, f2)
    turn = (da * db < 0) & ~split
    peak, t = _hermite_extremum(h, fa, fb, da, db)
    capped = jnp.sum(turn) > N_EXTREMA
    return _polish_extrema(f, x, h, t, turn, jnp.where(turn, peak, fa)), capped


def total_variation(line, x, f0, f1, f2, peak, dtype, unit=1.0):
    """``TV(phi')`` over R: refined partition sum, tails tested and extrapolated.

    ``peak`` is :func:`extrema_of_slope`'s output: the partition is the line
    refined by the extrema of ``phi'``, so the sum is exact on monotone pieces.
    ``f0`` (``phi``) sets the scale of the rounding noise of ``phi'`` for the
    test of whether the panels resolve it (:func:`unresolved_panels`; where they
    do not, the status is ``APPROXIMATE``). On an interval where ``phi'`` jumps
    although no kink is declared (:func:`jaxsig.core.kinks.jump_intervals`) the
    absolute step counts (the jump in full, the slope beside it to ``O(h)``),
    and the status is ``APPROXIMATE``. ``unit``: as in :func:`slopes`.
    """
    eps = _eps(dtype)
    jumps = _kinks.jump_intervals(x, f1, f2, line.split, line.x_max, dtype, unit)
    ok, f1, (fa, fb, da, db), split = _intervals(line, f1, f2)
    # On an interval where phi'' keeps its sign phi' is monotone, and its
    # variation is the signed step sign(phi'') (phi'(b) - phi'(a)): over a run of
    # such intervals it telescopes to |phi'(end) - phi'(start)|, so rounding noise
    # in phi' (float32: ~1e-7 at each of ~1,000 points) cancels instead of adding
    # up as |steps| would. Turning intervals and kinks keep the absolute steps.
    # An interval where phi' jumps although no kink is declared (hard swish written
    # with jnp.clip; the test of kinks.undeclared_kinks) is no monotone piece:
    # the signed step would subtract the jump where it goes against phi''. It
    # counts |phi'(b) - phi'(a)|: the jump in full, the slope beside it to O(h).
    direction = jnp.sign(da + db)
    signed = (da * db >= 0) & (direction != 0) & ~split & ~jumps
    v = jnp.where(signed, direction * (fb - fa), jnp.abs(peak - fa) + jnp.abs(fb - peak))
    cum = jnp.concatenate([jnp.zeros((1,), dtype), jnp.cumsum(v)])
    # Every ladder at once, trimmed to a common length. Outward (+-2**k) and
    # toward each kink b (b -+ 2**-k) the cumulative variation must settle:
    # forward sums rise to V(+inf) and V(b-); reversed sums (total minus the
    # variation up to the point) rise to V(-inf) and V(b+). Any that does not
    # settle means TV = inf.
    n = min(line.pos.shape[0], line.inner.shape[-1])
    forward = jnp.concatenate([line.pos[None, -n:], line.inner[:, 0, -n:]])
    backward = jnp.concatenate([line.neg[None, -n:], line.inner[:, 1, -n:]])
    idx = jnp.concatenate([forward, backward])
    rev = np.arange(idx.shape[0]) >= forward.shape[0]
    seq = jnp.where(rev[:, None], cum[-1] - cum[idx], cum[idx])
    noise = 8 * eps * jnp.abs(f1[idx])
    # Across each kink b the partition has |phi'(b+e) - phi'(b-e)|, e = 2**-depth.
    # The variation there is |phi'(b-) - phi'(b-e)| + |jump| + |phi'(b+e) - phi'(b+)|
    # with the one-sided limits phi'(b-+) from the ladders: equal for monotone
    # pieces, larger for a cusp of phi' (|x|^1.5 at 0).
    left, right = line.inner[:, 0], line.inner[:, 1]
    sides = f1[jnp.concatenate([left, right])]
    lim_all, one_sided = limits.ladder_limits(
        (seq, noise), (sides, 8 * eps * jnp.abs(sides)), rtol=1e3 * eps, monotone=(True, False), unit=unit
    )
    lim = lim_all.value
    finite = jnp.all(ok) & jnp.all(jnp.isfinite(lim))
    # Beyond +-2**48: the extrapolated remainders of the two outward ladders.
    outer = np.array([0, forward.shape[0]])
    extra = jnp.sum(jnp.where(jnp.isfinite(lim[outer]), lim[outer] - seq[outer, -1], 0.0))
    lim_l, lim_r = jnp.split(one_sided.value, 2)
    at_l, at_r = f1[left[:, -1]], f1[right[:, -1]]
    across = jnp.abs(lim_l - at_l) + jnp.abs(lim_r - lim_l) + jnp.abs(at_r - lim_r) - jnp.abs(at_r - at_l)
    # (Empty kink slots repeat 0's ladder: counted once.)
    extra = extra + jnp.sum(jnp.where(jnp.isfinite(across) & jnp.asarray(line.live), across, 0.0))
    # The total by pairwise summation; cum (sequential) only drives the tail tests.
    status = jnp.where(jnp.all(ok), jnp.max(lim_all.status), limits.NON_FINITE)
    # Extrema of phi' that the line's panels do not resolve (oscillation in the
    # graded tails) are missed by the partition: a rough estimate (sin(x) / (1 + x^2):
    # 2e-3 low). phi' carries the rounding of the terms it is computed from
    # (float32 sigmoid' = s (1 - s): absolute, ~eps), hence |phi| in its noise.
    f0 = jnp.where(jnp.isfinite(f0), f0, 0.0)
    noise_f1 = 8 * eps * (jnp.abs(f1) + jnp.abs(f0))
    rough = jnp.any(unresolved_panels(legendre_coefficients(f1, line, dtype), noise_f1, line, dtype))
    # So is the slope inside an interval that holds an undeclared jump: O(h).
    rough = rough | jnp.any(jumps)
    status = jnp.where(finite & rough & (status < limits.APPROXIMATE), limits.APPROXIMATE, status)
    return jnp.where(finite, jnp.sum(v) + extra, jnp.inf), status


#: A line panel resolves a sampled function when the last two Legendre
#: coefficients of its interpolant through the panel's nodes are below this
#: fraction of the largest: analytic pieces decay geometrically to rounding
#: long before degree ``order - 1`` (and a ``|x|^1.5`` cusp at an edge to ~1e-5),
#: while an oscillation spanning several periods of a graded tail panel does
#: not decay at all.
_RESOLVED = 1e-3


def legendre_coefficients(v, line, dtype):
    """Legendre coefficients ``(P, order)`` of the interpolant of ``v`` (sampled on
    the line) through each panel's Gauss–Legendre nodes."""
    _, vinv = quadrature.legendre_tables(line.panels.shape[1])
    return _dot(v[line.panels], jnp.asarray(vinv.T, dtype))


def unresolved_panels(coef, noise, line, dtype):
    """Mask ``(P,)`` of the line's panels on which a function sampled on the line,
    with rounding noise ``noise``, is not resolved.

    From its Legendre coefficients ``a_k`` per panel (``coef``,
    :func:`legendre_coefficients`), a panel is unresolved where ``|a_{n-1}| + |a_{n-2}| > 1e-3 max_k |a_k|``
    and ``> 64 max noise`` (rounding noise of the samples, float32 tails, is not
    oscillation), and that unresolved part ``h (|a_{n-1}| + |a_{n-2}|)`` (``h`` the
    half-width) exceeds ``1e-9`` of the sum of all panels' contents ``h max_k |a_k|``
    (a steep exponential on a panel where it is already negligible, swish with
    ``beta = 300`` near ``x = -0.1``, is harmless).
    The Gauss–Legendre sums there are only rough estimates: graded tail panels
    are wide (``sin(x) / (1 + x^2)`` beyond ``|x| ~ 8``).
    """
    half = jnp.asarray((line.panel_edges[:, 1] - line.panel_edges[:, 0]) / 2, dtype)
    peak = jnp.max(jnp.abs(coef), axis=1)
    tail = jnp.abs(coef[:, -1]) + jnp.abs(coef[:, -2])
    content = half * peak
    above_noise = tail > 64 * jnp.max(noise[line.panels], axis=1)
    return (tail > _RESOLVED * peak) & above_noise & (half * tail > 1e-9 * jnp.sum(content))

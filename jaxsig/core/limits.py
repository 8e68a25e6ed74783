"""Limits of sequences on geometric ladders, with a test for divergence.

Slopes, intercepts, the tails of ``TV(phi')`` and of ``C(phi)`` are all limits
of a sequence ``a_k`` sampled on a geometric ladder (``x_k = 2**k`` outward, or
``b +- 2**-k`` toward a kink). :func:`ladder_limit` decides, with static shapes
and no Python branching on values, which of five cases holds:

1. **converged**: the last differences ``|a_k - a_{k-1}|`` are within the
   rounding noise of the sequence (or ``rtol`` of its scale). The limit is the
   first term of the final run of such differences, the least noisy one.
2. **geometric**: the differences shrink by a steady ratio ``|r| < r_max``, as
   they do for power-law corrections (``x^{-p}`` on a dyadic ladder gives
   ``r = 2^{-p}``), or by a shrinking ratio (exponential corrections). The
   limit is Aitken's extrapolation ``a_K + d_K r / (1 - r)`` with the last
   ratio: exact for a pure power law, an upper bound on the remainder when the
   ratio shrinks. With ``accelerate=True`` Richardson's extrapolation for
   integer-power corrections replaces it where it agrees better with itself
   (the tails of ``c``); with ``refine=True`` a converged sequence takes
   Aitken's value from the rungs before its noise floor where that is better
   (intercepts).
3. **divergent**: the last ``4`` differences share a sign and do not shrink
   (``r >= r_max``): ``log x``, ``x^p`` and faster. The limit is ``+-inf``.
4. **damped**: increments of both signs with a shrinking envelope
   (``sin(x)/x``): the limit is the centre of the last swing.
5. **no limit**: anything else (bounded oscillation such as ``sin x``). The
   limit is ``NaN``, unless ``monotone=True`` (a cumulative sum of non-negative
   terms), where irregular non-shrinking increments mean ``+inf``.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core._numerics import safe_div as _safe_div

__all__ = [
    "LadderLimit",
    "ladder_limit",
    "ladder_limits",
    "extrapolate",
    "Status",
    "describe",
    "worst",
    "CONVERGED",
    "GEOMETRIC",
    "DIVERGENT",
    "NO_LIMIT",
    "NON_FINITE",
    "DAMPED",
    "APPROXIMATE",
    "INVALID",
]


class Status(enum.IntEnum):
    """How a component was decided; every result field carries one (int32).

    Larger codes are worse: a component combined from several limits carries the
    largest of their codes (:func:`worst`).
    """

    #: The sequence settled within its rounding noise.
    CONVERGED = 0
    #: The remainder was extrapolated from a steady geometric ratio (power-law
    #: or faster corrections); accurate to the ratio's steadiness.
    GEOMETRIC = 1
    #: The sequence converges through an oscillation whose amplitude shrinks
    #: (``sin(x)/x``); the value is the centre of its last swing, accurate to
    #: about that swing's half-width.
    DAMPED = 2
    #: Computed past a static resource of the rule (more extrema or asymptote
    #: crossings than the compiled slots, an integrable singularity of ``phi'``,
    #: a density the grid does not resolve): finite, but to a few digits fewer.
    #: Eager calls also warn, with the reason.
    APPROXIMATE = 3
    #: The limit or the integral diverges; the value is ``+-inf``.
    DIVERGENT = 4
    #: No limit exists: the sequence oscillates without settling, or (a Gaussian
    #: moment) it diverges to ``+inf`` on one side and ``-inf`` on the other; the
    #: value is ``NaN`` (slopes, intercepts, such moments) or ``inf`` (``c``).
    NO_LIMIT = 5
    #: ``phi`` or ``phi'`` was not finite where it was evaluated; the value is ``NaN``.
    NON_FINITE = 6
    #: An input was out of range under ``jit`` (``sigma <= 0`` or not finite,
    #: ``mu`` not finite), where no error can be raised; the value is ``NaN``.
    INVALID = 7

    @property
    def message(self) -> str:
        """One sentence a user can print next to the value."""
        return _MESSAGES[self]


_MESSAGES = {
    Status.CONVERGED: "converged to rounding",
    Status.GEOMETRIC: "extrapolated from a geometric tail (power-law or faster corrections)",
    Status.DAMPED: "converges through a damped oscillation; accurate to the last swing's half-width",
    Status.APPROXIMATE: "computed beyond a static resource of the rule (see the warning); a few digits fewer",
    Status.DIVERGENT: "diverges: the value is infinite",
    Status.NO_LIMIT: "has no limit or is undefined (an oscillation, or divergences of opposite signs)",
    Status.NON_FINITE: "phi or phi' was not finite at an evaluation point",
    Status.INVALID: "an input was out of range (sigma <= 0 or not finite, or mu not finite)",
}

CONVERGED, GEOMETRIC, DAMPED, APPROXIMATE, DIVERGENT, NO_LIMIT, NON_FINITE, INVALID = (int(s) for s in Status)


def worst(*statuses):
    """The elementwise worst (largest) of several status arrays."""
    out = jnp.asarray(statuses[0], jnp.int32)
    for s in statuses[1:]:
        out = jnp.maximum(out, jnp.asarray(s, jnp.int32))
    return out


def describe(status) -> list[str]:
    """The message of each entry of a (concrete) status array, flattened."""
    return [Status(int(v)).message for v in np.asarray(status).ravel()]


#: Largest contraction ratio accepted as convergence. A steadier ratio means
#: increments that do not shrink fast enough to tell from divergence on a
#: 48-rung ladder (``x^{-0.07}`` corrections and slower are called divergent).
R_MAX = 0.95


class LadderLimit(NamedTuple):
    """Result of :func:`ladder_limit`.

    Attributes:
      value: the limit; ``+-inf`` when divergent, ``NaN`` when it does not exist.
      status: ``CONVERGED`` (0), ``GEOMETRIC`` (1), ``DIVERGENT`` (2) or
        ``NO_LIMIT`` (3), as an int32 array.
    """

    value: jax.Array
    status: jax.Array


def ladder_limit(
    a, noise, *, rtol, monotone=False, window: int = 3, accelerate: bool = False, refine: bool = False, unit=1.0
) -> LadderLimit:
    """Limit of ``a[..., k]`` as ``k`` grows, or a verdict that there is none.

    Args:
      a: sequence along the last axis (at least ``window + 2`` terms).
      noise: rounding-noise scale of each term, same shape as ``a``.
      rtol: differences below ``rtol * (unit + |a_K|)`` also count as converged
        (broadcast against ``a[..., :1]``: one per row is allowed).
      monotone: ``a`` is non-decreasing by construction (cumulative sums of
        non-negative terms): then a sequence that neither converges nor shrinks
        geometrically diverges to ``+inf``. A bool, or a boolean array of the
        leading shape (one per row).
      window: how many final differences must agree for a verdict.
      accelerate: for a geometric sequence, also try Richardson's extrapolation
        (:func:`_extrapolated`): what the tails of ``c`` need.
      refine: for a converged sequence, also try Aitken's extrapolation on the
        rungs before the noise floor (:func:`_accelerated`): what intercepts need.
        Each roughly doubles the compiled size of the call, so both are off by
        default.
      unit: the scale of the sequence's terms below which ``rtol`` is absolute
        (broadcast like ``rtol``): ``1`` for a function of unit scale;
        :func:`jaxsig.core._numerics.unit_scale` for one far from it, so that
        the verdicts on ``a phi`` are those on ``phi``.

    Returns:
      :class:`LadderLimit`, batched over the leading axes.
    """
    a = jnp.asarray(a)
    finite = jnp.all(jnp.isfinite(a), axis=-1)
    # Overflowed terms (``inf``) come from growth: the limit is that infinity.
    blown = jnp.where(jnp.isfinite(a), 0.0, jnp.nan_to_num(jnp.sign(a)))
    a = jnp.where(jnp.isfinite(a), a, 0.0)
    d = jnp.diff(a, axis=-1)
    scale = unit + jnp.abs(a[..., -1:])
    tol = 4.0 * (noise[..., 1:] + noise[..., :-1]) + rtol * scale + jnp.finfo(a.dtype).tiny
    small = jnp.abs(d) <= tol
    converged = jnp.all(small[..., -window:], axis=-1)
    # Among the terms of the final converged run, take the one whose error bound
    # |next difference| + own noise is smallest: early terms carry truncation
    # error, late ones (large x) carry rounding noise.
    k = jnp.arange(d.shape[-1])
    start = jnp.max(jnp.where(small, -1, k), axis=-1) + 1
    nxt = jnp.concatenate([jnp.abs(d), jnp.abs(d[..., -1:])], axis=-1)
    bound = nxt + noise
    bound = jnp.where(jnp.arange(a.shape[-1]) >= start[..., None], bound, jnp.inf)
    best = jnp.argmin(bound, axis=-1)
    at_best = jnp.take_along_axis(a, best[..., None], axis=-1)[..., 0]

    # Ratios only pick the case and the Aitken factor; differentiating them would
    # divide by near-zero differences. Treating them as constants gives the
    # exact gradient for a pure power law and a finite one always.
    ds = jax.lax.stop_gradient(d)
    r1 = _safe_div(ds[..., -2], ds[..., -3])
    r2 = _safe_div(ds[..., -1], ds[..., -2])
    steady = jnp.abs(r1 - r2) <= 0.05 * jnp.maximum(jnp.abs(r1), jnp.abs(r2))
    # Faster than geometric (exponential tails on a dyadic ladder): ratios that
    # keep shrinking and increments that fell a thousandfold over three rungs;
    # Aitken's tail with the last ratio is then an upper bound. Both conditions
    # together reject the random increments of an oscillation.
    r0 = _safe_div(ds[..., -3], ds[..., -4])
    accelerating = (
        (r2 >= 0) & (r2 <= r1) & (r1 <= r0) & (r0 < R_MAX) & (jnp.abs(ds[..., -1]) <= 1e-3 * jnp.abs(ds[..., -4]))
    )
    geometric = (steady | accelerating) & (jnp.abs(r2) < R_MAX) & (d[..., -2] != 0)
    if accelerate:
        extrapolated = _extrapolated(a, d, ds)
    else:
        extrapolated = _aitken_step(a[..., -1], d[..., -1], r2)
    if refine:
        at_best = _accelerated(a, d, ds, noise, at_best, jnp.min(bound, axis=-1))

    tail = d[..., -(window + 1) :]
    same_sign = jnp.all(tail > 0, axis=-1) | jnp.all(tail < 0, axis=-1)
    ratios = _safe_div(ds[..., -window:], ds[..., -(window + 1) : -1])
    growing = same_sign & jnp.all(ratios >= R_MAX, axis=-1)
    is_monotone = jnp.asarray(monotone)
    growing = jnp.where(is_monotone, ~converged & ~geometric, growing)
    diverged_value = jnp.where(d[..., -1] >= 0, jnp.inf, -jnp.inf).astype(a.dtype)

    # Damped oscillation (sin(x)/x on the ladder): increments of both signs whose
    # envelope fell at least fourfold over the last two windows of four rungs.
    # The limit is the centre of the last window's range. Monotone sums (c) do
    # not oscillate, so the case does not apply to them.
    damped = jnp.zeros_like(converged)
    centre = a[..., -1]
    if d.shape[-1] >= 8 and monotone is not True:
        last, before = jnp.abs(ds[..., -4:]), jnp.abs(ds[..., -8:-4])
        signs = jnp.sign(ds[..., -8:])
        mixed = jnp.any(signs > 0, axis=-1) & jnp.any(signs < 0, axis=-1)
        damped = mixed & (jnp.max(last, axis=-1) <= 0.25 * jnp.max(before, axis=-1))
        tail_a = a[..., -5:]
        centre = 0.5 * (jnp.max(tail_a, axis=-1) + jnp.min(tail_a, axis=-1))
    damped = damped & ~is_monotone & ~converged & ~geometric & ~growing
    value = jnp.where(
        converged,
        at_best,
        jnp.where(geometric, extrapolated, jnp.where(growing, diverged_value, jnp.where(damped, centre, jnp.nan))),
    )
    status = jnp.where(
        converged,
        CONVERGED,
        jnp.where(geometric, GEOMETRIC, jnp.where(growing, DIVERGENT, jnp.where(damped, DAMPED, NO_LIMIT))),
    )
    overflow_sign = blown[..., -1]
    value = jnp.where(finite, value, jnp.where(overflow_sign != 0, overflow_sign * jnp.inf, jnp.nan))
    status = jnp.where(finite, status, jnp.where(overflow_sign != 0, DIVERGENT, NO_LIMIT))
    return LadderLimit(value.astype(a.dtype), status.astype(jnp.int32))


def _aitken_step(a_k, d_k, r):
    """Aitken's extrapolation ``a_k + d_k r / (1 - r)`` from a term, its difference
    and the ratio of differences (a constant for differentiation)."""
    return a_k + d_k * _safe_div(r, 1.0 - r)


def _aitken(a, d, ds):
    """Aitken's sequence ``e_j = a_j + d_j r_j / (1 - r_j)``, ``r_j = d_j / d_{j-1}``
    (``j = 2 .. n-1``), with the ratios ``r_j`` and the gains ``r_j / (1 - r_j)``;
    ratios and gains are constants for differentiation (see :func:`ladder_limit`)."""
    rho = _safe_div(ds[..., 1:], ds[..., :-1])
    gain = _safe_div(rho, 1.0 - rho)
    return a[..., 2:] + d[..., 1:] * gain, rho, gain


def _steady(rho):
    """Ratios ``r_j`` that agree with ``r_{j-1}`` to 5% and contract (``|r_j| < R_MAX``)."""
    return (jnp.abs(rho[..., 1:] - rho[..., :-1]) <= 0.05 * jnp.abs(rho[..., 1:])) & (jnp.abs(rho[..., 1:]) < R_MAX)


def ladder_limits(
    *rows, rtol, monotone=False, window: int = 3, accelerate: bool = False, unit=1.0
) -> list[LadderLimit]:
    """:func:`ladder_limit` of several sequences in one program.

    Each ladder call compiles to a few hundred operations; limits that do not
    depend on each other share one set of fused kernels (the signature's
    assembly: 312 fusions against 345 with separate calls). ``rows`` are
    ``(a, noise)`` pairs of any leading shapes and lengths; ``rtol`` and
    ``monotone`` are scalars or one per pair, ``unit`` one scalar for all.
    Shorter sequences are padded at the front with their first term and
    infinite noise, which no verdict or
    choice of term reads (the verdicts look at the last terms; a term with
    infinite noise is never the least noisy).

    Returns:
      One :class:`LadderLimit` per pair, with that pair's leading shape.
    """
    n = max(a.shape[-1] for a, _ in rows)
    count = len(rows)
    rtol = np.broadcast_to(np.asarray(rtol, dtype=float), (count,))
    monotone = np.broadcast_to(np.asarray(monotone, dtype=bool), (count,))
    seqs, noises, shapes, row_rtol, row_monotone = [], [], [], [], []
    for (a, noise), r, m in zip(rows, rtol, monotone):
        a = jnp.asarray(a)
        shapes.append(a.shape[:-1])
        noise = jnp.broadcast_to(jnp.asarray(noise, a.dtype), a.shape).reshape(-1, a.shape[-1])
        a = a.reshape(-1, a.shape[-1])
        pad = n - a.shape[-1]
        seqs.append(jnp.concatenate([jnp.repeat(a[:, :1], pad, axis=-1), a], axis=-1))
        noises.append(jnp.concatenate([jnp.full((a.shape[0], pad), jnp.inf, a.dtype), noise], axis=-1))
        row_rtol.append(np.full(a.shape[0], r))
        row_monotone.append(np.full(a.shape[0], m))
    out = ladder_limit(
        jnp.concatenate(seqs),
        jnp.concatenate(noises),
        rtol=jnp.asarray(np.concatenate(row_rtol)[:, None], seqs[0].dtype),
        monotone=np.concatenate(row_monotone),
        window=window,
        accelerate=accelerate,
        unit=unit,
    )
    bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    return [
        LadderLimit(out.value[lo:hi].reshape(shape), out.status[lo:hi].reshape(shape))
        for lo, hi, shape in zip(bounds[:-1], bounds[1:], shapes)
    ]


def extrapolate(a):
    """Aitken's extrapolation of the sequence ``a`` (last axis) from its last
    ratio of differences, and whether that ratio contracts (``0 <= r < R_MAX``),
    without which the extrapolation means nothing. For sequences whose last
    terms are as good as the working precision allows (float32 tails cut at
    the noise floor), where one step is all the accuracy there is."""
    a = jnp.asarray(a)
    d = jnp.diff(a, axis=-1)
    r = _safe_div(jax.lax.stop_gradient(d[..., -1]), jax.lax.stop_gradient(d[..., -2]))
    return _aitken_step(a[..., -1], d[..., -1], r), (r >= 0) & (r < R_MAX)


#: Ratios Richardson's extrapolation removes in turn: the corrections ``2^-k``,
#: ``4^-k``, ``8^-k`` of a dyadic ladder over a remainder with integer powers
#: (rational and algebraic activations: ``x^-2, x^-3, x^-4``).
_RICHARDSON = (0.5, 0.25, 0.125)


def _extrapolated(a, d, ds):
    """The limit of a geometrically converging sequence: Aitken's extrapolation
    from the last ratio, or Richardson's for integer-power corrections
    (:data:`_RICHARDSON`) where its own last two terms agree better.

    A power-law correction ``x^-p (1 + c x^-q + ...)`` leaves the ratios drifting
    like ``2^-q``, so one step of Aitken is only good to that drift (``x arctan x``:
    ``c`` to ``2e-8`` from ten dyadic shells; a rational activation, where
    ``x^-2``, ``x^-3`` and ``x^-4`` mix, ``2e-6``). Richardson's fixed ratios
    remove those orders exactly (``3.5e-11`` and ``1.2e-9``); where the exponent
    is not an integer, Aitken's adaptive ratio wins. Differentiated as one Aitken
    step (see :func:`_accelerated`).
    """
    once = _aitken_step(a[..., -1], d[..., -1], _safe_div(ds[..., -1], ds[..., -2]))
    if a.shape[-1] < len(_RICHARDSON) + 2:
        return once
    once_prev = _aitken_step(a[..., -2], d[..., -2], _safe_div(ds[..., -2], ds[..., -3]))
    r = a
    for q in _RICHARDSON:
        r = (r[..., 1:] - q * r[..., :-1]) / (1.0 - q)
    better = jax.lax.stop_gradient(jnp.abs(r[..., -1] - r[..., -2]) < jnp.abs(once - once_prev))
    return jnp.where(better & (ds[..., -2] != 0), once + jax.lax.stop_gradient(r[..., -1] - once), once)


def _accelerated(a, d, ds, noise, plain, plain_bound):
    """The converged value, improved by Aitken's extrapolation where that is better.

    A sequence that converges like ``x^-p`` settles into its rounding noise only
    where the noise has grown to the size of the remaining correction (an
    intercept ``phi(x) - alpha x`` carries noise ``eps alpha x``, so ``x^-2``
    corrections stop at ``eps^(2/3)``). On the rungs before that, the
    differences shrink by a steady ratio, and Aitken's ``e_j`` removes the
    leading correction. Each ``e_j`` is judged by ``|e_j - e_{j-1}|`` plus its
    amplified noise; the best one replaces ``plain`` when its bound is smaller
    and the two agree within their bounds, so the result never moves further
    from ``plain`` than ``plain``'s own error bound allows.
    """
    if d.shape[-1] < 3:
        return plain
    e, rho, gain = _aitken(a, d, ds)
    err = jnp.abs(e[..., 1:] - e[..., :-1]) + (noise[..., 3:] + noise[..., 2:-1]) * (1.0 + jnp.abs(gain[..., 1:]))
    err = jax.lax.stop_gradient(jnp.where(_steady(rho) & (ds[..., 1:-1] != 0), err, jnp.inf))
    j = jnp.argmin(err, axis=-1)
    best_err = jnp.take_along_axis(err, j[..., None], axis=-1)[..., 0]
    candidate = jnp.take_along_axis(e[..., 1:], j[..., None], axis=-1)[..., 0]
    agree = jnp.abs(candidate - plain) <= 2.0 * (plain_bound + best_err)
    # The gradient stays that of the settled term: Aitken's gain is the value
    # sequence's ratio, and a derivative sequence decaying at another rate (an
    # intercept's derivative in the slope) is not removed by it, while far out,
    # where the plain term sits, the derivative has settled too.
    return jnp.where((best_err < plain_bound) & agree, plain + jax.lax.stop_gradient(candidate - plain), plain)

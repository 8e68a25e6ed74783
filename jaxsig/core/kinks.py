"""What ``phi`` does at its kinks: power singularities, jumps of ``phi'`` where no
kink is declared, and jumps of ``phi`` itself.

All read ``phi`` and ``phi'`` on the line (:class:`~jaxsig.core.quadrature.Line`):

* :func:`singularities` measures ``|phi(x)| ~ |x - b|^-p`` on the ladders
  ``b +- 2**-k`` toward each kink ``b``, which decides which Gaussian moments
  diverge (``E[|phi|^q]`` does exactly when ``q p >= 1``);
* :func:`undeclared_kinks` finds intervals where ``phi'`` steps by more than
  ``phi''`` allows, a kink the activation did not declare (the Gaussian sums then
  converge at second order only, for the densities that reach it);
* :func:`steps` finds where ``phi`` itself steps by more than ``phi'`` allows: a
  discontinuity, which the signature does not admit.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsig.core._numerics import eps as _eps

__all__ = ["REACH", "Singularities", "singularities", "undeclared_kinks", "steps", "jump_intervals"]


class Singularities(NamedTuple):
    """What the ladders toward each kink say about the Gaussian moments.

    ``|phi(x)| ~ |x - b|^-p0`` and ``|phi'(x)| ~ |x - b|^-p1`` as ``x -> b`` on
    either side (exponents measured on the last rungs ``b +- 2**-k``, ``k <= 40``);
    ``E[|phi(X)|^q]`` diverges exactly when ``q p0 >= 1`` (and likewise for
    ``phi'``), because the Gaussian density is positive and smooth at ``b``.

    Attributes:
      m1, m2, g1, g2, g4: the component diverges (``E|phi|``, ``E phi^2``,
        ``E|phi'|``, ``E phi'^2``, ``E phi'^4``).
      m1_sign, g1_sign: ``+-1`` where every divergent side has that sign, else
        ``0`` (opposite signs: the integral is undefined).
      integrable: ``phi'`` is singular at a kink but ``E|phi'|^q`` converges for
        the moments computed: the quadrature is then only accurate to a few
        digits (a Gauss–Legendre panel next to a power singularity).
    """

    m1: jax.Array
    m2: jax.Array
    g1: jax.Array
    g2: jax.Array
    g4: jax.Array
    m1_sign: jax.Array
    g1_sign: jax.Array
    integrable: jax.Array


def _growth_exponent(seq):
    """Steady exponent ``p`` of ``|seq_k| ~ 2**(k p)`` over the last four rungs
    (``0`` if the growth is not steady or not positive; ``inf`` on overflow)."""
    a = jnp.abs(seq[..., -4:])
    overflow = jnp.any(~jnp.isfinite(a), axis=-1)
    a = jnp.where(jnp.isfinite(a) & (a > 0), a, 1.0)
    p = jnp.log2(a[..., 1:] / a[..., :-1])
    steady = (jnp.min(p, axis=-1) > 0.05) & (jnp.max(p, axis=-1) - jnp.min(p, axis=-1) < 0.05)
    return jnp.where(overflow, jnp.inf, jnp.where(steady, jnp.mean(p, axis=-1), 0.0))


def singularities(v0, v1) -> Singularities:
    """Power singularities of ``phi`` and ``phi'`` at the kinks (and at 0), from
    their values ``v0``, ``v1`` on the ladders ``b +- 2**-k`` of the line
    (``line.inner``: shape ``(n_kinks, 2, k)``); see :class:`Singularities`."""
    p0, p1 = _growth_exponent(v0), _growth_exponent(v1)  # (n_kinks, 2)
    tol = 0.02  # exponents are measured to ~1e-3; 1/|x| must count as divergent

    def diverges(p, q):
        return q * p >= 1.0 - tol

    def side_sign(v, div):
        s = jnp.sign(v[..., -1])
        pos = jnp.all(jnp.where(div, s > 0, True))
        neg = jnp.all(jnp.where(div, s < 0, True))
        return jnp.where(pos, 1.0, jnp.where(neg, -1.0, 0.0))

    d_m1, d_g1 = diverges(p0, 1.0), diverges(p1, 1.0)
    return Singularities(
        m1=jnp.any(d_m1),
        m2=jnp.any(diverges(p0, 2.0)),
        g1=jnp.any(d_g1),
        g2=jnp.any(diverges(p1, 2.0)),
        g4=jnp.any(diverges(p1, 4.0)),
        m1_sign=side_sign(v0, d_m1),
        g1_sign=side_sign(v1, d_g1),
        integrable=jnp.any((p1 > 0.05) & ~diverges(p1, 4.0)) | jnp.any((p1 > 0.05) & ~diverges(p1, 1.0)),
    )


#: A jump of ``phi'`` further than this many ``sigma`` from ``mu`` does not reach
#: the Gaussian sums: the density there is below ``exp(-81/2) ~ 3e-18`` of its peak.
REACH = 9.0


def undeclared_kinks(line, x, f1, f2, sigma, mu, unit=1.0):
    """Where ``phi'`` jumps although no kink is declared, and whether the Gaussian
    density at each ``(sigma, mu)`` reaches it.

    Over an interval of width ``h`` a continuous ``phi'`` changes by
    ``|int phi''| <= h max |phi''|``; a jump does not shrink with ``h``. An
    interval inside the grid (``|x| <= x_max``) is flagged when
    ``|phi'(b) - phi'(a)| > 8 h max(|phi''(a)|, |phi''(b)|) + 64 eps (|phi'(a)| + |phi'(b)|)``
    and ``|phi'(b) - phi'(a)| > 1e-6 (unit + |phi'(a)| + |phi'(b)|)`` (a visible jump;
    :func:`jump_intervals`). Declared kinks (and 0) are excluded. A feature
    narrower than the node spacing with a large ``phi'''`` can be flagged too, and
    so can oscillation that the line's graded tail panels do not resolve
    (``sin(x) / (1 + x^2)`` near ``x = -165``): a flagged interval counts only for
    the densities that reach it, those with its midpoint ``m`` in
    ``|m - mu| <= REACH sigma``.

    Returns:
      ``(found, where)``: per ``(sigma, mu)``, whether a flagged interval lies
      within its reach (the Gaussian sums then converge at second order only),
      and the midpoint of the first flagged interval within reach of any
      ``(sigma, mu)`` (``NaN`` if none).
    """
    flagged = jump_intervals(x, f1, f2, line.split, line.x_max, x.dtype, unit)
    found, first = _within_reach(flagged, x, sigma, mu)
    return found, jnp.where(first >= 0, 0.5 * (x[first] + x[first + 1]), jnp.nan)


def steps(line, x, f0, f1, sigma, mu, unit=1.0):
    """Where ``phi`` itself jumps: the test of :func:`undeclared_kinks` one
    derivative lower (``|phi(b) - phi(a)| > 8 h max(|phi'(a)|, |phi'(b)|) + ...``),
    at declared kinks too, for ``phi`` must be continuous everywhere.

    A transition narrower than the line's spacing (``tanh(1000 (x - 0.3))``) is
    flagged as well; :func:`jaxsig.core._checks.check_continuous` tells the two
    apart by bisection in eager calls.

    Returns:
      ``(found, a, b)``: per ``(sigma, mu)``, whether a flagged interval lies
      within its reach, and the ends of the first flagged interval on the line
      (``NaN`` if none).
    """
    flagged = jump_intervals(x, f0, f1, False, line.x_max, x.dtype, unit)
    found, _ = _within_reach(flagged, x, sigma, mu)
    first, any_step = jnp.argmax(flagged), jnp.any(flagged)
    return found, jnp.where(any_step, x[first], jnp.nan), jnp.where(any_step, x[first + 1], jnp.nan)


def _within_reach(flagged, x, sigma, mu):
    """Per ``(sigma, mu)``, whether a flagged interval of ``x`` has its midpoint
    within ``REACH sigma`` of ``mu``, and the index of the first interval within
    reach of any of them (``-1`` if none)."""
    mid = 0.5 * (x[1:] + x[:-1])  # sorted, as x is
    lo, hi = mu - REACH * sigma, mu + REACH * sigma
    # The flagged midpoints in [lo, hi], from the running count of flagged intervals.
    count = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(flagged, dtype=jnp.int32)])
    found = count[jnp.searchsorted(mid, hi, side="right")] > count[jnp.searchsorted(mid, lo, side="left")]
    reached = flagged & jnp.any((mid >= lo.reshape(-1, 1)) & (mid <= hi.reshape(-1, 1)), axis=0)
    return found, jnp.where(jnp.any(reached), jnp.argmax(reached), -1)


def jump_intervals(x, f, df, split, x_max, dtype, unit=1.0):
    """The mask of intervals ``[x_i, x_{i+1}]`` of a line where ``f`` steps by more
    than its derivative ``df`` allows: ``|f(b) - f(a)| > 8 h max(|df(a)|, |df(b)|)
    + 64 eps (|f(a)| + |f(b)|)`` and ``> 1e-6 (unit + |f(a)| + |f(b)|)``, inside
    ``|x| <= x_max`` (static, as ``dtype``) and outside the intervals ``split``
    marks (``Line.split``: those that hold a declared kink; ``False``: none).
    With ``(phi', phi'')`` the test of :func:`undeclared_kinks`, with
    ``(phi, phi')`` that of :func:`steps`. ``unit``: the scale of ``phi``
    (:func:`jaxsig.core._numerics.unit_scale`), so that the test of ``a phi`` is
    that of ``phi``."""
    eps = _eps(dtype)
    h = x[1:] - x[:-1]
    fa, fb, da, db = f[:-1], f[1:], df[:-1], df[1:]
    ok = jnp.isfinite(fa) & jnp.isfinite(fb) & jnp.isfinite(da) & jnp.isfinite(db)
    step = jnp.abs(fb - fa)
    smooth_bound = 8.0 * h * jnp.maximum(jnp.abs(da), jnp.abs(db)) + 64 * eps * (jnp.abs(fa) + jnp.abs(fb))
    body = jnp.abs(x) <= x_max
    inside = body[:-1] & body[1:]
    flagged = ok & inside & ~jnp.asarray(split) & (step > smooth_bound)
    return flagged & (step > 1e-6 * (unit + jnp.abs(fa) + jnp.abs(fb)))

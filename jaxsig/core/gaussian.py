"""The Gaussian part of the signature: one weighted-sum kernel for every caller.

For ``X = mu + sigma Z`` and a quadrature rule with nodes ``x_i`` and Gaussian
weights ``w_i(sigma, mu)`` (:mod:`jaxsig.core.quadrature`),

.. math:: E[f(X)] \\approx \\sum_i w_i(\\sigma, \\mu)\\, f(x_i),

and the statistics of :class:`Moments` are such sums of ``phi`` and ``phi'``
at the nodes. On the composite rule the nodes do not depend on ``(sigma, mu)``,
so every ``(sigma, mu)`` is one row of a single matrix product. The mean-field
theory (:mod:`jaxsig.theory.meanfield`) and the design targets use this same
kernel, so their numbers agree with :func:`jaxsig.moments` to the last bit.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsig.core._numerics import derivatives, dot, safe_div, safe_root
from jaxsig.core.quadrature import kink_ladders, legendre_tables

__all__ = [
    "Grid",
    "Moments",
    "Points",
    "Samples",
    "Sums",
    "expectations",
    "usable",
    "grid",
    "moments_of",
    "nodes",
    "resolution",
    "sample",
    "statistics",
    "stein_gap",
    "sums",
    "with_breakpoints",
]


class Moments(NamedTuple):
    """Gaussian statistics only (the cheap part of the signature).

    Attributes:
      m1: ``E[phi(X)]``.
      g1: ``E[phi'(X)]``.
      g2: ``sqrt(E[phi'(X)^2])``.
      m2: ``E[phi(X)^2]``.
      eta: ``m2 - m1^2 - sigma^2 g1^2``.
      g4: ``(E[phi'(X)^4])^(1/4)``.
      dm2_dsigma: ``d m2 / d sigma``.
      finite: ``phi^2`` and ``phi'^4`` were finite at every node (else the rest is NaN).
    """

    m1: jax.Array
    g1: jax.Array
    g2: jax.Array
    m2: jax.Array
    eta: jax.Array
    g4: jax.Array
    dm2_dsigma: jax.Array
    finite: jax.Array


class Sums(NamedTuple):
    """The raw Gaussian sums behind :class:`Moments` (before roots and NaN masking):
    ``E[phi]``, ``E[phi']``, ``E[phi^2]``, ``E[phi'^2]``, ``E[phi'^4]``,
    ``E[phi^2 (Z^2 - 1)] / sigma``, ``E[(phi - m1 - g1 (X - mu))^2]``, whether
    ``phi^2`` and ``phi'^4`` were finite at every node, and ``E[(X - mu) phi] / sigma^2``,
    which equals ``E[phi']`` by Stein's identity for continuous ``phi`` (the two sums
    disagree where the nodes miss a feature of ``phi'``: :func:`stein_gap`)."""

    m1: jax.Array
    g1: jax.Array
    m2: jax.Array
    d2: jax.Array
    d4: jax.Array
    dm2_dsigma: jax.Array
    eta: jax.Array
    finite: jax.Array
    stein: jax.Array


def sums(x, w, f0, f1, sigma, mu, *, mirrored: int = 0) -> Sums:
    """:class:`Sums` from values ``f0 = phi``, ``f1 = phi'`` at nodes ``x``.

    ``w`` has shape ``sigma.shape + (N,)``; ``x``, ``f0``, ``f1`` are ``(N,)``
    (nodes shared by every ``(sigma, mu)``: the five sums for all of them are
    one matrix product, which stays one product when callers ``vmap`` over
    parameters) or ``sigma.shape + (N,)`` (nodes that move with ``sigma``, as
    Gauss–Hermite's do). ``eta`` is computed as ``E[(phi - m1 - g1 (X - mu))^2]``,
    equal to ``m2 - m1^2 - sigma^2 g1^2`` by Stein's identity, ``>= 0`` and free
    of cancellation.

    ``mirrored``: the first ``2 mirrored`` nodes are pairs ``x[mirrored + i] = -x[i]``
    with equal line weights (:meth:`jaxsig.quadrature.Composite.gaussian_nodes`).
    The sums of ``phi`` and ``phi'`` over them are taken as
    ``sum s (f_l + f_r) + (w_l - s) f_l + (w_r - s) f_r`` with ``s`` the smaller
    weight (:func:`_weighted`): at ``mu = 0`` the last two terms
    vanish exactly and the first is exactly 0 for an odd integrand
    (``E[tanh(X)]``, ``E[relu'(X) - 1/2]``), not a few ulps of ``E|phi|``; away
    from ``mu = 0`` they round as the plain sum does.
    """
    # A node counts only where its Gaussian weight is not 0: exp overflows (and
    # its square sooner) far in the tails, where the density has underflowed to
    # exactly 0 and contributes nothing. Non-finite values at nodes that do
    # carry weight make the statistics NaN (see Moments.finite).
    ok = usable(f0, f1)
    bad = (~ok).astype(w.dtype)
    f0, f1 = jnp.where(ok, f0, 0.0), jnp.where(ok, f1, 0.0)
    s, m = sigma[..., None], mu[..., None]
    z2m1 = ((x - m) / s) ** 2 - 1.0
    if f0.ndim == 1:
        # phi and phi' share the mirrored products (their odd parts cancel
        # exactly); the squares take one product each, with only the weights
        # they need. Under vmap every stacked or concatenated copy of the
        # values costs more than its product (2,000 rows x 8 sigmas:
        # moments_batch 31 -> 27 ms against stacking all six and concatenating
        # the mirrored halves).
        (m1, stein), (g1, _) = _weighted(jnp.stack([f0, f1]), jnp.stack([w, w * (x - m) / (s * s)]), mirrored)
        ((m2, dm2),), (d2,), (d4,), (n_bad,) = (
            _weighted(v[None], u)
            for v, u in ((f0 * f0, jnp.stack([w, w * z2m1])), (f1 * f1, w), ((f1 * f1) ** 2, w), (bad, w))
        )
        dm2 = dm2 / sigma
        # The weights are >= 0: their sum over the bad nodes is 0 exactly when all are.
        finite = n_bad == 0
    else:
        finite = jnp.sum(w * bad, axis=-1) == 0
        m1, g1, m2, d2, d4 = (jnp.sum(w * v, axis=-1) for v in (f0, f1, f0 * f0, f1 * f1, (f1 * f1) ** 2))
        dm2 = jnp.sum(w * z2m1 * f0 * f0, axis=-1) / sigma
        stein = jnp.sum(w * (x - m) * f0, axis=-1) / (sigma * sigma)
    resid = f0 - m1[..., None] - g1[..., None] * (x - m)
    eta = jnp.sum(w * resid * resid, axis=-1)
    return Sums(m1, g1, m2, d2, d4, dm2, eta, finite, stein)


def usable(f0, f1):
    """Where the sums can use a node: ``phi^2`` and ``phi'^4`` are finite there."""
    return jnp.isfinite(f0 * f0) & jnp.isfinite((f1 * f1) ** 2)


def _weighted(v, w, h=0):
    """``v @ w^T`` over the node axis: ``v`` is ``(k, N)``, ``w`` is ``batch + (N,)``;
    returns ``(k,) + batch``. The first ``2 h`` nodes are mirrored pairs
    (:func:`sums`), summed as ``s (v_l + v_r) + (w_l - s) v_l + (w_r - s) v_r``
    with ``s`` the weight of smaller magnitude: where the weights are equal
    (``mu = 0``) the last two terms are exactly 0, and an odd integrand sums to
    exactly 0; where they are not, each term is at most the pair's own
    ``|w_l v_l| + |w_r v_r|``, so the sum rounds as the plain one does. (The
    even/odd split ``(w_l + w_r)/2 (v_l + v_r) + (w_l - w_r)/2 (v_l - v_r)``
    does not: at ``mu = -0.6, sigma = 0.05`` it gave ``E[relu'(X)] = 4e-17``,
    not ``1.8e-33``, the cancellation of ``w_l v_r`` against itself.)

    As two products, ``(v_l + v_r) @ s^T`` over the pairs and ``v @ (w - s)^T``
    over every node (``w - s`` is ``w_l - s, w_r - s`` on the pairs and ``w``
    elsewhere, exactly 0 on the pairs at ``mu = 0``): the weights are
    rearranged, never the values, which under ``vmap`` carry the batch axis."""
    batch, n = w.shape[:-1], w.shape[-1]
    w = w.reshape(-1, n)
    if not h:
        return dot(v, w.T).reshape((v.shape[0], *batch))
    wl, wr = w[:, :h], w[:, h : 2 * h]
    s = jnp.where(jnp.abs(wl) <= jnp.abs(wr), wl, wr)
    rest = jnp.concatenate([wl - s, wr - s, w[:, 2 * h :]], axis=1)
    return (dot(v[:, :h] + v[:, h : 2 * h], s.T) + dot(v, rest.T)).reshape((v.shape[0], *batch))


def statistics(x, w, f0, f1, sigma, mu, *, mirrored: int = 0) -> Moments:
    """:class:`Moments` from values ``f0 = phi``, ``f1 = phi'`` at nodes ``x``
    (:func:`sums`, then :func:`moments_of`)."""
    return moments_of(sums(x, w, f0, f1, sigma, mu, mirrored=mirrored))


def moments_of(r: Sums) -> Moments:
    """:class:`Moments` from :class:`Sums`: ``g2 = sqrt(E[phi'^2])``,
    ``g4 = E[phi'^4]^(1/4)``, every statistic ``NaN`` where ``phi`` or ``phi'`` was
    not finite."""
    out = Moments(r.m1, r.g1, safe_root(r.d2, 2), r.m2, r.eta, safe_root(r.d4, 4), r.dm2_dsigma, r.finite)
    nan = jnp.asarray(jnp.nan, r.m1.dtype)
    return out._replace(**{k: jnp.where(r.finite, v, nan) for k, v in out._asdict().items() if k != "finite"})


def expectations(act, rule, sigma, mu, *, kinks=None, raw: bool = False):
    """:class:`Moments` (or, with ``raw``, the :class:`Sums`) of the prepared
    activation ``act`` under ``rule``.

    ``phi`` and ``phi'`` come from one forward-mode pass at the rule's nodes,
    cut at the rule's kinks, at ``kinks`` (an array: data, not part of the
    compiled program) and at ``act``'s breakpoints that depend on its parameters.
    Traceable: callers jit it (or a function around it) with ``rule`` static.
    """
    x, w = nodes(act, rule, sigma, mu, kinks)
    f0, f1 = derivatives(act, x, 1)
    mirrored = getattr(rule, "mirrored", 0) if x.ndim == 1 else 0
    return (sums if raw else statistics)(x, w, f0, f1, sigma, mu, mirrored=mirrored)


def nodes(act, rule, sigma, mu, kinks=None):
    """The Gaussian nodes and weights of ``rule`` for ``act``: :meth:`gaussian` of
    the rule, cut (composite rules) at ``kinks`` and at ``act.breakpoints()``."""
    return _cut_nodes(rule, sigma, mu, with_breakpoints(kinks, act.breakpoints(), sigma.dtype))


def with_breakpoints(kinks, breakpoints, dtype):
    """``kinks`` followed by an activation's ``breakpoints`` (each an array or
    ``None``): every point that cuts the grids, as data."""
    parts = [jnp.asarray(v, dtype) for v in (kinks, breakpoints) if v is not None]
    return jnp.concatenate(parts) if parts else None


def _cut_nodes(rule, sigma, mu, kinks):
    if not hasattr(rule, "gaussian_nodes"):
        return rule.gaussian(sigma, mu, sigma.dtype)
    return rule.gaussian(sigma, mu, sigma.dtype, kinks)


class Points(NamedTuple):
    """Where the Gaussian statistics sample ``phi``.

    Attributes:
      x: the rule's nodes, ``(N,)`` (composite rules: shared by every
        ``(sigma, mu)``) or ``sigma.shape + (N,)`` (Gauss–Hermite).
      ladder: the ladders toward ``0`` and each kink, ``(1 + K, 2, k)``
        (:func:`jaxsig.quadrature.kink_ladders`): which moments diverge.
      empty: ``(1 + K,)``, the empty kink slots.
    """

    x: jax.Array
    ladder: jax.Array
    empty: jax.Array


class Grid(NamedTuple):
    """Everything of the Gaussian statistics but ``phi`` (:func:`grid`): the
    :class:`Points` and the Gaussian weights ``w`` of the nodes, ``sigma.shape + (N,)``."""

    points: Points
    w: jax.Array


class Samples(NamedTuple):
    """``phi`` and ``phi'`` at :class:`Points` (:func:`sample`): the only part of
    the Gaussian statistics that depends on ``phi``."""

    f0: jax.Array
    f1: jax.Array
    v0: jax.Array
    v1: jax.Array


def grid(rule, sigma, mu, kinks=None) -> Grid:
    """The :class:`Grid` of ``rule`` at ``(sigma, mu)``, cut at ``kinks`` (an
    array, data: the activation's kinks and breakpoints, ``NaN`` for empty slots)."""
    x, w = _cut_nodes(rule, sigma, mu, kinks)
    ladder, empty = kink_ladders(jnp.zeros((0,), sigma.dtype) if kinks is None else kinks, sigma.dtype)
    return Grid(Points(x, ladder, empty), w)


def sample(act, p: Points) -> Samples:
    """``phi``, ``phi'`` at the nodes and on the ladders of ``p``, from one
    forward-mode pass each; on the ladders of empty kink slots, the constant 1
    (no singularity)."""
    f0, f1 = derivatives(act, p.x, 1)
    v0, v1 = (jnp.where(p.empty[:, None, None], 1.0, v) for v in derivatives(act, p.ladder, 1))
    return Samples(f0, f1, v0, v1)


#: :func:`resolution` above this marks the Gaussian statistics APPROXIMATE.
UNRESOLVED = 1e-3


def resolution(rule, w, f0, f1, sigma, size):
    """An upper estimate of the relative quadrature error of ``E[phi^2]`` and
    ``E[phi'^2]`` on the kink-free panels of a composite rule, per ``(sigma, mu)``.

    On each panel the Legendre coefficients ``a_k`` of ``phi^2`` and ``phi'^2``
    (from the values at its Gauss–Legendre nodes) show whether the panel resolves
    them: the estimate is
    ``sum_p mass_p * a_{n-1} * (a_{n-1} / a_{n-5})^((n+1)/3) / size`` summed over
    the two functions (the last coefficient, extrapolated at its observed decay to
    the degree the rule integrates exactly), with ``mass_p`` the Gaussian mass of
    the panel and ``size = E[phi^2] + E[phi'^2]``. It is ``~1e-16`` for the paper
    activations and grows with oscillation that the panels do not resolve. A
    bound, not an estimate: for ``sin x`` it is 1e-2, 1e-1, 0.3 at ``sigma`` = 10,
    15, 20 where the error of ``m2`` is 6e-11, 7e-7, 3e-4; for ``sinc x`` 2e-3, 5e-3
    at ``sigma`` = 10, 20 where it is 5e-6, 9e-5. :data:`UNRESOLVED` is set so that
    it fires from ``sigma = 10`` for both.
    """
    h, n = getattr(rule, "mirrored", 0), getattr(rule, "gaussian_order", 0)
    if not h or f0.ndim != 1:
        return jnp.zeros(sigma.shape, sigma.dtype)
    _, vinv = legendre_tables(n)
    f0, f1, w, size = (jax.lax.stop_gradient(v) for v in (f0, f1, w, size))  # a diagnostic
    vals = jnp.stack([f0 * f0, f1 * f1])[:, : 2 * h].reshape(2, -1, n)
    vals = jnp.where(jnp.isfinite(vals), vals, 0.0)
    coef = jnp.abs(dot(vals, jnp.asarray(vinv[[-5, -4, -2, -1]].T, w.dtype)))
    last = jnp.maximum(coef[..., 2], coef[..., 3])
    prev = jnp.maximum(coef[..., 0], coef[..., 1])
    ratio = jnp.minimum(1.0, safe_div(last, prev))
    tail = jnp.sum(last * ratio ** ((n + 1) / 3), axis=0)  # (P,)
    mass = jnp.sum(w[..., : 2 * h].reshape(*w.shape[:-1], -1, n), axis=-1)
    return safe_div(dot(mass, tail), size)


def stein_gap(r: Sums, sigma):
    """How far the Gaussian sums are from Stein's identity ``E[phi'(X)] =
    E[(X - mu) phi(X)] / sigma^2``, relative to its rounding: ``0`` on resolved
    activations, ``> 1`` where the nodes miss a feature of ``phi'``.

    The identity holds for every continuous ``phi``; the two sums are computed from
    different samples (``phi'`` and ``phi``), and a transition narrower than the
    nodes' spacing (``tanh(1000 (x - 0.3))``: ``E[phi']`` from the nodes is 5e-6,
    ``E[(X - mu) phi] / sigma^2`` is 0.76) shows up in one and not the other. The
    gap ``|E[phi'] - E[(X - mu) phi] / sigma^2|`` is divided by
    ``1e3 eps (sqrt(E[phi^2]) / sigma + sqrt(E[phi'^2]))``, a bound of the sums'
    rounding (the second sum cancels down from ``|phi| / sigma``).
    """
    eps = jnp.finfo(r.g1.dtype).eps
    noise = 1e3 * eps * (safe_root(r.m2, 2) / sigma + safe_root(r.d2, 2))
    gap = jax.lax.stop_gradient(jnp.abs(r.g1 - r.stein))
    return jnp.where(r.finite, safe_div(gap, jax.lax.stop_gradient(noise)), 0.0)

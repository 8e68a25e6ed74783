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

from jaxsig.core._numerics import derivatives, dot, safe_root

__all__ = ["Moments", "Sums", "expectations", "statistics", "sums"]


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
      finite: ``phi`` and ``phi'`` were finite at every node (else the rest is NaN).
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
    ``E[phi^2 (Z^2 - 1)] / sigma``, ``E[(phi - m1 - g1 (X - mu))^2]``, and whether
    ``phi`` and ``phi'`` were finite at every node."""

    m1: jax.Array
    g1: jax.Array
    m2: jax.Array
    d2: jax.Array
    d4: jax.Array
    dm2_dsigma: jax.Array
    eta: jax.Array
    finite: jax.Array


def sums(x, w, f0, f1, sigma, mu) -> Sums:
    """:class:`Sums` from values ``f0 = phi``, ``f1 = phi'`` at nodes ``x``.

    ``w`` has shape ``sigma.shape + (N,)``; ``x``, ``f0``, ``f1`` are ``(N,)``
    (nodes shared by every ``(sigma, mu)``: one matrix product for all of
    them) or ``sigma.shape + (N,)`` (nodes that move with ``sigma``, as
    Gauss–Hermite's do). ``eta`` is computed as ``E[(phi - m1 - g1 (X - mu))^2]``,
    equal to ``m2 - m1^2 - sigma^2 g1^2`` by Stein's identity, ``>= 0`` and free
    of cancellation.
    """
    powers = jnp.stack([f0, f1, f0 * f0, f1 * f1, (f1 * f1) ** 2], axis=-1)
    # A node counts only where its Gaussian weight is not 0: exp overflows (and
    # its square sooner) far in the tails, where the density has underflowed to
    # exactly 0 and contributes nothing. Non-finite values at nodes that do
    # carry weight make the statistics NaN (see Moments.finite).
    bad = ~jnp.all(jnp.isfinite(powers), axis=-1)
    # (The weights are >= 0: their sum over the bad nodes is 0 exactly when all
    # are. A product, not a masked reduction, which XLA would try to
    # constant-fold when the nodes and scales are constants.)
    if bad.ndim == 1:
        finite = dot(w, bad.astype(w.dtype)) == 0
    else:
        finite = jnp.sum(jnp.where(bad, w, 0.0), axis=-1) == 0
    powers = jnp.where(jnp.isfinite(powers), powers, 0.0)
    f0 = powers[..., 0]
    s, m = sigma[..., None], mu[..., None]
    z2m1 = ((x - m) / s) ** 2 - 1.0
    if f0.ndim == 1:
        m1, g1, m2, d2, d4 = jnp.moveaxis(_folded_dot(w, powers), -1, 0)
        dm2 = _folded_dot(w * z2m1, powers[:, 2:3])[..., 0] / sigma
    else:
        m1, g1, m2, d2, d4 = jnp.moveaxis(jnp.sum(w[..., None] * powers, axis=-2), -1, 0)
        dm2 = jnp.sum(w * z2m1 * f0 * f0, axis=-1) / sigma
    resid = f0 - m1[..., None] - g1[..., None] * (x - m)
    eta = jnp.sum(w * resid * resid, axis=-1)
    return Sums(m1, g1, m2, d2, d4, dm2, eta, finite)


def _folded_dot(w, v):
    """``w @ v`` over the node axis, summed as two half-lines from the tails inward.

    Both halves are the same product on mirrored data, so where the nodes are
    symmetric about 0 (the composite rule without off-centre kinks) and the
    integrand is odd (``E[phi(X)]`` of an odd ``phi`` at ``mu = 0``), the two
    partial sums are equal and opposite to the last bit and the total is exactly
    0 rather than a few ulps of ``E|phi|``. Elsewhere it is just an order of
    summation, with the same cost as one product.
    """
    n = w.shape[-1]
    h = n // 2
    left = dot(w[..., :h], v[:h])
    right = dot(w[..., n - h :][..., ::-1], v[n - h :][::-1])
    out = left + right
    if n % 2:
        out = out + w[..., h : h + 1] * v[h]
    return out


def statistics(x, w, f0, f1, sigma, mu) -> Moments:
    """:class:`Moments` from values ``f0 = phi``, ``f1 = phi'`` at nodes ``x``
    (:func:`sums`, with ``g2 = sqrt(E[phi'^2])``, ``g4 = E[phi'^4]^(1/4)``, and
    every statistic ``NaN`` where ``phi`` or ``phi'`` was not finite)."""
    r = sums(x, w, f0, f1, sigma, mu)
    out = Moments(r.m1, r.g1, safe_root(r.d2, 2), r.m2, r.eta, safe_root(r.d4, 4), r.dm2_dsigma, r.finite)
    nan = jnp.asarray(jnp.nan, r.m1.dtype)
    return out._replace(**{k: jnp.where(r.finite, v, nan) for k, v in out._asdict().items() if k != "finite"})


def expectations(act, rule, sigma, mu, *, raw: bool = False):
    """:class:`Moments` (or, with ``raw``, the :class:`Sums`) of the prepared
    activation ``act`` under ``rule``.

    ``phi`` and ``phi'`` come from one forward-mode pass at the rule's nodes.
    Traceable: callers jit it (or a function around it) with ``rule`` static.
    """
    x, w = rule.gaussian(sigma, mu, sigma.dtype)
    f0, f1 = derivatives(act, x, 1)
    return (sums if raw else statistics)(x, w, f0, f1, sigma, mu)

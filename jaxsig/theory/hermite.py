"""Hermite coefficients of an activation: the degree-by-degree split of its energy.

For ``X = mu + sigma Z``, ``Z ~ N(0, 1)``, every ``phi`` with ``E[phi(X)^2] < inf``
has the expansion in probabilists' Hermite polynomials

.. math:: \\phi(\\mu + \\sigma z) = \\sum_{k \\ge 0} h_k\\, He_k(z), \\qquad
          h_k = \\frac{E[\\phi(X)\\, He_k(Z)]}{k!},

converging in ``L^2`` of the Gaussian (``E[He_j He_k] = k!\\, \\delta_{jk}``). Its
energies ``e_k = k! h_k^2`` split the second moment (Parseval):

.. math:: m_2 = E[\\phi(X)^2] = \\sum_{k \\ge 0} k!\\, h_k^2 .

They tie the expansion to the signature (:func:`jaxsig.signature`):
``h_0 = m1``, ``h_1 = E[phi(X) Z] = sigma g1`` (Stein), and the nonlinear energy
is everything of degree two and above,
``eta = m2 - m1^2 - sigma^2 g1^2 = sum_{k >= 2} k! h_k^2``.

How they are computed
---------------------
The expectations use the same Gaussian quadrature as the signature: by default
the kink-aware :class:`~jaxsig.quadrature.Composite` rule, whose nodes do not move
with ``sigma`` or ``mu``, so ``phi`` is evaluated once for every input scale.
The polynomials are never formed with their factorials: the orthonormal
polynomials ``p_k = He_k / sqrt(k!)`` obey the three-term recurrence

.. math:: p_0 = 1,\\quad p_1 = z,\\quad
          p_{k+1}(z) = \\frac{z\\, p_k(z) - \\sqrt{k}\\, p_{k-1}(z)}{\\sqrt{k+1}},

which is forward-stable where the Gaussian has mass and stays bounded by
Cramér's inequality ``|p_k(z)| <= 1.09 e^{z^2/4}``, so no degree overflows where the
density is non-zero (nodes where it underflows to zero are skipped). The
recurrence runs as a ``lax.scan`` over ``k``; each step forms
``a_k = E[phi(X) p_k(Z)] = sqrt(k!) h_k`` and the memory is one row of
polynomial values per ``(sigma, mu)``, whatever ``n``.

Accuracy (float64, default rule; ``tests/test_hermite.py``): against mpmath at 30
digits, ``max_k |h_k - h_k^ref| sqrt(k!) = 4e-16`` over tanh, GELU, ReLU and
softplus at ``sigma`` in ``{0.5, 1, 2}``, ``mu`` in ``{0, 0.7}``, ``k < 24``;
against ReLU's closed form ``E[relu(X) He_k(Z)] = sigma He_{k-2}(-mu/sigma)
phi_N(mu/sigma)``, ``2e-16`` up to ``k = 127`` and ``6e-14`` up to ``k = 255``
for ``sigma <= 2``. Far out in degree and scale the grid stops resolving
``He_k``: at ``sigma = 5`` the error reaches ``2e-11`` by ``k = 255``.

References:
  O'Donnell, "Analysis of Boolean Functions", ch. 11 (Hermite analysis on
  Gaussian space), Cambridge University Press, 2014.
  Daniely, Frostig & Singer, "Toward deeper understanding of neural networks",
  NeurIPS 2016 (the dual activation as a series in the Hermite energies).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import gaussian, quadrature
from jaxsig.core._numerics import is_concrete
from jaxsig.core.signature import prepare_inputs

__all__ = ["HermiteCoefficients", "hermite_coefficients"]


class HermiteCoefficients(NamedTuple):
    """Hermite expansion of ``phi(mu + sigma Z)``: a pytree of arrays.

    ``batch`` below is ``broadcast(sigma, mu).shape``; the last axis of the
    per-degree fields runs over ``k = 0, ..., n - 1``.

    Attributes:
      coeffs: ``h_k = E[phi(X) He_k(Z)] / k!``, shape ``batch + (n,)``.
      energy: ``e_k = k! h_k^2 = E[phi(X) He_k(Z)]^2 / k!``, the part of
        ``m2`` carried by degree ``k``, shape ``batch + (n,)``.
      share_m2: ``e_k / m2``, the fraction of the second moment at degree ``k``
        (``0`` where ``m2 = 0``).
      share_var: ``e_k / Var phi(X)`` for ``k >= 1`` and ``0`` at ``k = 0``: the
        fraction of the variance (``Var = sum_{k >= 1} e_k``) at degree ``k``
        (``0`` where the variance is at the rounding floor,
        ``Var <= (64 eps)^2 m2``, as for a constant ``phi``).
      m2: ``E[phi(X)^2] = sum_{k >= 0} e_k`` (all degrees), shape ``batch``.
      var: ``Var phi(X) = E[(phi(X) - h_0)^2]``, shape ``batch``.
      tail: ``E[(phi(X) - sum_{k < n} h_k He_k(Z))^2] = sum_{k >= n} e_k``, the
        energy the first ``n`` terms miss, shape ``batch``. Computed as
        ``max(m2 - sum_{k < n} e_k, 0)``: its absolute accuracy is that of
        ``m2`` (a few ``eps * m2``), so tails below that read as ``~0``. (The
        mean square of the residual itself would be relatively accurate for
        tiny tails, but it integrates a polynomial of degree ``2n`` that the
        grid resolves only for small ``n``: ReLU, ``n = 128``, is off by ``5e-5``
        relative that way, and by ``1e-16`` absolute this way.)
      finite: ``True`` where ``phi`` was finite at every quadrature node; where
        ``False`` (possible only under ``jit``, else an error is raised) every
        other field is ``NaN``.
    """

    coeffs: jax.Array
    energy: jax.Array
    share_m2: jax.Array
    share_var: jax.Array
    m2: jax.Array
    var: jax.Array
    tail: jax.Array
    finite: jax.Array


def hermite_coefficients(
    phi,
    n: int,
    sigma=1.0,
    *,
    params: Any = None,
    mu=0.0,
    rule: Optional[quadrature.Rule | str] = None,
) -> HermiteCoefficients:
    """Probabilists' Hermite coefficients ``h_k``, ``k < n``, of ``phi`` at ``X = mu + sigma Z``.

    .. math:: h_k = \\frac{E[\\phi(\\mu + \\sigma Z)\\, He_k(Z)]}{k!}, \\qquad
              e_k = k!\\, h_k^2, \\qquad \\sum_{k \\ge 0} e_k = E[\\phi(X)^2],

    with ``He_0 = 1``, ``He_1 = z``, ``He_{k+1} = z He_k - k He_{k-1}``. So
    ``h_0 = m1``, ``h_1 = sigma g1`` and ``sum_{k >= 2} e_k = eta`` in the
    notation of :func:`jaxsig.signature`.

    Args:
      phi: an activation: a registered name (``"gelu"``), an
        :class:`~jaxsig.activations.Activation`, or a callable ``phi(x)`` or
        ``phi(x, params)`` (elementwise).
      n: number of coefficients, a positive Python ``int`` (it fixes the output
        shape, so it is static under ``jit``).
      sigma: input scale(s) ``> 0``; any shape, broadcast with ``mu``.
      params: parameters for ``phi(x, params)`` (any pytree of arrays); the
        result is differentiable with respect to them, and to ``sigma`` and
        ``mu``.
      mu: input mean(s).
      rule: Gaussian quadrature: ``"composite"`` (default; kinks of ``phi`` are
        panel edges), ``"gauss_hermite"``, or a :mod:`jaxsig.quadrature` rule
        instance. Degree ``k`` needs the rule to resolve ``He_k(z) e^{-z^2/2}``,
        which reaches out to ``|z| ~ 2 sqrt(k)``.

    Returns:
      A :class:`HermiteCoefficients` in the working dtype (that of ``sigma``,
      ``mu`` and ``params``, at least float32). In float32, ``h_k`` underflows
      to ``0`` once ``sqrt(k!)`` exceeds the float32 range (``k >~ 56``); the
      energies do not.

    Raises:
      TypeError: ``n`` is not an ``int``, ``phi`` is not callable, or an input
        has an integer dtype.
      KeyError: ``phi`` names no registered activation (the message lists them).
      ValueError: ``n < 1``, ``sigma`` is not positive and finite, ``mu`` is not
        finite, ``phi`` returns another shape than its input (it must be
        elementwise) or is not finite at the nodes. Checks
        that need values are skipped under ``jit``/``vmap`` (see
        :attr:`HermiteCoefficients.finite`).

    Examples:
      >>> import jaxsig.theory.hermite as H
      >>> r = H.hermite_coefficients("relu", 4)    # 1/sqrt(2 pi), 1/2, 1/(2 sqrt(2 pi)), 0
      >>> [round(float(h), 6) for h in r.coeffs]
      [0.398942, 0.5, 0.199471, 0.0]
    """
    n = _check_n(n)
    act, rule, sigma, mu = prepare_inputs(phi, params, sigma, mu, rule)
    _check_domain(rule, n, sigma, mu)
    # Kinks as data (padded slots), as in jaxsig.moments: a new kink set reuses the program.
    kinks = jnp.asarray(quadrature.pad_slots(rule.kinks), sigma.dtype)
    out = _hermite(act.replace(kinks=()), dataclasses.replace(rule, kinks=()), n, sigma, mu, kinks)
    if is_concrete(out.finite) and not bool(np.all(np.asarray(out.finite))):
        raise ValueError(
            f"phi {act.name!r} returned non-finite values at some quadrature nodes. Make it "
            "overflow-safe (jax.nn.softplus, jnp.logaddexp, clipped exponents), or narrow the "
            "grid with rule=jaxsig.quadrature.Composite(x_max=...)."
        )
    return out


# --- Input checks ------------------------------------------------------------------


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(
            f"n must be a Python int (the number of coefficients, which fixes the output "
            f"shape), got {type(n).__name__}: {n!r}"
        )
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"n must be a positive number of coefficients, got {n=}; use n=1 for h_0 alone")
    return n


def _check_domain(rule, n, sigma, mu):
    if not (isinstance(rule, quadrature.Composite) and is_concrete(sigma, mu)):
        return
    s, m = np.asarray(sigma), np.asarray(mu)
    if s.size == 0:
        return
    # He_k(z)^2 e^{-z^2/2} has its mass within |z| <~ 2 sqrt(k) + 10.
    reach = np.abs(m) + s * (10.0 + 2.0 * math.sqrt(n))
    if np.any(reach > rule.x_max):
        warnings.warn(
            f"degree {n - 1} at sigma={s.max():.3g} reaches |x| ~ {reach.max():.3g}, beyond the "
            f"grid's x_max={rule.x_max:g}; the high coefficients lose accuracy. Use "
            f"rule=jaxsig.quadrature.Composite(x_max={2 * rule.x_max:g}) or larger.",
            stacklevel=3,
        )


# --- The computation ----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _inv_sqrt_factorials(n: int) -> np.ndarray:
    """``1 / sqrt(k!)``, ``k < n``, in float64 (exact to rounding via lgamma)."""
    return np.exp(-0.5 * np.array([math.lgamma(k + 1.0) for k in range(n)]))


def _safe_ratio(num, den, floor):
    # num / den, and 0 where den <= floor; the double where keeps the gradient
    # finite there.
    ok = den > floor
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


_VAR_FLOOR = 64.0  # Var <= (64 eps)^2 m2 counts as zero variance (see share_var)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _hermite(act, rule, n, sigma, mu, kinks) -> HermiteCoefficients:
    dtype = sigma.dtype
    if isinstance(rule, quadrature.Composite):
        # He_k(z) for k up to ~128 oscillates on the scale sigma / sqrt(k): panels of
        # 2 sigma_min (not the moments' 8) keep degree 127 at 1e-14.
        rule = dataclasses.replace(rule, gaussian_panel_sigmas=min(rule.gaussian_panel_sigmas, 2.0))
    x, w = gaussian.nodes(act, rule, sigma, mu, kinks)
    fx = jnp.asarray(act(x))
    if fx.shape != x.shape:
        raise ValueError(f"phi must be elementwise: phi(x) for x of shape {x.shape} returned shape {fx.shape}")
    s, m = sigma[..., None], mu[..., None]
    z = (x - m) / s
    w = jnp.broadcast_to(w, z.shape)
    fx = jnp.broadcast_to(fx, z.shape)
    finite = jnp.all(jnp.isfinite(fx), axis=-1)
    # 0 * inf would be NaN: non-finite values are zeroed here and the result is
    # marked (and NaN-ed) through `finite` instead.
    fx = jnp.where(jnp.isfinite(fx), fx, 0.0)
    # Where the density underflows to 0 the node contributes nothing, but
    # p_k(z) there could overflow and make 0 * inf = NaN (also in the tangents):
    # evaluate the recurrence at z = 0 instead (double where).
    live = w > 0
    z = jnp.where(live, z, 0.0)
    wf = w * fx

    def step(carry, k):
        p_prev, p = carry
        a = jnp.sum(wf * p, axis=-1)  # a_k = E[phi(X) p_k(Z)]
        p_next = (z * p - jnp.sqrt(k) * p_prev) / jnp.sqrt(k + 1.0)
        return (p, p_next), a

    ks = jnp.arange(n, dtype=dtype)
    _, a = jax.lax.scan(step, (jnp.zeros_like(z), jnp.ones_like(z)), ks)
    a = jnp.moveaxis(a, 0, -1)  # batch + (n,)

    energy = a * a
    m2 = jnp.sum(w * fx * fx, axis=-1)
    # Var = E[(phi - m1)^2] directly: no cancellation when m1^2 >> Var.
    centred = fx - a[..., :1]
    var = jnp.sum(w * centred * centred, axis=-1)
    tail = jnp.maximum(m2 - jnp.sum(energy, axis=-1), 0.0)
    coeffs = a * jnp.asarray(_inv_sqrt_factorials(n), dtype)
    # A variance at the rounding floor of m1 (|delta m1|^2 ~ eps^2 m2: a constant
    # phi) is no variance: its "shares" would be ratios of rounding errors.
    eps = jnp.finfo(dtype).eps
    degree_one_up = jnp.arange(n) >= 1
    share_var = _safe_ratio(energy, var[..., None], (_VAR_FLOOR * eps) ** 2 * m2[..., None])
    share_var = jnp.where(degree_one_up, share_var, 0.0)
    share_m2 = _safe_ratio(energy, m2[..., None], 0.0)

    nan = jnp.asarray(jnp.nan, dtype)

    def mask(v):
        return jnp.where(finite.reshape(finite.shape + (1,) * (v.ndim - finite.ndim)), v, nan)

    return HermiteCoefficients(
        coeffs=mask(coeffs),
        energy=mask(energy),
        share_m2=mask(share_m2),
        share_var=mask(share_var),
        m2=mask(m2),
        var=mask(var),
        tail=mask(tail),
        finite=finite,
    )

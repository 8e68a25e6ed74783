"""Mean-field quantities at a variance-preserving operating point: the network half of the targets.

A target such as ``"chi1 == 1"`` or ``"xi_c >= 30"`` is about the deep random
network ``h^{l+1} = W^l phi(h^l) + b^l`` (``W_ij ~ N(0, sW^2 / n)``,
``b_i ~ N(0, sb^2)``), initialised so that the pre-activation variance ``q``
stays fixed: the *operating point* ``(q, sb^2)`` (keywords ``q`` and
``sigma_b2`` of :func:`jaxsig.design`, default ``(1, 0)``) fixes

* ``sW^2 = (q - sb^2) / m2(sqrt q)``, so that ``V(q) = sW^2 m2(sqrt q) + sb^2 = q``;
* ``q_star = q`` (the fixed point, by construction);
* ``chi1 = sW^2 g2(sqrt q)^2``, the growth of perturbations per layer;
* ``dV = V'(q*) = sW^2 dm2/dq`` at ``q``, with ``dm2/dq = (dm2/dsigma) / (2 sqrt q)``:
  the fixed point attracts the variance when ``|dV| < 1``;
* ``xi_q = -1 / log|dV|``, the depth over which the variance settles;
* ``xi_c = -1 / log C'(c*)``, the depth over which correlations between two
  inputs settle: ``c* = 1`` and ``C'(c*) = chi1`` when ``chi1 <= 1``, else
  ``c*`` is the root in ``[0, 1)`` of the correlation map
  ``C(c) = (sW^2 E[phi(u) phi(v)] + sb^2) / q`` (:func:`jaxsig.dynamics.correlation_fixed_point`).

Depth scales are ``inf`` where their rate is ``1`` within rounding (``64 eps``),
as in :mod:`jaxsig.dynamics`.

The Gaussian Poincaré inequality bounds what can be asked for. At
``sb^2 = 0``, ``chi1 = q g2^2 / m2 = sigma^2 g2^2 / m2`` at ``sigma = sqrt q``,
and for a mean-zero activation ``m2 = Var phi(X) <= sigma^2 E[phi'(X)^2]``: so
``m1 == 0`` forces ``chi1 >= 1``, with equality only for linear ``phi``. With
``sb^2 > 0`` the bound is ``chi1 >= (q - sb^2) / q`` and the edge of chaos is
open to non-linear activations (see :func:`jaxsig.targets.poincare_note`).

Gradients. Everything but ``xi_c`` is a smooth function of the Gaussian sums of
:func:`jaxsig.moments`. For ``xi_c`` in the chaotic phase the root ``c*`` comes
from the library's safeguarded Newton solver with no gradient, and the
implicit function theorem gives it one: with ``G(c) = C(c) - c``,
``dc*/dtheta = -(dG/dtheta) / (C'(c*) - 1)``, implemented as the Newton
correction ``c = c* - G(c*) / sg(C'(c*) - 1)`` (``sg``: stop-gradient), whose
value is ``c*`` and whose derivative is exactly that. ``C'(c) = sW^2 q E[phi'(u)
phi'(v)] / q`` is then differentiated in ``c`` through the nodes of the polar
rule, which move with ``c`` and stay split at the rays where ``phi'`` jumps,
so kinked activations (whose ``phi''`` has Dirac masses) get it right too.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxsig.core import activations as _activations
from jaxsig.core._numerics import is_concrete
from jaxsig.core.polar import DEFAULT_RULE, PolarRule, polar_nodes, symmetric_products
from jaxsig.core.signature import moments
from jaxsig.theory.meanfield import correlation_fixed_point

__all__ = ["NETWORK", "OperatingPoint", "operating_point", "from_moments", "depth_scale", "check_operating_point"]

NETWORK = ("chi1", "q_star", "dV", "xi_q", "xi_c")
"""Mean-field components a target may name, at the operating point ``(q, sigma_b2)``."""


class OperatingPoint(NamedTuple):
    """Mean-field quantities of the variance-preserving initialisation for ``(q, sb^2)``.

    Attributes:
      sigma_w2: ``(q - sb^2) / m2(sqrt q)``.
      chi1: ``sW^2 g2(sqrt q)^2``.
      q_star: ``q``.
      dV: ``V'(q*) = sW^2 dm2/dq``.
      xi_q: ``-1 / log|dV|``.
      xi_c: ``-1 / log C'(c*)`` (``nan`` when not computed).
    """

    sigma_w2: jax.Array
    chi1: jax.Array
    q_star: jax.Array
    dV: jax.Array
    xi_q: jax.Array
    xi_c: jax.Array


def depth_scale(rate):
    """``-1 / log|rate|``: ``inf`` for ``|rate| >= 1 - 64 eps``, ``0`` at ``0`` (the rule of :mod:`jaxsig.dynamics`)."""
    r = jnp.abs(rate)
    inside = (r > 0) & (r < 1 - 64 * jnp.finfo(r.dtype).eps)
    # Double where: log(1) = 0 in the denominator would give NaN gradients outside.
    xi = -1.0 / jnp.log(jnp.where(inside, r, 0.5))
    return jnp.where(inside, xi, jnp.where(r > 0, jnp.inf, 0.0))


def _expectation(act, order, s, c, polar):
    """``E[f(u) f(v)]``, ``f = phi^(order)``, ``u, v ~ N(0, s^2)`` with correlation ``c``.

    The polar rule of :mod:`jaxsig.core.polar` without the Price-theorem JVP of
    :func:`jaxsig.kernels.dual`: derivatives in ``c`` move the nodes (exact for
    kinks at 0, whose rays the rule follows).
    """
    kinks = tuple(sorted({float(k) for k in act.kinks if float(k) != 0.0}))
    z1, z2, w, sn = polar_nodes(s, s, c, kinks, kinks, polar)
    u = s * z1
    v = s * (c * z1 + sn * z2)
    if order == 0:
        f = act
    else:

        def f(x):
            return jax.jvp(act, (x,), (jnp.ones_like(x),))[1]

    return jnp.sum(w * symmetric_products(f, u, v))


def _xi_c(act, q, sw2, sb2, chi1, polar):
    """``xi_c`` with implicit-function gradients (see the module docstring)."""
    sg = jax.lax.stop_gradient
    root = correlation_fixed_point(sg(act), sg(sw2), sg(sb2), q_star=sg(q), polar=polar)
    chaotic = root.c_star < 1
    s = jnp.sqrt(q)
    one = jnp.ones_like(q)
    c0 = sg(root.c_star)
    # Normalised by the 2-D second moment, as the solver is, so that G(c*) = 0 to rounding.
    norm = sw2 * _expectation(act, 0, s, one, polar) + sb2
    g = (sw2 * _expectation(act, 0, s, c0, polar) + sb2) / norm - c0
    # Double where: in the ordered phase C'(1) - 1 may vanish; that branch is not used.
    d = jnp.where(chaotic, sg(root.slope) - 1.0, -1.0)
    c = c0 - g / d
    slope = sw2 * q * _expectation(act, 1, s, jnp.where(chaotic, c, 0.5 * one), polar) / norm
    slope = slope + sg(root.slope - slope)  # the solver's value, the implicit gradient
    return jnp.where(chaotic, depth_scale(slope), depth_scale(chi1))


def from_moments(act, m2, g2, dm2_dsigma, q, sigma_b2, *, xi_c: bool = True, polar=DEFAULT_RULE) -> OperatingPoint:
    """The operating point from the moments of ``act`` at ``sigma = sqrt(q)``.

    Args:
      act: the :class:`~jaxsig.activations.Prepared` activation (for ``xi_c``).
      m2, g2, dm2_dsigma: its :class:`~jaxsig.Moments` fields at ``sqrt(q)``.
      q, sigma_b2: the operating point (``q > sigma_b2 >= 0``).
      xi_c: compute ``xi_c`` (a 2-D quadrature and a root solve); ``nan`` otherwise.
      polar: 2-D rule for ``xi_c``.
    """
    sw2 = (q - sigma_b2) / m2
    chi1 = sw2 * g2 * g2
    dv = sw2 * dm2_dsigma / (2.0 * jnp.sqrt(q))
    xc = _xi_c(act, q, sw2, sigma_b2, chi1, polar) if xi_c else jnp.full_like(chi1, jnp.nan)
    return OperatingPoint(sw2, chi1, q + jnp.zeros_like(chi1), dv, depth_scale(dv), xc)


def operating_point(
    phi, q=1.0, sigma_b2=0.0, *, params: Any = None, rule=None, polar: PolarRule = DEFAULT_RULE
) -> OperatingPoint:
    """Mean-field quantities of the variance-preserving initialisation of ``phi`` at ``(q, sb^2)``.

    ``sW^2 = (q - sb^2) / m2(sqrt q)``, ``chi1 = sW^2 g2(sqrt q)^2``, ``q* = q``,
    ``dV = sW^2 dm2/dq``, ``xi_q = -1/log|dV|``, ``xi_c = -1/log C'(c*)``; see the
    module docstring. Differentiable in ``params``, ``q`` and ``sigma_b2``; scalar
    ``q`` and ``sigma_b2`` (``vmap`` for several).

    Raises:
      ValueError: ``q <= sigma_b2`` or ``sigma_b2 < 0`` (when concrete).

    Examples:
      >>> import jaxsig
      >>> op = jaxsig.targets.operating_point("relu", 1.0, 0.5)
      >>> float(op.sigma_w2), float(op.chi1)     # 2 (q - sb2) / q, (q - sb2) / q
      (1.0, 0.5)
    """
    check_operating_point(q, sigma_b2)
    m = moments(phi, jnp.sqrt(jnp.asarray(q)), params=params, rule=rule)
    dtype = m.m2.dtype
    act = _activations.prepare(phi, params, dtype=dtype)
    q, sb2 = jnp.asarray(q, dtype), jnp.asarray(sigma_b2, dtype)
    return from_moments(act, m.m2, m.g2, m.dm2_dsigma, q, sb2, polar=polar)


def check_operating_point(q, sigma_b2) -> None:
    """Raise ``ValueError`` unless ``q > sigma_b2 >= 0`` are finite (no-op for tracers)."""
    if not is_concrete(q, sigma_b2):
        return
    # Python floats and math, not jnp: under an outer jit, jnp would make tracers of them.
    q, sb2 = float(q), float(sigma_b2)
    if not (math.isfinite(q) and q > 0):
        raise ValueError(f"q (the pre-activation variance kept fixed) must be positive and finite, got {q=}")
    if not (math.isfinite(sb2) and sb2 >= 0):
        raise ValueError(f"sigma_b2 (the bias variance) must be non-negative and finite, got {sigma_b2=}")
    if sb2 >= q:
        raise ValueError(
            f"q must exceed sigma_b2 (the bias alone contributes sigma_b2 to the variance), got {q=}, {sigma_b2=}; "
            "raise q or lower sigma_b2"
        )

"""The stability region in the ``(dm2/dsigma, g2)`` plane: where a family of activations operates.

Operating point
---------------
A deep random network (:mod:`jaxsig.dynamics`) with bias variance ``sb^2 = 0``
and the *variance-preserving* weight variance ``sW^2 = q / m2(sigma)``,
``sigma = sqrt(q)``, keeps the pre-activation variance ``q`` fixed:
``V(q) = sW^2 m2(sqrt q) = q``. Whether that fixed point is usable is decided by
two numbers of the signature at ``sigma``:

.. math:: V'(q) = \\sigma_w^2 \\frac{dm_2}{dq} = \\frac{q}{m_2} \\frac{m_2'}{2\\sigma}
          = \\frac{\\sigma\\, m_2'}{2\\, m_2}, \\qquad
          \\chi_1 = \\sigma_w^2 g_2^2 = \\frac{q\\, g_2^2}{m_2},

with ``m2' = dm2/dsigma`` (``dm2/dq = m2' / (2 sigma)``). The fixed point attracts the
variance when ``V' < 1``; perturbations shrink (ordered) when ``chi1 < 1`` and grow
(chaotic) when ``chi1 > 1``.

Boundaries in these coordinates
-------------------------------
An activation is placed at ``(m2', g2)`` (both at ``sigma``). Solving the two
conditions for the coordinates:

* ``V'(q) = 1``  <=>  ``m2' = 2 sigma m2 / q = 2 m2 / sigma``: the fixed point
  attracts iff the point lies left of this value;
* ``chi1 = 1``  <=>  ``g2 = sqrt(m2 / q) = sqrt(m2) / sigma``: ordered iff the
  point lies below it.

Both boundaries depend on the activation's own ``m2``, so along a family they
are curves, one boundary point per member, at the member's height (``V' = 1``)
and abscissa (``chi1 = 1``); the family's path crosses a boundary curve exactly
where that member is critical. In the coordinates of the *rescaled* activation
``sqrt(sW^2) phi``, which the variance-preserving network actually applies
(``(sW^2 m2', sW g2)``, whose ``m2`` is ``q``), the boundaries are the fixed lines
``sW^2 m2' = 2 sigma`` and ``sW g2 = 1``. By the Gaussian Poincaré inequality
``Var phi <= sigma^2 g2^2``, ``chi1 >= 1 - m1^2 / m2``: an activation with ``m1 = 0``
(odd ones) is never ordered at this operating point.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import quadrature
from jaxsig.core._numerics import is_concrete, safe_div, safe_sqrt
from jaxsig.core._validate import check_range, working_dtype
from jaxsig.core.gaussian import expectations

__all__ = ["StabilityPlane", "VARIANCE_PHASES", "CHI_PHASES", "stability_plane"]

VARIANCE_PHASES = ("attracting", "marginal", "repelling")
"""Names of :attr:`StabilityPlane.variance_phase` (``V' < 1``, ``= 1``, ``> 1`` within ``tol``)."""

CHI_PHASES = ("ordered", "critical", "chaotic")
"""Names of :attr:`StabilityPlane.phase` (``chi1 < 1``, ``= 1``, ``> 1`` within ``tol``), as
:data:`jaxsig.dynamics.PHASES`."""


class StabilityPlane(NamedTuple):
    """A family placed in the ``(dm2/dsigma, g2)`` plane at the variance-preserving point.

    Every field but ``sigma`` and ``q`` has the shape of ``values``.

    Attributes:
      values: the swept parameter values.
      sigma: ``sqrt(q)``, the input scale of the operating point.
      q: the preserved variance.
      m2: ``E[phi(sigma Z)^2]``.
      dm2_dsigma: ``d m2 / d sigma`` (the x coordinate).
      g2: ``sqrt(E[phi'(sigma Z)^2])`` (the y coordinate).
      sigma_w2: the variance-preserving ``sW^2 = q / m2``.
      variance_slope: ``V'(q) = sigma m2' / (2 m2)``.
      chi1: ``q g2^2 / m2``.
      dm2_dsigma_critical: the ``V' = 1`` boundary at this member, ``2 sigma m2 / q``.
      g2_critical: the ``chi1 = 1`` boundary at this member, ``sqrt(m2 / q)``.
      variance_phase: index into :data:`VARIANCE_PHASES`.
      phase: index into :data:`CHI_PHASES`.
    """

    values: jax.Array
    sigma: jax.Array
    q: jax.Array
    m2: jax.Array
    dm2_dsigma: jax.Array
    g2: jax.Array
    sigma_w2: jax.Array
    variance_slope: jax.Array
    chi1: jax.Array
    dm2_dsigma_critical: jax.Array
    g2_critical: jax.Array
    variance_phase: jax.Array
    phase: jax.Array


def _scalar_param_names(params) -> list[str]:
    if not isinstance(params, dict):
        return []
    return [k for k, v in params.items() if np.ndim(v) == 0]


def _resolve(phi, params, param, values, q):
    act = _activations.as_activation(phi, params)
    names = _scalar_param_names(act.params)
    if not isinstance(param, str) or param not in names:
        valid = ", ".join(names) if names else "none: it has no scalar parameters; choose a family such as 'swish_beta'"
        raise ValueError(f"param must name a scalar parameter of {act.name!r}, got {param=}; valid names: {valid}")
    dtype = working_dtype({"values": values, "q": q}, act.params)
    return _activations.prepare(act, None, dtype=dtype), dtype


def _phase(v, tol):
    return jnp.where(v < 1 - tol, 0, jnp.where(v > 1 + tol, 2, 1)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _plane(rule, param, act, values, q, tol):
    sigma = jnp.sqrt(q)

    def one(v):
        member = act.replace(params={**act.params, param: v})
        r = expectations(member, rule, sigma, jnp.zeros_like(sigma))
        return r.m2, r.dm2_dsigma, r.g2

    m2, dm2, g2 = jax.vmap(one)(values.ravel())
    m2, dm2, g2 = (a.reshape(values.shape) for a in (m2, dm2, g2))
    # m2 = 0 (phi = 0 almost surely): no weight variance preserves q; NaN below.
    sw2 = safe_div(q, m2, jnp.nan)
    slope = sw2 * dm2 / (2.0 * sigma)
    chi1 = sw2 * g2 * g2
    return StabilityPlane(
        values,
        sigma,
        q,
        m2,
        dm2,
        g2,
        sw2,
        slope,
        chi1,
        2.0 * sigma * m2 / q,
        safe_sqrt(m2 / q),
        _phase(slope, tol),
        _phase(chi1, tol),
    )


def stability_plane(
    phi, param: str, values, *, q=1.0, params: Any = None, rule=None, tol: Optional[float] = None
) -> StabilityPlane:
    """Place the members of a family in the ``(dm2/dsigma, g2)`` plane, with the stability boundaries.

    For each value ``v`` of the parameter ``param`` (the others at ``params`` or the
    defaults), at ``sigma = sqrt(q)`` with ``sW^2 = q / m2`` and ``sb^2 = 0``
    (module notes):

    * coordinates ``(m2', g2)`` from the Gaussian sums of :func:`jaxsig.moments`;
    * ``V'(q) = sigma m2' / (2 m2)`` and ``chi1 = q g2^2 / m2``, equal to
      :func:`jaxsig.dynamics.fixed_point`'s ``slope`` and ``chi1`` at
      ``(sW^2, 0)`` from ``q0 = q``;
    * the boundaries through each member, ``m2' = 2 sigma m2 / q`` (``V' = 1``) and
      ``g2 = sqrt(m2 / q)`` (``chi1 = 1``).

    Args:
      phi: a parametrised activation: a name (``"swish_beta"``, ``"elu"``, a family
        such as ``"scaled_elu"``), an :class:`~jaxsig.Activation` or a
        :class:`jaxsig.families.Family`, whose ``params`` is a dict.
      param: the name of the scalar parameter to sweep.
      values: its values, any shape (every output field but ``sigma``, ``q`` has it).
      q: the preserved variance (``> 0``; ``sigma = sqrt(q)`` must lie within the
        rule, ``sigma <= 51`` for the default).
      params: the other parameters (default: the activation's own).
      rule: 1-D Gaussian quadrature (see :func:`jaxsig.moments`).
      tol: tolerance on ``|V' - 1|`` and ``|chi1 - 1|`` for the marginal and
        critical phases; default ``max(1e-6, 64 eps)`` of the working dtype.

    Returns:
      :class:`StabilityPlane`; differentiable in ``values``, ``q`` and ``params``
      (NaN where ``m2 = 0``).

    Examples:
      >>> import jaxsig.theory.stability as S
      >>> p = S.stability_plane("leaky_relu", "negative_slope", [0.0, 0.5])
      >>> [round(float(v), 6) for v in p.variance_slope], [round(float(v), 6) for v in p.chi1]
      ([1.0, 1.0], [1.0, 1.0])
    """
    act, dtype = _resolve(phi, params, param, values, q)
    check_range("values", values, hint=f"values of the parameter {param!r}")
    check_range("q", q, low=0.0, strict=True, hint="the variance the network preserves")
    rule = quadrature.get_rule(rule).with_kinks(act.kinks)
    if is_concrete(q) and np.ndim(q) != 0:
        raise ValueError(f"q must be a scalar, got shape {np.shape(q)}; use jax.vmap over q")
    if is_concrete(q) and isinstance(rule, quadrature.Composite) and float(q) > rule.sigma_max**2:
        raise ValueError(
            f"q must be at most {rule.sigma_max**2:g} (sigma <= {rule.sigma_max:g}, the rule's range), got {q=}; "
            "pass a wider rule, e.g. rule=jaxsig.quadrature.Composite(x_max=4096)"
        )
    if tol is None:
        tol = max(1e-6, 64 * float(jnp.finfo(dtype).eps))
    values = jnp.asarray(values, dtype)
    return _plane(rule, param, act, values, jnp.asarray(q, dtype), jnp.asarray(tol, dtype))

"""The nine-dimensional integral signature of an activation.

For ``X = mu + sigma Z``, ``Z ~ N(0, 1)``, the signature of ``phi`` is

* ``m1 = E[phi(X)]``, ``g1 = E[phi'(X)]``, ``g2 = sqrt(E[phi'(X)^2])``,
  ``m2 = E[phi(X)^2]``, ``eta = m2 - m1^2 - sigma^2 g1^2``
  (computed as ``E[(phi(X) - m1 - g1 (X - mu))^2]``, which is the same number
  by Stein's identity, is ``>= 0`` by construction and has no cancellation);
* ``alpha_plus = lim_{x->+inf} phi(x)/x``, ``alpha_minus = lim_{x->-inf} phi(x)/x``;
* ``tv = TV(phi')``, jumps included;
* ``c = int_0^inf |phi - alpha_+ x - beta_+| dx + int_-inf^0 |phi - alpha_- x - beta_-| dx``
  with intercepts ``beta_+- = lim (phi(x) - alpha_+- x)``.

See ``docs/spec.md`` for the contract. How each is computed:

* The Gaussian statistics are weighted sums over the nodes of a quadrature rule
  (:mod:`jaxsig.quadrature`); ``phi`` and ``phi'`` are evaluated once per node
  with one forward-mode pass and shared by every ``(sigma, mu)``.
* Slopes and intercepts are limits along the ladder ``x = +-2**k``
  (``k <= 48``) with a divergence test (:mod:`jaxsig.limits`).
* ``tv`` is the partition sum ``sum |phi'(x_{i+1}) - phi'(x_i)|`` over a sorted
  partition of R that has points within ``2**-40`` of every kink (so jumps are
  counted in full); within each interval where ``phi''`` changes sign the
  extremum of ``phi'`` is located on the cubic Hermite interpolant of
  ``(phi', phi'')``, so the sum is exact on monotone pieces and accurate to
  ``O(h^4)`` at extrema. Tails are tested on dyadic shells and extrapolated.
* ``c`` and the signed area ``b`` are Gauss–Legendre line integrals over the
  same grid, with dyadic tail shells tested for convergence.

A divergent component is ``inf`` (with its sign for slopes). A slope or intercept
whose limit does not exist (``x sin x``) is ``NaN``; ``c`` is then ``inf``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import compensation, functionals, gaussian, limits, quadrature
from jaxsig.core import kinks as _kinks
from jaxsig.core._checks import (
    check_continuous,
    check_domain,
    check_elementwise,
    check_finite,
    warn_approximate,
    warn_undeclared_kinks,
    warn_undetermined_areas,
    warn_unresolved,
)
from jaxsig.core._compile import stage
from jaxsig.core._numerics import derivatives, is_concrete, unit_scale
from jaxsig.core._validate import check_range, working_dtype
from jaxsig.core.gaussian import Moments

__all__ = [
    "Signature",
    "SignatureStatus",
    "Auxiliary",
    "Moments",
    "signature",
    "signature_with_aux",
    "moments",
    "FIELDS",
    "AUX_FIELDS",
    "GROWTH_CLASSES",
]

GROWTH_CLASSES = ("A0", "A1", "A>1")
"""Names of the growth classes, indexed by :attr:`Auxiliary.growth`."""


class Signature(NamedTuple):
    """The integral signature ``S_sigma(phi)``: a pytree of nine arrays.

    All fields share the broadcast shape of ``sigma`` and ``mu``; the
    sigma-independent ones (slopes, ``tv``, ``c``) are broadcast to it.

    Attributes:
      m1: ``E[phi(X)]``, the mean output (bias drift).
      g1: ``E[phi'(X)]``, the mean gain (``Cov(phi(X), X) = sigma^2 g1``).
      g2: ``sqrt(E[phi'(X)^2])``, the RMS derivative gain.
      m2: ``E[phi(X)^2]``, the second moment (variance map).
      eta: ``m2 - m1^2 - sigma^2 g1^2 >= 0``, the nonlinear energy.
      alpha_plus: ``lim phi(x)/x`` as ``x -> +inf`` (may be ``+-inf``).
      alpha_minus: ``lim phi(x)/x`` as ``x -> -inf`` (may be ``+-inf``).
      tv: total variation of ``phi'`` over R, jumps included (may be ``inf``).
      c: tail-compensated integral ``int |phi - alpha x - beta| dx`` (may be ``inf``).
    """

    m1: jax.Array
    g1: jax.Array
    g2: jax.Array
    m2: jax.Array
    eta: jax.Array
    alpha_plus: jax.Array
    alpha_minus: jax.Array
    tv: jax.Array
    c: jax.Array


class SignatureStatus(NamedTuple):
    """How each signature component was decided: one :class:`~jaxsig.core.limits.Status`
    code (int32) per field of :class:`Signature`, same shapes.

    ``limits.Status(int(aux.status.c)).message`` says why ``c`` is what it is;
    :func:`jaxsig.core.limits.describe` does it for arrays.
    """

    m1: jax.Array
    g1: jax.Array
    g2: jax.Array
    m2: jax.Array
    eta: jax.Array
    alpha_plus: jax.Array
    alpha_minus: jax.Array
    tv: jax.Array
    c: jax.Array


class Auxiliary(NamedTuple):
    """Auxiliary quantities of the specification (docs/spec.md), same shape as the :class:`Signature` fields.

    Attributes:
      g4: ``(E[phi'(X)^4])^(1/4)``, the kernel-curvature gain.
      b: signed area ``b_plus + b_minus``.
      b_plus: ``int_0^inf (phi - alpha_+ x - beta_+) dx``.
      b_minus: ``int_-inf^0 (phi - alpha_- x - beta_-) dx``.
      beta_plus: intercept ``lim_{x->+inf} (phi(x) - alpha_+ x)``.
      beta_minus: intercept ``lim_{x->-inf} (phi(x) - alpha_- x)``.
      dm2_dsigma: ``d m2 / d sigma = E[phi(X)^2 (Z^2 - 1)] / sigma``.
      growth: growth class index into :data:`GROWTH_CLASSES`: ``0`` (A0,
        bounded: both slopes 0 with finite intercepts, or ``sup |phi|`` settled
        along the ladder where there is no limit, as for ``sin x``), ``2`` (A>1:
        a slope is infinite, or ``sup |phi(x)/x|`` grows along the ladder, as for
        ``x^2 sin x``), else ``1`` (A1).
      finite: ``True`` where ``phi`` and ``phi'`` were finite at every node of
        the Gaussian rule. Under ``jit`` no error can be raised; where this is
        ``False`` the Gaussian statistics are ``NaN``.
      status: a :class:`SignatureStatus`: per component, how it was decided
        (converged, extrapolated, divergent, no limit, non-finite input).
    """

    g4: jax.Array
    b: jax.Array
    b_plus: jax.Array
    b_minus: jax.Array
    beta_plus: jax.Array
    beta_minus: jax.Array
    dm2_dsigma: jax.Array
    growth: jax.Array
    finite: jax.Array
    status: Optional[SignatureStatus] = None


FIELDS = Signature._fields
AUX_FIELDS = Auxiliary._fields[:-1]  # the arrays; ``status`` is a record of its own


def signature(
    phi,
    sigma=1.0,
    *,
    params: Any = None,
    mu=0.0,
    rule: Optional[quadrature.Rule | str] = None,
    with_aux: bool = False,
) -> Signature:
    """Compute the integral signature of ``phi`` at input scale ``sigma`` and mean ``mu``.

    For ``X = mu + sigma Z``: ``m1 = E[phi(X)]``, ``g1 = E[phi'(X)]``,
    ``g2 = sqrt(E[phi'(X)^2])``, ``m2 = E[phi(X)^2]``,
    ``eta = m2 - m1^2 - sigma^2 g1^2``, ``alpha_+- = lim_{x->+-inf} phi(x)/x``,
    ``tv = TV(phi')`` and ``c = int |phi - alpha x - beta| dx`` (module docstring).

    Args:
      phi: an activation: a registered name (``"gelu"``), an
        :class:`~jaxsig.activations.Activation`, or a callable ``phi(x)`` or
        ``phi(x, params)``. It must be elementwise; define it once and reuse it,
        since the compiled computation is cached per function object.
      sigma: input scale(s) ``> 0``; any shape, broadcast with ``mu``.
      params: parameters for ``phi(x, params)`` (any pytree of arrays); overrides
        an Activation's defaults. The result is differentiable with respect to
        them, and to ``sigma`` and ``mu``.
      mu: input mean(s).
      rule: Gaussian quadrature: ``"composite"`` (default, accurate to ~1e-14
        for ``sigma in [0.05, 20]``, ``|mu| <= 2``), ``"gauss_hermite"``, or a
        :mod:`jaxsig.quadrature` rule instance.
      with_aux: deprecated; use :func:`signature_with_aux`, whose return type
        does not depend on a flag.

    Returns:
      A :class:`Signature`, each field of shape ``broadcast(sigma, mu).shape``
      and of the working dtype (that of ``sigma``, ``mu`` and ``params``, at
      least float32).

    Raises:
      TypeError: ``phi`` is not callable, or an input is not floating point
        (the message names it).
      ValueError: ``sigma`` is not positive and finite, ``mu`` is not finite,
        ``phi`` is not elementwise, or returns non-finite values at the nodes.
        Checks that need values are skipped under ``jit``/``vmap``; see
        :attr:`Auxiliary.finite` and :attr:`Auxiliary.status`.

    Examples:
      >>> import jaxsig
      >>> s = jaxsig.signature("relu", 1.0)
      >>> float(s.g1), float(s.tv), float(s.c)
      (0.5, 1.0, 0.0)
    """
    if with_aux:
        warnings.warn(
            "signature(..., with_aux=True) is deprecated: use jaxsig.signature_with_aux(...), "
            "which always returns (Signature, Auxiliary)",
            DeprecationWarning,
            stacklevel=2,
        )
        return signature_with_aux(phi, sigma, params=params, mu=mu, rule=rule)
    return signature_with_aux(phi, sigma, params=params, mu=mu, rule=rule)[0]


def signature_with_aux(
    phi,
    sigma=1.0,
    *,
    params: Any = None,
    mu=0.0,
    rule: Optional[quadrature.Rule | str] = None,
) -> tuple[Signature, Auxiliary]:
    """:func:`signature` and the :class:`Auxiliary` quantities: always a pair.

    The auxiliary quantities are ``g4 = E[phi'(X)^4]^(1/4)``, the signed areas
    ``b_+- = int (phi - alpha_+- x - beta_+-) dx`` over each half-line and their
    sum ``b``, the intercepts ``beta_+-``, ``dm2/dsigma``, the growth class, the
    finiteness flag and, per component, its :class:`SignatureStatus`.

    Args, errors: those of :func:`signature`.

    Examples:
      >>> import jaxsig
      >>> s, aux = jaxsig.signature_with_aux("tanh", 1.0)
      >>> float(aux.beta_plus), int(aux.growth)
      (1.0, 0)
    """
    act, rule, sigma, mu = prepare_inputs(phi, params, sigma, mu, rule)
    shape, (sigma, mu) = sigma.shape, _bucketed(sigma, mu)
    free, bare = _kink_free(rule), act.replace(kinks=())
    # Kinks travel as data, with the breakpoints that move with the parameters
    # (under jit as well). The line takes at least two slots, so that every
    # activation with up to two kinks (ReLU, ReLU6, hard tanh, a user's) shares
    # the compiled line functionals; the Gaussian grid takes just the kinks
    # there are, as in moments().
    moving = act.breakpoints()
    line = quadrature.cut_line(free, sigma.dtype, _kink_data(rule, moving, sigma.dtype, minimum=2))
    grid = _grid(free, sigma, mu, _kink_data(rule, moving, sigma.dtype))
    on_line, at_nodes = _sample(bare, grid.points, line)
    (gauss, g_status, error), (undeclared, step) = _gaussian(free, sigma, mu, grid, at_nodes, line, on_line)
    sig, aux = _combine(gauss, g_status, _line_functionals(line, on_line))
    sig, aux, error = _unpad((sig, aux, error), shape)
    check_finite(act, rule, aux.finite, sigma.dtype)
    unresolved = warn_unresolved(act, error)
    steep = check_continuous(act, *step[1:])
    found = warn_undeclared_kinks(act, *undeclared) or steep
    # _check_domain has already warned where the grid cannot resolve the density.
    narrow = is_concrete(sigma, mu) and not bool(np.all(np.asarray(_resolves(rule, sigma, mu))))
    warn_approximate(act, aux.status, skip_gaussian=found or unresolved or narrow)
    warn_undetermined_areas(act, aux)
    return sig, aux


def moments(phi, sigma=1.0, *, params: Any = None, mu=0.0, rule=None) -> Moments:
    """Gaussian statistics of ``phi`` at ``X = mu + sigma Z``: the first five
    signature components plus ``g4`` and ``dm2/dsigma``.

    Computes, with the same rule and accuracy as :func:`signature`,
    ``m1 = E[phi(X)]``, ``g1 = E[phi'(X)]``, ``g2 = sqrt(E[phi'(X)^2])``,
    ``m2 = E[phi(X)^2]``, ``eta = m2 - m1^2 - sigma^2 g1^2``,
    ``g4 = E[phi'(X)^4]^(1/4)`` and ``dm2/dsigma = E[phi(X)^2 (Z^2 - 1)] / sigma``,
    but skips the slopes, ``tv`` and ``c`` (no second derivatives, no ladders):
    use it inside fixed-point solvers and training losses.

    Args and errors are those of :func:`signature`.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.moments("relu", 2.0).m2), 12)
      2.0
    """
    act, rule, sigma, mu = prepare_inputs(phi, params, sigma, mu, rule)
    shape, (sigma, mu) = sigma.shape, _bucketed(sigma, mu)
    # Kinks travel as data (padded slots): a new kink set, or a new activation
    # object around the same function, reuses the compiled program.
    kinks = _kink_data(rule, act.breakpoints(), sigma.dtype)
    out, error = _unpad(_moments(act.replace(kinks=()), _kink_free(rule), sigma, mu, kinks), shape)
    check_finite(act, rule, out.finite, sigma.dtype)
    warn_unresolved(act, error)
    return out


def _kink_data(rule, breakpoints, dtype, minimum=0):
    """The rule's kinks as data, in at least ``minimum`` slots padded with ``NaN``
    (:func:`jaxsig.quadrature.pad_slots`), then the activation's moving ``breakpoints``."""
    return gaussian.with_breakpoints(quadrature.pad_slots(rule.kinks, minimum), breakpoints, dtype)


def _kink_free(rule):
    return dataclasses.replace(rule, kinks=())


def _resolves(rule, sigma, mu):
    return rule.resolves(sigma, mu) if isinstance(rule, quadrature.Composite) else True


def _bucketed(sigma, mu):
    """Concrete ``sigma``, ``mu`` flattened and padded (with their last entry) to
    a power-of-two size, so that eager calls with 5, 6, 7 or 8 values share one
    compiled program; traced inputs (under the caller's ``jit``) are left alone."""
    if not is_concrete(sigma, mu):
        return sigma, mu
    n = max(1, sigma.size)
    size = 1 << (n - 1).bit_length()
    # (In NumPy: concrete values, and no small XLA programs to compile on a first call.)
    return tuple(jnp.asarray(np.pad(np.asarray(v).reshape(-1), (0, size - v.size), mode="edge")) for v in (sigma, mu))


def _unpad(tree, shape):
    """Undo :func:`_bucketed` on every array of ``tree`` (a no-op when it did nothing)."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves or leaves[0].shape == shape:
        return tree
    return _slice_to(tree, shape)


@stage(static_argnums=(1,))
def _slice_to(tree, shape):
    n = math.prod(shape)
    return jax.tree_util.tree_map(lambda v: v[:n].reshape(shape), tree)


# --- Input preparation and checks --------------------------------------------


def prepare_inputs(phi, params, sigma, mu, rule):
    """The prepared activation, its rule, and ``sigma``, ``mu`` broadcast in the
    working dtype: what every Gaussian entry point (:func:`signature`,
    :func:`moments`, :func:`jaxsig.theory.hermite.hermite_coefficients`) checks
    once, with the errors and warnings documented in :func:`signature`."""
    dtype = working_dtype({"sigma": sigma, "mu": mu}, _activations.as_activation(phi, params).params)
    act = _activations.prepare(phi, params, dtype=dtype)
    # The rule carries the activation's fixed kinks; breakpoints that move with
    # the parameters (act.breakpoints()) are data that each computation adds.
    rule = quadrature.get_rule(rule).with_kinks(act.kinks)
    sigma = jnp.asarray(sigma, dtype)
    mu = jnp.asarray(mu, dtype)
    check_range("sigma", sigma, low=0.0, strict=True, hint="the input scale: pre-activations are mu + sigma * Z")
    check_range("mu", mu)
    shape = jnp.broadcast_shapes(sigma.shape, mu.shape)
    check_elementwise(act, dtype)
    check_domain(rule, sigma, mu)
    return act, rule, jnp.broadcast_to(sigma, shape), jnp.broadcast_to(mu, shape)


# --- The computation -----------------------------------------------------------


class _OnLine(NamedTuple):
    """What the line functionals need from ``phi``: its values on the :class:`~jaxsig.quadrature.Line`.

    Attributes:
      f0, f1, f2: ``phi``, ``phi'``, ``phi''`` at ``line.x``.
      peak: per interval of ``line.x``, the extremum of ``phi'`` inside it
        (Newton-polished) where ``phi''`` changes sign, else ``phi'`` at its left end.
      capped: more turning intervals than the polished slots.
      unit: a power of two near the scale of ``phi``
        (:func:`jaxsig.core._numerics.unit_scale`; 1 for every registered
        activation). The limits' tolerances and the jump tests are absolute
        below it, so that the slopes, ``tv`` and ``c`` of ``a phi`` are ``a``
        times those of ``phi`` (``1e-14 softplus``, ``1e9 sin x``).
    """

    f0: jax.Array
    f1: jax.Array
    f2: jax.Array
    peak: jax.Array
    capped: jax.Array
    unit: jax.Array


class _LineFunctionals(NamedTuple):
    """The sigma-free components: slopes and intercepts, ``tv``, ``c``, the signed
    areas and the growth class, each scalar, with their statuses."""

    slopes: functionals.Slopes
    tv: jax.Array
    tv_status: jax.Array
    c: jax.Array
    b: jax.Array
    b_plus: jax.Array
    b_minus: jax.Array
    c_status: jax.Array
    growth: jax.Array


# The signature is computed in compiled stages, each compiled only as often as
# what it depends on changes:
#   cut_line           the line with its kinks (data)                   per grid, dtype, kink slots
#   _grid              the Gaussian nodes, weights and kink ladders     per grid, sigma shape, kink slots
#   _sample            phi on the line and the grid, extrema of phi'    per activation (Gauss-Hermite: and sigma shape)
#   _gaussian          the Gaussian statistics and their checks         per grid, sigma shape, kink slots
#   _line_functionals  slopes, tv, c, growth (the heavy part)           per grid, dtype, kink slots
#   _combine           the result pytrees, broadcast to sigma           per sigma shape
# so that what is compiled per activation is its evaluation alone. moments() is
# the first four in one program per activation (_moments): small enough that one
# compile is cheaper than three.


@stage(static_argnums=(0,))
def _grid(rule, sigma, mu, kinks) -> gaussian.Grid:
    return gaussian.grid(rule, sigma, mu, kinks)


@stage
def _sample(act, points: gaussian.Points, line):
    """``phi`` where the signature needs it: on the line (with the extrema of
    ``phi'``, Newton-polished) and on the Gaussian grid."""
    x = line.x
    f0, f1, f2 = derivatives(act, x, 2)
    on_line = _OnLine(f0, f1, f2, *functionals.extrema_of_slope(act, line, x, f1, f2), unit_scale(x, f1))
    return on_line, gaussian.sample(act, points)


@stage(static_argnums=(0,))
def _gaussian(rule, sigma, mu, grid, at_nodes, line, on_line):
    """The Gaussian statistics with their statuses and resolution bound, and the
    jumps of ``phi'`` and ``phi`` that the line shows where no kink was declared
    (within the density's reach, which the statuses account for)."""
    # A jump of phi' at no declared kink costs the Gaussian sums that reach it
    # their order; a jump of phi (or a transition narrower than the line) more.
    undeclared = _kinks.undeclared_kinks(line, line.x, on_line.f1, on_line.f2, sigma, mu, on_line.unit)
    step = _kinks.steps(line, line.x, on_line.f0, on_line.f1, sigma, mu, on_line.unit)
    return _gaussian_part(rule, sigma, mu, grid, at_nodes, undeclared=undeclared[0] | step[0]), (undeclared, step)


@stage(optimize=False)
def _line_functionals(line, on: _OnLine) -> _LineFunctionals:
    x, f0, dtype, unit = line.x, on.f0, line.x.dtype, on.unit
    slopes = functionals.slopes(line, x, f0, dtype, unit)
    tv, tv_status = functionals.total_variation(line, x, f0, on.f1, on.f2, on.peak, dtype, unit)
    tv_status = jnp.where(on.capped & (tv_status < limits.APPROXIMATE), limits.APPROXIMATE, tv_status)
    c, b, b_plus, b_minus, c_status = compensation.tail_compensation(line, x, f0, slopes, dtype, unit)
    growth = functionals.growth_class(line, x, f0, slopes)
    return _LineFunctionals(slopes, tv, tv_status, c, b, b_plus, b_minus, c_status, growth)


@stage
def _combine(gauss: Moments, g_status, lf: _LineFunctionals):
    slopes = lf.slopes

    def bc(v):
        return jnp.broadcast_to(v, gauss.m1.shape)

    sig = Signature(
        m1=gauss.m1,
        g1=gauss.g1,
        g2=gauss.g2,
        m2=gauss.m2,
        eta=gauss.eta,
        alpha_plus=bc(slopes.alpha_plus),
        alpha_minus=bc(slopes.alpha_minus),
        tv=bc(lf.tv),
        c=bc(lf.c),
    )
    status = SignatureStatus(
        *(g_status[k] for k in ("m1", "g1", "g2", "m2", "eta")),
        alpha_plus=bc(slopes.alpha_status[0]),
        alpha_minus=bc(slopes.alpha_status[1]),
        tv=bc(lf.tv_status),
        c=bc(lf.c_status),
    )
    aux = Auxiliary(
        g4=gauss.g4,
        b=bc(lf.b),
        b_plus=bc(lf.b_plus),
        b_minus=bc(lf.b_minus),
        beta_plus=bc(slopes.beta_plus),
        beta_minus=bc(slopes.beta_minus),
        dm2_dsigma=gauss.dm2_dsigma,
        growth=bc(lf.growth),
        finite=bc(gauss.finite),
        status=status,
    )
    return sig, aux


def _gaussian_part(rule, sigma, mu, grid: gaussian.Grid, at: gaussian.Samples, undeclared=False):
    """The Gaussian statistics from the samples ``at`` of ``phi`` on ``grid``,
    with their statuses and the resolution bound: :func:`moments` and the
    Gaussian half of :func:`signature`.

    The ladders toward the kinks (and ``0``) decide which moments diverge
    (:func:`_checked`). ``undeclared``: per ``(sigma, mu)``, a jump of ``phi'``
    found within the density's reach where no kink was declared (the Gaussian sums
    then converge at second order only: APPROXIMATE;
    :func:`jaxsig.core.kinks.undeclared_kinks`).
    """
    sing = _kinks.singularities(at.v0, at.v1)
    x, w, f0, f1 = grid.points.x, grid.w, at.f0, at.f1
    mirrored = getattr(rule, "mirrored", 0) if x.ndim == 1 else 0
    r = gaussian.sums(x, w, f0, f1, sigma, mu, mirrored=mirrored)
    stats = gaussian.moments_of(r)
    error = gaussian.resolution(rule, w, f0, f1, sigma, stats.m2 + stats.g2 * stats.g2)
    if x.ndim == 1:
        # Where the nodes miss a feature of phi' that phi shows (a transition
        # narrower than their spacing), Stein's identity fails: as unresolved.
        # A power singularity of phi' fails it too, and has its own status.
        missed = (gaussian.stein_gap(r, sigma) > 1.0) & ~(sing.integrable | sing.g4)
        error = jnp.where(missed, jnp.maximum(error, 1.0), error)
    out, status = _checked(stats, sing, sigma, mu, _unresolved(rule, sigma, mu, error) | undeclared)
    return out, status, error


@stage(static_argnums=(1,))
def _moments(act, rule, sigma, mu, kinks):
    grid = gaussian.grid(rule, sigma, mu, kinks)
    out, _, error = _gaussian_part(rule, sigma, mu, grid, gaussian.sample(act, grid.points))
    return out, error


def _unresolved(rule, sigma, mu, error):
    """Where the Gaussian sums are only approximate: ``phi`` varies faster than the
    panels resolve (``error``, :func:`jaxsig.core.gaussian.resolution`), or the
    density is narrower than the grid (:meth:`Composite.resolves`)."""
    return (error > gaussian.UNRESOLVED) | ~_resolves(rule, sigma, mu)


def _checked(gauss: Moments, sing, sigma, mu, unresolved=False):
    """The Gaussian statistics with what the quadrature cannot see put right, and
    a status per field.

    * A moment that diverges at a singularity of ``phi`` or ``phi'``
      (:func:`jaxsig.core.kinks.singularities`) is ``inf`` (``m1``, ``g1``
      with the sign of the divergence; ``NaN``, status ``NO_LIMIT``, where the
      two sides diverge with opposite signs, as ``E[1/X]``); ``eta`` and
      ``dm2/dsigma`` follow ``m2``.
    * An integrable singularity of ``phi'``, or oscillation the panels do not
      resolve (``unresolved``, :func:`jaxsig.core.gaussian.resolution`), leaves
      the statistics finite but ``APPROXIMATE``.
    * Under ``jit``, ``sigma <= 0`` or non-finite ``sigma``, ``mu`` give ``NaN``
      with status ``INVALID`` (eager calls raise instead).
    """
    inf = jnp.asarray(jnp.inf, gauss.m1.dtype)
    nan = jnp.asarray(jnp.nan, gauss.m1.dtype)
    valid = jnp.isfinite(sigma) & (sigma > 0) & jnp.isfinite(mu)
    base = jnp.where(gauss.finite, limits.CONVERGED, limits.NON_FINITE)
    base = jnp.where((sing.integrable | unresolved) & gauss.finite, limits.APPROXIMATE, base)

    def signed(v, div, sign):
        return jnp.where(div, jnp.where(sign == 0, nan, sign * inf), v)

    def status_of(div, sign=None):
        s = jnp.where(
            div, limits.DIVERGENT if sign is None else jnp.where(sign == 0, limits.NO_LIMIT, limits.DIVERGENT), base
        )
        return jnp.where(valid, s, limits.INVALID).astype(jnp.int32)

    out = gauss._replace(
        m1=signed(gauss.m1, sing.m1, sing.m1_sign),
        g1=signed(gauss.g1, sing.g1, sing.g1_sign),
        g2=jnp.where(sing.g2, inf, gauss.g2),
        m2=jnp.where(sing.m2, inf, gauss.m2),
        eta=jnp.where(sing.m2, inf, gauss.eta),
        g4=jnp.where(sing.g4, inf, gauss.g4),
        dm2_dsigma=jnp.where(sing.m2, inf, gauss.dm2_dsigma),
    )
    out = out._replace(**{k: jnp.where(valid, v, nan) for k, v in out._asdict().items() if k != "finite"})
    status = {
        "m1": status_of(sing.m1, sing.m1_sign),
        "g1": status_of(sing.g1, sing.g1_sign),
        "g2": status_of(sing.g2),
        "m2": status_of(sing.m2),
        "eta": status_of(sing.m2),
    }
    return out, {k: jnp.broadcast_to(v, sigma.shape) for k, v in status.items()}

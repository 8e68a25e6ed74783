"""Judgements from signatures: growth classes, shape facts, and the report card.

Two questions a researcher asks of an activation ``phi``:

* *What kind of function is it?* :func:`classify` gives the growth class of
  SPEC (A0 bounded, A1 at most linear, A>1 superlinear) and the facts a reader
  wants next to it: which sides saturate, where ``phi'`` jumps, parity,
  monotonicity, and which signature components are infinite or undefined.
* *Is it a good choice at input scale sigma?* :func:`report_card` applies the
  five design principles of the specification (docs/spec.md) to a (possibly batched) signature, each with a
  threshold the user may change, and :func:`explain` turns each line into one
  sentence that says what the number predicts.

:func:`report_card` is pure ``jax.numpy`` on :class:`~jaxsig.Signature` and
:class:`~jaxsig.Auxiliary` arrays of any shape: it runs under ``jit`` and
``vmap``, and a table of many activations (signatures stacked along a leading
axis) is judged in one call. :func:`classify` evaluates ``phi`` itself on a grid
and returns plain Python values, one activation at a time.

Examples:
  >>> import jaxsig
  >>> from jaxsig import taxonomy
  >>> taxonomy.classify("relu").growth
  'A1'
  >>> card = taxonomy.report_card(*jaxsig.signature_with_aux("relu", 1.0))
  >>> round(float(card.weight_variance), 12), bool(card.contraction.passed)
  (2.0, True)
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import kinks as _kinks
from jaxsig.core import quadrature
from jaxsig.core._compile import stage
from jaxsig.core._format import format_number
from jaxsig.core._numerics import derivatives, is_concrete
from jaxsig.core.signature import FIELDS, GROWTH_CLASSES, Auxiliary, Signature
from jaxsig.core.signature import signature_with_aux as _signature_with_aux

__all__ = [
    "Classification",
    "Principle",
    "ReportCard",
    "CardLine",
    "PRINCIPLES",
    "FINDINGS",
    "format_number",
    "classify",
    "report_card",
    "explain",
]


# --- Classification --------------------------------------------------------------


class Classification(NamedTuple):
    """What kind of function an activation is (plain Python values).

    Attributes:
      name: the activation's name.
      growth: ``"A0"`` (bounded on R), ``"A1"`` (unbounded, ``|phi(x)| = O(|x|)``)
        or ``"A>1"`` (superlinear: a slope is infinite); see :data:`GROWTH_CLASSES`.
      bounded: ``sup |phi| < inf``.
      saturating_plus: ``phi(x)`` tends to a finite constant as ``x -> +inf``
        (``alpha_plus = 0``, ``beta_plus`` finite).
      saturating_minus: the same as ``x -> -inf``.
      kinks: points where ``phi'`` jumps (confirmed numerically), sorted.
      smooth: ``phi'`` is continuous and locally bounded on R: no kinks, and no
        cusp where ``phi'`` blows up (``sign(x) sqrt|x|`` at 0).
      parity: ``"odd"``, ``"even"`` or ``"neither"``.
      monotone: ``phi`` is non-decreasing or non-increasing on R.
      infinite: names of the signature components that are ``+-inf``.
      undefined: names of the components whose defining limit does not exist
        (``NaN``; e.g. the slopes of ``x sin x``).
    """

    name: str
    growth: str
    bounded: bool
    saturating_plus: bool
    saturating_minus: bool
    kinks: tuple[float, ...]
    smooth: bool
    parity: str
    monotone: bool
    infinite: tuple[str, ...]
    undefined: tuple[str, ...]


def classify(phi, *, params: Any = None, signature=None, dtype=None) -> Classification:
    """Classify ``phi``: growth class and shape facts (one test per fact, in the
    order of this docstring, which is why the function is long).

    The growth class is :attr:`jaxsig.Auxiliary.growth` (docs/spec.md): ``A>1`` when a
    slope ``alpha_+-`` is infinite or, where ``phi(x)/x`` has no limit,
    ``sup |phi(x)/x|`` keeps growing along the ladder ``+-2**k``; ``A0`` when
    ``phi`` is bounded (``sin x`` is A0); ``A1`` otherwise.

    The other facts come from evaluating ``phi`` and ``phi'`` (forward mode) on
    the partition of R that :mod:`jaxsig.signature` uses (quadrature nodes out to
    ``|x| = 512``, the ladders ``+-2**k`` up to ``2**48`` and ``b +- 2**-k`` toward
    each declared kink), with working-precision ``eps`` in the tolerances:

    * kink at ``b`` (each declared kink, and 0): with
      ``h = max(2**-30, 1024 eps |b|)``,
      ``|phi'(b+h) - phi'(b-h)| > 4 h max|phi''(b+-h)| + 64 eps (|phi'(b+h)| + |phi'(b-h)|)``,
      i.e. more than a smooth ``phi'`` can change over ``2h``. Kinks that are
      neither declared nor at 0 are not searched for: declare them on the
      :class:`~jaxsig.Activation`.
    * cusp at ``b``: ``|phi'(b+-h)| > 16 |phi'(b+-1024 h)| + 1``: ``phi'`` grows
      without bound toward ``b``, at least as fast as ``|x - b|^(-0.4)``.
    * odd (even): ``|phi(x) + phi(-x)|`` (``|phi(x) - phi(-x)|``)
      ``<= 64 eps (|phi(x)| + |phi(-x)|)`` at every grid point.
    * monotone: ``phi' >= -tol`` everywhere or ``phi' <= tol`` everywhere, with
      ``tol = 1000 eps max(1, max_{|x| <= 8} |phi'|)``. A dip narrower than the
      node spacing (about 0.015 near the origin, wider outward) could be missed.

    Args:
      phi: a registered name, an :class:`~jaxsig.Activation` or a callable
        ``phi(x)`` / ``phi(x, params)``.
      params: parameters overriding the activation's defaults.
      signature: optionally, ``(Signature, Auxiliary)`` of ``phi`` already
        computed (at any ``sigma``: only the sigma-independent fields are read);
        otherwise it is computed at ``sigma = 1``. Fields may be batched over
        ``sigma``/``mu`` but must describe this one activation.
      dtype: working dtype of the grid evaluation; defaults to that of
        ``signature``, else the default float dtype.

    Returns:
      A :class:`Classification` of plain Python values.

    Raises:
      ValueError: ``signature`` is not a ``(Signature, Auxiliary)`` pair, or its
        sigma-independent fields differ across the batch (several activations).

    Examples:
      >>> from jaxsig import taxonomy
      >>> c = taxonomy.classify("tanh")
      >>> c.growth, c.parity, c.monotone, c.saturating_plus
      ('A0', 'odd', True, True)
    """
    act = _activations.as_activation(phi, params)
    if signature is None:
        sig, aux = _signature_with_aux(act, 1.0)
    else:
        if not (
            isinstance(signature, tuple)
            and len(signature) == 2
            and isinstance(signature[0], Signature)
            and isinstance(signature[1], Auxiliary)
        ):
            raise ValueError(
                "signature must be the pair (Signature, Auxiliary) returned by jaxsig.signature_with_aux(phi, sigma)"
            )
        sig, aux = signature
    if dtype is None:
        dtype = jnp.asarray(sig.m1).dtype
    dtype = jnp.dtype(dtype)
    # Slopes, tv and c do not depend on sigma: one value each. The Gaussian
    # components count as infinite (undefined) if any entry is.
    comp = {
        name: _single(getattr(sig, name), name) if name in _SIGMA_FREE else _worst(getattr(sig, name))
        for name in FIELDS
    }
    beta_p = _single(aux.beta_plus, "beta_plus")
    beta_m = _single(aux.beta_minus, "beta_minus")

    line = quadrature.Composite().with_kinks(act.kinks).line(dtype)
    x = np.asarray(jnp.asarray(line.x, dtype), dtype=np.float64)
    eps = float(jnp.finfo(dtype).eps)
    xp = x[x > 0]
    probes = sorted({0.0, *act.kinks})
    hs = np.array([max(2.0**-30, 1024 * eps * abs(b)) for b in probes])
    near_kink = np.array(probes)[:, None] + np.array([-1.0, 1.0, -1024.0, 1024.0]) * hs[:, None]
    # One compiled evaluation of phi, phi', phi'' at every point the tests need.
    pts = np.concatenate([x, -xp, near_kink.ravel()])
    prepared = _activations.prepare(act, dtype=dtype)
    f0, f1, f2 = _probe(prepared, jnp.asarray(pts, dtype))
    n, m = x.size, xp.size
    fp, fm = f0[:n][x > 0], f0[n : n + m]
    kd1, kd2 = f1[n + m :].reshape(-1, 4), f2[n + m :].reshape(-1, 4)
    f0, f1, f2 = f0[:n], f1[:n], f2[:n]

    # Growth class (and boundedness) as the core decides it: see Auxiliary.growth.
    growth = GROWTH_CLASSES[int(_single(aux.growth, "growth"))]
    bounded = growth == "A0"
    saturating = [
        alpha == 0 and math.isfinite(beta)
        for alpha, beta in ((comp["alpha_plus"], beta_p), (comp["alpha_minus"], beta_m))
    ]

    kinks, cusp = [], False
    for b, h, d1, d2 in zip(probes, hs, kd1, kd2):
        if not np.all(np.isfinite(d1[:2])):
            cusp = True
            continue
        # A smooth phi' changes by at most 2h max|phi''| over [b - h, b + h].
        bound = 4 * h * np.max(np.abs(np.nan_to_num(d2[:2], posinf=0.0, neginf=0.0)))
        if abs(d1[1] - d1[0]) > bound + 64 * eps * (abs(d1[0]) + abs(d1[1])):
            kinks.append(float(b))
        cusp |= bool(np.any(np.abs(d1[:2]) > 16 * np.abs(d1[2:]) + 1))
    # Kinks nobody declared: where phi' jumps between neighbouring points of the
    # line (the core's test), located by bisection.
    jumps = np.asarray(_jump_intervals(x, f1, f2, np.asarray(line.split), line.x_max, dtype))
    if np.any(jumps):
        (i,) = np.nonzero(jumps)
        kinks = sorted(kinks + _locate_jumps(prepared, x[i], x[i + 1], dtype))
    smooth = not kinks and not cusp and bool(np.all(np.isfinite(f1)))

    tol = 64 * eps * (np.abs(fp) + np.abs(fm)) + float(jnp.finfo(dtype).tiny)
    with np.errstate(invalid="ignore"):
        odd = bool(np.all((fp == -fm) | (np.abs(fp + fm) <= tol)))
        even = bool(np.all((fp == fm) | (np.abs(fp - fm) <= tol)))
    parity = "odd" if odd else ("even" if even else "neither")

    fin = np.isfinite(f1)
    scale = max(1.0, float(np.max(np.abs(f1[fin & (np.abs(x) <= 8.0)]), initial=0.0)))
    d = f1[fin]
    monotone = bool(np.all(d >= -1e3 * eps * scale) or np.all(d <= 1e3 * eps * scale))

    return Classification(
        name=act.name,
        growth=growth,
        bounded=bounded,
        saturating_plus=saturating[0],
        saturating_minus=saturating[1],
        kinks=tuple(kinks),
        smooth=smooth,
        parity=parity,
        monotone=monotone,
        infinite=tuple(n for n in FIELDS if math.isinf(comp[n])),
        undefined=tuple(n for n in FIELDS if math.isnan(comp[n])),
    )


_SIGMA_FREE = ("alpha_plus", "alpha_minus", "tv", "c")


def _worst(v) -> float:
    """NaN if any entry is NaN, else +-inf if any entry is, else 0."""
    a = np.asarray(v, dtype=np.float64).ravel()
    if np.any(np.isnan(a)):
        return math.nan
    inf = a[np.isinf(a)]
    return float(inf[0]) if inf.size else 0.0


def _single(v, name) -> float:
    """The one value of a sigma-independent field, batched or not."""
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"signature field {name!r} is empty")
    first = a[0]
    same = (a == first) | (np.isnan(a) & np.isnan(first))
    if not np.all(same):
        raise ValueError(
            f"signature field {name!r} takes several values across the batch; classify "
            "describes one activation: pass the signature of that activation only"
        )
    return float(first)


@jax.jit
def _probe_jit(act, x):
    return derivatives(act, x, 2)


#: The core's jump test as one compiled program per line (called op by op it
#: compiled some thirty one-op programs per kink set: 0.5 s of a first classify).
_jump_intervals = stage(_kinks.jump_intervals, static_argnums=(4, 5))


def _locate_jumps(act, a, b, dtype) -> list[float]:
    """The points in ``[a_i, b_i]`` where ``phi'`` jumps, by bisection on the side
    that holds the larger change of ``phi'`` (to about ``2**-40`` of the interval).

    A jump survives the bisection; a steep or oscillating but continuous ``phi'``
    (``sin(x) / (1 + x^2)`` between the line's wide tail nodes) does not: only
    the intervals whose last step still passes the test of
    :func:`jaxsig.core.kinks.jump_intervals` are kinks."""
    eps = float(jnp.finfo(dtype).eps)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    da, db = _probe(act, jnp.asarray(np.concatenate([a, b]), dtype))[1].reshape(2, -1)
    for _ in range(40):
        mid = 0.5 * (a + b)
        dm = _probe(act, jnp.asarray(mid, dtype))[1]
        left = np.abs(dm - da) >= np.abs(db - dm)
        b, db = np.where(left, mid, b), np.where(left, dm, db)
        a, da = np.where(left, a, mid), np.where(left, da, dm)
    d2a, d2b = _probe(act, jnp.asarray(np.concatenate([a, b]), dtype))[2].reshape(2, -1)
    step, size = np.abs(db - da), np.abs(da) + np.abs(db)
    smooth = 8 * (b - a) * np.maximum(np.abs(d2a), np.abs(d2b)) + 64 * eps * size
    jump = (step > smooth) & (step > 1e-6 * (1.0 + size))
    return [float(v) for v in np.unique(np.round(0.5 * (a + b)[jump], 10))]


def _probe(act, x):
    """``phi, phi', phi''`` at ``x`` (forward over forward), as float64 NumPy."""
    return tuple(np.asarray(v, np.float64) for v in _probe_jit(act, x))


# --- Report card -----------------------------------------------------------------


class Principle(NamedTuple):
    """One line of a :class:`ReportCard` (arrays of the signature's shape).

    Attributes:
      value: the judged number.
      threshold: the limit it is compared with.
      passed: whether the principle holds (``False`` where ``value`` is NaN).
    """

    value: jax.Array
    threshold: jax.Array
    passed: jax.Array


class ReportCard(NamedTuple):
    """The five design principles of the specification (docs/spec.md) at one input scale (a pytree of arrays).

    Every field has the shape of the signature it was computed from.

    Attributes:
      contraction: (1) ``g2 <= g2_max``.
      variance: (2) the slope ``V'(q*)`` of the variance map at the fixed point
        ``q* = sigma^2`` set by :attr:`weight_variance`, ``<= variance_slope_max``.
      bias_mean: (3a) ``|m1| <= m1_max``.
      bias_area: (3b) ``|b| <= b_max`` (signed area; NaN, failing, where undefined).
      conditioning: (4) ``tv < tv_max``.
      tails: (5) ``c < c_max`` (default ``inf``: ``c`` finite).
      sigma: the input scale; ``q = sigma^2``.
      bias_variance: ``sb^2``.
      weight_variance: ``sW^2 = (q - sb^2) / m2(sigma)``, the weight variance
        that makes ``q`` a fixed point of ``V(q) = sW^2 m2(sqrt q) + sb^2``
        (ReLU: 2, He initialisation).
      log_slope: ``d log m2 / d log sigma = sigma m2'(sigma) / m2`` (2 for
        positively homogeneous ``phi``; ``< 2`` when ``phi`` saturates).
      chi1: ``sW^2 g2^2`` at that weight variance: ``< 1`` ordered, ``> 1``
        chaotic, ``= 1`` edge of chaos.
      correlation: ``sW^2 m1^2 / q`` (``= m1^2 / m2`` when ``sb = 0``): the
        correlation that two independent inputs acquire in one layer through
        the mean output ``m1``.
    """

    contraction: Principle
    variance: Principle
    bias_mean: Principle
    bias_area: Principle
    conditioning: Principle
    tails: Principle
    sigma: jax.Array
    bias_variance: jax.Array
    weight_variance: jax.Array
    log_slope: jax.Array
    chi1: jax.Array
    correlation: jax.Array

    def principles(self) -> dict[str, Principle]:
        """The six judged lines, by name, in SPEC order."""
        return {name: getattr(self, name) for name in PRINCIPLES}

    def all_passed(self) -> jax.Array:
        """``True`` where every principle passes."""
        return functools.reduce(jnp.logical_and, (p.passed for p in self.principles().values()))


class _PrincipleInfo(NamedTuple):
    number: str
    title: str
    symbol: str
    relation: str


PRINCIPLES = {
    "contraction": _PrincipleInfo("1", "contraction", "g2", "<="),
    "variance": _PrincipleInfo("2", "variance management", "V'(q*)", "<="),
    "bias_mean": _PrincipleInfo("3", "bias drift (mean)", "|m1|", "<="),
    "bias_area": _PrincipleInfo("3", "bias drift (signed area)", "|b|", "<="),
    "conditioning": _PrincipleInfo("4", "kernel conditioning", "tv", "<"),
    "tails": _PrincipleInfo("5", "tail compensation", "c", "<"),
}
"""The lines of a :class:`ReportCard`: SPEC principle number, title, the judged
symbol and the comparison that must hold."""


def report_card(
    sig,
    aux: Optional[Auxiliary] = None,
    sigma=1.0,
    *,
    params: Any = None,
    bias_variance=0.0,
    g2_max=0.8,
    variance_slope_max=1.0,
    m1_max=0.3,
    b_max=1.5,
    tv_max=5.0,
    c_max=math.inf,
) -> ReportCard:
    """Judge a signature against the five design principles of the specification (docs/spec.md).

    With ``q = sigma^2`` and ``sb^2 = bias_variance``:

    1. contraction: ``g2 <= g2_max``;
    2. variance management: ``sW^2 = (q - sb^2) / m2`` keeps ``q`` fixed under
       ``V(q) = sW^2 m2(sqrt q) + sb^2``; the fixed point is stable when
       ``V'(q*) = sW^2 m2'(sigma) / (2 sigma) = (1 - sb^2/q) (d log m2 / d log sigma) / 2
       <= variance_slope_max`` (a relative slack of ``sqrt(eps)`` lets the
       marginal ``V' = 1`` of positively homogeneous activations pass);
    3. bias drift: ``|m1| <= m1_max`` and ``|b| <= b_max``;
    4. kernel conditioning: ``tv < tv_max``;
    5. tail compensation: ``c < c_max`` (``c`` finite by default).

    The defaults of 1, 4 and 5 are SPEC's; SPEC leaves 3 to the user: the
    defaults ``m1_max = 0.3`` and ``b_max = 1.5`` separate ReLU-like mean
    offsets (``|m1| ~ 0.4`` at ``sigma = 1``) from the smooth zero-centred
    family. A NaN value (undefined ``b``) fails.

    Args:
      sig: what :func:`jaxsig.signature` takes (an activation name,
        :class:`~jaxsig.Activation` or callable), whose signature is then
        computed at ``sigma``; or a :class:`~jaxsig.Signature` already computed at
        input scale ``sigma`` (any shape; stack several activations along a
        leading axis to judge a table), with its ``aux``.
      aux: the matching :class:`~jaxsig.Auxiliary` (from :func:`jaxsig.signature_with_aux`);
        only with a :class:`~jaxsig.Signature`.
      sigma: the input scale (broadcastable).
      params: parameters of the activation (only with an activation).
      bias_variance: ``sb^2``, which must be ``< sigma^2``.
      g2_max, variance_slope_max, m1_max, b_max, tv_max, c_max: thresholds.

    Returns:
      A :class:`ReportCard` whose arrays have the signature's shape. Pure
      ``jax.numpy``: works under ``jit`` and ``vmap``.

    Raises:
      ValueError: ``sigma`` not positive, or ``bias_variance`` not in
        ``[0, sigma^2)`` (checked when the values are concrete).

    Examples:
      >>> import jaxsig
      >>> from jaxsig import taxonomy
      >>> card = taxonomy.report_card(*jaxsig.signature_with_aux("tanh", 1.0))
      >>> float(card.conditioning.value), bool(card.conditioning.passed)
      (2.0, True)
    """
    if not isinstance(sig, Signature):
        if aux is not None:
            raise TypeError("aux is only for a precomputed Signature; pass report_card(phi, sigma=...) alone")
        sig, aux = _signature_with_aux(sig, sigma, params=params)
    elif aux is None or not isinstance(aux, Auxiliary):
        raise TypeError("a Signature needs its Auxiliary: report_card(*jaxsig.signature_with_aux(phi, sigma), sigma)")
    dtype = jnp.asarray(sig.m2).dtype
    sigma = jnp.asarray(sigma, dtype)
    sb2 = jnp.asarray(bias_variance, dtype)
    if is_concrete(sigma) and not bool(np.all(np.asarray(sigma) > 0)):
        raise ValueError(f"sigma must be positive, got sigma={np.asarray(sigma)}")
    if is_concrete(sigma, sb2):
        s2, b2 = np.asarray(sigma) ** 2, np.asarray(sb2)
        if not bool(np.all((b2 >= 0) & (b2 < s2))):
            raise ValueError(
                f"bias_variance must lie in [0, sigma^2) so that a positive weight variance "
                f"keeps q = sigma^2 fixed, got bias_variance={b2} with sigma={np.asarray(sigma)}"
            )
    shape = jnp.shape(sig.m2)

    def bc(v):
        return jnp.broadcast_to(jnp.asarray(v, dtype), shape)

    q = sigma * sigma
    sw2 = (q - sb2) / sig.m2
    v_slope = sw2 * aux.dm2_dsigma / (2.0 * sigma)
    slack = math.sqrt(float(jnp.finfo(dtype).eps))
    abs_b = jnp.abs(aux.b)

    def line(value, threshold, passed):
        return Principle(bc(value), bc(threshold), jnp.broadcast_to(passed, shape))

    return ReportCard(
        contraction=line(sig.g2, g2_max, sig.g2 <= g2_max),
        variance=line(v_slope, variance_slope_max, v_slope <= variance_slope_max * (1 + slack) + slack),
        bias_mean=line(jnp.abs(sig.m1), m1_max, jnp.abs(sig.m1) <= m1_max),
        bias_area=line(abs_b, b_max, abs_b <= b_max),
        conditioning=line(sig.tv, tv_max, sig.tv < tv_max),
        tails=line(sig.c, c_max, sig.c < c_max),
        sigma=bc(sigma),
        bias_variance=bc(sb2),
        weight_variance=bc(sw2),
        log_slope=bc(sigma * aux.dm2_dsigma / sig.m2),
        chi1=bc(sw2 * sig.g2 * sig.g2),
        correlation=bc(sw2 * sig.m1 * sig.m1 / q),
    )


class CardLine(NamedTuple):
    """One report-card line in words (see :func:`explain`).

    Attributes:
      key: field name in :class:`ReportCard` (``"contraction"``, ...).
      number: SPEC principle number (``"1"`` .. ``"5"``).
      title: principle title.
      rule: the condition, e.g. ``"g2 <= 0.8"``.
      value: the judged number.
      threshold: its limit.
      passed: whether the condition holds.
      sentence: one sentence saying what the number predicts.
      finding: what training measured about this principle (:data:`FINDINGS`),
        the same for every activation; ``""`` where nothing was measured.
    """

    key: str
    number: str
    title: str
    rule: str
    value: float
    threshold: float
    passed: bool
    sentence: str
    finding: str = ""


FINDINGS = {
    "contraction": (
        "Measured, contraction trades depth for stability: on digits, with every activation at its "
        "own critical initialisation (examples/criticality_study.md, 5 seeds), the two of eight that fail it, "
        "SELU and a designed scaled ELU (g2 = 1.03), trained best at depth 50 (test accuracy 0.94 and 0.91); "
        "an activation designed to pass it with m2 = 1 is ordered (chi1 = 0.60) at its variance-preserving "
        "initialisation and reached 0.65 at depth 20 against GELU's 0.95 (examples/flax_digits.md). "
        "Depth is set by chi1 = sW^2 g2^2 and V'(q*), not by g2 alone."
    ),
    "variance": (
        "Measured, variance management predicted depth, with a margin below 1: on digits, with every "
        "activation at its own critical initialisation (examples/criticality_study.md, 5 seeds), the four "
        "of eight with V'(q*) <= 0.87 trained at depth 50 (test accuracy 0.91 to 0.94) and the four with "
        "V'(q*) >= 0.975 did not (0.10 to 0.31), ReLU (V' = 1) among them although it passes V' <= 1."
    ),
}
"""What training measured about a principle, keyed like :data:`PRINCIPLES`
(:attr:`CardLine.finding`); from the examples named in each text."""


_num = format_number


def explain(card: ReportCard, index=()) -> tuple[CardLine, ...]:
    """The report card as sentences, for one entry of a (batched) card.

    Args:
      card: a :class:`ReportCard`.
      index: which entry of a batched card (a NumPy index such as ``3`` or
        ``(2, 0)``); ``()`` for an unbatched one.

    Returns:
      One :class:`CardLine` per principle, in SPEC order; where training measured
      something about a principle (contraction trades depth for stability), its
      :attr:`~CardLine.finding` says what (:data:`FINDINGS`).

    Examples:
      >>> import jaxsig
      >>> from jaxsig import taxonomy
      >>> card = taxonomy.report_card(*jaxsig.signature_with_aux("relu", 1.0))
      >>> taxonomy.explain(card)[0].rule
      'g2 <= 0.8'
    """

    def at(a):
        return float(np.asarray(a, dtype=np.float64)[index])

    sigma = at(card.sigma)
    sw2, kappa, chi1, corr = at(card.weight_variance), at(card.log_slope), at(card.chi1), at(card.correlation)
    q = sigma * sigma
    out = []
    for key, info in PRINCIPLES.items():
        p = getattr(card, key)
        v, t, ok = at(p.value), at(p.threshold), bool(np.asarray(p.passed)[index])
        if key == "contraction":
            s = (
                f"with unit weight variance, mean-square perturbations are multiplied by "
                f"g2^2 = {_num(v * v)} per layer, so they "
                + ("shrink" if v * v < 1 else ("neither grow nor shrink" if v * v == 1 else "grow"))
                + " (chi1 = sW^2 g2^2 in general)."
            )
        elif key == "variance":
            regime = "edge of chaos" if abs(chi1 - 1) <= 1e-6 else ("ordered" if chi1 < 1 else "chaotic")
            fate = (
                "undefined"
                if math.isnan(v)
                else "it decays"
                if v < 1 - 1e-6
                else ("it persists" if abs(v - 1) <= 1e-6 else "it grows")
            )
            s = (
                f"sW^2 = {_num(sw2)} keeps q = {_num(q)} fixed (d log m2 / d log sigma = "
                f"{_num(kappa)}); a deviation from q is multiplied by V' = {_num(v)} per layer "
                f"({fate}), and chi1 = sW^2 g2^2 = {_num(chi1)} ({regime})."
            )
        elif key == "bias_mean":
            s = (
                "the mean output vanishes, so independent inputs stay uncorrelated through m1."
                if _num(v) == "0"
                else f"each layer adds a common offset m1 = {_num(v)}, so two independent inputs "
                f"leave it with correlation sW^2 m1^2 / q = {_num(corr)} from m1 alone."
            )
        elif key == "bias_area":
            s = (
                "the signed area is undefined (phi has no finite affine asymptotes), so the "
                "mean at large sigma is not predicted by asymptotes."
                if math.isnan(v)
                else f"at large sigma, m1 departs from what the asymptotes predict by "
                f"b/(sigma sqrt(2 pi)): |b| = {_num(v)} gives {_num(v / (sigma * math.sqrt(2 * math.pi)))} "
                f"at sigma = {_num(sigma)}."
            )
        elif key == "conditioning":
            s = (
                "phi' has unbounded variation, so gradient magnitudes and the kernel's curvature are not controlled."
                if math.isinf(v)
                else f"|phi'(x) - phi'(y)| <= tv = {_num(v)} for all x, y: gradients differ by at "
                "most that across inputs, which bounds the kernel's curvature."
            )
        else:
            s = (
                "phi strays from every affine asymptote without bound in integral, so its "
                "primitive drifts away from the asymptotes' primitive."
                if math.isinf(v)
                else f"the primitive of phi stays within c = {_num(v)} of the primitive of its "
                "affine asymptotes, at every x."
            )
        rule = f"{info.symbol} {info.relation} {_num(t)}"
        out.append(CardLine(key, info.number, info.title, rule, v, t, ok, s, FINDINGS.get(key, "")))
    return tuple(out)

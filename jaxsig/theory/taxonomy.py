"""Judgements from signatures: growth classes, shape facts, and the report card.

Two questions a researcher asks of an activation ``phi``:

* *What kind of function is it?* :func:`classify` gives the growth class of
  SPEC (A0 bounded, A1 at most linear, A>1 superlinear) and the facts a reader
  wants next to it: which sides saturate, where ``phi'`` jumps, parity,
  monotonicity, and which signature components are infinite or undefined.
* *Is it a good choice at input scale sigma?* :func:`report_card` applies the
  five design principles of the specification (docs/spec.md) to a (possibly batched) signature, each with a
  threshold the user may change, and :func:`explain` turns each line into one
  sentence that says what the number predicts (both live in
  :mod:`jaxsig.theory.report_card` and are re-exported here).

:func:`report_card` is pure ``jax.numpy`` on :class:`~jaxsig.Signature` and
:class:`~jaxsig.Auxiliary` arrays of any shape: it runs under ``jit`` and
``vmap``. :func:`classify` evaluates ``phi`` itself on a grid and returns plain
Python values, one activation at a time.

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

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import kinks as _kinks
from jaxsig.core import quadrature
from jaxsig.core._compile import stage
from jaxsig.core._format import format_number
from jaxsig.core._numerics import derivatives
from jaxsig.core.signature import FIELDS, GROWTH_CLASSES, Auxiliary, Signature
from jaxsig.core.signature import signature_with_aux as _signature_with_aux
from jaxsig.theory.report_card import FINDINGS, PRINCIPLES, CardLine, Principle, ReportCard, explain, report_card

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

"""A small language for what a signature should be: ``"g2 <= 0.8"``, ``"chi1 == 1"``, ``"g2^2 / m2 == 1"``.

Targets are what :func:`jaxsig.design` searches for, and what a training-time
regulariser penalises. Each target is one line of the grammar::

    target     := constraint | objective
    constraint := expr OP bound [weight]
    objective  := ("minimize" | "maximize") expr [weight]
    expr       := arithmetic (+ - * / ^, parentheses, sqrt abs log exp) of numbers and components
    component  := NAME ["@" sigma]
    OP         := "<=" | "<" | ">=" | ">" | "=="
    bound      := expr, "inf" or "-inf"
    weight     := "weight" ["="] positive number

``NAME`` is a signature component (``m1 g1 g2 m2 eta alpha_plus alpha_minus tv
c``), an auxiliary one (``g4 b b_plus b_minus beta_plus beta_minus
dm2_dsigma``), or a mean-field one (``chi1 q_star dV xi_q xi_c``, see below).
``@sigma`` evaluates a Gaussian component (``m1 g1 g2 m2 eta g4 dm2_dsigma``)
at that input scale instead of the default. The expression syntax is that of
:mod:`jaxsig.designing.expressions` (``^`` binds tighter than unary minus).
Examples: ``"g2 <= 0.8"``, ``"g2@2.0 <= 0.8"``, ``"tv < 5"``, ``"m2 == 1"``,
``"c < inf"`` (``c`` must be finite), ``"minimize eta"``, ``"maximize g1@0.5"``,
``"m1 == 0 weight 10"``, ``"g2^2 / m2 == 1"``, ``"m1 - 0.1 * g1 <= 0"``,
``"m1 <= 0.1 * g1"`` (read as ``m1 - 0.1 * g1 <= 0``), ``"chi1 == 1"``,
``"xi_c >= 30"``. Several targets are given as a list, or in one string
separated by ``;`` or newlines.

Mean-field components describe a deep random network at the *operating point*
``(q, sigma_b2)`` given to :func:`parse_targets` (and to :func:`jaxsig.design`;
default ``q = 1``, ``sigma_b2 = 0``): the variance-preserving initialisation
``sW^2 = (q - sb^2) / m2(sqrt q)``, at which ``chi1 = sW^2 g2(sqrt q)^2``,
``q_star = q``, ``dV = V'(q*) = sW^2 dm2/dq``, ``xi_q = -1/log|dV|`` and ``xi_c``
from the correlation fixed point (:mod:`jaxsig.designing.network`). They are
differentiable (implicit gradients for the fixed point). At ``sigma_b2 = 0`` a
mean-zero activation has ``chi1 >= 1`` (Gaussian Poincaré inequality), with
equality only for linear ``phi``: :func:`poincare_note` says so when
``"m1 == 0"`` is asked for with ``chi1 <= 1``.

Meaning, for an expression value ``v`` and bound ``b``:

* ``v <= b``, ``v < b``, ``v >= b``, ``v > b``: inequalities; the *residual*
  ``r = v - b`` (``b - v`` for ``>=``, ``>``) must be ``<= 0`` (``< 0`` when
  strict); the *margin* is ``-r``.
* ``v == b``: equality; ``r = v - b`` must satisfy ``|r| <= eq_tol``.
* ``v < inf`` (or ``<= inf``) and ``v > -inf``: finiteness checks; ``r`` is
  ``0`` or ``+inf``. They have no gradient (a divergent integral has no
  derivative) and are checked, not optimised: to push ``c`` down, give a finite
  bound such as ``"c <= 2"``.
* ``minimize v`` / ``maximize v``: objectives, contributing ``+-weight * v``.
* A bound that is an expression of components, ``lhs OP rhs``, is the target
  ``lhs - (rhs) OP 0``.

``weight`` scales a constraint's residual in the search and in
:func:`penalty` (it decides the trade-off when targets conflict), and an
objective's coefficient.

Two layers: :func:`evaluate` (and :func:`violations`, :func:`penalty`) take an
activation and its parameters; the methods of :class:`Targets`
(``residuals``, ``violations``, ``margins``, ``satisfied``, ``objective``,
``penalty``) take target values, so one evaluation serves them all. All of
them are pure ``jax.numpy``: they run under ``jit``, ``vmap`` and ``grad``, and
only :class:`TargetArrays` (a pytree: its leaves are the bounds, weights,
input scales and operating point; the expressions and component names are
static) need cross a ``jit`` boundary, so new bounds, weights, sigmas, ``q`` or
``sigma_b2`` never recompile (numbers inside expressions do).

Examples:
  >>> import jaxsig
  >>> from jaxsig import targets
  >>> t = targets.parse_targets(["g2 <= 0.8", "m2 == 1", "c < inf"])
  >>> values = targets.evaluate(t, "selu")
  >>> [bool(s) for s in t.satisfied(values)]
  [False, True, True]
  >>> t = targets.parse_targets(["chi1 == 1", "g2^2 / m2 >= 1"], q=1.0, sigma_b2=0.0)
  >>> [round(float(v), 12) for v in targets.evaluate(t, "relu")]   # ReLU: sW^2 = 2, chi1 = 2 g2^2 = 1
  [1.0, 1.0]
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core._validate import working_dtype
from jaxsig.core.polar import DEFAULT_RULE
from jaxsig.core.signature import moments, signature_with_aux
from jaxsig.designing import expressions as _expr
from jaxsig.designing import grammar as _grammar
from jaxsig.designing import network as _network
from jaxsig.designing.grammar import (
    COMPONENTS,
    EQ,
    FUNCTIONS,
    GAUSSIAN,
    GE,
    GRAMMAR,
    GT,
    LE,
    LT,
    MAX,
    MIN,
    NETWORK,
    OPS,
    Target,
    TargetError,
)
from jaxsig.designing.network import OperatingPoint, operating_point

__all__ = [
    "Target",
    "Targets",
    "TargetArrays",
    "TargetError",
    "OperatingPoint",
    "parse_targets",
    "evaluate",
    "leaf_values",
    "combine",
    "operating_point",
    "poincare_note",
    "residuals",
    "violations_of",
    "margins",
    "satisfied",
    "objective",
    "penalty_of",
    "violations",
    "penalty",
    "default_eq_tol",
    "COMPONENTS",
    "GAUSSIAN",
    "NETWORK",
    "FUNCTIONS",
    "GRAMMAR",
    "OPS",
]


@dataclasses.dataclass(frozen=True)
class TargetArrays:
    """The numeric content of :class:`Targets`: a pytree to pass through ``jit``.

    Targets read *leaves*, the distinct ``(component, sigma)`` pairs they
    name (``L`` of them); ``T`` targets combine them by their expressions.

    Attributes:
      op: operator index into :data:`OPS`, ``(T,)`` (int32).
      value: bounds (``nan`` for objectives), ``(T,)``.
      weight: weights, ``(T,)``.
      sigma: input scale of each leaf, ``(L,)``.
      default_sigma: the input scale of non-Gaussian components, ``()``.
      q, sigma_b2: the operating point of the mean-field components, ``()``.
      index: component index of each leaf into :data:`COMPONENTS` (static).
      program: each target's expression tree over ``("leaf", k)`` nodes (static).
    """

    op: Any
    value: Any
    weight: Any
    sigma: Any
    default_sigma: Any
    q: Any
    sigma_b2: Any
    index: tuple = ()
    program: tuple = ()

    @property
    def kinds(self) -> tuple[str, ...]:
        """Per leaf: ``"gauss"``, ``"network"`` or ``"signature"`` (needs :func:`jaxsig.signature`)."""
        return tuple(_grammar.kind(COMPONENTS[i]) for i in self.index)

    @property
    def cheap(self) -> np.ndarray:
        """Per target: whether it reads no ``"signature"`` leaf (``(T,)`` bool)."""
        kinds = self.kinds
        return np.array([all(kinds[n[1]] != "signature" for n in _leaf_nodes(t)) for t in self.program], bool)

    def astype(self, dtype) -> "TargetArrays":
        """The arrays as ``jax.numpy`` arrays, floats in ``dtype``."""
        cast = {f: jnp.asarray(getattr(self, f), dtype) for f in _FLOAT_FIELDS}
        return dataclasses.replace(self, op=jnp.asarray(self.op, jnp.int32), **cast)


_FLOAT_FIELDS = ("value", "weight", "sigma", "default_sigma", "q", "sigma_b2")
jax.tree_util.register_dataclass(TargetArrays, data_fields=["op", *_FLOAT_FIELDS], meta_fields=["index", "program"])


def _leaf_nodes(tree):
    if tree[0] == "leaf":
        return [tree]
    kids = () if tree[0] in ("num", "comp") else (tree[2],) if tree[0] == "fn" else tree[1:]
    return [n for k in kids for n in _leaf_nodes(k)]


@dataclasses.dataclass(frozen=True, eq=False)
class Targets:
    """An immutable, ordered set of targets, parsed by :func:`parse_targets`.

    Attributes:
      specs: the parsed :class:`Target` entries.
      sigma: the default input scale of targets given without ``@``.
      arrays: :class:`TargetArrays` (float64 NumPy; cast at use).
      q: the pre-activation variance of the operating point (mean-field components).
      sigma_b2: the bias variance of the operating point.
    """

    specs: tuple[Target, ...]
    sigma: float
    arrays: TargetArrays
    q: float = 1.0
    sigma_b2: float = 0.0

    def __len__(self):
        return len(self.specs)

    def __iter__(self) -> Iterator[Target]:
        return iter(self.specs)

    def __str__(self):
        return "; ".join(self.texts)

    def __repr__(self):
        return f"Targets({list(self.texts)!r}, sigma={self.sigma!r}, q={self.q!r}, sigma_b2={self.sigma_b2!r})"

    @property
    def texts(self) -> tuple[str, ...]:
        """Canonical text of each target (parses back to the same target)."""
        return tuple(str(s) for s in self.specs)

    @property
    def needs_signature(self) -> bool:
        """Whether a non-Gaussian signature component (``tv``, ``c``, slopes, ...) is targeted."""
        return "signature" in self.arrays.kinds

    @property
    def needs_network(self) -> bool:
        """Whether a mean-field component (``chi1``, ``xi_c``, ...) is targeted."""
        return "network" in self.arrays.kinds

    @property
    def constrained(self) -> tuple[int, ...]:
        """Indices of the constraints (not objectives)."""
        return tuple(i for i, s in enumerate(self.specs) if s.op not in ("minimize", "maximize"))

    # Value-level API: thin wrappers, so that ``targets.margins(values)`` reads well.
    def residuals(self, values):
        """Signed residuals, see :func:`residuals`."""
        return residuals(self, values)

    def violations(self, values):
        """Non-negative violations, see :func:`violations_of`."""
        return violations_of(self, values)

    def margins(self, values):
        """Margins (``>= 0`` when satisfied), see :func:`margins`."""
        return margins(self, values)

    def satisfied(self, values, eq_tol=None):
        """Per-target satisfaction, see :func:`satisfied`."""
        return satisfied(self, values, eq_tol=eq_tol)

    def objective(self, values):
        """The weighted objective, see :func:`objective`."""
        return objective(self, values)

    def penalty(self, values):
        """The quadratic penalty, see :func:`penalty_of`."""
        return penalty_of(self, values)


def _leaf_table(specs, sigma):
    """The distinct ``(component, sigma)`` leaves of ``specs`` and each target's bound program."""
    table: dict = {}

    def index(node):
        name, s = node[1], node[2]
        key = (name, (sigma if s is None else s) if name in GAUSSIAN else sigma)
        return table.setdefault(key, len(table))

    program = tuple(_expr.bind(s.tree, index) for s in specs)
    return list(table), program


def parse_targets(spec, *, sigma: float = 1.0, q: float = 1.0, sigma_b2: float = 0.0) -> Targets:
    """Parse targets from text.

    Args:
      spec: a string (one target, or several separated by ``;`` or newlines), a
        list of strings or :class:`Target`, or :class:`Targets` (returned as is
        when its ``sigma``, ``q`` and ``sigma_b2`` match).
      sigma: the input scale of Gaussian components given without ``@``.
      q: the pre-activation variance of the operating point of the mean-field
        components (``chi1 q_star dV xi_q xi_c``): the variance-preserving
        initialisation ``sW^2 = (q - sigma_b2) / m2(sqrt q)``.
      sigma_b2: the bias variance of the operating point (``0 <= sigma_b2 < q``).

    Returns:
      :class:`Targets`.

    Raises:
      TargetError: a target does not parse (names the bad token, shows the grammar).
      ValueError: ``sigma`` or the operating point is out of range, or there are no targets.
    """
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma=}")
    _network.check_operating_point(q, sigma_b2)
    q, sigma_b2 = float(q), float(sigma_b2)
    if isinstance(spec, Targets):
        if (spec.sigma, spec.q, spec.sigma_b2) == (sigma, q, sigma_b2):
            return spec
        spec = list(spec.specs)
    if isinstance(spec, (str, Target)):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise TypeError(f"targets must be a string or a list of strings, got {type(spec).__name__}")
    specs = []
    for item in spec:
        if isinstance(item, Target):
            specs.append(item)
        elif isinstance(item, str):
            specs += [_grammar.parse_one(p) for p in re.split(r"[;\n]", item) if p.strip()]
        else:
            raise TypeError(f"each target must be a string, got {type(item).__name__}: {item!r}")
    if not specs:
        raise ValueError('no targets given; e.g. ["g2 <= 0.8", "tv < 5", "m2 == 1", "c < inf"]')
    leaves, program = _leaf_table(specs, sigma)
    arrays = TargetArrays(
        op=np.array([OPS.index(s.op) for s in specs], np.int32),
        value=np.array([s.value for s in specs], np.float64),
        weight=np.array([s.weight for s in specs], np.float64),
        sigma=np.array([s for _, s in leaves], np.float64),
        default_sigma=np.float64(sigma),
        q=np.float64(q),
        sigma_b2=np.float64(sigma_b2),
        index=tuple(COMPONENTS.index(name) for name, _ in leaves),
        program=program,
    )
    return Targets(tuple(specs), sigma, arrays, q, sigma_b2)


def _arrays(targets) -> TargetArrays:
    if isinstance(targets, Targets):
        return targets.arrays
    if isinstance(targets, TargetArrays):
        return targets
    return parse_targets(targets).arrays


def poincare_note(targets) -> Optional[str]:
    """Why ``"m1 == 0"`` with ``chi1 <= 1`` at ``sigma_b2 = 0`` is infeasible (or only linear); else ``None``.

    At ``sb^2 = 0`` the variance-preserving ``chi1 = sigma^2 g2^2 / m2`` at
    ``sigma = sqrt q``. For ``m1 = 0`` the Gaussian Poincaré inequality
    ``Var phi(X) <= sigma^2 E[phi'(X)^2]`` gives ``m2 <= sigma^2 g2^2``, so
    ``chi1 >= 1``, with equality only for linear ``phi``.
    """
    targets = targets if isinstance(targets, Targets) else parse_targets(targets)
    if targets.sigma_b2 != 0.0:
        return None
    s = math.sqrt(targets.q)

    def at_s(t):
        return abs((targets.sigma if t.sigma is None else t.sigma) - s) <= 1e-12 * s

    mean_zero = any(
        t.expr is None and t.component == "m1" and t.op == "==" and t.value == 0 and at_s(t) for t in targets
    )
    low = [
        t for t in targets if t.expr is None and t.component == "chi1" and t.op in ("==", "<", "<=") and t.value <= 1
    ]
    if not (mean_zero and low):
        return None
    strict = [t for t in low if t.value < 1 or t.op == "<"]
    verdict = (
        f"{', '.join(repr(str(t)) for t in strict)} cannot hold together with 'm1 == 0'"
        if strict
        else "only a linear activation meets it together with 'm1 == 0'"
    )
    return (
        f"at sigma_b2 = 0 the variance-preserving chi1 is sigma^2 g2^2 / m2 (sigma = sqrt(q) = {s:g}), and for a "
        "mean-zero activation the Gaussian Poincaré inequality Var phi(X) <= sigma^2 E[phi'(X)^2] makes it >= 1, "
        f"with equality only for linear phi: {verdict}. Give sigma_b2 > 0 (then chi1 >= (q - sigma_b2) / q) "
        "or drop 'm1 == 0'."
    )


# --- Evaluation --------------------------------------------------------------------


def combine(targets, leaves):
    """Target values from leaf values: each target's expression over ``leaves[..., k]``.

    Args:
      targets: :class:`Targets` or :class:`TargetArrays`.
      leaves: ``(..., L)`` component values, one per leaf (:func:`leaf_values`).

    Returns:
      ``(..., T)`` target values.
    """
    arr = _arrays(targets)
    leaves = jnp.asarray(leaves)
    return jnp.stack([_expr.evaluate(t, leaves) for t in arr.program], axis=-1)


def leaf_values(targets, phi, params=None, *, rule=None, full=True, polar=DEFAULT_RULE):
    """The value of each leaf (distinct ``(component, sigma)``) of ``targets``: ``(L,)``.

    Gaussian components come from one :func:`jaxsig.moments` call at the vector
    of leaf input scales, extended by ``sqrt(q)`` when a mean-field component is
    read (:func:`jaxsig.designing.network.from_moments`); with ``full``, the
    others from one :func:`jaxsig.signature` call at the scalar default
    ``sigma`` (they do not depend on it; a scalar call shares its compilation
    with every other scalar call for the same activation). Skipped ones read ``nan``.
    """
    arr = _arrays(targets)
    dtype = working_dtype({}, params)
    kinds, names = arr.kinds, [COMPONENTS[i] for i in arr.index]
    q, sb2 = jnp.asarray(arr.q, dtype), jnp.asarray(arr.sigma_b2, dtype)
    sig = jnp.asarray(arr.sigma, dtype)
    net_needed = "network" in kinds
    m = moments(phi, jnp.concatenate([sig, jnp.sqrt(q)[None]]) if net_needed else sig, params=params, rule=rule)
    net = None
    if net_needed:
        act = _activations.prepare(phi, params, dtype=dtype)
        net = _network.from_moments(
            act, m.m2[-1], m.g2[-1], m.dm2_dsigma[-1], q, sb2, xi_c="xi_c" in names, polar=polar
        )
    table = None
    if full and "signature" in kinds:
        s, aux = signature_with_aux(phi, jnp.asarray(arr.default_sigma, dtype), params=params, rule=rule)
        table = {**s._asdict(), **aux._asdict()}
    cols = []
    for k, (name, kind) in enumerate(zip(names, kinds)):
        if kind == "gauss":
            cols.append(getattr(m, name)[k])
        elif kind == "network":
            cols.append(getattr(net, name))
        else:
            cols.append(jnp.asarray(table[name] if table is not None else jnp.nan, dtype))
    return jnp.stack(cols)


def evaluate(targets, phi, params=None, *, rule=None, full=None, polar=DEFAULT_RULE):
    """The value of each target for ``phi`` with ``params``: ``combine(leaf_values(...))``.

    Args:
      targets: :class:`Targets` (or anything :func:`parse_targets` takes), or
        :class:`TargetArrays` (then ``full`` decides; default ``True``).
      phi: activation, as for :func:`jaxsig.signature`.
      params: its parameters (any pytree); the values are differentiable in them.
      rule: quadrature rule, as for :func:`jaxsig.signature`.
      full: force (``True``) or skip (``False``) the non-Gaussian signature
        components; skipped ones read ``nan``.
      polar: 2-D rule for ``xi_c`` (:class:`jaxsig.kernels.PolarRule`).

    Returns:
      Array of shape ``(T,)`` in the working dtype of ``params``.
    """
    if not isinstance(targets, (Targets, TargetArrays)):
        targets = parse_targets(targets)
    if full is None:
        full = targets.needs_signature if isinstance(targets, Targets) else True
    return combine(targets, leaf_values(targets, phi, params, rule=rule, full=full, polar=polar))


# --- Residuals, violations, margins -------------------------------------------------


def _unpack(targets, values):
    arr = _arrays(targets)
    v = jnp.asarray(values)
    dtype = v.dtype if jnp.issubdtype(v.dtype, jnp.floating) else jnp.result_type(float)
    v = v.astype(dtype)
    return arr, v, jnp.asarray(arr.op), jnp.asarray(arr.value, dtype), jnp.asarray(arr.weight, dtype)


def _masks(op, b):
    upper = (op == LE) | (op == LT)
    lower = (op == GE) | (op == GT)
    check = (upper & (b == jnp.inf)) | (lower & (b == -jnp.inf))
    return upper & ~check, lower & ~check, op == EQ, check, (op == MIN) | (op == MAX)


def residuals(targets, values):
    """Signed residuals ``r`` (see the module docstring): ``v - b`` for ``<=``, ``<``,
    ``==``; ``b - v`` for ``>=``, ``>``; ``0`` or ``+inf`` for finiteness checks;
    ``0`` for objectives. ``nan`` values give ``+inf``."""
    _, v, op, b, _ = _unpack(targets, values)
    upper, lower, eq, check, _ = _masks(op, b)
    b0 = jnp.where(jnp.isfinite(b), b, 0.0)
    r = jnp.where(upper | eq, v - b0, jnp.where(lower, b0 - v, 0.0))
    passed = jnp.where(b > 0, v < jnp.inf, v > -jnp.inf)
    r = jnp.where(check, jnp.where(passed, 0.0, jnp.inf), r)
    counted = upper | lower | eq | check
    return jnp.where(counted & jnp.isnan(v), jnp.inf, r)


def violations_of(targets, values):
    """Unweighted violations ``>= 0``: ``max(r, 0)`` for inequalities, ``|r|`` for
    equalities, ``0``/``inf`` for checks, ``0`` for objectives."""
    arr, v, op, b, _ = _unpack(targets, values)
    r = residuals(arr, v)
    return jnp.where(op == EQ, jnp.abs(r), jnp.maximum(r, 0.0))


def margins(targets, values):
    """Margins: ``-r`` for inequalities (room left; ``>= 0`` satisfied, ``> 0`` for
    strict ones), ``-|r|`` for equalities, ``0``/``-inf`` for checks, ``nan`` for objectives."""
    arr, v, op, b, _ = _unpack(targets, values)
    r = residuals(arr, v)
    out = jnp.where(op == EQ, -jnp.abs(r), -r)
    out = jnp.where(out == 0, 0.0, out)  # no "-0" for exact hits
    return jnp.where((op == MIN) | (op == MAX), jnp.nan, out)


def default_eq_tol(dtype) -> float:
    """Equality tolerance: ``1e-8`` in float64, ``1e-4`` in float32 (~1000 ulp)."""
    return 1e-8 if jnp.finfo(dtype).eps < 1e-10 else 1e-4


def satisfied(targets, values, *, eq_tol=None):
    """Boolean per target: inequality margins ``>= 0`` (``> 0`` when strict),
    ``|v - b| <= eq_tol`` for equalities (default :func:`default_eq_tol`), finite
    values for checks; objectives are always satisfied."""
    arr, v, op, b, _ = _unpack(targets, values)
    if eq_tol is None:
        eq_tol = default_eq_tol(v.dtype)
    r = residuals(arr, v)
    strict = (op == LT) | (op == GT)
    ok = jnp.where(strict, r < 0, r <= 0)
    ok = jnp.where(op == EQ, jnp.abs(r) <= eq_tol, ok)
    upper, lower, eq, check, obj = _masks(op, b)
    ok = jnp.where(check, r == 0, ok)
    return jnp.where(obj, True, ok)


def objective(targets, values):
    """``sum_i w_i v_i`` over ``minimize`` targets minus the same over ``maximize`` ones."""
    _, v, op, _, w = _unpack(targets, values)
    sign = jnp.where(op == MIN, 1.0, jnp.where(op == MAX, -1.0, 0.0)).astype(v.dtype)
    return jnp.sum(jnp.where(sign != 0, sign * w * v, 0.0))


def penalty_of(targets, values):
    """Quadratic penalty ``sum_i w_i viol_i^2 + objective``, from component values.

    Finiteness checks add ``0`` or ``inf``. Use it as a soft regulariser; for
    exact constraints use :func:`jaxsig.design`.
    """
    arr, v, op, b, w = _unpack(targets, values)
    upper, lower, eq, check, _ = _masks(op, b)
    viol = violations_of(arr, v)
    smooth = jnp.where(check, 0.0, viol)
    pen = jnp.sum(w * smooth * smooth) + objective(arr, v)
    return pen + jnp.sum(jnp.where(check, viol, 0.0))


def violations(targets, phi, params=None, *, rule=None):
    """Violation of each target by ``phi`` with ``params``: ``violations_of(evaluate(...))``.

    Returns:
      ``(T,)`` array ``>= 0``; ``0`` where satisfied (up to strictness of ``<``, ``>``).
    """
    if not isinstance(targets, (Targets, TargetArrays)):
        targets = parse_targets(targets)
    return violations_of(targets, evaluate(targets, phi, params, rule=rule))


def penalty(targets, phi, params=None, *, rule=None):
    """Scalar penalty of ``phi`` with ``params``: ``penalty_of(evaluate(...))``.

    ``sum_i w_i max(r_i, 0)^2`` over inequalities, ``w_i r_i^2`` over equalities,
    plus the weighted objectives; differentiable in ``params`` (use under
    ``jax.grad``, e.g. as a training regulariser).

    Examples:
      >>> import jaxsig
      >>> from jaxsig import targets
      >>> t = targets.parse_targets("g2 <= 0.5")
      >>> round(float(targets.penalty(t, "relu")), 6)   # (1/sqrt 2 - 0.5)^2
      0.042893
    """
    if not isinstance(targets, (Targets, TargetArrays)):
        targets = parse_targets(targets)
    return penalty_of(targets, evaluate(targets, phi, params, rule=rule))

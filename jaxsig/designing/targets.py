"""A small language for what a signature should be: ``"g2 <= 0.8"``, ``"m2 == 1"``.

Targets are what :func:`jaxsig.design` searches for, and what a training-time
regulariser penalises. Each target is one line of the grammar::

    target     := constraint | objective
    constraint := component OP number [weight]
    objective  := ("minimize" | "maximize") component [weight]
    component  := NAME ["@" sigma]
    OP         := "<=" | "<" | ">=" | ">" | "=="
    number     := a decimal number, "inf" or "-inf"
    weight     := "weight" ["="] positive number

``NAME`` is a signature component (``m1 g1 g2 m2 eta alpha_plus alpha_minus tv
c``) or an auxiliary one (``g4 b b_plus b_minus beta_plus beta_minus
dm2_dsigma``). ``@sigma`` evaluates a Gaussian component (``m1 g1 g2 m2 eta g4
dm2_dsigma``) at that input scale instead of the default. Examples:
``"g2 <= 0.8"``, ``"g2@2.0 <= 0.8"``, ``"tv < 5"``, ``"m2 == 1"``,
``"c < inf"`` (``c`` must be finite), ``"minimize eta"``, ``"maximize g1@0.5"``,
``"m1 == 0 weight 10"``. Several targets are given as a list, or in one string
separated by ``;`` or newlines.

Meaning, for a component value ``v`` and bound ``b``:

* ``v <= b``, ``v < b``, ``v >= b``, ``v > b``: inequalities; the *residual*
  ``r = v - b`` (``b - v`` for ``>=``, ``>``) must be ``<= 0`` (``< 0`` when
  strict); the *margin* is ``-r``.
* ``v == b``: equality; ``r = v - b`` must satisfy ``|r| <= eq_tol``.
* ``v < inf`` (or ``<= inf``) and ``v > -inf``: finiteness checks; ``r`` is
  ``0`` or ``+inf``. They have no gradient (a divergent integral has no
  derivative) and are checked, not optimised: to push ``c`` down, give a finite
  bound such as ``"c <= 2"``.
* ``minimize v`` / ``maximize v``: objectives, contributing ``+-weight * v``.

``weight`` scales a constraint's residual in the search and in
:func:`penalty` (it decides the trade-off when targets conflict), and an
objective's coefficient.

Two layers: :func:`evaluate` (and :func:`violations`, :func:`penalty`) take an
activation and its parameters; the methods of :class:`Targets`
(``residuals``, ``violations``, ``margins``, ``satisfied``, ``objective``,
``penalty``) take component values, so one evaluation serves them all. All of
them are pure ``jax.numpy``: they run under ``jit``, ``vmap`` and ``grad``, and
only :class:`TargetArrays` (a pytree of arrays) need cross a ``jit`` boundary,
so new bounds or weights never recompile.

Examples:
  >>> import jaxsig
  >>> from jaxsig import targets
  >>> t = targets.parse_targets(["g2 <= 0.8", "m2 == 1", "c < inf"])
  >>> values = targets.evaluate(t, "selu")
  >>> [bool(s) for s in t.satisfied(values)]
  [False, True, True]
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Any, Iterator, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core._validate import working_dtype
from jaxsig.core.signature import AUX_FIELDS, FIELDS, moments, signature_with_aux

__all__ = [
    "Target",
    "Targets",
    "TargetArrays",
    "TargetError",
    "parse_targets",
    "evaluate",
    "pick",
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
    "GRAMMAR",
    "OPS",
]

GRAMMAR = """\
    target     := constraint | objective
    constraint := component OP number [weight]
    objective  := ("minimize" | "maximize") component [weight]
    component  := NAME ["@" sigma]
    OP         := "<=" | "<" | ">=" | ">" | "=="
    number     := a decimal number, "inf" or "-inf"
    weight     := "weight" ["="] positive number
  NAME: m1 g1 g2 m2 eta alpha_plus alpha_minus tv c g4 b b_plus b_minus
        beta_plus beta_minus dm2_dsigma ("@sigma" only on m1 g1 g2 m2 eta g4 dm2_dsigma)
  Examples: "g2 <= 0.8", "g2@2.0 <= 0.8", "tv < 5", "m2 == 1", "c < inf",
            "minimize eta", "m1 == 0 weight 10\""""

COMPONENTS = tuple(FIELDS) + tuple(f for f in AUX_FIELDS if f not in ("growth", "finite"))
"""Every component a target may name: the nine signature fields, then
``g4 b b_plus b_minus beta_plus beta_minus dm2_dsigma``."""

GAUSSIAN = ("m1", "g1", "g2", "m2", "eta", "g4", "dm2_dsigma")
"""Components that are Gaussian expectations (they depend on sigma; cheap, via
:func:`jaxsig.moments`)."""

OPS = ("<=", "<", ">=", ">", "==", "minimize", "maximize")
"""Operator codes: ``TargetArrays.op[i]`` indexes this tuple."""

LE, LT, GE, GT, EQ, MIN, MAX = range(len(OPS))


class TargetError(ValueError):
    """A target that does not parse; the message names the bad token and shows :data:`GRAMMAR`."""


class Target(NamedTuple):
    """One parsed target (plain Python values).

    Attributes:
      component: one of :data:`COMPONENTS`.
      op: one of :data:`OPS`.
      value: the bound (``nan`` for objectives).
      sigma: the input scale given with ``@``, or ``None`` for the default.
      weight: positive weight (default 1).
    """

    component: str
    op: str
    value: float
    sigma: Union[float, None]
    weight: float

    @property
    def is_check(self) -> bool:
        """``v < inf`` or ``v > -inf``: a finiteness check."""
        return (self.op in ("<", "<=") and self.value == math.inf) or (
            self.op in (">", ">=") and self.value == -math.inf
        )

    def __str__(self):
        comp = self.component + ("" if self.sigma is None else f"@{_num(self.sigma)}")
        w = "" if self.weight == 1.0 else f" weight {_num(self.weight)}"
        if self.op in ("minimize", "maximize"):
            return f"{self.op} {comp}{w}"
        op = "<" if self.is_check and self.value > 0 else self.op
        op = ">" if self.is_check and self.value < 0 else op
        return f"{comp} {op} {_num(self.value)}{w}"


class TargetArrays(NamedTuple):
    """The numeric content of :class:`Targets`, shape ``(T,)`` each: a pytree to pass through ``jit``.

    Attributes:
      index: component index into :data:`COMPONENTS` (int32).
      op: operator index into :data:`OPS` (int32).
      value: bounds (``nan`` for objectives).
      weight: weights.
      sigma: input scale of each target (the default where none was given).
    """

    index: Any
    op: Any
    value: Any
    weight: Any
    sigma: Any


@dataclasses.dataclass(frozen=True, eq=False)
class Targets:
    """An immutable, ordered set of targets, parsed by :func:`parse_targets`.

    Attributes:
      specs: the parsed :class:`Target` entries.
      sigma: the default input scale of targets given without ``@``.
      arrays: :class:`TargetArrays` (float64 NumPy; cast at use).
    """

    specs: tuple[Target, ...]
    sigma: float
    arrays: TargetArrays

    def __len__(self):
        return len(self.specs)

    def __iter__(self) -> Iterator[Target]:
        return iter(self.specs)

    def __str__(self):
        return "; ".join(self.texts)

    def __repr__(self):
        return f"Targets({list(self.texts)!r}, sigma={self.sigma!r})"

    @property
    def texts(self) -> tuple[str, ...]:
        """Canonical text of each target (parses back to the same target)."""
        return tuple(str(s) for s in self.specs)

    @property
    def needs_signature(self) -> bool:
        """Whether a non-Gaussian component (``tv``, ``c``, slopes, ...) is targeted."""
        return any(s.component not in GAUSSIAN for s in self.specs)

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


# --- Parsing ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>[+-]?(?:inf(?:inity)?\b|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))"
    r"|(?P<op><=|>=|==|<|>|=)"
    r"|(?P<at>@)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<bad>\S))",
)
_OBJECTIVES = {
    "minimize": "minimize",
    "minimise": "minimize",
    "min": "minimize",
    "maximize": "maximize",
    "maximise": "maximize",
    "max": "maximize",
}


def _num(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def _tokens(text: str):
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


def _error(text: str, message: str) -> TargetError:
    return TargetError(f"cannot parse target {text!r}: {message}.\nGrammar:\n{GRAMMAR}")


class _Cursor:
    def __init__(self, text):
        self.text, self.toks, self.i = text, _tokens(text), 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "", len(self.text) + 1)

    def take(self, kind, what):
        tok = self.peek()
        if tok[0] != kind:
            got = "the end of the text" if tok[0] == "end" else f"{tok[1]!r} at column {tok[2]}"
            raise _error(self.text, f"expected {what}, got {got}")
        self.i += 1
        return tok


def _component(cur: _Cursor):
    _, name, col = cur.take("name", "a component name such as g2")
    if name not in COMPONENTS:
        close = difflib.get_close_matches(name, COMPONENTS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise _error(cur.text, f"unknown component {name!r} at column {col}{hint}")
    sigma = None
    if cur.peek()[0] == "at":
        cur.take("at", "'@'")
        _, tok, col = cur.take("num", "an input scale sigma after '@'")
        sigma = float(tok)
        if not (math.isfinite(sigma) and sigma > 0):
            raise _error(cur.text, f"sigma must be positive and finite, got {tok!r} at column {col}")
        if name not in GAUSSIAN:
            raise _error(cur.text, f"{name!r} does not depend on sigma: drop '@{tok}'")
    return name, sigma


def _weight(cur: _Cursor) -> float:
    if cur.peek()[0] == "end":
        return 1.0
    kind, tok, col = cur.peek()
    if kind != "name" or tok != "weight":
        raise _error(cur.text, f"unexpected {tok!r} at column {col}; expected 'weight W' or the end")
    cur.take("name", "'weight'")
    if cur.peek()[:2] == ("op", "="):
        cur.take("op", "'='")
    _, tok, col = cur.take("num", "a positive weight")
    w = float(tok)
    if not (math.isfinite(w) and w > 0):
        raise _error(cur.text, f"the weight must be positive and finite, got {tok!r} at column {col}")
    cur.take("end", "the end of the target")
    return w


def _parse_one(text: str) -> Target:
    cur = _Cursor(text)
    kind, tok, col = cur.peek()
    if kind == "end":
        raise _error(text, "it is empty")
    if kind == "bad":
        raise _error(text, f"unexpected character {tok!r} at column {col}")
    if kind == "name" and tok.lower() in _OBJECTIVES:
        cur.take("name", "'minimize' or 'maximize'")
        name, sigma = _component(cur)
        return Target(name, _OBJECTIVES[tok.lower()], math.nan, sigma, _weight(cur))
    name, sigma = _component(cur)
    _, op, col = cur.take("op", "an operator (<=, <, >=, >, ==)")
    if op == "=":
        raise _error(text, f"'=' at column {col} is not an operator; write '==' for equality")
    _, tok, col = cur.take("num", f"a number after {op!r}")
    value = float(tok)
    if math.isinf(value):
        if op == "==":
            raise _error(text, f"{name} == {tok} cannot be designed; write '{name} < inf' to ask for a finite value")
        if (op in ("<", "<=") and value < 0) or (op in (">", ">=") and value > 0):
            raise _error(text, f"'{name} {op} {tok}' can never hold")
    return Target(name, op, value, sigma, _weight(cur))


def parse_targets(spec, *, sigma: float = 1.0) -> Targets:
    """Parse targets from text.

    Args:
      spec: a string (one target, or several separated by ``;`` or newlines), a
        list of strings or :class:`Target`, or :class:`Targets` (returned as is
        when its default ``sigma`` matches).
      sigma: the input scale of Gaussian components given without ``@``.

    Returns:
      :class:`Targets`.

    Raises:
      TargetError: a target does not parse (names the bad token, shows the grammar).
      ValueError: ``sigma`` is not positive, or there are no targets.
    """
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma=}")
    if isinstance(spec, Targets):
        if spec.sigma == sigma:
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
            specs += [_parse_one(p) for p in re.split(r"[;\n]", item) if p.strip()]
        else:
            raise TypeError(f"each target must be a string, got {type(item).__name__}: {item!r}")
    if not specs:
        raise ValueError('no targets given; e.g. ["g2 <= 0.8", "tv < 5", "m2 == 1", "c < inf"]')
    arrays = TargetArrays(
        index=np.array([COMPONENTS.index(s.component) for s in specs], np.int32),
        op=np.array([OPS.index(s.op) for s in specs], np.int32),
        value=np.array([s.value for s in specs], np.float64),
        weight=np.array([s.weight for s in specs], np.float64),
        sigma=np.array([sigma if s.sigma is None else s.sigma for s in specs], np.float64),
    )
    return Targets(tuple(specs), sigma, arrays)


def _arrays(targets) -> TargetArrays:
    if isinstance(targets, Targets):
        return targets.arrays
    if isinstance(targets, TargetArrays):
        return targets
    return parse_targets(targets).arrays


# --- Evaluation --------------------------------------------------------------------


def pick(targets, *tables):
    """Each target's component from computed statistics.

    Args:
      targets: :class:`Targets` or :class:`TargetArrays`.
      *tables: :class:`~jaxsig.Signature`, :class:`~jaxsig.Auxiliary` and/or
        :class:`~jaxsig.Moments` evaluated at ``targets.arrays.sigma`` (fields of
        shape ``(..., T)``). A component none of them holds reads ``nan``.

    Returns:
      ``values`` of shape ``(..., T)``.
    """
    arr = _arrays(targets)
    fields = {}
    for t in tables:
        fields.update(t._asdict())
    ref = next(v for v in fields.values())
    cols = [
        jnp.asarray(fields[name], ref.dtype) if name in fields else jnp.full_like(ref, jnp.nan) for name in COMPONENTS
    ]
    table = jnp.stack(cols, axis=-1)  # (..., T, n_components)
    index = jnp.asarray(arr.index)
    return jnp.take_along_axis(table, jnp.broadcast_to(index[..., None], table.shape[:-1] + (1,)), axis=-1)[..., 0]


def evaluate(targets, phi, params=None, *, rule=None, full=None):
    """The value of each target's component for ``phi`` with ``params``.

    Gaussian components come from :func:`jaxsig.moments` at the vector of target
    input scales (cheap); if any target names ``tv``, ``c``, a slope or an
    intercept, those come from one call of :func:`jaxsig.signature` at the
    scalar default ``sigma`` (they do not depend on it; a scalar call shares
    its compilation with every other scalar call for the same activation).

    Args:
      targets: :class:`Targets` (or anything :func:`parse_targets` takes), or
        :class:`TargetArrays` (then ``full`` decides; default ``True``).
      phi: activation, as for :func:`jaxsig.signature`.
      params: its parameters (any pytree); the values are differentiable in them.
      rule: quadrature rule, as for :func:`jaxsig.signature`.
      full: force (``True``) or skip (``False``) the non-Gaussian components;
        skipped ones read ``nan``.

    Returns:
      Array of shape ``(T,)`` in the working dtype of ``params``.
    """
    if not isinstance(targets, (Targets, TargetArrays)):
        targets = parse_targets(targets)
    if full is None:
        full = targets.needs_signature if isinstance(targets, Targets) else True
    arr = _arrays(targets)
    dtype = working_dtype({}, params)
    sigma = jnp.asarray(arr.sigma, dtype)
    gauss = moments(phi, sigma, params=params, rule=rule)
    if not full:
        return pick(arr, gauss)
    at = targets.sigma if isinstance(targets, Targets) else sigma[0]
    sig, aux = signature_with_aux(phi, jnp.asarray(at, dtype), params=params, rule=rule)

    # Broadcast the sigma-independent components over the targets; the Gaussian
    # ones are then taken from ``gauss`` (later tables win in ``pick``).
    def wide(t):
        return jax.tree_util.tree_map(lambda f: jnp.broadcast_to(f, sigma.shape), t)

    return pick(arr, wide(sig), wide(aux), gauss)


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

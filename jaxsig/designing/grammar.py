"""The grammar of targets: text -> :class:`Target` (see :mod:`jaxsig.targets` for the meaning).

One target is a constraint ``expr OP bound [weight]`` or an objective
``minimize|maximize expr [weight]``; :data:`GRAMMAR` is the full grammar, and
:mod:`jaxsig.designing.expressions` parses the arithmetic. Errors are
:class:`TargetError`, naming the bad token and its column, and showing the grammar.
"""

from __future__ import annotations

import difflib
import math
from typing import NamedTuple, Optional, Union

from jaxsig.core.signature import AUX_FIELDS, FIELDS
from jaxsig.designing import expressions as _expr
from jaxsig.designing.network import NETWORK

__all__ = [
    "GRAMMAR",
    "COMPONENTS",
    "GAUSSIAN",
    "NETWORK",
    "FUNCTIONS",
    "OPS",
    "Target",
    "TargetError",
    "parse_one",
    "kind",
]

GRAMMAR = """\
    target     := constraint | objective
    constraint := expr OP bound [weight]
    objective  := ("minimize" | "maximize") expr [weight]
    expr       := term (("+" | "-") term)*       term  := unary (("*" | "/") unary)*
    unary      := ("-" | "+") unary | power      power := atom [("^" | "**") unary]
    atom       := number | component | FUNC "(" expr ")" | "(" expr ")"
    component  := NAME ["@" sigma]
    OP         := "<=" | "<" | ">=" | ">" | "=="
    bound      := expr | "inf" | "-inf"          (an expression of components: lhs - (rhs) OP 0)
    weight     := "weight" ["="] positive number
  NAME: m1 g1 g2 m2 eta alpha_plus alpha_minus tv c g4 b b_plus b_minus
        beta_plus beta_minus dm2_dsigma ("@sigma" only on m1 g1 g2 m2 eta g4 dm2_dsigma)
        chi1 q_star dV xi_q xi_c (mean field at the operating point q=, sigma_b2=)
  FUNC: sqrt abs log exp
  Examples: "g2 <= 0.8", "g2@2.0 <= 0.8", "tv < 5", "m2 == 1", "c < inf",
            "minimize eta", "m1 == 0 weight 10", "g2^2 / m2 == 1", "chi1 == 1\""""

COMPONENTS = tuple(FIELDS) + tuple(f for f in AUX_FIELDS if f not in ("growth", "finite")) + NETWORK
"""Every component a target may name: the nine signature fields, then
``g4 b b_plus b_minus beta_plus beta_minus dm2_dsigma``, then the mean-field
``chi1 q_star dV xi_q xi_c``."""

GAUSSIAN = ("m1", "g1", "g2", "m2", "eta", "g4", "dm2_dsigma")
"""Components that are Gaussian expectations (they depend on sigma; cheap, via
:func:`jaxsig.moments`)."""

FUNCTIONS = _expr.FUNCTIONS

OPS = ("<=", "<", ">=", ">", "==", "minimize", "maximize")
"""Operator codes: ``TargetArrays.op[i]`` indexes this tuple."""

LE, LT, GE, GT, EQ, MIN, MAX = range(len(OPS))


def kind(name: str) -> str:
    """``"gauss"`` (a Gaussian expectation), ``"network"`` (mean field) or ``"signature"`` (the rest)."""
    return "gauss" if name in GAUSSIAN else "network" if name in NETWORK else "signature"


class TargetError(ValueError):
    """A target that does not parse; the message names the bad token and shows :data:`GRAMMAR`."""


class Target(NamedTuple):
    """One parsed target (plain Python values).

    Attributes:
      component: the component (one of :data:`COMPONENTS`), or the canonical
        text of the expression.
      op: one of :data:`OPS`.
      value: the bound (``nan`` for objectives).
      sigma: the input scale given with ``@`` to a lone component, else ``None``.
      weight: positive weight (default 1).
      expr: the expression tree (:mod:`jaxsig.designing.expressions`), or
        ``None`` for a lone component.
    """

    component: str
    op: str
    value: float
    sigma: Union[float, None]
    weight: float
    expr: Optional[tuple] = None

    @property
    def tree(self) -> tuple:
        """The expression tree (a lone component is ``("comp", name, sigma)``)."""
        return ("comp", self.component, self.sigma) if self.expr is None else self.expr

    @property
    def names(self) -> tuple[str, ...]:
        """The component names the target reads."""
        return tuple(dict.fromkeys(leaf[1] for leaf in _expr.leaves(self.tree)))

    @property
    def is_check(self) -> bool:
        """``v < inf`` or ``v > -inf``: a finiteness check."""
        return (self.op in ("<", "<=") and self.value == math.inf) or (
            self.op in (">", ">=") and self.value == -math.inf
        )

    def __str__(self):
        comp = _expr.to_text(self.tree)
        w = "" if self.weight == 1.0 else f" weight {_expr.number_text(self.weight)}"
        if self.op in ("minimize", "maximize"):
            return f"{self.op} {comp}{w}"
        op = "<" if self.is_check and self.value > 0 else self.op
        op = ">" if self.is_check and self.value < 0 else op
        return f"{comp} {op} {_expr.number_text(self.value)}{w}"


# --- Parsing ----------------------------------------------------------------------

_OBJECTIVES = {
    "minimize": "minimize",
    "minimise": "minimize",
    "min": "minimize",
    "maximize": "maximize",
    "maximise": "maximize",
    "max": "maximize",
}


def _error(text: str, message: str) -> TargetError:
    return TargetError(f"cannot parse target {text!r}: {message}.\nGrammar:\n{GRAMMAR}")


def _component(name, sigma_tok, col):
    """The ``("comp", name, sigma)`` node of a component, checked."""
    if name not in COMPONENTS:
        close = difflib.get_close_matches(name, COMPONENTS + _expr.FUNCTIONS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise _expr.ParseError(f"unknown component {name!r} at column {col}{hint}")
    if sigma_tok is None:
        return ("comp", name, None)
    _, tok, scol = sigma_tok
    sigma = float(tok)
    if not (math.isfinite(sigma) and sigma > 0):
        raise _expr.ParseError(f"sigma must be positive and finite, got {tok!r} at column {scol}")
    if name in NETWORK:
        raise _expr.ParseError(
            f"{name!r} is read at the operating point (the q= and sigma_b2= keywords), not at an input scale: "
            f"drop '@{tok}'"
        )
    if name not in GAUSSIAN:
        raise _expr.ParseError(f"{name!r} does not depend on sigma: drop '@{tok}'")
    return ("comp", name, sigma)


def _weight(cur: _expr.Parser) -> float:
    if cur.at("end"):
        return 1.0
    kind, tok, col = cur.peek()
    if kind != "name" or tok != "weight":
        raise _expr.ParseError(f"unexpected {tok!r} at column {col}; expected 'weight W' or the end")
    cur.take("name", "'weight'")
    if cur.at("op", "="):
        cur.take("op", "'='")
    sign = ""
    if cur.at("arith", "-") or cur.at("arith", "+"):
        sign = cur.take("arith", "a sign")[1]
    _, tok, col = cur.take("num", "a positive weight")
    tok = sign + tok
    w = float(tok)
    if not (math.isfinite(w) and w > 0):
        raise _expr.ParseError(f"the weight must be positive and finite, got {tok!r} at column {col}")
    cur.take("end", "the end of the target")
    return w


def _make(tree, op, value, weight) -> Target:
    if tree[0] == "comp":
        return Target(tree[1], op, value, tree[2], weight)
    return Target(_expr.to_text(tree), op, value, None, weight, tree)


def _bound(cur: _expr.Parser, lhs, op):
    """``(tree, value)`` of the right-hand side: a number, +-inf, or an expression moved to the left."""
    text = cur.text
    kind, tok, col = cur.peek()
    sign = 1.0
    if kind == "arith" and tok in "+-" and cur.i + 1 < len(cur.toks) and cur.toks[cur.i + 1][0] == "num":
        nxt = cur.toks[cur.i + 1][1]
        if nxt.startswith("inf"):
            cur.i += 1
            sign = -1.0 if tok == "-" else 1.0
            kind, tok, col = cur.peek()
    if kind == "num" and tok.startswith("inf"):
        cur.i += 1
        value = sign * math.inf
        name = _expr.to_text(lhs)
        if op == "==":
            raise _expr.ParseError(
                f"{name} == {_expr.number_text(value)} cannot be designed; "
                f"write '{name} < inf' to ask for a finite value"
            )
        if (op in ("<", "<=") and value < 0) or (op in (">", ">=") and value > 0):
            raise _expr.ParseError(f"'{name} {op} {_expr.number_text(value)}' can never hold")
        return lhs, value
    if kind == "end":
        raise _expr.ParseError(f"expected a number after {op!r}, got the end of the text")
    if kind not in ("num", "name", "arith", "paren"):
        raise _expr.ParseError(f"expected a number after {op!r}, got {tok!r} at column {col}")
    rhs = cur.expr()
    if _expr.is_constant(rhs):
        value = _expr.constant(rhs)
        if not math.isfinite(value):
            raise _expr.ParseError(f"the bound {_expr.to_text(rhs)!r} of {text!r} is not a finite number")
        return lhs, value
    return ("sub", lhs, rhs), 0.0


def parse_one(text: str) -> Target:
    """Parse one target (no ``;``); raises :class:`TargetError`."""
    cur = _expr.Parser(text, _component)
    kind, tok, col = cur.peek()
    if kind == "end":
        raise _error(text, "it is empty")
    try:
        if kind == "bad":
            raise _expr.ParseError(f"unexpected character {tok!r} at column {col}")
        if kind == "name" and tok.lower() in _OBJECTIVES:
            cur.take("name", "'minimize' or 'maximize'")
            tree = cur.expr()
            if _expr.is_constant(tree):
                raise _expr.ParseError(f"the objective {_expr.to_text(tree)!r} names no component")
            return _make(tree, _OBJECTIVES[tok.lower()], math.nan, _weight(cur))
        lhs = cur.expr()
        if _expr.is_constant(lhs):
            raise _expr.ParseError(f"the left-hand side {_expr.to_text(lhs)!r} names no component")
        _, op, col = cur.take("op", "an operator (<=, <, >=, >, ==)")
        if op == "=":
            raise _expr.ParseError(f"'=' at column {col} is not an operator; write '==' for equality")
        if cur.at("op"):
            raise _expr.ParseError(f"expected a number after {op!r}, got {cur.describe(cur.peek())}")
        tree, value = _bound(cur, lhs, op)
        return _make(tree, op, value, _weight(cur))
    except _expr.ParseError as e:
        raise _error(text, str(e)) from None

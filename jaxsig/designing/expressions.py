"""Arithmetic over signature components: the expression half of the target language.

An expression combines components with ``+ - * / ^`` (``**`` is a synonym of
``^``), numbers, parentheses and the functions ``sqrt abs log exp``::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("-" | "+") unary | power
    power  := atom [("^" | "**") unary]
    atom   := number | component ["@" sigma] | FUNC "(" expr ")" | "(" expr ")"

``^`` binds tighter than unary minus and is right-associative, as in
mathematics: ``-g2^2`` is ``-(g2^2)`` and ``2^3^2`` is ``2^9``.

An expression is a tree of tuples (hashable, so it can be static under ``jit``):

* ``("num", x)``: a number ``x >= 0`` (negative numbers are ``("neg", ...)``);
* ``("comp", name, sigma)``: a component, ``sigma`` ``None`` for the default;
* ``("leaf", k)``: the ``k``-th entry of a table of component values (what
  :func:`bind` turns components into);
* ``("neg", a)``, ``("fn", f, a)`` and ``("add" | "sub" | "mul" | "div" | "pow", a, b)``.

:func:`to_text` prints the tree with the fewest parentheses that parse back
to the same tree; :func:`evaluate` computes it with ``jax.numpy``,
differentiably. This module knows nothing of which names are components: the
caller (:mod:`jaxsig.designing.targets`) checks them in :class:`Parser`.
"""

from __future__ import annotations

import math
import re
from typing import Callable

import jax.numpy as jnp
import numpy as np

__all__ = ["FUNCTIONS", "Parser", "ParseError", "to_text", "leaves", "bind", "evaluate", "is_constant", "constant"]

FUNCTIONS = ("sqrt", "abs", "log", "exp")
"""Functions an expression may call."""

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>(?:inf(?:inity)?\b|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))"
    r"|(?P<op><=|>=|==|<|>|=)"
    r"|(?P<pow>\*\*|\^)"
    r"|(?P<arith>[-+*/])"
    r"|(?P<paren>[()])"
    r"|(?P<at>@)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<bad>\S))",
)
_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "pow": 4}


class ParseError(ValueError):
    """A malformed expression; ``message`` says what was expected and where (1-based column)."""


def number_text(v: float) -> str:
    """Shortest round-tripping text of a number (``"2"``, ``"0.1"``, ``"inf"``)."""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def tokens(text: str) -> list:
    """``(kind, text, column)`` triples; kinds: num op pow arith paren at name bad."""
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


class Parser:
    """A recursive-descent parser over the tokens of one target.

    Args:
      text: the target text.
      component: ``component(name, sigma_text, column) -> node`` checks a
        component name (and its ``@sigma``) and returns its ``("comp", ...)`` node,
        raising :class:`ParseError` for unknown names.
    """

    def __init__(self, text: str, component: Callable):
        self.text, self.toks, self.i = text, tokens(text), 0
        self.component = component

    # -- cursor --
    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "", len(self.text) + 1)

    def at(self, kind, value=None) -> bool:
        tok = self.peek()
        return tok[0] == kind and (value is None or tok[1] == value)

    def take(self, kind, what, value=None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise ParseError(f"expected {what}, got {self.describe(tok)}")
        self.i += 1
        return tok

    @staticmethod
    def describe(tok) -> str:
        return "the end of the text" if tok[0] == "end" else f"{tok[1]!r} at column {tok[2]}"

    # -- grammar --
    def expr(self):
        node = self.term()
        while self.at("arith", "+") or self.at("arith", "-"):
            _, sym, _ = self.take("arith", "'+' or '-'")
            node = (_BINARY[sym], node, self.term())
        return node

    def term(self):
        node = self.unary()
        while self.at("arith", "*") or self.at("arith", "/"):
            _, sym, _ = self.take("arith", "'*' or '/'")
            node = (_BINARY[sym], node, self.unary())
        return node

    def unary(self):
        if self.at("arith", "-"):
            self.take("arith", "'-'")
            return ("neg", self.unary())
        if self.at("arith", "+"):
            self.take("arith", "'+'")
            return self.unary()
        return self.power()

    def power(self):
        base = self.atom()
        if self.at("pow"):
            self.take("pow", "'^'")
            return ("pow", base, self.unary())
        return base

    def atom(self):
        kind, tok, col = self.peek()
        if kind == "num":
            self.i += 1
            value = float(tok)
            if math.isinf(value):
                raise ParseError(
                    f"'inf' at column {col} can only be a bound (as in 'c < inf'), not part of an expression"
                )
            return ("num", value)
        if kind == "paren" and tok == "(":
            self.i += 1
            node = self.expr()
            self.take("paren", f"')' to close the '(' at column {col}", ")")
            return node
        if kind == "name" and tok in FUNCTIONS:
            self.i += 1
            self.take("paren", f"'(' after {tok!r}", "(")
            node = self.expr()
            self.take("paren", f"')' to close {tok}(", ")")
            return ("fn", tok, node)
        if kind == "name":
            self.i += 1
            sigma = None
            if self.at("at"):
                self.take("at", "'@'")
                sigma = self.take("num", "an input scale sigma after '@'")
            return self.component(tok, sigma, col)
        raise ParseError(f"expected a component name such as g2, a number or '(', got {self.describe(self.peek())}")


# --- Printing, walking, evaluating ----------------------------------------------------------------


def _prec(node) -> int:
    return _PREC.get(node[0], 5)


def to_text(node) -> str:
    """Canonical text: parses back to the same tree (fewest parentheses)."""
    kind = node[0]
    if kind == "num":
        return number_text(node[1])
    if kind == "comp":
        return node[1] if node[2] is None else f"{node[1]}@{number_text(node[2])}"
    if kind == "leaf":
        return f"#{node[1]}"
    if kind == "fn":
        return f"{node[1]}({to_text(node[2])})"
    if kind == "neg":
        inner = to_text(node[1])
        return f"-({inner})" if _prec(node[1]) < _PREC["neg"] else f"-{inner}"
    a, b = node[1], node[2]
    if kind == "pow":
        left = f"({to_text(a)})" if _prec(a) <= _PREC["pow"] else to_text(a)
        right = f"({to_text(b)})" if _prec(b) < _PREC["neg"] else to_text(b)
        return f"{left}^{right}"
    p = _PREC[kind]
    left = f"({to_text(a)})" if _prec(a) < p else to_text(a)
    right = f"({to_text(b)})" if _prec(b) <= p else to_text(b)
    return f"{left} {_SYMBOL[kind]} {right}"


def _children(node):
    if node[0] in ("num", "comp", "leaf"):
        return ()
    if node[0] == "fn":
        return (node[2],)
    return node[1:]


def leaves(node) -> list:
    """The ``("comp", ...)`` nodes of a tree, left to right (repeats included)."""
    if node[0] == "comp":
        return [node]
    return [leaf for child in _children(node) for leaf in leaves(child)]


def bind(node, index: Callable):
    """The tree with each ``("comp", name, sigma)`` replaced by ``("leaf", index(node))``."""
    kind = node[0]
    if kind == "comp":
        return ("leaf", index(node))
    if kind in ("num", "leaf"):
        return node
    if kind == "fn":
        return ("fn", node[1], bind(node[2], index))
    return (kind, *(bind(c, index) for c in node[1:]))


def is_constant(node) -> bool:
    """Whether the tree holds no component."""
    return not leaves(node) and not any(n[0] == "leaf" for n in _walk(node))


def _walk(node):
    yield node
    for child in _children(node):
        yield from _walk(child)


def constant(node) -> float:
    """The value of a constant tree, in float64 NumPy whatever JAX's precision (``nan`` where undefined)."""
    kind = node[0]
    if kind == "num":
        return float(node[1])
    if kind in ("comp", "leaf"):
        raise ValueError(f"{to_text(node)!r} is not a constant")
    with np.errstate(all="ignore"):
        if kind == "neg":
            return -constant(node[1])
        if kind == "fn":
            x = np.float64(constant(node[2]))
            return float({"sqrt": np.sqrt, "abs": np.abs, "log": np.log, "exp": np.exp}[node[1]](x))
        a, b = np.float64(constant(node[1])), np.float64(constant(node[2]))
        ops = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power}
        return float(ops[kind](a, b))


def _sqrt(x):
    # Double where: sqrt'(0) = inf would make every gradient through sqrt(0) NaN.
    pos = x > 0
    root = jnp.sqrt(jnp.where(pos, x, 1.0))
    return jnp.where(pos, root, jnp.where(x == 0, 0.0, jnp.nan))


def _log(x):
    # Double where: log of a non-positive value has no gradient; keep NaN out of it.
    pos = x > 0
    out = jnp.log(jnp.where(pos, x, 1.0))
    return jnp.where(pos, out, jnp.where(x == 0, -jnp.inf, jnp.nan))


_FN = {"sqrt": _sqrt, "abs": jnp.abs, "log": _log, "exp": jnp.exp}


def _power(a, b_node, b):
    if b_node[0] == "num" and float(b_node[1]).is_integer() and abs(b_node[1]) <= 64:
        # Integer powers by repeated multiplication: exact for negative bases, and
        # a finite gradient at a = 0.
        return a ** int(b_node[1])
    return jnp.power(a, b)


def evaluate(node, values):
    """The value of a tree, ``values[..., k]`` standing for ``("leaf", k)``.

    Pure ``jax.numpy``, differentiable: ``sqrt`` and ``log`` return ``nan`` for
    negative arguments (and ``0``, ``-inf`` at ``0``) with gradients that stay
    finite where the value is; integer powers are exact for negative bases.
    """
    kind = node[0]
    if kind == "num":
        return jnp.asarray(node[1], values.dtype)
    if kind == "leaf":
        return values[..., node[1]]
    if kind == "comp":
        raise ValueError(f"unbound component {to_text(node)!r}: bind() the tree to a table first")
    if kind == "neg":
        return -evaluate(node[1], values)
    if kind == "fn":
        return _FN[node[1]](jnp.asarray(evaluate(node[2], values)))
    a, b = evaluate(node[1], values), evaluate(node[2], values)
    if kind == "add":
        return a + b
    if kind == "sub":
        return a - b
    if kind == "mul":
        return a * b
    if kind == "div":
        return jnp.asarray(a) / b
    return _power(jnp.asarray(a), node[2], b)

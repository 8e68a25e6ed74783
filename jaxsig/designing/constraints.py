"""Parameter constraints of a design: fixed values and box bounds, by parameter name.

``fixed={"shift": 0.0}`` takes ``shift`` out of the search: it keeps exactly
that value. ``bounds={"alpha": (0.0, 3.0)}`` keeps ``alpha`` in the closed
interval ``[0, 3]`` (either end may be infinite). A name is a parameter of the
family (``"shift"``, ``"numerator"``: every entry of an array parameter), an
entry of an array parameter (``"numerator[1]"``), or a path into nested
parameters (``"outer.inner"``); :func:`names` lists them.

Method: projection. Every iterate of the search is projected onto the feasible
set, ``P(theta) = fixed where fixed, else clip(theta, lo, hi)``; the loss the
optimizer sees is ``L(P(theta))``, so line searches (L-BFGS) evaluate projected
points, gradients of fixed entries are zero, and an entry at a bound whose
gradient points outward stays there (projected gradient descent). Unlike a
smooth reparametrisation (``lo + (hi - lo) sigmoid(z)``), projection reaches
optima *on* a bound exactly. The Gauss–Newton polish freezes fixed entries and
entries that sit on a bound its step would cross, and projects too.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Box", "build", "project", "names"]


class Box(NamedTuple):
    """The feasible set as pytrees shaped like the parameters (float64 NumPy; cast at use).

    Attributes:
      free: ``True`` where the entry is optimised.
      value: the fixed value where not free (``0`` elsewhere).
      lo, hi: bounds of the free entries (``-inf``, ``inf`` when unbounded).
    """

    free: Any
    value: Any
    lo: Any
    hi: Any


def _key_text(key) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return f"[{key.idx}]"
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    return str(key)


def _leaf_names(params) -> list[str]:
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        text = ""
        for key in path:
            part = _key_text(key)
            text += part if part.startswith("[") or not text else "." + part
        out.append(text)
    return out


def names(params) -> list[str]:
    """The names :func:`build` accepts for ``params``: every leaf, then every entry of array leaves."""
    out = []
    for name, leaf in zip(_leaf_names(params), jax.tree_util.tree_leaves(params)):
        out.append(name)
        size = int(np.size(leaf))
        if np.ndim(leaf) == 1 and size > 1:
            out += [f"{name}[{i}]" for i in range(size)]
    return out


_ENTRY = re.compile(r"^(?P<leaf>.+)\[(?P<i>\d+)\]$")


def _locate(name: str, leaf_names, shapes, what: str):
    """``(leaf index, flat entry index or None)`` of a parameter name."""
    if name in leaf_names:
        return leaf_names.index(name), None
    m = _ENTRY.match(name)
    if m and m["leaf"] in leaf_names:
        k = leaf_names.index(m["leaf"])
        i, size = int(m["i"]), int(np.prod(shapes[k], dtype=int))
        if i >= size:
            raise ValueError(f"{what}: {name!r} is out of range: {m['leaf']!r} has {size} entries")
        return k, i
    raise ValueError(f"{what}: unknown parameter {name!r}; the parameters are {', '.join(leaf_names)}")


def _float(v, what) -> float:
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {v!r}") from None
    if math.isnan(out):
        raise ValueError(f"{what} must not be NaN")
    return out


def _set(arrays, k, i, v):
    if i is None:
        arrays[k][...] = v
    else:
        arrays[k].reshape(-1)[i] = v


def _apply_fixed(fixed, leaf_names, shapes, free, value):
    record = {}
    for name, v in fixed.items():
        k, i = _locate(str(name), leaf_names, shapes, "fixed")
        arr = np.asarray(v, np.float64)
        if arr.ndim and (i is not None or arr.shape != shapes[k]):
            raise ValueError(f"fixed: {name!r} takes a number or an array of shape {shapes[k]}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"fixed: the value of {name!r} must be finite, got {v!r}")
        _set(free, k, i, False)
        _set(value, k, i, arr)
        record[str(name)] = arr.tolist()
    return record


def _apply_bounds(bounds, leaf_names, shapes, free, lo, hi):
    record = {}
    for name, pair in bounds.items():
        k, i = _locate(str(name), leaf_names, shapes, "bounds")
        try:
            a, b = pair
        except (TypeError, ValueError):
            raise TypeError(f"bounds: {name!r} takes a pair (lo, hi), got {pair!r}") from None
        a, b = _float(a, f"bounds[{name!r}][0]"), _float(b, f"bounds[{name!r}][1]")
        if not a < b:
            hint = f"; to hold it at {a:g}, use fixed={{{str(name)!r}: {a:g}}}" if a == b else ""
            raise ValueError(f"bounds: {name!r} needs lo < hi, got ({a:g}, {b:g}){hint}")
        entries = free[k] if i is None else free[k].reshape(-1)[i]
        if not np.all(entries):
            raise ValueError(f"bounds: {name!r} is also fixed; give it either a fixed value or bounds")
        _set(lo, k, i, a)
        _set(hi, k, i, b)
        record[str(name)] = (a, b)
    return record


def build(params, fixed=None, bounds=None) -> tuple[Box, dict, dict]:
    """The :class:`Box` of ``fixed`` values and ``bounds`` for parameters shaped like ``params``.

    Args:
      params: the family's parameters (any pytree of arrays).
      fixed: ``{name: value}``; a value is a number (every entry of the named
        parameter) or an array of its shape.
      bounds: ``{name: (lo, hi)}`` with ``lo < hi``; ``-inf``/``inf`` for no bound.

    Returns:
      ``(box, fixed, bounds)``: the box, and the two dicts normalised (names as
      given; values as floats or lists) for the result and its JSON.

    Raises:
      ValueError, TypeError: an unknown name (the message lists the valid ones),
        a value of the wrong shape, ``lo >= hi``, or an entry both fixed and bounded.
    """
    fixed, bounds = dict(fixed or {}), dict(bounds or {})
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaf_names = _leaf_names(params)
    shapes = [np.shape(leaf) for leaf in leaves]
    free = [np.ones(s, bool) for s in shapes]
    value = [np.zeros(s, np.float64) for s in shapes]
    lo = [np.full(s, -np.inf) for s in shapes]
    hi = [np.full(s, np.inf) for s in shapes]
    fixed_rec = _apply_fixed(fixed, leaf_names, shapes, free, value)
    bounds_rec = _apply_bounds(bounds, leaf_names, shapes, free, lo, hi)
    if not any(np.any(f) for f in free):
        raise ValueError("fixed: every parameter is fixed; leave at least one free to design")
    box = Box(*(jax.tree_util.tree_unflatten(treedef, t) for t in (free, value, lo, hi)))
    return box, fixed_rec, bounds_rec


def project(box: Box, params):
    """``P(params)``: fixed entries set, free ones clipped to ``[lo, hi]``.

    Written with ``where`` rather than ``clip``, so that an entry exactly on a
    bound has gradient 1 (``clip``'s ``max`` splits it in half there) and one
    outside has gradient 0. Broadcasts over leading axes of ``params`` (restarts).
    """

    def one(p, free, value, lo, hi):
        lo, hi = jnp.asarray(lo, p.dtype), jnp.asarray(hi, p.dtype)
        inside = jnp.where(p < lo, lo, jnp.where(p > hi, hi, p))
        return jnp.where(free, inside, jnp.asarray(value, p.dtype))

    return jax.tree_util.tree_map(one, params, *box)

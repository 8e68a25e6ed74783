"""Numbers for people and for JSON: one formatter and one encoder for every wing.

JSON has no infinities or NaN. jaxsig writes ``inf`` and ``-inf`` as the strings
``"inf"`` and ``"-inf"`` (a divergent component is a result, not an error) and
NaN as ``null`` (no value); :func:`from_json_number` reads both back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["format_number", "json_number", "from_json_number", "to_json"]


def format_number(v, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits, ``inf``/``-inf``,
    NaN as ``undefined``, and ``|v| < 1e-12`` as ``0`` (rounding noise of
    quantities that vanish, such as ``m1`` of an odd activation)."""
    v = float(v)
    if math.isnan(v):
        return "undefined"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if abs(v) < 1e-12:
        return "0"
    return f"{v:.{digits}g}"


def json_number(v) -> Any:
    """A float as JSON: itself, ``"inf"``/``"-inf"``, or ``None`` for NaN."""
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def from_json_number(v) -> float:
    """The inverse of :func:`json_number` (also accepts ``"nan"``)."""
    if v is None:
        return math.nan
    return float(v)


def to_json(tree) -> Any:
    """Arrays, NumPy scalars and nested dicts/lists/tuples as JSON-safe values
    (floats through :func:`json_number`)."""
    if isinstance(tree, dict):
        return {k: to_json(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_json(v) for v in tree]
    if isinstance(tree, (bool, np.bool_)):
        return bool(tree)
    if isinstance(tree, (int, np.integer)):
        return int(tree)
    if isinstance(tree, (float, np.floating)):
        return json_number(tree)
    if isinstance(tree, np.ndarray) or hasattr(tree, "__array__"):
        return to_json(np.asarray(tree).tolist())
    return tree

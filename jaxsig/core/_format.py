"""Numbers for people and for JSON: one formatter, one table renderer and one encoder for every wing.

JSON has no infinities or NaN. jaxsig writes ``inf`` and ``-inf`` as the strings
``"inf"`` and ``"-inf"`` (a divergent component is a result, not an error) and
NaN as ``null`` (no value); :func:`from_json_number` reads both back.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["format_number", "json_number", "from_json_number", "to_json", "render_table"]


def format_number(v, digits: int = 4, *, nan: str = "undefined", zero_below: float = 1e-12) -> str:
    """A number for people: ``digits`` significant digits, ``inf``/``-inf``,
    NaN as ``nan`` (``undefined``), and ``|v| < zero_below`` as ``0`` (rounding
    noise of quantities that vanish, such as ``m1`` of an odd activation; pass
    ``zero_below=0`` where tiny values are results, such as the variance of a
    dying network)."""
    v = float(v)
    if math.isnan(v):
        return nan
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if abs(v) < zero_below:
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


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str = "text", align: str = "") -> str:
    """A table as aligned text or Markdown; ``align[i] == 'l'`` left-aligns column i."""
    align = align.ljust(len(header), "r")
    if fmt == "markdown":

        def esc(s):
            return str(s).replace("|", "\\|")

        lines = [
            "| " + " | ".join(esc(h) for h in header) + " |",
            "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
        ]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]

    def pad(s, i):
        return str(s).ljust(widths[i]) if align[i] == "l" else str(s).rjust(widths[i])

    lines = ["  ".join(pad(h, i) for i, h in enumerate(header)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(pad(c, i) for i, c in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)

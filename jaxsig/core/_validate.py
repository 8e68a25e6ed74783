"""Input validation shared by every public entry point: one checker per concept.

Each checker raises eagerly, naming the argument and how to fix it, when the
value is concrete; under ``jit``/``vmap`` (a tracer) it does nothing, and the
computation reports through its status fields instead.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core._numerics import is_concrete

__all__ = ["check_range", "working_dtype"]

_SUPPORTED = "float32 or float64 (float16 and bfloat16 are too coarse for the quadrature)"


def _leaf_dtype(name: str, value) -> Any:
    """The dtype ``value`` would have as an array, or a TypeError naming ``name``."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a number or an array of floating-point numbers, got {value!r}")
    dt = getattr(value, "dtype", None)
    if dt is None:
        try:
            dt = np.asarray(value).dtype
        except Exception as e:
            raise TypeError(f"{name} could not be read as an array ({e})") from e
        if dt.kind in "OUSV":
            raise TypeError(f"{name} must hold numbers, got {value!r}")
        # Python scalars and lists are weakly typed: they follow the others.
        return None
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"{name} has dtype {dt}; pass floating-point values, e.g. {name}=jnp.asarray({name}, dtype=jnp.float32)"
        )
    return jnp.dtype(dt)


def working_dtype(arrays: Mapping[str, Any], params: Any = None) -> jnp.dtype:
    """The floating dtype a computation runs in: that of its inputs, at least float32.

    Args:
      arrays: the numeric arguments by name (``{"sigma": sigma, "mu": mu}``);
        each must be floating point (or a Python number).
      params: activation parameters (any pytree); their floating leaves take
        part in the promotion, integer leaves are cast.

    Raises:
      TypeError: an argument is not numeric or has an integer dtype (the
        message names it), or the result would be float16/bfloat16.
    """
    dtypes = []
    for name, value in arrays.items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                dt = _leaf_dtype(f"{name}[{i}]", v)
                if dt is not None:
                    dtypes.append(dt)
            continue
        dt = _leaf_dtype(name, value)
        if dt is not None:
            dtypes.append(dt)
    for leaf in jax.tree_util.tree_leaves(params):
        dt = getattr(leaf, "dtype", None)
        if dt is not None and jnp.issubdtype(dt, jnp.floating):
            dtypes.append(jnp.dtype(dt))
    dtype = jnp.dtype(jnp.result_type(*dtypes, 0.0)) if dtypes else jnp.dtype(jnp.result_type(0.0))
    if dtype.itemsize < 4:
        raise TypeError(
            f"inputs have dtype {dtype.name}; jaxsig computes in {_SUPPORTED}. Cast the inputs "
            "with .astype(jnp.float32) and the result back if you need to."
        )
    return dtype


def check_range(
    name: str, value, *, low: float = -np.inf, strict: bool = False, hint: str = "", what: str = ""
) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` is finite and ``> low``
    (``strict``) or ``>= low``; ``what`` replaces the generic description
    ("positive and finite"). No-op for tracers."""
    if not is_concrete(value):
        return
    a = np.asarray(value)
    ok = np.isfinite(a) & ((a > low) if strict else (a >= low))
    if not np.all(ok):
        if not what:
            if low == -np.inf:
                what = "finite"
            elif low == 0:
                what = "positive and finite" if strict else "non-negative and finite"
            else:
                what = f"finite and {'>' if strict else '>='} {low:g}"
        bad = a[~ok].ravel()[:3] if a.ndim else a
        raise ValueError(f"{name} must be {what}, got {name}={bad}" + (f" ({hint})" if hint else ""))

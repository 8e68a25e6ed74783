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

__all__ = ["check_params", "check_range", "working_dtype"]

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


def _shape_dtype(leaf):
    """``(shape, dtype)`` of an array-like leaf (arrays, tracers, ``ShapeDtypeStruct``,
    Python numbers), or ``None`` where it holds no numbers."""
    if isinstance(leaf, (str, bytes)):
        return None
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(leaf.shape), np.dtype(leaf.dtype)
    try:
        a = np.asarray(leaf)
    except Exception:
        return None
    return a.shape, a.dtype


def check_params(owner: str, params, defaults=None, *, batched: bool = False) -> None:
    """Raise, naming the offending entry, where ``params`` cannot parametrise ``owner``.

    Every leaf must hold real numbers (a Python number, or an array of a
    boolean, integer or floating dtype: it is cast to the working dtype); a
    string such as ``"1"``, which NumPy would silently read as ``1.0``, is refused.
    Where ``owner`` has ``defaults``, ``params`` must have their pytree structure
    (the same dictionary keys) and each leaf their shape: one parameter set per
    call, since ``phi(x, params)`` with a batched leaf no longer maps each entry
    of ``x`` independently. Shapes and dtypes are static, so this holds under
    ``jit`` and ``vmap`` too (there a leaf is one row of the batch). With
    ``batched``, every leaf has a leading batch axis, which the shapes skip.

    Raises:
      TypeError: a leaf is not numeric, or the structure differs from the defaults.
      ValueError: a leaf's shape differs from its default's.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        where = "params" + jax.tree_util.keystr(path)
        sd = _shape_dtype(leaf)
        if sd is None or sd[1].kind not in "biuf":
            raise TypeError(
                f"{where} of {owner!r} must be a real number or an array of real numbers, got {leaf!r}"
                + (" (a string is not a number: pass 1.0, not '1')" if isinstance(leaf, (str, bytes)) else "")
            )
    if defaults is None:
        return
    given_tree, default_tree = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(defaults)
    if given_tree != default_tree:
        hint = ""
        if isinstance(params, Mapping) and isinstance(defaults, Mapping):
            missing = sorted(map(str, set(defaults) - set(params)))
            extra = sorted(map(str, set(params) - set(defaults)))
            hint = "".join([f" missing {missing}" if missing else "", f" unexpected {extra}" if extra else ""]).strip()
            hint = f" ({hint})" if hint else ""
        raise TypeError(
            f"params of {owner!r} must have the structure of its defaults {defaults!r}, got {params!r}{hint}. "
            "Pass a pytree with the same keys, e.g. its defaults with some values changed."
        )
    for (path, given), default in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(defaults)):
        shape, want = _shape_dtype(given)[0][int(batched) :], _shape_dtype(default)[0]
        if shape != want:
            raise ValueError(
                f"params{jax.tree_util.keystr(path)} of {owner!r} must have shape {want} (that of its default "
                f"{default!r}), got shape {shape}. For many parameter sets at once use jax.vmap or "
                "jaxsig.signature_batch."
            )

"""``jax.jit`` for the core's stages, compiled for speed when the library compiles them.

XLA:CPU has two code generators for fused elementwise work. Its loop emitters
(``xla_cpu_use_fusion_emitters = false``) compile the core's line functionals in
4.6 instead of 10.1 CPU seconds, and run ``jit(vmap(signature))`` over 2,000
parameter sets in 344 instead of 1,351 ms (``benchmarks/core.py``), with the same
numbers to the bit (``tests/test_compile_flags.py``).

A stage called with concrete arguments (an eager :func:`jaxsig.signature`,
:func:`jaxsig.moments` or :func:`jaxsig.signature_batch`) is compiled here, ahead
of time, with :data:`CPU_OPTIONS` on CPU, one executable per static arguments and
argument types, as ``jax.jit`` caches them. Inside a caller's ``jit``, ``grad`` or
``vmap`` the stage is an ordinary nested ``jax.jit`` (XLA allows compiler options
on the outermost program only): the caller's program is compiled with the caller's
options. Other backends use XLA's defaults.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import jax

from jaxsig.core._numerics import is_concrete

__all__ = ["CPU_OPTIONS", "CPU_XLA_FLAGS", "UNOPTIMIZED", "stage"]

#: XLA compiler options for the stages the library compiles itself, on CPU.
CPU_OPTIONS = {"xla_cpu_use_fusion_emitters": False}

#: What ``stage(..., optimize=False)`` adds: no LLVM optimisation passes.
UNOPTIMIZED = {"xla_backend_optimization_level": 0}

#: The same options as ``XLA_FLAGS`` for a whole process (read by XLA when the
#: process first computes): what the ``jaxsig`` command and the test suite set.
CPU_XLA_FLAGS = " ".join(f"--{name}={str(value).lower()}" for name, value in CPU_OPTIONS.items())


def stage(fun: Callable = None, *, static_argnums=(), static_argnames=(), optimize: bool = True):
    """``jax.jit(fun, static_argnums=..., static_argnames=...)``, whose eager
    calls on CPU run an executable compiled with :data:`CPU_OPTIONS`.

    ``optimize=False`` also skips LLVM's optimisations (:data:`UNOPTIMIZED`) for
    a stage that runs once per call on data of a fixed size, where compile time
    is all that counts: the line functionals compile in 2.2 instead of 3.6 s and
    run in 4 instead of 0.8 ms, with the same numbers to the bit.

    The wrapper keeps ``jax.jit``'s interface for what the library uses
    (``lower``, ``_cache_size``, ``__wrapped__``).
    """
    if fun is None:
        return functools.partial(
            stage, static_argnums=static_argnums, static_argnames=static_argnames, optimize=optimize
        )
    return _Stage(fun, static_argnums, static_argnames, optimize)


class _Stage:
    def __init__(self, fun, static_argnums, static_argnames, optimize=True):
        static_argnums = {static_argnums} if isinstance(static_argnums, int) else set(static_argnums)
        static_argnames = {static_argnames} if isinstance(static_argnames, str) else set(static_argnames)
        # As jax.jit does: a static parameter is static whether it is passed by
        # position or by name.
        params = list(inspect.signature(fun).parameters.values())
        positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        static_argnums |= {i for i, name in enumerate(positional) if name in static_argnames}
        static_argnames |= {positional[i] for i in static_argnums if i < len(positional)}
        self._jit = jax.jit(fun, static_argnums=tuple(sorted(static_argnums)), static_argnames=tuple(static_argnames))
        self._static_argnums = frozenset(static_argnums)
        self._static_argnames = frozenset(static_argnames)
        self._executables = {}
        self._optimize = optimize
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        dynamic_args = tuple(a for i, a in enumerate(args) if i not in self._static_argnums)
        dynamic_kwargs = {k: v for k, v in kwargs.items() if k not in self._static_argnames}
        if not is_concrete(dynamic_args, dynamic_kwargs) or jax.default_backend() != "cpu":
            return self._jit(*args, **kwargs)
        key = (
            tuple(a for i, a in enumerate(args) if i in self._static_argnums),
            tuple(sorted((k, v) for k, v in kwargs.items() if k in self._static_argnames)),
            _argument_types(dynamic_args, dynamic_kwargs),
            jax.config.jax_enable_x64,
        )
        executable = self._executables.get(key)
        if executable is None:
            options = CPU_OPTIONS if self._optimize else {**CPU_OPTIONS, **UNOPTIMIZED}
            executable = self._jit.lower(*args, **kwargs).compile(compiler_options=options)
            self._executables[key] = executable
        return executable(*dynamic_args, **dynamic_kwargs)

    def lower(self, *args, **kwargs):
        return self._jit.lower(*args, **kwargs)

    def _cache_size(self) -> int:
        """Programs compiled for this stage: by ``jax.jit`` and ahead of time here."""
        return self._jit._cache_size() + len(self._executables)


def _argument_types(*trees):
    """What an executable is specialised to: the tree structure and, per leaf, its
    shape, dtype, weak type and placement (Python scalars by their type)."""
    leaves, treedef = jax.tree_util.tree_flatten(trees)

    def describe(leaf):
        if isinstance(leaf, jax.Array):
            return (leaf.shape, leaf.dtype, leaf.weak_type, leaf.sharding)
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):  # NumPy
            return (leaf.shape, leaf.dtype)
        return type(leaf)

    return treedef, tuple(describe(leaf) for leaf in leaves)

"""Test configuration: float64 everywhere (float32 tests ask for it explicitly), and
one persistent XLA compilation cache for the whole run.

The cache is shared by the xdist workers and by the processes the tests start (the
CLI, the notebooks, the sharding subprocess), which compile the same core stages:
each program is compiled once per run instead of once per process. It lives in a
fresh directory, removed at the end, so nothing carries over between runs; a
``JAX_COMPILATION_CACHE_DIR`` set by the caller is used as it is.

XLA:CPU runs with its loop emitters (``--xla_cpu_use_fusion_emitters=false``, as the
``jaxsig`` command does): they compile the core's stages in about half the time of
the default MLIR emitters. tests/test_compile_flags.py checks, in a subprocess with
the default emitters, that the numbers are the same to the bit.
"""

import atexit
import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # Set before jax is imported (jax reads it then), in the process that starts
    # the workers, which inherit it.
    _cache = tempfile.mkdtemp(prefix="jaxsig-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax

from jaxsig.core._compile import CPU_OPTIONS, CPU_XLA_FLAGS

if not any(name in os.environ.get("XLA_FLAGS", "") for name in CPU_OPTIONS):
    # Read by XLA when the process first computes; inherited by the workers.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {CPU_XLA_FLAGS}".strip()

jax.config.update("jax_enable_x64", True)

"""Test configuration: float64 everywhere (float32 tests ask for it explicitly), and
one persistent XLA compilation cache for the whole run.

The cache is shared by the xdist workers and by the processes the tests start (the
CLI, the notebooks, the sharding subprocess), which compile the same core stages:
each program is compiled once per run instead of once per process. It lives in a
fresh directory, removed at the end, so nothing carries over between runs; a
``JAX_COMPILATION_CACHE_DIR`` set by the caller is used as it is.
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

jax.config.update("jax_enable_x64", True)

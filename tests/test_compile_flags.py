"""The XLA:CPU emitter choice changes compile and run time, not numbers.

The library compiles its own stages with XLA:CPU's loop emitters when it is called
eagerly (:mod:`jaxsig.core._compile`), and the suite (tests/conftest.py) and the
``jaxsig`` command ask for them process-wide (``--xla_cpu_use_fusion_emitters=false``).
Inside a user's ``jit`` the stages get XLA's default, the MLIR fusion emitters. Here
a subprocess computes signatures with the default emitters everywhere, and they
must equal this process's to the last bit.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsig.app._common import fast_compile
from jaxsig.core._compile import CPU_XLA_FLAGS, stage

CASES = {
    "float64": (("gelu", "relu6", "x^2"), [0.3, 1.0, 3.0], [0.0, 0.5, -1.0]),
    "float32": (("gelu",), [0.5, 2.0], [0.0, 0.25]),
}

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import jaxsig

    def compute(cases, default_emitters=False, batch=True):
        if default_emitters:
            from jaxsig.core import _compile

            _compile.CPU_OPTIONS.clear()
        out = {}
        for dtype, (names, sigma, mu) in cases.items():
            with jax.enable_x64(dtype == "float64"):
                for name in names:
                    s, aux = jaxsig.signature_with_aux(name, jnp.asarray(sigma, dtype), mu=jnp.asarray(mu, dtype))
                    leaves = [np.asarray(v, np.float64).ravel() for v in (*s, aux.b, aux.g4)]
                    out[f"{dtype}/{name}"] = np.concatenate(leaves).tolist()
        if batch:  # one program over the rows (jaxsig.signature_batch), float64
            with jax.enable_x64(True):
                betas, sigma = jnp.asarray([0.5, 1.0, 3.0]), jnp.asarray([0.5, 2.0])
                rows = jaxsig.signature_batch("swish_beta", {"beta": betas}, sigma)
            out["batch/swish_beta"] = np.concatenate([np.asarray(v).ravel() for v in rows]).tolist()
        return out

    if __name__ == "__main__":
        print(json.dumps(compute(json.loads(sys.argv[1]), default_emitters=True)))
    """
)


def _default_emitters_env():
    flags = os.environ.get("XLA_FLAGS", "").replace(CPU_XLA_FLAGS, "")
    return dict(os.environ, XLA_FLAGS=f"{flags} --xla_cpu_use_fusion_emitters=true".strip())


def test_default_emitters_give_the_same_signatures_to_the_bit():
    assert CPU_XLA_FLAGS in os.environ.get("XLA_FLAGS", ""), "conftest sets the flag for the suite"
    namespace = {}
    exec(compile(_SCRIPT, "<script>", "exec"), namespace)
    here = namespace["compute"](CASES)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(CASES)],
        env=_default_emitters_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    assert there.keys() == here.keys()
    for key in here:
        a, b = np.asarray(here[key]), np.asarray(there[key])
        assert not np.any(np.isnan(a[: 9 * 3])), key  # the nine components (b of x^2 is NaN)
        np.testing.assert_array_equal(a, b, err_msg=key)


def test_fast_compile_appends_the_flag_and_restores_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    with fast_compile():
        assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {CPU_XLA_FLAGS}"
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    monkeypatch.delenv("XLA_FLAGS")
    with fast_compile():
        assert os.environ["XLA_FLAGS"] == CPU_XLA_FLAGS
    assert "XLA_FLAGS" not in os.environ
    # A user's own choice of the emitters wins.
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    with fast_compile():
        assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=true"


def test_the_script_reads_the_nine_components_b_and_g4():
    # The comparison above is only as good as what the script reads: here its
    # ReLU row against the closed forms at sigma = 1, mu = 0.
    namespace = {}
    exec(compile(_SCRIPT, "<script>", "exec"), namespace)
    got = namespace["compute"]({"float64": (("relu",), [1.0], [0.0])}, batch=False)["float64/relu"]
    m1 = 1 / np.sqrt(2 * np.pi)
    closed = [m1, 0.5, np.sqrt(0.5), 0.5, 0.25 - m1**2, 1.0, 0.0, 1.0, 0.0, 0.0, 0.5**0.25]
    assert got == pytest.approx(closed, rel=1e-11, abs=1e-15)


def test_stage_compiles_once_per_static_arguments_and_types():
    import jax.numpy as jnp

    from jaxsig.core._compile import stage

    traces = []

    @stage(static_argnums=(1,), static_argnames=("power",))
    def f(x, n, power=1):
        traces.append(n)
        return jnp.sin(x) ** power * n

    x = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(f(x, 2), 2 * np.sin(np.asarray(x)), rtol=1e-15)
    f(x + 1.0, 2)  # new values, same types: the same executable
    assert f._cache_size() == 1 and len(traces) == 1
    f(x, 3)  # a new static argument, by position
    # The same one by name: static, and (as in jax.jit) an entry of its own.
    np.testing.assert_allclose(f(x, n=3), 3 * np.sin(np.asarray(x)), rtol=1e-15)
    f(x, 3, power=2)  # a static argument by name
    f(x.astype(jnp.float32), 3)  # a new dtype
    assert f._cache_size() == 5
    np.testing.assert_allclose(f(x, 3, power=2), 3 * np.sin(np.asarray(x)) ** 2, rtol=1e-15)


def test_stage_is_a_plain_nested_jit_under_transformations():
    @stage(static_argnums=(1,))
    def f(x, n):
        return jnp.sin(x) * n

    x = jnp.linspace(0.0, 1.0, 5)
    want = 2 * np.sin(np.asarray(x))
    # jax.jit refuses compiler options on a nested jit; the stage passes none there.
    np.testing.assert_allclose(jax.jit(lambda v: f(v, 2))(x), want, rtol=1e-15)
    np.testing.assert_allclose(jax.vmap(lambda v: f(v, 2))(x), want, rtol=1e-15)
    np.testing.assert_allclose(jax.grad(lambda v: f(v, 2).sum())(x), 2 * np.cos(np.asarray(x)), rtol=1e-15)
    assert f._cache_size() == 0  # nothing compiled ahead of time under a trace


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_unoptimized_stages_give_the_same_numbers_to_the_bit(dtype):
    # The line functionals and cut_line are compiled without LLVM's optimisations
    # (stage(optimize=False)), for compile time; inside a user's jit they get
    # XLA's default level. Both executables of the line functionals, on the
    # samples of three activations (smooth, kinked, oscillating), agree bit for bit.
    from jaxsig.core import quadrature
    from jaxsig.core import signature as S
    from jaxsig.core._compile import CPU_OPTIONS, UNOPTIMIZED

    assert not S._line_functionals._optimize and not quadrature._cut_line._optimize
    with jax.enable_x64(dtype == "float64"):
        lowered, samples = None, []
        for name in ("mish", "relu6", "sin"):
            act, rule, sigma, mu = S.prepare_inputs(name, None, 1.0, 0.0, None)
            line = quadrature.cut_line(
                S._kink_free(rule), sigma.dtype, S._kink_data(rule, None, sigma.dtype, minimum=2)
            )
            grid = S._grid(S._kink_free(rule), sigma, mu, S._kink_data(rule, None, sigma.dtype))
            samples.append((line, S._sample(act.replace(kinks=()), grid.points, line)[0]))
            lowered = lowered or S._line_functionals.lower(*samples[0])
        fast = lowered.compile(compiler_options={**CPU_OPTIONS, **UNOPTIMIZED})
        full = lowered.compile(compiler_options=CPU_OPTIONS)
        for line, on in samples:
            a, b = (jax.tree_util.tree_leaves(exe(line, on)) for exe in (fast, full))
            for u, v in zip(a, b):
                np.testing.assert_array_equal(np.asarray(u), np.asarray(v))

"""Core v2 measures (issue 13): the core's cost against the floor, side by side in one run.

    python benchmarks/core.py            # 2,000 Swish-beta parameter sets x 8 sigmas
    python benchmarks/core.py --quick    # 200 sets, fewer repeats

Prints a Markdown table and writes ``benchmarks/core.json``. Workload: ``B``
Swish-beta activations ``x sigmoid(beta x)`` (beta uniform in [0.5, 5], seed 0)
x 8 sigmas log-spaced in [0.1, 10], float64, ``jit(vmap(...))`` over the betas.

Rows (min over repeats back to back and interleaved, each ended with
``block_until_ready``):

* floor: ``jax.jvp`` of phi at 768 nodes (enough for 1e-14 on the validated
  domain), the cost of evaluating ``phi`` and ``phi'`` once;
* ``moments`` (the five Gaussian statistics, ``g4``, ``dm2/dsigma``);
* full ``signature``;
* ``moments_batch`` and ``signature_batch`` on the same rows (eager calls: chunks
  of vmapped steps of :func:`jaxsig.core.batch.step_rows` rows, results copied to
  the host);
* the gradient of a design loss over the nine components, against the forward.

Against ``scipy.integrate.quad`` doing four components (``m1, g1, g2, m2``) to
``1e-13``, per (beta, sigma), timed on 10 betas.

Compile: ``jit(...).lower(...).compile()`` CPU seconds of the vmapped programs, and
the first ``moments`` / ``signature`` call in a fresh process (a subprocess each),
each with XLA's default emitters and, on CPU, with the loop emitters
(``--xla_cpu_use_fusion_emitters=false``, what the ``jaxsig`` command uses), whose
compiled ``moments`` and ``signature`` are timed beside the others.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # a script, not library code

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxsig  # noqa: E402
from jaxsig.core._compile import CPU_OPTIONS, CPU_XLA_FLAGS  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def swish_beta(x, p):
    return x * jax.nn.sigmoid(p["beta"] * x)


ACT = jaxsig.Activation("swish_beta", swish_beta, {"beta": 1.0})
X768 = jnp.linspace(-30.0, 30.0, 768)


def programs(sigmas):
    def floor(b):
        return jax.vmap(lambda bb: jax.jvp(lambda x: swish_beta(x, {"beta": bb}), (X768,), (jnp.ones_like(X768),)))(b)

    def moments(b):
        return jax.vmap(lambda bb: jaxsig.moments(ACT, sigmas, params={"beta": bb}))(b)

    def signature(b):
        return jax.vmap(lambda bb: jaxsig.signature(ACT, sigmas, params={"beta": bb}))(b)

    def loss(b):
        s = signature(b)
        gauss = (s.g2 - 0.8) ** 2 + s.m1**2 + 0.1 * s.eta + (s.g1 - 0.5) ** 2
        return jnp.sum(gauss + 0.01 * s.tv[:, :1] + 0.01 * s.c[:, :1])

    return {
        "floor": floor,
        "moments": moments,
        "signature": signature,
        "design loss": loss,
        "grad of design loss": jax.grad(loss),
    }


#: XLA:CPU's loop emitters (what the library compiles its eager stages with, and
#: the jaxsig command and the test suite use): the same numbers, compiled in about
#: half the time. Compile times and first calls are measured with XLA's default
#: emitters and with these.
LOOP_EMITTERS = CPU_OPTIONS


def compile_seconds(fn, arg, options=None):
    t0 = time.process_time()
    compiled = jax.jit(fn).lower(arg).compile(compiler_options=options)
    return time.process_time() - t0, compiled


FRESH = """
import time, jax
jax.config.update("jax_enable_x64", True)
import jaxsig
t0 = time.perf_counter(); jax.block_until_ready(jaxsig.{fn}("gelu", 1.0)); print(time.perf_counter() - t0)
"""


def first_call(fn, loop_emitters=False):
    env = dict(os.environ)
    if loop_emitters:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {CPU_XLA_FLAGS}".strip()
    out = subprocess.run(
        [sys.executable, "-c", FRESH.format(fn=fn)], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def scipy_seconds(betas, sigmas, tol=1e-13):
    """Seconds per (beta, sigma) for ``scipy.integrate.quad`` doing four components
    (``m1, g1, g2^2, m2``), each over z in two halves split at 0, to ``tol``."""
    from scipy import integrate, special

    def pdf(z):
        return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)

    t0 = time.perf_counter()
    for b in betas:
        for sig in sigmas:

            def phi(x, b=b):
                return x * special.expit(b * x)

            def dphi(x, b=b):
                s = special.expit(b * x)
                return s + b * x * s * (1.0 - s)

            for f, power in ((phi, 1), (dphi, 1), (dphi, 2), (phi, 2)):

                def integrand(z, f=f, power=power, sig=sig):
                    return f(sig * z) ** power * pdf(z)

                for lo, hi in ((-np.inf, 0.0), (0.0, np.inf)):
                    integrate.quad(integrand, lo, hi, epsabs=tol, epsrel=tol, limit=200)
    return (time.perf_counter() - t0) / (len(betas) * len(sigmas))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-params", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n = 200 if args.quick else args.n_params
    repeats = 3 if args.quick else args.repeats
    betas = jnp.asarray(np.random.default_rng(0).uniform(0.5, 5.0, n))
    sigmas = jnp.asarray(np.geomspace(0.1, 10.0, 8))
    progs = programs(sigmas)
    cpu = jax.devices()[0].platform == "cpu"
    compile_s, loop_s, compiled = {}, {}, {}
    for k, f in progs.items():
        compile_s[k], compiled[k] = compile_seconds(f, betas)
        if cpu and k in ("moments", "signature"):
            loop_s[k], compiled[f"{k}, loop emitters"] = compile_seconds(f, betas, LOOP_EMITTERS)
    # The batch API (eager calls: chunks of vmapped steps, results copied to the host).
    host_betas, host_sigmas = np.asarray(betas), np.asarray(sigmas)
    calls = {k: (lambda f=f: f(betas)) for k, f in compiled.items()}
    for k in ("moments", "signature"):
        batch = getattr(jaxsig, f"{k}_batch")
        calls[f"{k}_batch"] = lambda batch=batch: batch(ACT, {"beta": host_betas}, host_sigmas)
    for call in calls.values():
        jax.block_until_ready(call())
    times = {k: [] for k in calls}
    # What runs before a row (the allocator's state after a program that touched
    # 460 MB, caches) moves it by up to 1.6x: every row is also timed back to
    # back, and the best of both is used.
    for k, call in calls.items():
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[k].append(time.perf_counter() - t0)
    for _ in range(repeats):  # interleaved, so that load drifts hit every row alike
        for k, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[k].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    fresh = {fn: first_call(fn) for fn in ("moments", "signature")}
    fresh_loop = {fn: first_call(fn, loop_emitters=True) for fn in ("moments", "signature")} if cpu else {}
    scipy_per = scipy_seconds(np.asarray(betas[:10]), np.asarray(sigmas))
    ours_per = min(best["moments"], best["moments_batch"]) / (n * sigmas.size)
    grad_ratio = best["grad of design loss"] / best["design loss"]
    rows = [("floor: jvp of phi at 768 nodes", best["floor"], best["floor"] / best["floor"], "1")]
    for k, goal in (("moments", "<= 3"), ("signature", "<= 10")):
        rows.append((k, best[k], best[k] / best["floor"], goal))
        if k in loop_s:
            loop = best[f"{k}, loop emitters"]
            rows.append((f"{k}, loop emitters", loop, loop / best["floor"], goal))
        rows.append((f"{k}_batch", best[f"{k}_batch"], best[f"{k}_batch"] / best["floor"], goal))
    rows.append(("grad of design loss / forward", best["grad of design loss"], grad_ratio, "<= 2"))
    speedup = scipy_per / ours_per
    print(f"\n{n} Swish-beta parameter sets x 8 sigmas, float64, {jax.devices()[0].platform}; min of {repeats}\n")
    print("| stage | time | ratio | goal |\n|---|---|---|---|")
    for name, t, r, goal in rows:
        print(f"| {name} | {1e3 * t:.1f} ms | {r:.2f}x | {goal} |")
    print(
        f"\nscipy.integrate.quad, four components to 1e-13 (10 betas x 8 sigmas): {1e3 * scipy_per:.2f} ms per "
        f"(beta, sigma); moments (best of jit(vmap) and moments_batch) {1e6 * ours_per:.2f} us per (beta, sigma): "
        f"{speedup:.0f}x (goal >= 1000x)"
    )
    print("\n| compile (CPU s, vmapped) | default emitters | loop emitters |\n|---|---|---|")
    for k, v in compile_s.items():
        print(f"| {k} | {v:.2f} | {f'{loop_s[k]:.2f}' if k in loop_s else ''} |")
    print(
        "\n| first call, fresh process | XLA_FLAGS unset | XLA_FLAGS with the loop emitters | goal |\n|---|---|---|---|"
    )
    for fn, goal in (("moments", "< 0.3"), ("signature", "< 1.5")):
        loop = f"{fresh_loop[fn]:.2f}" if fn in fresh_loop else ""
        print(f"| {fn}('gelu', 1.0) | {fresh[fn]:.2f} | {loop} | {goal} |")
    doc = {
        "n_params": n,
        "repeats": repeats,
        "times": times,
        "compile_cpu_s": compile_s,
        "compile_cpu_s_loop_emitters": loop_s,
        "first_call_s": fresh,
        "first_call_s_loop_emitters": fresh_loop,
        "scipy_quad_s_per_eval": scipy_per,
        "moments_s_per_eval": ours_per,
    }
    (HERE / "core.json").write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()

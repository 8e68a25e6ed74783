"""jaxsig benchmarks: speed and accuracy side by side, in one run.

    python benchmarks/bench.py            # full size (about 5 min on 2 CPU cores)
    python benchmarks/bench.py --quick    # small sizes, a smoke test (< 1 min of work)

Prints Markdown tables and writes ``benchmarks/results.json`` (raw timings,
errors, device and machine). Runs in float64 (x64 enabled here, in the script);
``--float32`` adds float32 rows for workload 2. See ``benchmarks/README.md``
for what every column means.

Workloads:

1. The eight paper activations x 256 sigma values in [0.05, 20] (mu = 0): all
   nine components.
2. ``B`` Swish-beta activations ``x sigmoid(beta x)`` (beta uniform in [0.5, 5],
   default ``B = 10,000``) x 8 sigma values in [0.1, 10]: all nine components.
3. The gradient with respect to the ``B`` betas of a design loss built from
   the nine components of workload 2.

Methods: jaxsig's default rule, jaxsig with Gauss-Hermite (64, 256 nodes),
scipy.integrate.quad component by component (timed on a subset and
extrapolated linearly), Monte Carlo with 10^6 samples (jit-compiled JAX, timed
on a subset and extrapolated; Gaussian components only), and the bare cost:
``phi`` and ``phi'`` at jaxsig's nodes only (one ``jax.jvp``, jit-compiled).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)  # a script, not library code

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy import integrate  # noqa: E402

import jaxsig  # noqa: E402
from jaxsig import quadrature  # noqa: E402
from jaxsig.activations import Activation  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
GAUSS = ("m1", "g1", "g2", "m2", "eta")
LINE = ("alpha_plus", "alpha_minus", "tv", "c")
REF_SIGMAS = (0.05, 0.2, 1.0, 3.0, 20.0)  # mpmath reference points of workload 1


# --- Timing ------------------------------------------------------------------


def block(tree):
    return jax.block_until_ready(tree)


def timed(fn, *args, repeats):
    """First call (compile + run), then ``repeats`` timed calls: median and min."""
    t0 = time.perf_counter()
    out = block(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn(*args))
        times.append(time.perf_counter() - t0)
    if not times:
        return out, dict(first=first, median=first, min=first, times=[])
    return out, dict(first=first, median=float(np.median(times)), min=float(min(times)), times=times)


def lowered_timed(jitted, *args, repeats):
    """``jit`` split into trace+lower, compile, and runs of the compiled program."""
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    hlo_ops = sum(1 for line in compiled.as_text().splitlines() if " = " in line)
    # Run through ``jitted`` itself: it reuses the trace and executable above
    # (its first call is then fast), so a retrace later would be counted.
    out, t = timed(jitted, *args, repeats=repeats)
    t.update(trace=t1 - t0, compile=t2 - t1, hlo_ops=hlo_ops)
    return out, t


# --- Errors -------------------------------------------------------------------


def err(value, ref):
    """The project's metric: ``|v - ref| / max(1, |ref|)``; ``inf`` matches ``inf``."""
    v, r = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    both_inf = np.isinf(v) & np.isinf(r) & (np.sign(v) == np.sign(r))
    e = np.where(both_inf, 0.0, np.abs(v - r) / np.maximum(1.0, np.abs(r)))
    return float(np.max(np.where(np.isnan(e), np.inf, e))) if e.size else float("nan")


# --- Hand-rolled float64 activations for scipy (value, phi', phi'') -----------


def _sig(t):
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def _softplus(t):
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


def _Phi(t):
    return 0.5 * math.erfc(-t / math.sqrt(2.0))


def _npdf(t):
    return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def _tanh_d(x):
    t = math.tanh(x)
    return t, 1 - t * t, -2 * t * (1 - t * t)


def _sigmoid_d(x):
    s = _sig(x)
    return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)


def _swish_beta_d(x, b=1.0):
    s = _sig(b * x)
    return x * s, s + b * x * s * (1 - s), b * s * (1 - s) * (2 + b * x * (1 - 2 * s))


def _gelu_d(x):
    P, p = _Phi(x), _npdf(x)
    return x * P, P + x * p, (2 - x * x) * p


def _mish_d(x):
    T, S = math.tanh(_softplus(x)), _sig(x)
    u = (1 - T * T) * S
    return x * T, T + x * u, u * (2 + x * (1 - S - 2 * T * S))


def _telu_d(x):
    if x > 6.0:  # tanh(e^x) = 1 and sech^2(e^x) e^x = 0 in float64
        return x, 1.0, 0.0
    E = math.exp(x)
    T = math.tanh(E)
    u = (1 - T * T) * E
    return x * T, T + x * u, u * (2 + x * (1 - 2 * T * E))


def _relu_d(x):
    return (x, 1.0, 0.0) if x > 0 else (0.0, 0.0, 0.0)


def _leaky_d(x):
    return (x, 1.0, 0.0) if x > 0 else (0.01 * x, 0.01, 0.0)


# name -> (phi, phi', phi'') triple and the jumps of phi' (hand-written, as a user would)
HAND = {
    "relu": (_relu_d, {0.0: 1.0}),
    "leaky_relu": (_leaky_d, {0.0: 0.99}),
    "tanh": (_tanh_d, {}),
    "sigmoid": (_sigmoid_d, {}),
    "swish": (_swish_beta_d, {}),
    "gelu": (_gelu_d, {}),
    "mish": (_mish_d, {}),
    "telu": (_telu_d, {}),
}


SCIPY_WARNINGS = {"n": 0}


def _quad(*args, **kw):
    """``integrate.quad`` with its warnings counted, not printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", integrate.IntegrationWarning)
        out = integrate.quad(*args, **kw)
    SCIPY_WARNINGS["n"] += len(caught)
    return out


def scipy_gaussian(d, sigma, mu=0.0, tight=False):
    """m1, g1, g2, m2, eta by ``scipy.integrate.quad`` in z, split at z = 0 (the kink of
    every activation here): six adaptive integrals, eta by the two-pass formula."""
    kw = dict(epsabs=1e-14, epsrel=1e-13, limit=200) if tight else {}

    def E(g):
        h = lambda z: g(mu + sigma * z, z) * _npdf(z)  # noqa: E731
        return _quad(h, -np.inf, 0.0, **kw)[0] + _quad(h, 0.0, np.inf, **kw)[0]

    m1 = E(lambda x, z: d(x)[0])
    g1 = E(lambda x, z: d(x)[1])
    g2 = math.sqrt(E(lambda x, z: d(x)[1] ** 2))
    m2 = E(lambda x, z: d(x)[0] ** 2)
    eta = E(lambda x, z: (d(x)[0] - m1 - g1 * sigma * z) ** 2)
    return dict(m1=m1, g1=g1, g2=g2, m2=m2, eta=eta)


def scipy_line(d, jumps, tight=False):
    """alpha_+-, tv, c the hand-rolled way: slopes and intercepts from far-out
    values, ``tv = int |phi''| + jumps``, ``c`` by quad on each half-line."""
    kw = dict(epsabs=1e-14, epsrel=1e-13, limit=200) if tight else {}
    L = 1e4
    ap = (d(2 * L)[0] - d(L)[0]) / L
    am = (d(-2 * L)[0] - d(-L)[0]) / -L
    bp, bm = d(L)[0] - ap * L, d(-L)[0] + am * L
    tv = sum(_quad(lambda x: abs(d(x)[2]), a, b, **kw)[0] for a, b in ((-np.inf, 0), (0, np.inf)))
    tv += sum(abs(j) for j in jumps.values())
    c = _quad(lambda x: abs(d(x)[0] - ap * x - bp), 0, np.inf, **kw)[0]
    c += _quad(lambda x: abs(d(x)[0] - am * x - bm), -np.inf, 0, **kw)[0]
    return dict(alpha_plus=ap, alpha_minus=am, tv=tv, c=c)


# --- Monte Carlo ----------------------------------------------------------------


def mc_program(fn, with_params):
    """``jit``: Gaussian statistics from ``n`` standard normal samples, vmapped over sigma."""

    def stats(z, sigma, p):
        f = (lambda x: fn(x, p)) if with_params else fn
        x = sigma * z
        y, dy = jax.jvp(f, (x,), (jnp.ones_like(x),))
        m1, g1 = jnp.mean(y), jnp.mean(dy)
        r = y - m1 - g1 * x
        return dict(m1=m1, g1=g1, g2=jnp.sqrt(jnp.mean(dy * dy)), m2=jnp.mean(y * y), eta=jnp.mean(r * r))

    return jax.jit(jax.vmap(stats, in_axes=(None, 0, None)))


# --- Machine --------------------------------------------------------------------


def machine():
    cpu = "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    dev = jax.devices()
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        jax=jax.__version__,
        jaxlib=getattr(jax.lib, "__version__", None) or jax.__version__,
        jaxsig=jaxsig.__version__,
        numpy=np.__version__,
        scipy=scipy.__version__,
        python=platform.python_version(),
        platform=dev[0].platform,
        devices=[str(d) for d in dev],
        device_kind=dev[0].device_kind,
        cpu=cpu,
        cpu_count=os.cpu_count(),
        load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        x64=bool(jax.config.jax_enable_x64),
    )


# --- References -------------------------------------------------------------------


def paper_reference():
    """mpmath values (25 digits) at ``REF_SIGMAS``, mu = 0, from the test data table
    (``tests/data/mpmath_reference.json``), or recomputed with ``tests/problems.py``."""
    path = ROOT / "tests" / "data" / "mpmath_reference.json"
    slopes = {n: (1.0, 0.0) for n in jaxsig.activations.PAPER}
    slopes.update(tanh=(0.0, 0.0), sigmoid=(0.0, 0.0), leaky_relu=(1.0, 0.01))
    ref = {n: {} for n in jaxsig.activations.PAPER}
    if path.exists():
        table = json.loads(path.read_text())
        rows = [r for r in table["gaussian"] if r["mu"] == 0.0 and r["sigma"] in REF_SIGMAS]
        for r in rows:
            ref[r["activation"]][r["sigma"]] = {k: r[k] for k in GAUSS}
        line = table["line"]
        source = f"{path.relative_to(ROOT)} (mpmath, {table['dps']} digits)"
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        import problems

        for n in ref:
            for s in REF_SIGMAS:
                ref[n][s] = {k: problems.gaussian_reference(n, s, 0.0)[k] for k in GAUSS}
        line = {n: problems.line_reference(n) for n in ref}
        source = f"tests/problems.py (mpmath, {problems.DPS} digits, recomputed)"
    for n in ref:
        ref[n]["line"] = dict(alpha_plus=slopes[n][0], alpha_minus=slopes[n][1], **line[n])
    return ref, source


def mp_swish_beta(beta, sigma):
    """mpmath (30 digits) m1, g1, g2, m2, eta of x sigmoid(beta x) at N(0, sigma^2)."""
    import mpmath as mp

    with mp.workdps(30):
        b, s = mp.mpf(beta), mp.mpf(sigma)
        sg = lambda x: 1 / (1 + mp.exp(-b * x))  # noqa: E731
        f = lambda x: x * sg(x)  # noqa: E731
        df = lambda x: sg(x) + b * x * sg(x) * (1 - sg(x))  # noqa: E731
        dens = lambda x: mp.exp(-x * x / (2 * s * s)) / (s * mp.sqrt(2 * mp.pi))  # noqa: E731
        pts = [-40 * s, -3 * s, 0, 3 * s, 40 * s]
        E = lambda g: mp.quad(lambda x: g(x) * dens(x), pts)  # noqa: E731
        m1, g1, d2, m2 = E(f), E(df), E(lambda x: df(x) ** 2), E(lambda x: f(x) ** 2)
        return dict(
            m1=float(m1), g1=float(g1), g2=float(mp.sqrt(d2)), m2=float(m2), eta=float(m2 - m1**2 - s**2 * g1**2)
        )


# --- Workload 2/3 activation (counts its traces) -----------------------------------

TRACES = {"n": 0}


def swish_beta(x, p):
    """``x sigmoid(beta x)`` (same formula as ``jaxsig.activations.swish_beta``), counting traces."""
    if isinstance(x, jax.core.Tracer):
        TRACES["n"] += 1
    return x * jax.nn.sigmoid(p["beta"] * x)


SWISH_BETA = Activation("swish_beta", swish_beta, {"beta": 1.0}, (), "x sigmoid(beta x)")


def forward_program(rule=None):
    """jit(vmap): the nine components for every beta, sigma passed as an argument."""

    def one(beta, sigma):
        return jaxsig.signature(SWISH_BETA, sigma, params={"beta": beta}, rule=rule)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def design_loss_rows(s):
    """Per-row design loss from the nine components (numpy or jax)."""
    xp = jnp if isinstance(s.g2, jax.Array) else np
    per_sigma = (s.g2 - 0.8) ** 2 + s.m1**2 + 0.1 * s.eta + (s.g1 - 0.5) ** 2
    return xp.sum(per_sigma, axis=-1) + 0.01 * s.tv[..., 0] + 0.01 * s.c[..., 0]


def gradient_program(rule=None):
    fwd = forward_program(rule)

    def loss(betas, sigma):
        return jnp.sum(design_loss_rows(fwd(betas, sigma)))

    return jax.jit(jax.grad(loss))


# --- Workloads ------------------------------------------------------------------------


def workload1(args, log):
    # Log-spaced, with the grid points nearest to the reference values moved onto them.
    sigmas = np.geomspace(0.05, 20.0, 32 if args.quick else 256)
    for s in REF_SIGMAS:
        sigmas[np.argmin(np.abs(np.log(sigmas / s)))] = s
    names = jaxsig.activations.PAPER
    ref, source = paper_reference()
    at = np.searchsorted(sigmas, REF_SIGMAS)
    assert np.allclose(sigmas[at], REF_SIGMAS)
    n_pairs = len(names) * sigmas.size
    rows = []

    def errors(get):
        """Max errors (Gaussian, line) over activations at the reference points."""
        eg, el = 0.0, 0.0
        for n in names:
            out = get(n)
            for k in GAUSS:
                if k in out:
                    eg = max(eg, err(out[k], [ref[n][s][k] for s in REF_SIGMAS]))
            for k in LINE:
                if k in out:
                    el = max(el, err(out[k], ref[n]["line"][k]))
        return eg, el

    # jaxsig, each rule: one call per activation with all sigmas.
    for label, rule in [("jaxsig default (composite)", None)] + [
        (f"jaxsig Gauss-Hermite {o}", quadrature.GaussHermite(o)) for o in args.gh_orders
    ]:
        sj = jnp.asarray(sigmas)
        outs, first, med = {}, 0.0, 0.0
        for n in names:
            out, t = timed(lambda s, n=n, rule=rule: jaxsig.signature(n, s, rule=rule), sj, repeats=args.repeats)
            outs[n] = {k: np.asarray(getattr(out, k))[at] for k in GAUSS + LINE}
            first += t["first"]
            med += t["median"]
        eg, el = errors(outs.__getitem__)
        rows.append(
            dict(
                method=label,
                time=med,
                compile=first - med,
                err_gauss=eg,
                err_line=el,
                note=f"8 calls of signature(name, sigmas[{sigmas.size}])",
            )
        )
        log(rows[-1])

    # scipy.integrate.quad: the reference sigmas of each activation, extrapolated.
    for tight in (False, True):
        SCIPY_WARNINGS["n"] = 0
        t_gauss, t_line, outs = 0.0, 0.0, {}
        for n in names:
            d, jumps = HAND[n]
            t0 = time.perf_counter()
            g = [scipy_gaussian(d, s, tight=tight) for s in REF_SIGMAS]
            t1 = time.perf_counter()
            line = scipy_line(d, jumps, tight=tight)
            t2 = time.perf_counter()
            t_gauss += t1 - t0
            t_line += t2 - t1
            outs[n] = {k: [r[k] for r in g] for k in GAUSS} | line
        total = t_gauss / (len(names) * len(REF_SIGMAS)) * n_pairs + t_line
        eg, el = errors(outs.__getitem__)
        rows.append(
            dict(
                method=f"scipy quad ({'tol 1e-13' if tight else 'default tol'})",
                time=total,
                compile=0.0,
                err_gauss=eg,
                err_line=el,
                extrapolated=True,
                note=f"timed {len(names) * len(REF_SIGMAS)} (act, sigma) pairs, "
                f"x{n_pairs / (len(names) * len(REF_SIGMAS)):.0f}; "
                f"{SCIPY_WARNINGS['n']} quad warnings",
            )
        )
        log(rows[-1])

    # Monte Carlo, 10^6 samples per (activation, sigma); Gaussian components only.
    z = jax.random.normal(jax.random.key(0), (args.mc_samples,), jnp.float64)
    outs, per, first = {}, 0.0, 0.0
    for n in names:
        act = jaxsig.activations.get(n)
        prog = mc_program(act.fn if act.params is None else act.bind(act.params), False)
        out, t = timed(prog, z, jnp.asarray(REF_SIGMAS), None, repeats=args.repeats)
        outs[n] = {k: np.asarray(v) for k, v in out.items()}
        per += t["median"]
        first += t["first"] - t["median"]
    eg, _ = errors(lambda n: outs[n])
    rows.append(
        dict(
            method=f"Monte Carlo {args.mc_samples:.0e}",
            time=per / len(REF_SIGMAS) * sigmas.size,
            compile=first,
            err_gauss=eg,
            err_line=float("nan"),
            extrapolated=True,
            note=f"5 sigmas per activation timed, x{sigmas.size / 5:.0f}; no tv, c, slopes",
        )
    )
    log(rows[-1])

    # Bare cost: phi, phi' at the default rule's nodes, once per activation.
    med = first = 0.0
    for n in names:
        act = jaxsig.activations.get(n)
        x = jnp.asarray(quadrature.Composite(kinks=act.kinks).line(jnp.float64).x)
        bare = jax.jit(lambda x, f=act: jax.jvp(f, (x,), (jnp.ones_like(x),)))
        _, t = timed(bare, x, repeats=args.repeats)
        med += t["median"]
        first += t["first"] - t["median"]
    rows.append(
        dict(
            method="bare cost (phi, phi' at the nodes)",
            time=med,
            compile=first,
            err_gauss=float("nan"),
            err_line=float("nan"),
            note="8 jitted jvp calls",
        )
    )
    log(rows[-1])
    return dict(
        rows=rows,
        n_sigmas=int(sigmas.size),
        reference=source,
        reference_points=f"sigma in {REF_SIGMAS}, mu = 0, all 8 activations",
    )


def workload2_and_3(args, log):
    B = args.n_params
    rng = np.random.default_rng(0)
    betas = rng.uniform(0.5, 5.0, B)
    sigmas = np.geomspace(0.1, 10.0, 8)
    bj, sj = jnp.asarray(betas), jnp.asarray(sigmas)
    n_ref = min(args.n_ref, B)
    rows, goals = [], {}

    # Reference: a much finer composite rule on the first n_ref betas, with c and
    # the slopes in closed form (c = pi^2 / (6 beta^2), slopes (1, 0)) and tv =
    # TV(swish') from mpmath (tv does not depend on beta).
    ref_rule = quadrature.Composite(order=32, panel_sigmas=1.5)
    ref_out, t_ref = timed(forward_program(ref_rule), bj[:n_ref], sj, repeats=0)
    ref = {k: np.asarray(getattr(ref_out, k)) for k in GAUSS}
    tv_swish = paper_reference()[0]["swish"]["line"]["tv"]
    ref_line = dict(
        alpha_plus=np.ones(n_ref),
        alpha_minus=np.zeros(n_ref),
        tv=np.full(n_ref, tv_swish),
        c=math.pi**2 / (6 * betas[:n_ref] ** 2),
    )
    spot = []
    for i in range(args.n_mpmath):
        for j in (0, 4, 7):
            mp = mp_swish_beta(betas[i], sigmas[j])
            spot.append(max(err(ref[k][i, j], mp[k]) for k in GAUSS))
    log(
        dict(
            reference="Composite(order=32, panel_sigmas=1.5)",
            seconds=t_ref["first"],
            mpmath_spot_check_max_err=max(spot) if spot else None,
            n_spot=len(spot),
        )
    )

    def errors(out, rows_idx):
        eg = max(err(np.asarray(out[k])[: len(rows_idx)], ref[k][rows_idx]) for k in GAUSS if k in out)
        el = max(
            (err(np.asarray(out[k])[: len(rows_idx)], ref_line[k][rows_idx]) for k in LINE if k in out),
            default=float("nan"),
        )
        return eg, el

    def sig_dict(s, n):
        return {k: np.asarray(getattr(s, k))[:n] for k in GAUSS} | {k: np.asarray(getattr(s, k))[:n, 0] for k in LINE}

    idx = np.arange(n_ref)
    # jaxsig rules, jit(vmap) over the whole batch.
    fwd_default = None
    for label, rule in [("jaxsig default (composite)", None)] + [
        (f"jaxsig Gauss-Hermite {o}", quadrature.GaussHermite(o)) for o in args.gh_orders
    ]:
        prog = forward_program(rule)
        out, t = lowered_timed(prog, bj, sj, repeats=args.repeats)
        eg, el = errors(sig_dict(out, n_ref), idx)
        rows.append(
            dict(
                method=label,
                time=t["median"],
                compile=t["compile"] + t["trace"],
                err_gauss=eg,
                err_line=el,
                hlo_ops=t["hlo_ops"],
                timing=t,
                note="jit(vmap(signature))",
            )
        )
        log(rows[-1])
        if rule is None:
            fwd_default = prog

    # The batch API (chunks of <= 1024 rows per device, all devices, host copies).
    out, t = timed(lambda b: jaxsig.batch.signature_batch(SWISH_BETA, {"beta": b}, sigmas), betas, repeats=args.repeats)
    eg, el = errors(sig_dict(out, n_ref), idx)
    rows.append(
        dict(
            method=f"jaxsig signature_batch ({jax.device_count()} device)",
            time=t["median"],
            compile=t["first"] - t["median"],
            err_gauss=eg,
            err_line=el,
            timing=t,
            note="chunked (<= 1024 rows), results copied to host",
        )
    )
    log(rows[-1])

    if args.float32:
        out, t = lowered_timed(
            forward_program(None), bj.astype(jnp.float32), sj.astype(jnp.float32), repeats=args.repeats
        )
        eg, el = errors(sig_dict(out, n_ref), idx)
        rows.append(
            dict(
                method="jaxsig default, float32",
                time=t["median"],
                compile=t["compile"] + t["trace"],
                err_gauss=eg,
                err_line=el,
                timing=t,
                note="same program, float32 inputs",
            )
        )
        log(rows[-1])

    # scipy quad on a subset, extrapolated linearly to B.
    n_sp = min(args.n_scipy, B)
    for tight in (False, True):
        SCIPY_WARNINGS["n"] = 0
        t0 = time.perf_counter()
        outs = {k: np.zeros((n_sp, sigmas.size)) for k in GAUSS} | {k: np.zeros(n_sp) for k in LINE}
        for i in range(n_sp):
            d = lambda x, b=betas[i]: _swish_beta_d(x, b)  # noqa: E731
            for j, s in enumerate(sigmas):
                for k, v in scipy_gaussian(d, s, tight=tight).items():
                    outs[k][i, j] = v
            for k, v in scipy_line(d, {}, tight=tight).items():
                outs[k][i] = v
        per_row = (time.perf_counter() - t0) / n_sp
        eg, el = errors(outs, np.arange(n_sp))
        rows.append(
            dict(
                method=f"scipy quad ({'tol 1e-13' if tight else 'default tol'})",
                time=per_row * B,
                compile=0.0,
                err_gauss=eg,
                err_line=el,
                extrapolated=True,
                note=f"timed {n_sp} betas x 8 sigmas, x{B / n_sp:.0f}; {SCIPY_WARNINGS['n']} quad warnings",
            )
        )
        log(rows[-1])
        if not tight:
            scipy_default = rows[-1]
        else:
            scipy_tight = rows[-1]

    # Monte Carlo 10^6 on a subset, extrapolated.
    n_mc = min(args.n_mc, B)
    z = jax.random.normal(jax.random.key(1), (args.mc_samples,), jnp.float64)
    prog = mc_program(swish_beta, True)
    block(prog(z, sj, {"beta": bj[0]}))
    t0 = time.perf_counter()
    mc = [block(prog(z, sj, {"beta": bj[i]})) for i in range(n_mc)]
    per_row = (time.perf_counter() - t0) / n_mc
    outs = {k: np.stack([np.asarray(m[k]) for m in mc]) for k in GAUSS}
    eg, _ = errors(outs, np.arange(n_mc))
    rows.append(
        dict(
            method=f"Monte Carlo {args.mc_samples:.0e}",
            time=per_row * B,
            compile=0.0,
            err_gauss=eg,
            err_line=float("nan"),
            extrapolated=True,
            note=f"timed {n_mc} betas x 8 sigmas, x{B / n_mc:.0f}; no tv, c, slopes",
        )
    )
    log(rows[-1])

    # Bare cost: phi and phi' at the default rule's nodes, every beta.
    x = jnp.asarray(quadrature.Composite(kinks=SWISH_BETA.kinks).line(jnp.float64).x)
    bare = jax.jit(jax.vmap(lambda b: jax.jvp(lambda t: swish_beta(t, {"beta": b}), (x,), (jnp.ones_like(x),))))
    _, t_bare = lowered_timed(bare, bj, repeats=args.repeats)
    rows.append(
        dict(
            method="bare cost (phi, phi' at the nodes)",
            time=t_bare["median"],
            compile=t_bare["compile"] + t_bare["trace"],
            err_gauss=float("nan"),
            err_line=float("nan"),
            timing=t_bare,
            note=f"jit(vmap(jvp)) over {x.size} nodes",
        )
    )
    log(rows[-1])

    # Workload 3: gradient of the design loss w.r.t. every beta.
    grad = gradient_program(None)
    g, t_grad = lowered_timed(grad, bj, sj, repeats=args.repeats)
    # Check: central differences of the per-row loss (rows are independent).
    h = 1e-6
    lp = np.asarray(design_loss_rows(block(fwd_default(bj + h, sj))))
    lm = np.asarray(design_loss_rows(block(fwd_default(bj - h, sj))))
    fd = (lp - lm) / (2 * h)
    grad_err = float(np.max(np.abs(np.asarray(g) - fd) / np.maximum(1.0, np.abs(fd))))
    w3 = dict(
        method="jaxsig grad of design loss",
        time=t_grad["median"],
        compile=t_grad["compile"] + t_grad["trace"],
        hlo_ops=t_grad["hlo_ops"],
        timing=t_grad,
        fd_max_err=grad_err,
        note="jit(grad(sum of per-row losses)), checked against central differences (h = 1e-6)",
    )
    log(w3)

    # Recompilation: new values of betas, sigma, mu through the programs compiled
    # above, and through the public signature() (after its first scalar call).
    block(jaxsig.signature(SWISH_BETA, 0.37, params={"beta": 2.5}))
    before = TRACES["n"]
    block(fwd_default(bj * 1.01 + 0.1, sj * 1.3))
    block(grad(bj * 0.99, sj * 0.7))
    block(jaxsig.signature(SWISH_BETA, 1.91, params={"beta": 0.7}, mu=0.2))
    retraces = TRACES["n"] - before

    jaxsig_row = rows[0]
    goals = dict(
        speedup_vs_scipy_default=scipy_default["time"] / jaxsig_row["time"],
        speedup_vs_scipy_tight=scipy_tight["time"] / jaxsig_row["time"],
        accuracy_jaxsig=max(jaxsig_row["err_gauss"], jaxsig_row["err_line"]),
        accuracy_scipy_default=max(scipy_default["err_gauss"], scipy_default["err_line"]),
        accuracy_scipy_tight=max(scipy_tight["err_gauss"], scipy_tight["err_line"]),
        ratio_to_bare=jaxsig_row["time"] / t_bare["median"],
        grad_over_forward=t_grad["median"] / jaxsig_row["time"],
        retraces_on_new_values=retraces,
    )
    return dict(
        rows=rows,
        w3=w3,
        goals=goals,
        n_params=B,
        sigmas=sigmas.tolist(),
        n_ref=n_ref,
        reference="jaxsig Composite(order=32, panel_sigmas=1.5) (Gaussian); c = pi^2/(6 beta^2), "
        "slopes (1, 0), tv = TV(swish') by mpmath",
        mpmath_spot_check=dict(max_err=max(spot) if spot else None, n=len(spot)),
    )


def first_call_compile():
    """A fresh interpreter: backend start, then the first signature('gelu', 1.0)."""
    code = (
        "import time, jax; jax.config.update('jax_enable_x64', True); import jax.numpy as jnp;"
        "jnp.zeros(1).block_until_ready(); import jaxsig;"
        "t = time.perf_counter(); jax.block_until_ready(jaxsig.signature('gelu', 1.0));"
        "a = time.perf_counter() - t;"
        "t = time.perf_counter(); jax.block_until_ready(jaxsig.moments('tanh', 1.0));"
        "b = time.perf_counter() - t;"
        "t = time.perf_counter(); jax.block_until_ready(jaxsig.signature('gelu', 2.0));"
        "c = time.perf_counter() - t; print(a, b, c)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    a, b, c = map(float, out.stdout.split())
    return dict(signature_first_call=a, moments_first_call=b, signature_second_call=c)


# --- Report ---------------------------------------------------------------------------


def fmt_t(t):
    if t is None or not np.isfinite(t) or t == 0:
        return "-"
    if t >= 100:
        return f"{t:,.0f} s"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.0f} us"


def fmt_e(e):
    return "-" if e is None or not np.isfinite(e) else f"{e:.1e}"


def table(rows, base):
    out = [
        "| method | time | compile | vs jaxsig | max err, Gaussian (5) | max err, tv c slopes (4) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = fmt_t(r["time"]) + (" (extrap.)" if r.get("extrapolated") else "")
        ratio = r["time"] / base
        out.append(
            f"| {r['method']} | {t} | {fmt_t(r['compile'])} | {ratio:,.2f}x | {fmt_e(r['err_gauss'])} "
            f"| {fmt_e(r['err_line'])} | {r.get('note', '')} |"
        )
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--n-params", type=int, default=10_000, help="workload 2/3 batch size")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats after the warm-up call")
    ap.add_argument("--gh-orders", type=int, nargs="*", default=[64, 256])
    ap.add_argument("--n-scipy", type=int, default=20, help="betas timed with scipy quad")
    ap.add_argument("--n-mc", type=int, default=5, help="betas timed with Monte Carlo")
    ap.add_argument("--n-ref", type=int, default=500, help="betas with a high-order reference")
    ap.add_argument("--n-mpmath", type=int, default=2, help="betas spot-checked with mpmath (x3 sigmas)")
    ap.add_argument("--mc-samples", type=int, default=1_000_000)
    ap.add_argument("--float32", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--skip", nargs="*", default=[], choices=["w1", "w23", "first-call"])
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.n_params, args.repeats, args.gh_orders = min(args.n_params, 1000), 3, [64]
        args.n_scipy, args.n_mc, args.n_ref, args.n_mpmath = 4, 2, 100, 1
        args.float32 = False

    def log(row):
        print(
            "  ",
            {k: (float(f"{v:.3g}") if isinstance(v, float) else v) for k, v in row.items() if k != "timing"},
            file=sys.stderr,
            flush=True,
        )

    info = machine()
    print(f"# jaxsig benchmarks ({'quick' if args.quick else 'full'})\n", flush=True)
    print(
        f"{info['date']}; jax {info['jax']} on {info['platform']} ({', '.join(info['devices'])}); "
        f"CPU: {info['cpu']} x {info['cpu_count']}; float64 (x64 enabled); "
        f"load average at start {info['load_average']}\n",
        flush=True,
    )
    results = dict(machine=info, args=vars(args))
    t_start = time.perf_counter()

    if "first-call" not in args.skip:
        fc = first_call_compile()
        results["first_call"] = fc
        print(
            f"First call in a fresh process: signature('gelu', 1.0) {fc['signature_first_call']:.2f} s "
            f"(compile included), moments('tanh', 1.0) {fc['moments_first_call']:.2f} s, "
            f"second signature call {fmt_t(fc['signature_second_call'])}.\n",
            flush=True,
        )

    if "w1" not in args.skip:
        w1 = workload1(args, log)
        results["workload1"] = w1
        print(f"## Workload 1: 8 paper activations x {w1['n_sigmas']} sigma in [0.05, 20], nine components\n")
        print(f"Errors against {w1['reference']} at {w1['reference_points']}; metric |v - ref| / max(1, |ref|).\n")
        print(table(w1["rows"], w1["rows"][0]["time"]) + "\n", flush=True)

    if "w23" not in args.skip:
        w = workload2_and_3(args, log)
        results["workload2"] = w
        print(f"## Workload 2: {w['n_params']:,} Swish-beta x 8 sigma in [0.1, 10], nine components\n")
        print(
            f"Errors on the first {w['n_ref']} betas against {w['reference']}; the reference agrees with "
            f"mpmath to {fmt_e(w['mpmath_spot_check']['max_err'])} on {w['mpmath_spot_check']['n']} "
            "(beta, sigma) spot checks.\n"
        )
        print(table(w["rows"], w["rows"][0]["time"]) + "\n")
        w3 = w["w3"]
        print(f"## Workload 3: gradient of a design loss w.r.t. {w['n_params']:,} betas\n")
        print(
            f"jit(grad): {fmt_t(w3['time'])} (compile {fmt_t(w3['compile'])}); max error against central "
            f"differences {fmt_e(w3['fd_max_err'])}.\n"
        )
        g = w["goals"]
        fc = results.get("first_call", {})
        print("## Goals (ratios from this run)\n")
        print("| goal | target | measured | met |\n|---|---|---|---|")
        acc_ok = g["accuracy_jaxsig"] <= g["accuracy_scipy_default"]
        print(
            f"| W2 speed-up vs scipy quad (default tol) | >= 1000x, equal or better accuracy | "
            f"{g['speedup_vs_scipy_default']:,.0f}x; err {fmt_e(g['accuracy_jaxsig'])} vs "
            f"{fmt_e(g['accuracy_scipy_default'])} | "
            f"{'yes' if g['speedup_vs_scipy_default'] >= 1000 and acc_ok else 'no'} |"
        )
        print(
            f"| W2 speed-up vs scipy quad (tol 1e-13) | >= 1000x | {g['speedup_vs_scipy_tight']:,.0f}x; err "
            f"{fmt_e(g['accuracy_scipy_tight'])} | {'yes' if g['speedup_vs_scipy_tight'] >= 1000 else 'no'} |"
        )
        print(
            f"| W2 time / bare cost | <= 3x | {g['ratio_to_bare']:.1f}x | "
            f"{'yes' if g['ratio_to_bare'] <= 3 else 'no'} |"
        )
        print(
            f"| W3 time / W2 time | <= 3x | {g['grad_over_forward']:.2f}x | "
            f"{'yes' if g['grad_over_forward'] <= 3 else 'no'} |"
        )
        if fc:
            print(
                f"| first call signature('gelu', 1.0), compile included | < 2 s | "
                f"{fc['signature_first_call']:.2f} s | {'yes' if fc['signature_first_call'] < 2 else 'no'} |"
            )
        print(
            f"| W2 program compile (trace + XLA) | < 2 s | {fmt_t(w['rows'][0]['compile'])} | "
            f"{'yes' if w['rows'][0]['compile'] < 2 else 'no'} |"
        )
        print(
            f"| retraces when sigma / mu / params values change | 0 | {g['retraces_on_new_values']} | "
            f"{'yes' if g['retraces_on_new_values'] == 0 else 'no'} |\n"
        )

    results["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["total_seconds"] = time.perf_counter() - t_start
    pathlib.Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    print(
        f"Total {results['total_seconds']:.0f} s; load average at end {results['machine']['load_average_end']}; "
        f"raw results in {args.out}"
    )


if __name__ == "__main__":
    main()

"""Does ``jaxsig.flax.autoinit`` hold the per-layer variance at its target? Deep MLPs on digits.

MLPs of depth 30 and 100 (dense layers), width 256, on scikit-learn's digits
(8x8 images standardised with training statistics; no download), with four
activations, each written the way a user would:

* ``tanh``: ``jnp.tanh`` called in ``__call__``; ``autoinit(mode="critical")``
  (the edge of chaos at ``q = 1``: ``sW^2 = 1 / g2(1)^2 = 2.153``,
  ``sb^2 = 1 - sW^2 m2(1) = 0.151``).
* ``gelu``: ``jax.nn.gelu(x, approximate=False)`` in ``__call__``;
  ``autoinit(sigma_b2=0.25)`` (fixed ``q = 1``, ``sW^2 = 0.75 / m2(1)``). With
  ``sb^2 = 0`` GELU's fixed point at ``q = 1`` repels (``V'(1) = 1.14``) and no
  initialisation can hold it at depth 100; ``sb^2 = 0.25`` makes it attract
  (``V'(1) = 0.86``). The report of ``autoinit`` says so.
* ``rational``: a learnable :func:`jaxsig.families.get` ``("rational")``
  activation (``NNXActivation("rational", learnable=True)``, one module shared
  by all layers) at its initial parameters; ``autoinit(sigma_b2=0.25)``.
* ``designed``: the activation designed by ``examples/design_demo.py`` for
  ``g2 <= 0.8, tv < 5, c < inf, m2 == 1`` (``NNXActivation.from_design``);
  ``autoinit()`` (``sb^2 = 0``; ``m2(1) = 1``, so ``sW^2 = 1``).

Each network is built with Flax's default initialisation (``lecun_normal``
kernels: ``sW^2 = 1``; zero biases) and measured as it is, then the same
network is passed through ``autoinit`` (rescale mode: directions kept, scales
set) and measured again; ``--seeds`` networks per configuration. The
measurement is :func:`jaxsig.flax.diagnose` on 128 test images (``--test``;
its per-input prediction costs one Gaussian moment per input and layer): the
pre-activation second moment ``q_l = mean h^2`` per layer, the mean-field
prediction, and the finite-width error model (``rel_sd``: the relative sd of
one input's measured ``q_l``, see ``diagnose``).

Reported per configuration: for autoinit, the largest deviation of a layer's
measured ``q_l`` from its target, in units of the error model's sd
(``max_l |q_l / target_l - 1| / rel_sd_l`` over layers and networks) and as a
fraction; for the default init, how far ``q`` drifts (``q_L / q_1``, measured
and predicted) and the phase diagnose reports.

Writes ``autoinit_propagation.json``, ``autoinit_propagation.png`` and
``autoinit_propagation.md`` next to this file.

Run: ``python examples/autoinit_propagation.py [--seeds 3] [--depths 30 100]``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsig.flax import NNXActivation, autoinit, diagnose

HERE = pathlib.Path(__file__).resolve().parent
WIDTH = 256


def load_data(seed=0):
    """Digits, 80/20 stratified split, standardised with the training statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = np.where(std > 0, std, 1.0)

    def standardise(v):
        return ((v - mean) / std).astype(np.float32)

    return standardise(x_tr), y_tr.astype(np.int32), standardise(x_te), y_te.astype(np.int32)


class MLP(nnx.Module):
    """``depth`` dense layers ``h_l = W_l a_{l-1} + b_l``, ``a_l = act(h_l)``, then a linear readout."""

    def __init__(self, act, depth, d_in, d_out, *, rngs):
        self.layers = nnx.List([nnx.Linear(d_in if i == 0 else WIDTH, WIDTH, rngs=rngs) for i in range(depth)])
        self.readout = nnx.Linear(WIDTH, d_out, rngs=rngs)
        self.act = act

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else self.act(x))
        return self.readout(self.act(x))


def configurations(design_path):
    """``name -> (make activation, autoinit settings)``."""
    return {
        "tanh": (lambda: jnp.tanh, dict(mode="critical")),
        "gelu": (lambda: lambda h: jax.nn.gelu(h, approximate=False), dict(sigma_b2=0.25)),
        "rational": (lambda: NNXActivation("rational", learnable=True), dict(sigma_b2=0.25)),
        "designed": (lambda: NNXActivation.from_design(design_path), dict()),
    }


def measure(model, x_te, targets=None):
    """Per-layer measured / predicted second moments and the error model, from diagnose."""
    d = diagnose(model, x_te)
    out = {
        "measured_q": [layer.measured_q for layer in d.layers],
        "predicted_q": [layer.predicted_q for layer in d.layers],
        "rel_sd": [layer.rel_sd for layer in d.layers],
        "phase": d.phase,
        "verdict": d.verdict,
    }
    if targets is not None:
        out["target_q"] = list(targets)
        out["z"] = [
            abs(m / t - 1) / s if np.isfinite(s) and s > 0 else float("nan")
            for m, t, s in zip(out["measured_q"], targets, out["rel_sd"])
        ]
    return out


def run(name, make_act, settings, depth, data, seeds, n_test):
    x_tr, _, x_te, _ = data
    x_te = x_te[:n_test]
    sample = jnp.asarray(x_tr[:256])
    default, auto, reports, seconds = [], [], [], []
    for seed in seeds:
        model = MLP(make_act(), depth, x_tr.shape[1], 10, rngs=nnx.Rngs(seed))
        default.append(measure(model, jnp.asarray(x_te)))
        t0 = time.perf_counter()
        report = autoinit(model, sample, key=seed, **settings)
        seconds.append(time.perf_counter() - t0)
        reports.append(report)
        auto.append(measure(model, jnp.asarray(x_te), [r.q for r in report.layers]))
    rep = reports[0]
    hidden = [r for r in rep.layers[1:-1]]
    # Hidden layers only: the readout (10 units) has a large sampling error of its own, sqrt(2/10).
    z = np.array([a["z"][:-1] for a in auto])
    frac = np.array([np.abs(np.array(a["measured_q"][:-1]) / np.array(a["target_q"][:-1]) - 1) for a in auto])
    q_def = np.array([d["measured_q"] for d in default])
    p_def = np.array([d["predicted_q"] for d in default])
    return {
        "activation": name,
        "depth": depth,
        "settings": settings,
        "autoinit": {
            "sigma_w2": hidden[0].sigma_w2,
            "sigma_b2": hidden[0].sigma_b2,
            "chi1": hidden[0].chi1,
            "slope": hidden[0].slope,
            "first_call_seconds": seconds[0],
            "later_call_seconds": float(np.mean(seconds[1:])) if len(seconds) > 1 else None,
            "max_z": float(np.nanmax(z)),
            "max_fraction": float(np.max(frac)),
            "within_2sd": float(np.mean(z[np.isfinite(z)] <= 2.0)),
            "mean_abs_z": float(np.nanmean(z)),
            "mean_ratio_last": float(np.mean([a["measured_q"][-2] / a["target_q"][-2] for a in auto])),
            "phase": auto[0]["phase"],
            "verdict": auto[0]["verdict"],
        },
        "default": {
            "drift_measured": float(np.mean(q_def[:, -2] / q_def[:, 0])),
            "drift_predicted": float(np.mean(p_def[:, -2] / p_def[:, 0])),
            "q_last_measured": float(np.mean(q_def[:, -2])),
            "phase": default[0]["phase"],
            "verdict": default[0]["verdict"],
        },
        "layers": {
            "default_measured": q_def.mean(0).tolist(),
            "default_predicted": p_def.mean(0).tolist(),
            "auto_measured": np.mean([a["measured_q"] for a in auto], 0).tolist(),
            "auto_target": auto[0]["target_q"],
            "auto_rel_sd": np.mean([a["rel_sd"] for a in auto], 0).tolist(),
        },
        "report": str(rep),
    }


def tables(results, seeds, n_test):
    lines = [
        "| activation | depth | autoinit settings | sW^2 | sb^2 | chi1 | V'(q) | autoinit: max_l \\|q_l/target - 1\\| "
        "| ... in error-model sd | layers within 2 sd | default init: q_L / q_1 measured | predicted "
        "| default phase (diagnose) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, d = r["autoinit"], r["default"]
        s = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(
            f"| {r['activation']} | {r['depth']} | {s} | {a['sigma_w2']:.4g} | {a['sigma_b2']:.4g} | {a['chi1']:.4g} "
            f"| {a['slope']:.3f} | {a['max_fraction']:.3f} | {a['max_z']:.2f} sd | {100 * a['within_2sd']:.0f}% "
            f"| {d['drift_measured']:.3g} "
            f"| {d['drift_predicted']:.3g} | {d['phase']} |"
        )
    lines += [
        "",
        f"{seeds} networks per row; q_l measured on {n_test} test images (autoinit saw 256 training images); "
        "l runs over the hidden layers, L is the last. 'in error-model sd': the largest "
        "|q_l / target_l - 1| / rel_sd_l over hidden layers and networks, rel_sd from jaxsig.flax.diagnose "
        "(the relative sd of one input's measured q_l at this width, delta method; see its docstring); "
        "'within 2 sd': the share of (layer, network) pairs with |q_l / target_l - 1| <= 2 rel_sd_l "
        "(95% for a calibrated Gaussian error).",
    ]
    return "\n".join(lines)


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["activation"] for r in results))
    depths = sorted({r["depth"] for r in results})
    fig, axes = plt.subplots(len(depths), len(names), figsize=(4.0 * len(names), 3.2 * len(depths)), squeeze=False)
    for r in results:
        ax = axes[depths.index(r["depth"]), names.index(r["activation"])]
        lay = r["layers"]
        n = np.arange(1, len(lay["auto_measured"]) + 1)
        tgt, sd = np.array(lay["auto_target"]), np.array(lay["auto_rel_sd"])
        ax.fill_between(
            n,
            tgt * np.maximum(1 - sd, 1e-3),
            tgt * (1 + sd),
            color="C0",
            alpha=0.15,
            lw=0,
            label="autoinit target +- 1 sd",
        )
        ax.plot(n, lay["auto_measured"], "o", ms=2.5, color="C0", label="autoinit: measured")
        ax.plot(n, lay["default_predicted"], "-", color="C3", lw=1, label="Flax default: mean field")
        ax.plot(n, lay["default_measured"], "s", ms=2.0, color="C3", mfc="none", label="Flax default: measured")
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        if hi / lo < 100:  # at least two decades, so that noise does not look like structure
            mid = math.sqrt(lo * hi)
            ax.set_ylim(mid / 10, mid * 10)
        ax.set_title(f"{r['activation']}, depth {r['depth']}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("layer")
    for ax in axes[:, 0]:
        ax.set_ylabel("pre-activation second moment")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(
        "Per-layer pre-activation second moment on digits: autoinit vs Flax's default init (mean over networks)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--depths", type=int, nargs="+", default=[30, 100])
    ap.add_argument("--test", type=int, default=128, help="test images measured")
    ap.add_argument("--design", default=str(HERE / "designed_result.json"))
    ap.add_argument("--out", default=str(HERE / "autoinit_propagation"))
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    wall, cpu = time.perf_counter(), time.process_time()
    data = load_data()
    results = []
    for depth in args.depths:
        for name, (make, settings) in configurations(args.design).items():
            r = run(name, make, settings, depth, data, range(args.seeds), args.test)
            print(
                f"{name:9s} depth {depth:3d}: autoinit max |q/target - 1| = {r['autoinit']['max_fraction']:.3f} "
                f"({r['autoinit']['max_z']:.2f} sd); default drift q_L/q_1 = {r['default']['drift_measured']:.3g}",
                flush=True,
            )
            results.append(r)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    text = tables(results, args.seeds, args.test) + f"\n\nRuntime {wall:.0f} s wall, {cpu:.0f} s CPU.\n"
    print("\n" + text)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps({"seeds": args.seeds, "width": WIDTH, "runs": results, "runtime_wall_seconds": wall}, indent=1)
        + "\n"
    )
    figure(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()

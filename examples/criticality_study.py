"""Activations designed for criticality against ReLU, tanh, GELU, SELU and Swish in deep MLPs.

Every activation starts at its own jaxsig critical initialisation with fixed point ``q* = 1``:
``sW^2 = 1 / g2(1)^2`` (so ``chi1 = sW^2 g2(1)^2 = 1``) and ``sb^2 = 1 - sW^2 m2(1)``
(:func:`jaxsig.dynamics.critical_init` with ``q=1``; where that ``sb^2`` would be negative,
the edge of chaos at ``sb^2 = 0`` instead). The designed activations are found by
:func:`jaxsig.design` at the operating point ``q = 1``, ``sb^2 = 0.1`` (at ``sb^2 = 0`` the
Gaussian Poincaré inequality forbids a non-linear mean-zero critical activation):

* ``crit_swish``: ``swish_beta`` family, ``m1 == 0``, ``chi1 == 1``, ``tv < 5``;
* ``crit_elu``: ``scaled_elu`` family, the same targets;
* ``crit_rational``: ``rational`` family, the same plus ``dV <= 0.9`` (an attracting
  variance fixed point) and ``c < inf``.

Networks: depths 20, 50, 100, width 128, ``--seeds`` (default 5) per configuration, trained
by ``--steps`` SGD steps (default 300; learning rate 0.01, batch 128) on scikit-learn's digits
(:mod:`deepnets`). Reported: test accuracy mean ± sd over seeds, and each activation's report
card on the paper's five principles (:func:`jaxsig.report_card` at ``sigma = 1`` with its own
``sb^2``), with, per principle and at depths 50 and 100, the mean accuracy of the activations
that pass and of those that fail it, and the Spearman rank correlation between the principle's
number and that accuracy (8 activations: a rough guide, not a test).

Writes ``criticality_study.json`` and ``criticality_study.md`` (and, while running,
``criticality_study.partial.json``, from which a killed run resumes).
Run: ``python examples/criticality_study.py [--steps 300] [--seeds 5]`` (about 45 minutes on
one shared CPU core); ``--report-only`` rewrites the Markdown from the JSON without training.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # the theory in float64; the networks stay float32

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

import jaxsig  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import deepnets  # noqa: E402
from trainability import jsonable  # noqa: E402

DEPTHS = (20, 50, 100)
SUMMARY_DEPTHS = (50, 100)  # where the issue asks a design to match the best standard activation
BASELINES = ("relu", "tanh", "gelu", "selu", "swish")
CRITICAL = ["m1 == 0", "chi1 == 1", "tv < 5"]
DESIGNS = {
    "crit_swish": ("swish_beta", CRITICAL),
    "crit_elu": ("scaled_elu", CRITICAL),
    "crit_rational": ("rational", CRITICAL + ["dV <= 0.9", "c < inf"]),
}
DESIGN_POINT = dict(q=1.0, sigma_b2=0.1)
PRINCIPLE_NAMES = ("contraction", "variance", "bias_mean", "bias_area", "conditioning", "tails")


def activations():
    acts, designs = {name: jaxsig.activations.get(name) for name in BASELINES}, {}
    for name, (family, targets) in DESIGNS.items():
        res = jaxsig.design(jaxsig.families.get(family), targets, progress=False, **DESIGN_POINT)
        print(res.summary(), flush=True)
        if not res.feasible:
            raise SystemExit(f"{name}: the design is infeasible")
        acts[name], designs[name] = res.activation, res.to_dict()
    return acts, designs


def initialisation(act):
    """``(sW^2, sb^2, q*)``: the critical point with fixed point ``q* = 1``, else the one at ``sb^2 = 0``."""
    init = jaxsig.dynamics.critical_init(act, q=1.0)
    if float(init.sigma_b2) < -1e-12:
        init = jaxsig.dynamics.critical_init(act, 0.0)
    return float(init.sigma_w2), max(float(init.sigma_b2), 0.0), float(init.q_star)


def theory(act, sw2, sb2, q):
    sig, aux = jaxsig.signature_with_aux(act, 1.0)
    card = jaxsig.report_card(sig, aux, 1.0, bias_variance=sb2)
    principles = {
        k: {"value": float(p.value), "threshold": float(p.threshold), "passed": bool(p.passed)}
        for k, p in card.principles().items()
    }
    q_eval = q if np.isfinite(q) and q > 0 else 1.0
    vp = jaxsig.dynamics.fixed_point(act, sw2, sb2)
    return {
        "sigma_w2": sw2,
        "sigma_b2": sb2,
        "q_star": q,
        "chi1": float(vp.chi1),
        "variance_slope": float(jaxsig.dynamics.variance_map_slope(act, q_eval, sw2)),
        "xi_c": float(jaxsig.dynamics.depth_scales(act, sw2, sb2).xi_c),
        "signature": {k: float(v) for k, v in sig._asdict().items()},
        "principles": principles,
    }


def _from_json(row):
    """A row read back from the partial file: depth keys as ints, "inf" strings as floats."""

    def num(v):
        return float(v) if isinstance(v, str) else v

    theory = {k: (num(v) if k != "principles" and not isinstance(v, dict) else v) for k, v in row["theory"].items()}
    theory["signature"] = {k: num(v) for k, v in theory["signature"].items()}
    for p in theory["principles"].values():
        p["value"], p["threshold"] = num(p["value"]), num(p["threshold"])
    return {"theory": theory, **{k: {int(d): v for d, v in row[k].items()} for k in ("train", "test")}}


def run(acts, data, seeds, steps, partial=None):
    """Train every activation at every depth; with ``partial`` (a JSON path), rows already there
    (same steps and seeds) are reused and each new one is written at once, so a killed run resumes."""
    rows = {}
    if partial is not None and partial.exists():
        saved = json.loads(partial.read_text())
        if (saved["steps"], saved["seeds"]) == (steps, seeds):
            rows = {k: _from_json(v) for k, v in saved["rows"].items()}
    for name, act in acts.items():
        if name in rows:
            print(f"{name}: reusing {partial.name}", flush=True)
            continue
        sw2, sb2, q = initialisation(act)
        row = {"theory": theory(act, sw2, sb2, q), "train": {}, "test": {}}
        phi = deepnets.float32_activation(act)
        for depth in DEPTHS:
            t0 = time.time()
            out = deepnets.train(phi, depth, data, sw2, sb2, 1.0, np.arange(seeds), steps=steps)
            row["train"][depth], row["test"][depth] = out.train_accuracy.tolist(), out.test_accuracy.tolist()
            acc = out.test_accuracy
            print(
                f"{name:14s} depth {depth:3d}: test {acc.mean():.3f} ± {acc.std(ddof=1):.3f} ({time.time() - t0:.0f} s)"
            )
        rows[name] = row
        if partial is not None:
            partial.write_text(json.dumps(jsonable({"steps": steps, "seeds": seeds, "rows": rows}), allow_nan=False))
    return {name: rows[name] for name in acts}


def principle_summary(rows, depth):
    """Per principle: mean accuracy at ``depth`` of passing vs failing activations, and Spearman's rho."""
    names = list(rows)
    acc = np.array([np.mean(rows[n]["test"][depth]) for n in names])
    out = {}
    for key in PRINCIPLE_NAMES:
        value = np.array([rows[n]["theory"]["principles"][key]["value"] for n in names], float)
        passed = np.array([rows[n]["theory"]["principles"][key]["passed"] for n in names])
        finite = np.isfinite(value)
        rho = spearmanr(value[finite], acc[finite]).statistic if finite.sum() > 2 else float("nan")
        out[key] = {
            "passing": [n for n, p in zip(names, passed) if p],
            "mean_accuracy_passing": float(acc[passed].mean()) if passed.any() else float("nan"),
            "mean_accuracy_failing": float(acc[~passed].mean()) if (~passed).any() else float("nan"),
            "spearman_rho_value_vs_accuracy": float(rho),
        }
    return out


def fmt(v, digits=3):
    return "inf" if v == np.inf else ("nan" if np.isnan(v) else f"{v:.{digits}g}")


def markdown(rows, summary, args, seconds):
    lines = ["# Criticality study: designed activations against ReLU, tanh, GELU, SELU, Swish", ""]
    lines += ["| activation | sW^2 | sb^2 | chi1 | V'(q*) | " + " | ".join(f"test acc, L={d}" for d in DEPTHS) + " |"]
    lines += ["|---" * (5 + len(DEPTHS)) + "|"]
    for name, r in rows.items():
        t = r["theory"]
        accs = [f"{np.mean(r['test'][d]):.3f} ± {np.std(r['test'][d], ddof=1):.3f}" for d in DEPTHS]
        lines += [
            f"| {name} | {t['sigma_w2']:.3f} | {t['sigma_b2']:.3f} | {t['chi1']:.3f} | {t['variance_slope']:.3f} | "
            + " | ".join(accs)
            + " |"
        ]
    lines += ["", "Report card at sigma = 1 with each activation's sb^2 (value, pass):", ""]
    lines += ["| activation | " + " | ".join(PRINCIPLE_NAMES) + " |", "|---" * (1 + len(PRINCIPLE_NAMES)) + "|"]
    for name, r in rows.items():
        p = r["theory"]["principles"]
        cells = [f"{fmt(p[k]['value'])} {'✓' if p[k]['passed'] else '✗'}" for k in PRINCIPLE_NAMES]
        lines += [f"| {name} | " + " | ".join(cells) + " |"]
    for depth in SUMMARY_DEPTHS:
        lines += ["", f"Per principle, at depth {depth}:", ""]
        lines += ["| principle | passing | mean acc passing | mean acc failing | Spearman rho (value vs acc) |"]
        lines += ["|---|---|---|---|---|"]
        for k, s in summary[str(depth)].items():
            lines += [
                f"| {k} | {', '.join(s['passing']) or '-'} | {fmt(s['mean_accuracy_passing'])} | "
                f"{fmt(s['mean_accuracy_failing'])} | {fmt(s['spearman_rho_value_vs_accuracy'], 2)} |"
            ]
    lines += [
        "",
        f"Width 128; {args.steps} SGD steps (learning rate 0.01, batch 128); {args.seeds} seeds per cell "
        f"(mean ± sd of test accuracy on 360 digits); first layer scaled to q0 = 1. Runtime {seconds:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--report-only", action="store_true", help="rewrite the Markdown from the JSON; no training")
    args = ap.parse_args(argv)
    if args.report_only:
        doc = json.loads((HERE / "criticality_study.json").read_text())
        rows = {k: _from_json(v) for k, v in doc["rows"].items()}
        doc["principles"] = {str(d): principle_summary(rows, d) for d in SUMMARY_DEPTHS}
        args.steps, args.seeds = doc["steps"], doc["seeds"]
        (HERE / "criticality_study.json").write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False) + "\n")
        md = markdown(rows, doc["principles"], args, doc["seconds"])
        (HERE / "criticality_study.md").write_text(md)
        print(md)
        return
    t0 = time.time()
    acts, designs = activations()
    partial = HERE / "criticality_study.partial.json"
    rows = run(acts, deepnets.load_digits(), args.seeds, args.steps, partial)
    summary = {str(d): principle_summary(rows, d) for d in SUMMARY_DEPTHS}
    seconds = time.time() - t0
    doc = {"depths": list(DEPTHS), "steps": args.steps, "seeds": args.seeds, "seconds": seconds, "rows": rows}
    doc["principles"] = summary
    doc["designs"] = designs
    (HERE / "criticality_study.json").write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False) + "\n")
    md = markdown(rows, summary, args, seconds)
    (HERE / "criticality_study.md").write_text(md)
    partial.unlink(missing_ok=True)
    print(md)


if __name__ == "__main__":
    main()

"""Trainability of deep random networks against jaxsig's depth scale ``xi_c`` (Schoenholz et al. 2017).

"Deep Information Propagation" (Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, ICLR 2017)
found that a random tanh network trains only where its depth ``L`` is below a few times
the correlation depth scale ``xi_c = -1 / log C'(c*)`` of mean-field theory, with the
boundary near ``L = 6 xi_c``. This script repeats the experiment at CPU scale:

* tanh, ``sb^2 = 0.05``, eight ``sW^2`` from 0.5 to 4 (log-spaced; the edge of chaos is
  at ``sW^2 = 1.761``), depths 4 to 128 (doubling), width 128, ``--steps`` SGD steps
  (default 300, learning rate 0.01, batch 128) on scikit-learn's digits
  (:mod:`deepnets`: first layer scaled to ``q0 = 1``);
* ``xi_c(sW^2)`` from :func:`jaxsig.dynamics.depth_scales` at the fixed point the
  variance map reaches, on a fine ``sW^2`` grid, with ``6 xi_c`` drawn over the
  accuracy grid;
* a network counts as trained when its training accuracy reaches 0.5 (chance is 0.1);
  the rule "trainable iff ``L <= 6 xi_c``" is scored by the fraction of grid cells it
  gets right, and the best factor ``k`` in ``L <= k xi_c`` and the AUC of the score
  ``log(xi_c / L)`` (the probability that a trained network scores above an untrained
  one; threshold-free) are reported too;
* then the same for an activation designed by :func:`jaxsig.design` to be critical and
  mean-zero at ``sb^2 = 0.1`` (the ``swish_beta`` family, targets ``m1 == 0``,
  ``chi1 == 1``, ``tv < 5`` at ``q = 1``), on the same ``sW^2`` ratios to its own critical
  value.

Writes ``trainability.json`` (the grids), ``trainability.png`` and ``trainability.md``.
Run: ``python examples/trainability.py [--steps 300] [--seeds 1]`` (about 10 minutes on
two CPU cores).
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

import jaxsig  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import deepnets  # noqa: E402

DEPTHS = (4, 8, 16, 32, 64, 128)
RATIOS = np.geomspace(0.5, 4.0, 8) / 1.7609546  # tanh's grid relative to its critical sW^2 at sb^2 = 0.05
THRESHOLD = 0.5
RULE_K = 6.0
DESIGN = dict(family="swish_beta", targets=["m1 == 0", "chi1 == 1", "tv < 5"], q=1.0, sigma_b2=0.1)


def designed_activation():
    fam = jaxsig.families.get(DESIGN["family"])
    res = jaxsig.design(fam, DESIGN["targets"], q=DESIGN["q"], sigma_b2=DESIGN["sigma_b2"], progress=False)
    if not res.feasible:
        raise SystemExit(res.summary())
    return res


def xi_c(act, sw2, sb2, chunk=16):
    """``xi_c`` at the fixed point ``q*`` the variance map reaches from ``q0 = 1``.

    In chunks: the correlation solver vmaps a 2-D quadrature over its inputs, and hundreds at
    once need gigabytes.
    """
    sw2 = np.asarray(sw2, float)
    parts = [jaxsig.dynamics.depth_scales(act, sw2[i : i + chunk], sb2).xi_c for i in range(0, sw2.size, chunk)]
    return np.concatenate([np.asarray(p) for p in parts])


def q_star(act, sw2, sb2):
    """The fixed point of the variance map reached from ``q0 = 1`` (``inf``: the variance diverges)."""
    return np.asarray(jaxsig.dynamics.fixed_point(act, np.asarray(sw2, float), sb2).q_star)


def jsonable(tree):
    """Non-finite floats as the strings "inf", "-inf", "nan" (JSON has none)."""
    if isinstance(tree, dict):
        return {k: jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [jsonable(v) for v in tree]
    if isinstance(tree, float) and not np.isfinite(tree):
        return "nan" if np.isnan(tree) else ("inf" if tree > 0 else "-inf")
    return tree


def auc(score, positive):
    """P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = score[positive], score[~positive]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def separation(depths, xi, trained, finite_q=None):
    """How well ``L <= k xi_c`` separates trained (``trained[i, j]`` for ``sW^2_i``, depth ``j``) from not.

    With ``finite_q``, the rule also requires the variance fixed point to be finite (where
    ``q* = inf`` the pre-activations grow without bound with depth, which mean-field
    correlation theory takes for granted not to happen).
    """
    L = np.asarray(depths, float)[None, :]
    xi = np.asarray(xi)[:, None]
    ok = np.ones_like(xi, bool) if finite_q is None else np.asarray(finite_q)[:, None]
    ks = np.geomspace(0.25, 64, 113)
    agree = np.array([np.mean(((L <= k * xi) & ok) == trained) for k in ks])
    score = np.where(ok, np.log(np.where(np.isfinite(xi), xi, 1e12) / L), -np.inf)
    rule = (L <= RULE_K * xi) & ok
    rows = np.broadcast_to(ok, trained.shape)
    return {
        "agreement_6": float(np.mean(rule == trained)),
        "agreement_6_where_q_finite": float(np.mean((rule == trained)[rows])) if rows.any() else float("nan"),
        "cells_q_finite": int(rows.sum()),
        "false_trainable_6": int(np.sum(rule & ~trained)),
        "false_untrainable_6": int(np.sum(~rule & trained)),
        "best_k": float(ks[np.argmax(agree)]),
        "agreement_best": float(agree.max()),
        "auc": auc(np.broadcast_to(score, trained.shape).ravel(), trained.ravel()),
        "cells": int(trained.size),
        "trained_cells": int(trained.sum()),
    }


def analyse(r, act):
    """The theory for a grid of results ``r`` (its accuracies kept): xi_c, q*, the separations."""
    sw2, sb2, critical = np.asarray(r["sigma_w2"]), r["sigma_b2"], r["critical_sigma_w2"]
    fine = critical * np.geomspace(RATIOS[0] * 0.9, RATIOS[-1] * 1.1, 128)
    xi, q = xi_c(act, sw2, sb2), q_star(act, sw2, sb2)
    trained = np.asarray(r["train_accuracy"]).mean(2) >= THRESHOLD
    r.update(
        xi_c=[float(v) for v in xi],
        q_star=[float(v) for v in q],
        fine_sigma_w2=fine.tolist(),
        fine_xi_c=[float(v) for v in xi_c(act, fine, sb2)],
        fine_q_star=[float(v) for v in q_star(act, fine, sb2)],
        separation=separation(r["depths"], xi, trained),
        separation_finite_q=separation(r["depths"], xi, trained, np.isfinite(q)),
    )
    return r


def grid(act, sw2, sb2, data, seeds, steps):
    phi = deepnets.float32_activation(act)
    train = np.zeros((len(sw2), len(DEPTHS), seeds))
    test = np.zeros_like(train)
    for j, depth in enumerate(DEPTHS):
        t0 = time.time()
        out = deepnets.train(
            phi, depth, data, np.asarray(sw2)[:, None], sb2, 1.0, np.arange(seeds)[None, :], steps=steps
        )
        train[:, j], test[:, j] = out.train_accuracy, out.test_accuracy
        print(
            f"  depth {depth:4d}: train accuracy {np.round(train[:, j].mean(1), 2)} ({time.time() - t0:.0f} s)",
            flush=True,
        )
    return train, test


def study(name, act, sb2, critical, data, seeds, steps):
    sw2 = critical * RATIOS
    print(f"{name}: sb2 = {sb2}, critical sW2 = {critical:.4f}, grid {np.round(sw2, 3)}", flush=True)
    train, test = grid(act, sw2, sb2, data, seeds, steps)
    r = {"activation": name, "sigma_b2": sb2, "critical_sigma_w2": float(critical), "sigma_w2": sw2.tolist()}
    r.update(depths=list(DEPTHS), train_accuracy=train.tolist(), test_accuracy=test.tolist())
    return analyse(r, act)


def plot(results, path):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        acc = np.asarray(r["train_accuracy"]).mean(2).T
        sw2, depths = np.asarray(r["sigma_w2"]), np.asarray(r["depths"])
        edges_x = np.sqrt(sw2[:-1] * sw2[1:])
        edges_x = np.concatenate([[sw2[0] ** 2 / edges_x[0]], edges_x, [sw2[-1] ** 2 / edges_x[-1]]])
        edges_y = np.concatenate([[depths[0] / np.sqrt(2)], depths * np.sqrt(2)])
        mesh = ax.pcolormesh(edges_x, edges_y, acc, vmin=0.1, vmax=1.0, cmap="viridis")
        fine, fxi = np.asarray(r["fine_sigma_w2"]), np.asarray(r["fine_xi_c"])
        diverges = ~np.isfinite(np.asarray(r["fine_q_star"]))
        ax.plot(
            fine, np.where(diverges, np.nan, np.minimum(RULE_K * fxi, 1e4)), color="w", lw=2, label="6 xi_c (jaxsig)"
        )
        if diverges.any():
            ax.fill_between(fine, edges_y[0], edges_y[-1], where=diverges, facecolor="none", edgecolor="w",
                            hatch="//", lw=0, label="q* = inf: the variance diverges")  # fmt: skip
        ax.axvline(r["critical_sigma_w2"], color="w", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", ylim=(edges_y[0], edges_y[-1]), xlabel="sigma_w^2", ylabel="depth L")
        ax.set_xticks(sw2, [f"{v:.2g}" for v in sw2])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        s = r["separation_finite_q"]
        ax.set_title(
            f"{r['activation']} (sb^2 = {r['sigma_b2']}): rule right on {s['agreement_6']:.0%}, AUC {s['auc']:.2f}"
        )
        ax.legend(loc="upper right", fontsize=8)
        fig.colorbar(mesh, ax=ax, label="training accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _verdict(s, what):
    return (
        f"{what} is right on {s['agreement_6']:.0%} of the cells ({s['false_trainable_6']} predicted trainable "
        f"but not trained, {s['false_untrainable_6']} trained though predicted not); the best factor is "
        f"k = {s['best_k']:.2f} ({s['agreement_best']:.0%}); the AUC of log(xi_c / L) is {s['auc']:.3f}"
    )


def markdown(results, args, seconds):
    lines = ["# Trainability against 6 xi_c (Schoenholz et al. 2017), reproduced on digits", ""]
    for r in results:
        s, sq = r["separation"], r["separation_finite_q"]
        lines += [f"## {r['activation']}, sb^2 = {r['sigma_b2']} (critical sW^2 = {r['critical_sigma_w2']:.4f})", ""]
        lines += ["| sW^2 | q* | xi_c | 6 xi_c | " + " | ".join(f"L={d}" for d in r["depths"]) + " |"]
        lines += ["|---" * (4 + len(r["depths"])) + "|"]
        acc = np.asarray(r["train_accuracy"]).mean(2)
        for i, w in enumerate(r["sigma_w2"]):
            xi, q = r["xi_c"][i], r["q_star"][i]
            cells = [f"**{a:.2f}**" if d <= RULE_K * xi else f"{a:.2f}" for a, d in zip(acc[i], r["depths"])]
            lines += [f"| {w:.3f} | {q:.3g} | {xi:.3g} | {RULE_K * xi:.3g} | " + " | ".join(cells) + " |"]
        lines += [
            "",
            f"Training accuracy (bold: L <= 6 xi_c). Trained (accuracy >= {THRESHOLD}): {s['trained_cells']} of "
            f"{s['cells']} cells. {_verdict(s, 'The rule L <= 6 xi_c')}. "
            f"{_verdict(sq, 'With q* finite required too, it')}; on the {sq['cells_q_finite']} cells where q* is "
            f"finite it is right on {sq['agreement_6_where_q_finite']:.0%}.",
            "",
        ]
    lines += [
        f"Width 128, {args.steps} SGD steps (learning rate 0.01, batch 128), {args.seeds} network(s) per cell, "
        f"first layer scaled to q0 = 1; xi_c and q* at the fixed point the variance map reaches from q0 = 1 "
        f"(q* = inf: the variance diverges with depth). Runtime {seconds:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--replot", action="store_true", help="recompute the theory, figure and tables from the JSON")
    args = ap.parse_args(argv)
    t0 = time.time()
    tanh = jaxsig.activations.get("tanh")
    if args.replot:
        results = json.loads((HERE / "trainability.json").read_text())
        design = jaxsig.designer.DesignResult.from_dict(results[1]["design"])
        for r, act in zip(results, (tanh, design.activation)):
            analyse(r, act)
        seconds = results[0].get("runtime_s", float("nan"))
    else:
        data = deepnets.load_digits()
        critical = float(jaxsig.dynamics.critical_init(tanh, 0.05).sigma_w2)
        results = [study("tanh", tanh, 0.05, critical, data, args.seeds, args.steps)]
        res = designed_activation()
        print(res.summary())
        act = res.activation
        # Critical by design at the operating point: sW^2 = (q - sb^2) / m2(sqrt q) gives chi1 = 1.
        critical = float(jaxsig.targets.operating_point(act, DESIGN["q"], DESIGN["sigma_b2"]).sigma_w2)
        results.append(study("designed", act, DESIGN["sigma_b2"], critical, data, args.seeds, args.steps))
        results[-1]["design"] = res.to_dict()
        seconds = time.time() - t0
        results[0]["runtime_s"] = seconds
    (HERE / "trainability.json").write_text(json.dumps(jsonable(results), indent=1, allow_nan=False) + "\n")
    plot(results, HERE / "trainability.png")
    md = markdown(results, args, seconds)
    (HERE / "trainability.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

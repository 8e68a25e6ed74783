"""Mean-field predictions against sampled wide random networks.

For each (activation, sW^2, sb^2) this samples ``--seeds`` random MLPs of width
``n = --width`` and depth ``L = --depth`` (``h^{l+1} = W phi(h^l) + b``,
``W_ij ~ N(0, sW^2/n)``, ``b_i ~ N(0, sb^2)``, ``|h^0|^2 / n = 1``) and measures

* the pre-activation variance ``q_L = |h^L|^2 / n`` at the last layer, against
  the variance-map iterate ``V^L(1)`` (mean field, ``n = inf``) and against
  that iterate corrected to order ``1/n``;
* the per-layer growth of an infinitesimal input perturbation (propagated by
  the Jacobian), as the geometric mean of ``|dh^{l+1}|^2 / |dh^l|^2`` over
  layers ``burn_in..L``, against ``sW^2 g2(sqrt q_l)^2`` at the iterates
  (``-> chi1`` at ``q*``).

The finite-width model (see ``tests/test_dynamics.py``): given layer ``l``,
``s_{l+1}^2 = sW^2 mean_i phi(h_i)^2 + sb^2`` differs from ``V(s_l^2)`` by a
noise of variance ``sW^4 Var(phi^2) / n``; the map propagates deviations with
slope ``V'`` and, to second order, shifts the mean by ``V''/2`` times their
variance (a bias ``O(1/n)`` that accumulates where ``V' ~ 1``: tanh at
criticality). The measured ``q`` is ``s^2 chi^2_n / n``. The log-growth per
layer has variance ``(2 + 3 Var(phi'^2) / E[phi'^2]^2) / n`` and mean
``log chi - that / 2``. ``z`` = (measured - predicted) / standard error, with
the corrected predictions and the model's standard errors.

Usage::

    python examples/propagation.py                  # width 1024, depth 30, 4 seeds
    python examples/propagation.py --width 2048 --seeds 8
    python examples/propagation.py --replot         # redraw table and figure from the JSON

Prints a Markdown table and writes ``propagation.md`` (the table),
``propagation.json`` (all numbers, per layer) and ``propagation.png`` (measured
vs predicted ``q_l`` per layer) next to this script (``--out`` changes the stem).
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

import jaxsig
from jaxsig import dynamics as D

HERE = pathlib.Path(__file__).resolve().parent


def settings():
    """(activation, sW^2, sb^2): ordered, critical and chaotic examples."""
    crit_tanh = float(D.edge_of_chaos("tanh", 0.05).sigma_w2)
    crit_erf = float(D.edge_of_chaos("erf", 0.2).sigma_w2)
    crit_gelu = float(D.edge_of_chaos("gelu", 0.1).sigma_w2)  # an unstable critical point: see README
    return [
        ("relu", 2.0, 0.0),  # He: critical, every q is a fixed point
        ("relu", 1.5, 0.1),
        ("tanh", 0.8, 0.05),
        ("tanh", crit_tanh, 0.05),
        ("tanh", 2.5, 0.05),
        ("tanh", 1.0, 0.0),  # critical with q* = 0: q_l ~ 1/(2 l)
        ("erf", crit_erf, 0.2),
        ("erf", 3.0, 0.0),
        ("gelu", crit_gelu, 0.1),
        ("swish", 2.0, 0.1),
        ("selu", 1.0, 0.0),  # self-normalising: q* = 1
        ("sigmoid", 4.0, 0.1),  # m1 != 0
    ]


def _squared(fn):
    return lambda x: fn(x) ** 2


def finite_width_model(name, sw2, sb2, width, depth):
    """Mean-field iterates, their O(1/n) correction and standard errors (float64)."""
    act = jaxsig.activations.get(name)
    q = np.asarray(D.variance_trajectory(name, 1.0, sw2, sb2, depth))
    sigma = np.sqrt(np.maximum(q[:-1], D.Q_MIN))
    mom = jaxsig.moments(act, sigma)
    phi2 = jaxsig.Activation(name + "^2", _squared(act.bind(act.params)), None, act.kinks)
    m4 = np.asarray(jaxsig.moments(phi2, sigma).m2)  # E[phi^4]
    slope = np.asarray(D.variance_map_slope(name, q[:-1], sw2))
    curv = np.asarray(jax.vmap(jax.grad(lambda t: D.variance_map_slope(name, t, sw2)))(jnp.asarray(q[:-1])))
    var_xi = sw2**2 * (m4 - np.asarray(mom.m2) ** 2) / width
    bias, var = 0.0, 0.0
    for k in range(depth):
        bias, var = slope[k] * bias + 0.5 * curv[k] * var, slope[k] ** 2 * var + var_xi[k]
    q_corr = q[-1] + bias
    q_sd = math.sqrt(var + 2 * q_corr**2 / width)  # one network
    chi = sw2 * np.asarray(mom.g2) ** 2
    kappa = np.asarray(mom.g4) ** 4 / np.asarray(mom.g2) ** 4 - 1
    return q, q_corr, q_sd, chi, kappa


def run(width, depth, seeds, burn_in, key, dtype):
    rows = []
    for i, (name, sw2, sb2) in enumerate(settings()):
        t0 = time.perf_counter()
        sim = D.simulate_mlp(
            name, sw2, sb2, width=width, depth=depth, key=jax.random.fold_in(key, i), batch=seeds, dtype=dtype
        )
        q_sim = np.asarray(sim.q, np.float64)
        gain = np.asarray(sim.gain, np.float64)
        t_sim = time.perf_counter() - t0
        fp = D.fixed_point(name, sw2, sb2)
        q, q_corr, q_sd, chi, kappa = finite_width_model(name, sw2, sb2, width, depth)
        layers = slice(burn_in, depth)
        n_terms = seeds * (depth - burn_in)
        # Growth rate: geometric mean of the per-layer gains over layers and seeds.
        log_var = (2 + 3 * kappa[layers]) / width
        log_pred = float(np.mean(np.log(chi[layers]) - log_var / 2))
        log_meas = float(np.log(gain[:, layers]).mean())
        se_log = math.sqrt(np.mean(log_var) / n_terms)
        q_meas = float(q_sim[:, -1].mean())
        q_se = q_sd / math.sqrt(seeds)
        rows.append(
            dict(
                activation=name,
                sigma_w2=sw2,
                sigma_b2=sb2,
                phase=D.PHASES[int(fp.phase)],
                q_star=float(fp.q_star),
                q_mean_field=float(q[-1]),
                q_corrected=float(q_corr),
                q_measured=q_meas,
                q_se=q_se,
                q_z=(q_meas - q_corr) / q_se,
                chi1=float(fp.chi1),
                growth_mean_field=float(np.exp(np.mean(np.log(chi[layers])))),
                growth_measured=math.exp(log_meas),
                growth_se_log=se_log,
                growth_z=(log_meas - log_pred) / se_log,
                seconds=t_sim,
                q_layers_mean_field=q.tolist(),
                q_layers_measured=q_sim.mean(0).tolist(),
                q_layers_measured_sd=q_sim.std(0).tolist(),
            )
        )
    return rows


def markdown(rows, width, depth, seeds, burn_in):
    lines = [
        f"| activation | sW^2 | sb^2 | phase | q* | q_{depth} mean field | q_{depth} + O(1/n) | "
        f"q_{depth} measured | z | chi1 | growth mean field | growth measured | z |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['activation']} | {r['sigma_w2']:.4f} | {r['sigma_b2']:.2f} | {r['phase']} | {r['q_star']:.4g} | "
            f"{r['q_mean_field']:.4g} | {r['q_corrected']:.4g} | {r['q_measured']:.4g} ± {r['q_se']:.2g} | "
            f"{r['q_z']:+.1f} | {r['chi1']:.4f} | {r['growth_mean_field']:.4f} | {r['growth_measured']:.4f} | "
            f"{r['growth_z']:+.1f} |"
        )
    foot = (
        f"\nWidth {width}, depth {depth}, {seeds} networks per row, q_0 = 1. Growth: geometric mean of "
        f"|dh^(l+1)|^2 / |dh^l|^2 over layers {burn_in}..{depth} and networks, against "
        f"sW^2 g2(sqrt q_l)^2 at the variance-map iterates (-> chi1). ± and z: standard errors of "
        f"the finite-width sampling model (module docstring)."
    )
    return "\n".join(lines) + foot


def figure(rows, path):
    """Small multiples: measured q_l (mean, +-1 sd over networks) against the variance-map iterates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 4
    nrows = math.ceil(len(rows) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    for k, r in enumerate(rows):
        ax = fig.add_subplot(nrows, cols, k + 1)
        layers = np.arange(len(r["q_layers_mean_field"]))
        m, sd = np.asarray(r["q_layers_measured"]), np.asarray(r["q_layers_measured_sd"])
        ax.plot(layers, r["q_layers_mean_field"], "k-", lw=1.5, label="variance map")
        ax.fill_between(layers, m - sd, m + sd, color="C0", alpha=0.3, lw=0)
        ax.plot(layers, m, "C0.", ms=3, label="measured")
        ax.set_title(f"{r['activation']} sW^2={r['sigma_w2']:.3g} sb^2={r['sigma_b2']:.3g} ({r['phase']})", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    fig.supxlabel("layer l", fontsize=9)
    fig.supylabel("q_l = |h^l|^2 / n", fontsize=9)
    fig.savefig(path, dpi=110)


def report(saved, out):
    """Print the table, write it to ``OUT.md`` and draw ``OUT.png``."""
    text = markdown(saved["rows"], saved["width"], saved["depth"], saved["seeds"], saved["burn_in"])
    text += f" Runtime {saved['seconds']:.0f} s ({saved['device']}, simulation in {saved['dtype']}).\n"
    print(text)
    out.with_suffix(".md").write_text(text)
    figure(saved["rows"], out.with_suffix(".png"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--depth", type=int, default=30)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--burn-in", type=int, default=10, help="layers skipped before measuring the growth rate")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="of the simulation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "propagation"), help="output path without suffix")
    p.add_argument("--replot", action="store_true", help="only redraw the table and figure from OUT.json")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    if args.replot:
        report(json.loads(out.with_suffix(".json").read_text()), out)
        return
    if not 0 <= args.burn_in < args.depth:
        p.error("--burn-in must be in [0, depth)")
    jax.config.update("jax_enable_x64", True)  # an application: predictions in float64
    t0 = time.perf_counter()
    rows = run(args.width, args.depth, args.seeds, args.burn_in, jax.random.key(args.seed), jnp.dtype(args.dtype))
    saved = dict(
        width=args.width,
        depth=args.depth,
        seeds=args.seeds,
        burn_in=args.burn_in,
        dtype=args.dtype,
        seconds=time.perf_counter() - t0,
        device=jax.devices()[0].platform,
        rows=rows,
    )
    out.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
    report(saved, out)


if __name__ == "__main__":
    main()

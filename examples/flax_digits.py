"""Do the signature's predictions hold in a real network? Deep MLPs on digits.

Trains depth-20, width-256 MLPs (Flax NNX) on scikit-learn's handwritten digits
(8x8 images, 10 classes, 1797 samples; no download; 80/20 stratified split)
with three activations: tanh, GELU, and one designed by :func:`jaxsig.design`
for the targets ``g2 <= 0.8, tv < 5, c < inf, m2 == 1`` (the safe rational
family; loaded from ``examples/designed_result.json``, which
``examples/design_demo.py`` writes, or designed and saved there if it is
missing). Each is trained twice:

* **jaxsig init**: the edge-of-chaos pair of :func:`jaxsig.flax.critical_init`
  (``sW^2 = 1 / g2(1)^2``, ``sb^2 = 1 - sW^2 m2(1)``, fixed point ``q* = 1``)
  where it exists (``sb^2 >= 0``), else :func:`jaxsig.flax.variance_preserving_init`
  (``sW^2 = 1 / m2(1)``, ``sb^2 = 0``). The first layer, which sees data and
  not activations, uses the identity's initialiser for the same ``q*``
  (``sW^2 = q* - sb^2``) on standardised inputs.
* **naive init**: Flax's default for every layer, ``lecun_normal`` kernels
  (truncated normal with variance ``1 / fan_in``, i.e. ``sW^2 = 1``) and zero
  biases. The readout layer has Flax's default init in both schemes.

At initialisation it measures, for every hidden layer ``l`` and every test
input ``x``, the pre-activation second moment ``q_l(x) = mean_i h_i^l(x)^2``
over the 256 units, and compares it with the variance map's prediction
``q_{l+1} = sW^2 m2(sqrt q_l) + sb^2`` started from the exact first-layer value
``q_1(x) = sW_0^2 |x|^2 / d + sb^2``. The finite-width spread of one
measurement, ``sd_l`` (relative), follows from the delta method:
``sd_l^2 = v_l + 2/n`` with ``v_l = kappa_l^2 v_{l-1} + sW^4 Var[phi^2](q_{l-1}) / (n q_l^2)``,
``kappa_l = V'(q_{l-1}) q_{l-1} / q_l``, ``v_1 = 0`` (see ``tests/test_flax.py``).

Then it trains with Adam and reports test accuracy (mean ± sd over
``--seeds`` networks per configuration). Two more configurations train the
designed activation's parameters with the network (jaxsig init), without and
with the signature regulariser ``lam * R`` (:func:`jaxsig.flax.signature_regularizer`
on the Gaussian targets ``g2 <= 0.8, m2 == 1``, ``lam = 100``), and report
where the parameters end up.

Writes ``flax_digits.json`` (everything), ``flax_digits.png`` (per-layer
variance, measured vs predicted) and ``flax_digits.md`` (the tables) next to
this file, and prints the tables.

Run: ``python examples/flax_digits.py [--epochs 20] [--seeds 3] [--design PATH]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import time

import jax

# The theory (variance map, fixed points) in float64; the networks stay float32.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import jaxsig  # noqa: E402
from jaxsig import dynamics  # noqa: E402
from jaxsig import flax as jflax  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
DESIGN_TARGETS = ("g2 <= 0.8", "tv < 5", "c < inf", "m2 == 1")
DESIGN_FAMILY = "rational"  # as examples/design_demo.py
REG_TARGETS = ("g2 <= 0.8", "m2 == 1")  # the Gaussian ones: cheap inside a training step
DEPTH, WIDTH, Q_STAR = 20, 256, 1.0


# --- Data ------------------------------------------------------------------------------------------


def load_data(seed=0):
    """Digits, 80/20 stratified split, features standardised with training statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = np.where(std > 0, std, 1.0)  # constant (always blank) pixels stay 0
    f = lambda v: ((v - mean) / std).astype(np.float32)  # noqa: E731
    return f(x_tr), y_tr.astype(np.int32), f(x_te), y_te.astype(np.int32)


# --- The designed activation ---------------------------------------------------------------------------


def designed_activation(path):
    """The activation designed for DESIGN_TARGETS: loaded from ``path``, else designed and saved there."""
    path = pathlib.Path(path)
    if not path.exists():
        result = jaxsig.design(DESIGN_FAMILY, DESIGN_TARGETS, seed=0)
        print(result.summary())
        result.save(path)
    saved = json.loads(path.read_text())
    if sorted(saved["targets"]) != sorted(DESIGN_TARGETS) or not saved["feasible"]:
        raise SystemExit(f"{path} is not a feasible design for {DESIGN_TARGETS}; delete it to redesign")
    return jflax.NNXActivation.from_design(path).activation


# --- Model ---------------------------------------------------------------------------------------------


class MLP(nnx.Module):
    """``DEPTH`` blocks ``h_l = W_l a_{l-1} + b_l``, ``a_l = phi(h_l)`` (``a_0 = x``), then a linear readout."""

    def __init__(self, act: jflax.NNXActivation, d_in, d_out, inits, *, rngs):
        (k0, b0), (k, b) = inits
        sizes = [d_in] + [WIDTH] * DEPTH
        self.layers = nnx.List(
            [
                nnx.Linear(m, n, kernel_init=k0 if i == 0 else k, bias_init=b0 if i == 0 else b, rngs=rngs)
                for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]))
            ]
        )
        self.readout = nnx.Linear(WIDTH, d_out, rngs=rngs)
        self.act = act

    def pre_activations(self, x):
        """``[h_1, ..., h_DEPTH]`` for a batch ``x``."""
        hs = []
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else self.act(x))
            hs.append(x)
        return hs

    def __call__(self, x):
        return self.readout(self.act(self.pre_activations(x)[-1]))


# --- The prediction ------------------------------------------------------------------------------------


def predict(act, q1, sw2, sb2):
    """Variance map ``q_{l+1} = sW^2 m2(sqrt q_l) + sb^2`` per input, and the delta-method spread."""
    square = lambda x: act(x) ** 2  # noqa: E731  (E[phi^4] is m2 of phi^2)
    q, v = [np.asarray(q1, np.float64)], [np.zeros_like(q1, np.float64)]
    for _ in range(DEPTH - 1):
        qp = q[-1]
        qn = np.asarray(dynamics.variance_map(act, qp, sw2, sb2))
        kappa = np.asarray(dynamics.variance_map_slope(act, qp, sw2)) * qp / qn
        m2 = np.asarray(jaxsig.moments(act, np.sqrt(qp)).m2)
        m4 = np.asarray(jaxsig.moments(square, np.sqrt(qp)).m2)
        v.append(kappa**2 * v[-1] + sw2**2 * (m4 - m2**2) / (WIDTH * qn**2))
        q.append(qn)
    return np.array(q), np.sqrt(np.array(v) + 2.0 / WIDTH)


def jaxsig_variances(phi):
    """Edge of chaos at q* where it exists (sb^2 >= 0), else variance preserving with sb^2 = 0."""
    try:
        return jflax.init_variances(phi, Q_STAR, critical=True)
    except ValueError:
        return jflax.init_variances(phi, Q_STAR)


# --- Training ------------------------------------------------------------------------------------------

REGULARISER = jaxsig.targets.parse_targets(list(REG_TARGETS))


def _loss(graphdef, lam, params, rest, x, y):
    model = nnx.merge(graphdef, params, rest)
    loss = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
    if lam:
        loss = loss + lam * jflax.signature_regularizer(REGULARISER, model.act)
    return loss


# Compiled once per model structure (graphdef) and settings: seeds share it.
@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "batch", "lam"))
def _epoch(params, opt_state, rest, key, x_tr, y_tr, *, graphdef, tx, batch, lam):
    def step(carry, xy):
        p, s = carry
        loss, g = jax.value_and_grad(functools.partial(_loss, graphdef, lam))(p, rest, *xy)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss

    n = (x_tr.shape[0] // batch) * batch
    idx = jax.random.permutation(key, x_tr.shape[0])[:n].reshape(-1, batch)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (x_tr[idx], y_tr[idx]))
    return params, opt_state, losses.mean()


def train(model, data, *, tx, epochs, batch, seed, lam=0.0):
    """Adam on cross-entropy (+ ``lam`` times the signature regulariser of ``model.act``)."""
    x_tr, y_tr, x_te, y_te = map(jnp.asarray, data)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)
    key = jax.random.key(seed)
    losses = []
    for _ in range(epochs):
        key, sub = jax.random.split(key)
        params, opt_state, loss = _epoch(
            params, opt_state, rest, sub, x_tr, y_tr, graphdef=graphdef, tx=tx, batch=batch, lam=lam
        )
        losses.append(float(loss))
    model = nnx.merge(graphdef, params, rest)
    accuracy = float(jnp.mean(jnp.argmax(model(x_te), -1) == y_te))
    return model, accuracy, losses


# --- One configuration, several seeds ------------------------------------------------------------------------


def run(name, phi, scheme, data, *, tx, epochs, batch, seeds, learnable=False, lam=0.0):
    """Measure the variances at init and train, for each seed; one result dict."""
    x_tr, _, x_te, _ = data
    act = jflax.NNXActivation(phi, learnable=learnable)
    if scheme == "jaxsig":
        v = jaxsig_variances(act.activation)
        first = jflax.init_variances("identity", Q_STAR, v.sigma_b2)
        inits = (first.initializers(), v.initializers())
        sw2, sb2, sw2_0 = v.sigma_w2, v.sigma_b2, first.sigma_w2
    else:  # nnx.Linear's defaults: truncated lecun_normal (variance 1 / fan_in), zero bias
        inits = ((nnx.initializers.lecun_normal(), nnx.initializers.zeros_init()),) * 2
        sw2, sb2, sw2_0 = 1.0, 0.0, 1.0
    q1 = sw2_0 * np.mean(np.asarray(x_te, np.float64) ** 2, axis=1) + sb2
    predicted, spread = predict(act.activation, q1, sw2, sb2)
    fp = dynamics.fixed_point(act.activation, sw2, sb2, q0=Q_STAR)

    measured, accs, losses, trained = [], [], [], []
    t0 = time.perf_counter()
    for seed in seeds:
        model = MLP(act, x_tr.shape[1], 10, inits, rngs=nnx.Rngs(seed))
        hs = model.pre_activations(x_te)
        measured.append([np.mean(np.asarray(h, np.float64) ** 2, axis=1) for h in hs])
        model, acc, loss = train(model, data, tx=tx, epochs=epochs, batch=batch, seed=seed, lam=lam)
        accs.append(acc)
        losses.append(loss[-1])
        if learnable:
            trained.append(jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), model.act.values))
    measured = np.array(measured)  # (seeds, layers, inputs)
    ratio = (measured / predicted).mean(axis=0)  # (layers, inputs), averaged over networks
    out = {
        "activation": name,
        "init": scheme,
        "learnable": learnable,
        "lam": lam,
        "sigma_w2": sw2,
        "sigma_b2": sb2,
        "q_star": float(fp.q_star),
        "chi1": float(fp.chi1),
        "slope": float(fp.slope),
        "phase": dynamics.PHASES[int(fp.phase)],
        "measured": measured.mean(axis=(0, 2)).tolist(),
        "predicted": predicted.mean(1).tolist(),
        "ratio_mean": ratio.mean(1).tolist(),
        "spread": spread.mean(1).tolist(),
        "test_accuracy": accs,
        "final_train_loss": losses,
        "seconds": time.perf_counter() - t0,
    }
    if learnable:
        mom = [jaxsig.moments(act.activation, 1.0, params=p) for p in trained]
        out["trained_params"] = [jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), p) for p in trained]
        out["trained_m2"] = [float(m.m2) for m in mom]
        out["trained_g2"] = [float(m.g2) for m in mom]
    return out


# --- Report --------------------------------------------------------------------------------------------


def _acc(accs):
    return f"{np.mean(accs):.3f} ± {np.std(accs):.3f}" if len(accs) > 1 else f"{accs[0]:.3f}"


def tables(results):
    lines = [
        "| activation | init | sW^2 | sb^2 | q* | chi1 | V'(q*) | q_20 predicted | q_20 measured / predicted "
        "| max_l \\|q_l measured / predicted - 1\\| | sd of one measurement at l=20 | test accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["learnable"]:
            continue
        dev = max(abs(m - 1.0) for m in r["ratio_mean"])
        lines.append(
            f"| {r['activation']} | {r['init']} | {r['sigma_w2']:.3f} | {r['sigma_b2']:.3f} | {r['q_star']:.3g} "
            f"| {r['chi1']:.3f} ({r['phase']}) | {r['slope']:.3f} | {r['predicted'][-1]:.3g} "
            f"| {r['ratio_mean'][-1]:.3f} | {dev:.3f} | {r['spread'][-1]:.3f} | {_acc(r['test_accuracy'])} |"
        )
    learn = [r for r in results if r["learnable"]]
    if learn:
        lines += [
            "",
            "| designed activation, parameters trained too | lam | test accuracy | m2(1) after | g2(1) after "
            "| largest violation of g2 <= 0.8, m2 == 1 |",
            "|---|---|---|---|---|---|",
        ]
        for r in learn:
            m2, g2 = np.array(r["trained_m2"]), np.array(r["trained_g2"])
            worst = float(np.max(np.maximum(np.abs(m2 - 1), np.maximum(g2 - 0.8, 0))))
            lines.append(
                f"| {r['init']} init | {r['lam']:g} | {_acc(r['test_accuracy'])} "
                f"| {m2.min():.3f} to {m2.max():.3f} | {g2.min():.3f} to {g2.max():.3f} | {worst:.3f} |"
            )
    return "\n".join(lines)


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if not r["learnable"]]
    names = list(dict.fromkeys(r["activation"] for r in results))
    fig, axes = plt.subplots(
        2,
        len(names),
        figsize=(4.2 * len(names), 6.4),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 2]},
        squeeze=False,
    )
    layers = np.arange(1, DEPTH + 1)
    for col, name in enumerate(names):
        top, bottom = axes[0, col], axes[1, col]
        for r, colour in zip([r for r in results if r["activation"] == name], ("C0", "C3")):
            label = f"{r['init']} init"
            top.plot(layers, r["predicted"], color=colour, lw=1.5, label=f"{label}: variance map")
            top.plot(layers, r["measured"], "o", color=colour, ms=4, mfc="none", label=f"{label}: measured")
            sd = np.array(r["spread"])
            bottom.fill_between(layers, 1 - sd, 1 + sd, color=colour, alpha=0.12, lw=0)
            bottom.plot(layers, r["ratio_mean"], "o-", color=colour, ms=3, lw=0.8, label=label)
        top.set_yscale("log")
        lo, hi = top.get_ylim()
        if hi / lo < 100:  # at least two decades, so that noise does not look like structure
            mid = math.sqrt(lo * hi)
            top.set_ylim(mid / 10, mid * 10)
        top.set_title(name)
        top.grid(alpha=0.3, which="both")
        bottom.axhline(1.0, color="k", lw=0.6)
        bottom.set_ylim(0.0, 2.0)
        bottom.set_xlabel("layer l")
        bottom.grid(alpha=0.3)
    axes[0, 0].set_ylabel("q_l (mean over inputs)")
    axes[1, 0].set_ylabel("measured / predicted")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    axes[1, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"Depth {DEPTH}, width {WIDTH} MLPs on digits at initialisation: pre-activation second moment "
        "q_l, measured vs the variance map\n(ratio averaged over networks and test inputs; "
        "band: +-1 sd of one measurement, delta method)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=3, help="networks per configuration (seeds 0, 1, ...)")
    ap.add_argument("--lam", type=float, default=100.0, help="regulariser weight of the learnable run")
    ap.add_argument(
        "--design",
        default=str(HERE / "designed_result.json"),
        help="design result JSON (created with jaxsig.design if missing)",
    )
    ap.add_argument("--out", default=str(HERE / "flax_digits"), help="output path without suffix")
    ap.add_argument("--replot", action="store_true", help="only redraw the figure and tables from OUT.json")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    if args.replot:
        report(json.loads(out.with_suffix(".json").read_text()), out)
        return

    wall, cpu = time.perf_counter(), time.process_time()
    data = load_data(0)
    designed = designed_activation(args.design)
    settings = dict(tx=optax.adam(args.lr), epochs=args.epochs, batch=args.batch, seeds=range(args.seeds))
    plan = [
        (name, phi, scheme, False, 0.0)
        for name, phi in (("tanh", "tanh"), ("gelu", "gelu"), ("designed", designed))
        for scheme in ("jaxsig", "naive")
    ]
    plan += [("designed", designed, "jaxsig", True, 0.0), ("designed", designed, "jaxsig", True, args.lam)]
    results = []
    for name, phi, scheme, learnable, lam in plan:
        r = run(name, phi, scheme, data, learnable=learnable, lam=lam, **settings)
        tag = f" learnable, lam={lam:g}" if learnable else ""
        print(
            f"{name:9s} {scheme:7s}{tag}: test accuracy {_acc(r['test_accuracy'])} ({r['seconds']:.0f} s)", flush=True
        )
        results.append(r)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    saved = {
        "depth": DEPTH,
        "width": WIDTH,
        "q_star": Q_STAR,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch": args.batch,
        "seeds": args.seeds,
        "design": pathlib.Path(args.design).name,
        "design_targets": DESIGN_TARGETS,
        "regulariser_targets": REG_TARGETS,
        "runtime_wall_seconds": wall,
        "runtime_cpu_seconds": cpu,
        "runs": results,
    }
    out.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
    report(saved, out)


def report(saved, out):
    """Print the tables, and write them (``OUT.md``) and the figure (``OUT.png``)."""
    text = tables(saved["runs"]) + (
        f"\n\nDepth {saved['depth']}, width {saved['width']}; {saved['epochs']} epochs of Adam "
        f"(lr {saved['lr']}, batch {saved['batch']}); {saved['seeds']} networks (seeds) per row: accuracy "
        "mean ± sd, variances averaged over networks and test inputs; runtime "
        f"{saved['runtime_wall_seconds']:.0f} s wall, {saved['runtime_cpu_seconds']:.0f} s CPU.\n"
    )
    print("\n" + text)
    out.with_suffix(".md").write_text(text)
    figure(saved["runs"], out.with_suffix(".png"))


if __name__ == "__main__":
    main()

"""Training depth-50 MLPs on digits after ``jaxsig.flax.autoinit``, Flax's default init, and LSUV.

Depth 50 (dense layers), width 256, scikit-learn's digits (80/20 stratified
split, standardised with training statistics), Adam (batch 64) at each of the
learning rates ``--lrs`` (default 3e-4 and 1e-3: at depth 50 the outcome
depends on it as much as on the initialisation), ``--epochs`` epochs,
``--seeds`` networks per configuration. Three activations
written as a user would (see ``examples/autoinit_propagation.py``): ``jnp.tanh``,
``jax.nn.gelu(approximate=False)`` and a learnable rational
(``NNXActivation("rational", learnable=True)``, trained with the network). Three
initialisations of the same networks:

* **flax default**: ``lecun_normal`` kernels (``sW^2 = 1``), zero biases.
* **LSUV** (Mishkin & Matas 2016), the data-driven alternative: orthonormal
  kernels, then layer by layer, in order, the kernel is divided by the standard
  deviation of the layer's output on a batch until it is within 5% of 1 (at
  most 10 passes per layer); zero biases.
* **autoinit**: :func:`jaxsig.flax.autoinit` on a batch of 256 training images
  (rescale mode): tanh at the edge of chaos (``mode="critical"``, ``q = 1``),
  GELU and the rational at fixed ``q = 1`` with ``sigma_b2 = 0.25`` (where
  their fixed point attracts).

For the learnable rational, a fourth run calls ``autoinit`` again after every
epoch (rescale mode: the trained directions are kept, the scales re-targeted
to the activation's current parameters), the use for which re-initialisation
must be cheap; its cost per call is reported next to the cost of an epoch.

Reports test accuracy and final training loss, mean ± sd over the seeds, and
the time each initialisation takes. Writes ``autoinit_training.json``,
``autoinit_training.png`` (test accuracy per epoch) and ``autoinit_training.md``.

Run: ``python examples/autoinit_training.py [--epochs 10] [--seeds 5] [--resume]`` (``--resume``
reuses the finished rows of an interrupted run, kept in ``autoinit_training.partial.json``).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsig.flax import NNXActivation, autoinit

HERE = pathlib.Path(__file__).resolve().parent
DEPTH, WIDTH = 50, 256


def load_data(seed=0):
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
    def __init__(self, act, d_in, d_out, *, rngs):
        self.layers = nnx.List([nnx.Linear(d_in if i == 0 else WIDTH, WIDTH, rngs=rngs) for i in range(DEPTH)])
        self.readout = nnx.Linear(WIDTH, d_out, rngs=rngs)
        self.act = act

    def dense_outputs(self, x):
        """Outputs of every dense layer, readout included."""
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else self.act(x))
            out.append(x)
        out.append(self.readout(self.act(x)))
        return out

    def __call__(self, x):
        return self.dense_outputs(x)[-1]


def gelu(h):
    """Exact GELU, as a user would write it (one function object: the compiled epoch is shared by seeds)."""
    return jax.nn.gelu(h, approximate=False)


ACTIVATIONS = {
    "tanh": (lambda: jnp.tanh, dict(mode="critical")),
    "gelu": (lambda: gelu, dict(sigma_b2=0.25)),
    "rational": (lambda: NNXActivation("rational", learnable=True), dict(sigma_b2=0.25)),
}


# --- LSUV ------------------------------------------------------------------------------------------------


def lsuv(model, x, *, key, tol=0.05, max_iter=10):
    """Mishkin & Matas (2016): orthonormal kernels, then unit output variance layer by layer."""
    dense = list(model.layers) + [model.readout]
    keys = jax.random.split(key, len(dense))
    for layer, k in zip(dense, keys):
        w = layer.kernel.get_value()
        layer.kernel.set_value(jax.nn.initializers.orthogonal()(k, w.shape, w.dtype))
        layer.bias.set_value(jnp.zeros_like(layer.bias.get_value()))
    step = nnx.jit(lambda m, x: [jnp.var(h) for h in m.dense_outputs(x)])
    for i, layer in enumerate(dense):
        for _ in range(max_iter):
            var = float(step(model, x)[i])
            if abs(var - 1.0) < tol or not np.isfinite(var) or var == 0:
                break
            layer.kernel.set_value(layer.kernel.get_value() / np.sqrt(var))
    return model


# --- Training ----------------------------------------------------------------------------------------------


def _loss(graphdef, params, rest, x, y):
    model = nnx.merge(graphdef, params, rest)
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "batch"))
def _epoch(params, opt_state, rest, key, x_tr, y_tr, *, graphdef, tx, batch):
    def step(carry, xy):
        p, s = carry
        loss, g = jax.value_and_grad(functools.partial(_loss, graphdef))(p, rest, *xy)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss

    n = (x_tr.shape[0] // batch) * batch
    idx = jax.random.permutation(key, x_tr.shape[0])[:n].reshape(-1, batch)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (x_tr[idx], y_tr[idx]))
    return params, opt_state, losses.mean()


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _accuracy(params, rest, x, y, *, graphdef):
    model = nnx.merge(graphdef, params, rest)
    return jnp.mean(jnp.argmax(model(x), -1) == y)


def train(model, data, *, tx, epochs, batch, seed, retarget=None):
    """Adam; ``retarget(model)`` after every epoch if given. Returns accuracies per epoch, losses, times."""
    x_tr, y_tr, x_te, y_te = map(jnp.asarray, data)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)
    key = jax.random.key(seed)
    accs, losses, epoch_s, retarget_s = [], [], [], []
    for _ in range(epochs):
        key, sub = jax.random.split(key)
        t0 = time.perf_counter()
        params, opt_state, loss = _epoch(
            params, opt_state, rest, sub, x_tr, y_tr, graphdef=graphdef, tx=tx, batch=batch
        )
        losses.append(float(loss))
        epoch_s.append(time.perf_counter() - t0)
        if retarget is not None:
            model = nnx.merge(graphdef, params, rest)
            t0 = time.perf_counter()
            retarget(model)
            retarget_s.append(time.perf_counter() - t0)
            _, params, rest = nnx.split(model, nnx.Param, ...)
        accs.append(float(_accuracy(params, rest, x_te, y_te, graphdef=graphdef)))
    return accs, losses, epoch_s, retarget_s


def run(name, init, data, *, lr, tx, epochs, batch, seeds):
    make, settings = ACTIVATIONS[name]
    x_tr = data[0]
    sample = jnp.asarray(x_tr[:256])
    out = {
        "activation": name,
        "init": init,
        "lr": lr,
        "accuracy": [],
        "final_loss": [],
        "curves": [],
        "init_seconds": [],
        "epoch_seconds": [],
        "retarget_seconds": [],
    }
    for seed in seeds:
        model = MLP(make(), x_tr.shape[1], 10, rngs=nnx.Rngs(seed))
        t0 = time.perf_counter()
        if init == "lsuv":
            lsuv(model, sample, key=jax.random.key(seed))
        elif init.startswith("autoinit"):
            autoinit(model, sample, key=seed, **settings)
        out["init_seconds"].append(time.perf_counter() - t0)
        retarget = (lambda m: autoinit(m, sample, **settings)) if init == "autoinit, re-targeted every epoch" else None
        accs, losses, ep, rt = train(model, data, tx=tx, epochs=epochs, batch=batch, seed=seed, retarget=retarget)
        out["accuracy"].append(accs[-1])
        out["final_loss"].append(losses[-1])
        out["curves"].append(accs)
        out["epoch_seconds"] += ep[1:]  # the first includes compilation
        out["retarget_seconds"] += rt
    return out


def _ms(v, digits=3):
    v = np.asarray(v, np.float64)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def tables(results, args):
    lines = [
        "| activation | init | lr | test accuracy | final train loss | init time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        t = np.array(r["init_seconds"])
        init_t = f"{t[0]:.2f} first, {t[1:].mean():.3f} later" if len(t) > 1 else f"{t[0]:.2f}"
        lines.append(
            f"| {r['activation']} | {r['init']} | {r['lr']:g} | {_ms(r['accuracy'])} | {_ms(r['final_loss'])} "
            f"| {init_t if r['init'] != 'flax default' else '-'} |"
        )
    rt = [r for r in results if r["retarget_seconds"]]
    if rt:
        r = rt[0]
        lines += [
            "",
            f"Re-targeting inside the loop ({r['activation']}, depth {DEPTH}): autoinit after each epoch "
            f"took {1e3 * np.mean(r['retarget_seconds']):.0f} ± {1e3 * np.std(r['retarget_seconds']):.0f} ms "
            f"(structure cached, rescale mode), against {1e3 * np.mean(r['epoch_seconds']):.0f} ms for one "
            f"epoch of {data_steps(args)} Adam steps.",
        ]
    lines += [
        "",
        f"Depth {DEPTH}, width {WIDTH}; {args.epochs} epochs of Adam (batch {args.batch}); "
        f"{args.seeds} networks (seeds) per row, mean ± sd; test set of 360 digits.",
    ]
    return "\n".join(lines)


def data_steps(args):
    return 1437 // args.batch


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["activation"] for r in results))
    lrs = sorted({r["lr"] for r in results})
    fig, axes = plt.subplots(len(lrs), len(names), figsize=(4.2 * len(names), 3.2 * len(lrs)), squeeze=False)
    for r in results:
        ax = axes[lrs.index(r["lr"]), names.index(r["activation"])]
        c = np.array(r["curves"])
        ep = np.arange(1, c.shape[1] + 1)
        ax.plot(ep, c.mean(0), "-o", ms=3, label=r["init"])
        ax.fill_between(ep, c.mean(0) - c.std(0), c.mean(0) + c.std(0), alpha=0.15)
        ax.set_title(f"{r['activation']}, depth {DEPTH}, Adam lr {r['lr']:g}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (mean ± sd)")
    for ax in axes.ravel():
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=str(HERE / "autoinit_training"))
    ap.add_argument("--resume", action="store_true", help="reuse the rows of an interrupted run's .partial.json")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    wall, cpu = time.perf_counter(), time.process_time()
    data = load_data()
    settings = dict(epochs=args.epochs, batch=args.batch, seeds=range(args.seeds))
    plan = [
        (name, init, lr) for lr in args.lrs for name in ACTIVATIONS for init in ("flax default", "lsuv", "autoinit")
    ]
    # Right after the first rate's rows, so that an interrupted run has a complete first rate.
    plan.insert(3 * len(ACTIVATIONS), ("rational", "autoinit, re-targeted every epoch", args.lrs[0]))
    txs = {lr: optax.adam(lr) for lr in args.lrs}  # one object per rate: the compiled epoch is shared
    partial = out.with_suffix(".partial.json")
    done = json.loads(partial.read_text()) if args.resume and partial.exists() else []
    done = {(r["activation"], r["init"], r["lr"]): r for r in done}
    results = []
    for name, init, lr in plan:
        if (name, init, lr) in done:
            results.append(done[name, init, lr])
            print(f"{name:9s} {init:34s} lr {lr:g}: resumed from {partial.name}", flush=True)
            continue
        t0 = time.perf_counter()
        r = run(name, init, data, lr=lr, tx=txs[lr], **settings)
        print(
            f"{name:9s} {init:34s} lr {lr:g}: test accuracy {_ms(r['accuracy'])} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        results.append(r)
        partial.write_text(json.dumps(results) + "\n")  # survives an interrupted run (--resume)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    resumed = sum(key in done for key in plan)
    text = tables(results, args) + f" Runtime {wall:.0f} s wall, {cpu:.0f} s CPU"
    text += (
        f" for this invocation; {resumed} of {len(plan)} rows resumed from an interrupted run.\n" if resumed else ".\n"
    )
    print("\n" + text)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "depth": DEPTH,
                "width": WIDTH,
                "epochs": args.epochs,
                "seeds": args.seeds,
                "lrs": args.lrs,
                "batch": args.batch,
                "runs": results,
                "runtime_wall_seconds": wall,
            },
            indent=1,
        )
        + "\n"
    )
    figure(results, out.with_suffix(".png"))
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

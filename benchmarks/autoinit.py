"""What does ``jaxsig.flax.autoinit`` cost, first and in a training loop? And ``diagnose``?

MLPs of depth 10, 30, 50 and 100 (dense layers), width 256, float32 (Flax's
default), on a batch of 256 inputs of dimension 64, with two activations: a
plain ``jnp.tanh`` in ``__call__`` (read off the jaxpr) and a learnable
rational (``NNXActivation("rational", learnable=True)``, one shared module).

Measured, per configuration, in one process (so JAX's caches warm up as they
would in a user's session):

* ``first``: the first ``autoinit`` call on the model: tracing, the structure
  analysis, the Gaussian moments (compiled per activation), the writes.
* ``again``: the median of 10 later calls (structure cached, rescale mode),
  after the activation's parameters were changed (rational): the cost of
  re-targeting the network inside a training loop.
* ``step``: one jitted Adam step (forward and backward, batch 64) of the same
  network, for scale.
* ``diagnose``: one :func:`jaxsig.flax.diagnose` on the batch (after a first
  call that compiles).

Writes ``autoinit.json`` and ``autoinit.md`` next to this file.

Run: ``python benchmarks/autoinit.py``.
"""

from __future__ import annotations

import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsig.flax import NNXActivation, autoinit, diagnose

HERE = pathlib.Path(__file__).resolve().parent
WIDTH, D_IN, BATCH = 256, 64, 256


class MLP(nnx.Module):
    def __init__(self, act, depth, *, rngs):
        self.layers = nnx.List([nnx.Linear(D_IN if i == 0 else WIDTH, WIDTH, rngs=rngs) for i in range(depth)])
        self.readout = nnx.Linear(WIDTH, 10, rngs=rngs)
        self.act = act

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else self.act(x))
        return self.readout(self.act(x))


def step_time(model, x, y):
    tx = optax.adam(1e-3)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p, rest)(x), y).mean()

        g = jax.grad(loss)(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt

    jax.block_until_ready(step(params, opt))
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(step(params, opt))
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def main():
    key = jax.random.key(0)
    x = jax.random.normal(key, (BATCH, D_IN), jnp.float32)
    xb, yb = x[:64], jnp.arange(64) % 10
    rows = []
    for name in ("tanh", "rational"):
        for depth in (10, 30, 50, 100):
            act = jnp.tanh if name == "tanh" else NNXActivation("rational", learnable=True)
            model = MLP(act, depth, rngs=nnx.Rngs(depth))
            t0 = time.perf_counter()
            autoinit(model, x)
            first = time.perf_counter() - t0
            again = []
            for i in range(11):
                if name == "rational":  # as if an optimiser had moved the activation
                    num = model.act.params["numerator"]
                    num.set_value(num.get_value() * (1.0 + 0.01 * (-1) ** i))
                t0 = time.perf_counter()
                autoinit(model, x)
                again.append(time.perf_counter() - t0)
            step = step_time(model, xb, yb)
            diagnose(model, x)
            t0 = time.perf_counter()
            diagnose(model, x)
            diag = time.perf_counter() - t0
            row = dict(
                activation=name,
                depth=depth,
                first_s=first,
                again_s=float(np.median(again[1:])),
                step_s=step,
                diagnose_s=diag,
            )
            print(row, flush=True)
            rows.append(row)
    lines = [
        "| activation | depth | autoinit, first call | autoinit, later calls (median of 10) | one Adam step "
        "(batch 64) | later call / step | diagnose (batch 256) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['activation']} | {r['depth']} | {r['first_s']:.2f} s | {1e3 * r['again_s']:.0f} ms "
            f"| {1e3 * r['step_s']:.0f} ms | {r['again_s'] / r['step_s']:.1f} | {r['diagnose_s']:.2f} s |"
        )
    env = (
        f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform} backend, float32, "
        f"jax {jax.__version__}; shared 2-core machine, so absolute times carry some noise"
    )
    text = "\n".join(lines) + f"\n\nWidth {WIDTH}, input {D_IN}, sample batch {BATCH}; {env}.\n"
    print("\n" + text)
    (HERE / "autoinit.md").write_text(text)
    (HERE / "autoinit.json").write_text(json.dumps({"rows": rows, "environment": env}, indent=1) + "\n")


if __name__ == "__main__":
    main()

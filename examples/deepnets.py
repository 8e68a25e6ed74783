"""Deep random MLPs on scikit-learn's digits, trained by plain SGD: the shared core of
``examples/trainability.py`` and ``examples/criticality_study.py`` (and of the fast
trainability check in ``tests/test_trainability.py``).

The network: ``h_1 = W_0 x + b_0``, ``h_{l+1} = W_l phi(h_l) + b_l`` for ``l < L``,
logits ``W_L phi(h_L) + b_L``; ``W_l ~ N(0, sW^2 / n)`` (``n = width``), ``b_l ~ N(0, sb^2)``
for the hidden layers, the first layer ``W_0 ~ N(0, sW0^2 / d)`` with
``sW0^2 = (q0 - sb^2) / mean|x|^2/d`` so that ``h_1`` has variance ``q0`` on the training
inputs, and a readout ``N(0, 1 / n)`` with zero bias. Float32, ``jit``, the layers in a
``lax.scan`` (one compilation per depth), and ``vmap`` over configurations (``sW^2``,
``sb^2``, seeds), so a whole column of a grid is one program.

Training: cross-entropy, SGD with a constant learning rate on minibatches drawn with
replacement; reported: accuracy on the whole training set and on the test set after the
last step (``nan`` loss counts as chance: a diverged network predicts one class).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32


class Data(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array


def load_digits(seed: int = 0) -> Data:
    """Digits (1797 8x8 images, 10 classes), 80/20 stratified split, standardised with training statistics."""
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    x, y = _load(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = np.where(std > 0, std, 1.0)  # constant (always blank) pixels stay 0
    f = lambda v: jnp.asarray((v - mean) / std, F32)  # noqa: E731
    return Data(f(x_tr), jnp.asarray(y_tr, jnp.int32), f(x_te), jnp.asarray(y_te, jnp.int32))


class Config(NamedTuple):
    """One network's initialisation: hidden ``sW^2``, ``sb^2``, first-layer variance ``q0``, seed key."""

    sw2: jax.Array
    sb2: jax.Array
    q0: jax.Array
    key: jax.Array


def init(cfg: Config, depth: int, width: int, data: Data):
    d = data.x_train.shape[1]
    k0, kw, kb, ko = jax.random.split(cfg.key, 4)
    in_scale = jnp.mean(jnp.sum(data.x_train**2, axis=1)) / d
    sw0 = jnp.maximum(cfg.q0 - cfg.sb2, 0.0) / in_scale
    return {
        "w0": jax.random.normal(k0, (d, width), F32) * jnp.sqrt(sw0 / d).astype(F32),
        "w": jax.random.normal(kw, (depth - 1, width, width), F32) * jnp.sqrt(cfg.sw2 / width).astype(F32),
        "b": jax.random.normal(kb, (depth, width), F32) * jnp.sqrt(cfg.sb2).astype(F32),
        "wo": jax.random.normal(ko, (width, 10), F32) / np.float32(np.sqrt(width)),
        "bo": jnp.zeros((10,), F32),
    }


def forward(phi: Callable, params, x):
    h = x @ params["w0"] + params["b"][0]

    def layer(h, wb):
        w, b = wb
        return phi(h) @ w + b, None

    h, _ = jax.lax.scan(layer, h, (params["w"], params["b"][1:]))
    return phi(h) @ params["wo"] + params["bo"]


def _loss(phi, params, x, y):
    logp = jax.nn.log_softmax(forward(phi, params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _accuracy(phi, params, x, y):
    pred = jnp.argmax(forward(phi, params, x), axis=1)
    return jnp.mean((pred == y).astype(F32))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _train_batch(phi, depth, width, steps, batch, lr, data, cfgs):
    def one(cfg):
        params = init(cfg, depth, width, data)

        def step(p, key):
            idx = jax.random.randint(key, (batch,), 0, data.x_train.shape[0])
            loss, g = jax.value_and_grad(lambda p: _loss(phi, p, data.x_train[idx], data.y_train[idx]))(p)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), loss

        params, losses = jax.lax.scan(step, params, jax.random.split(jax.random.fold_in(cfg.key, 1), steps))
        return (
            _accuracy(phi, params, data.x_train, data.y_train),
            _accuracy(phi, params, data.x_test, data.y_test),
            losses[-1],
        )

    return jax.vmap(one)(cfgs)


class Trained(NamedTuple):
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    final_loss: np.ndarray


def train(phi, depth, data, sw2, sb2, q0, seeds, *, width=128, steps=300, batch=128, lr=0.01) -> Trained:
    """Train one network per entry of the broadcast ``(sw2, sb2, q0, seeds)``; arrays of that shape.

    ``phi`` must be hashable (a function or a jaxsig Activation with float32 parameters):
    it is a static argument of the compiled program.
    """
    sw2, sb2, q0, seeds = np.broadcast_arrays(*(np.asarray(a) for a in (sw2, sb2, q0, seeds)))
    shape = sw2.shape
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds.ravel(), jnp.uint32))
    cfgs = Config(*(jnp.asarray(a.ravel(), F32) for a in (sw2, sb2, q0)), keys)
    out = _train_batch(phi, int(depth), int(width), int(steps), int(batch), float(lr), data, cfgs)
    return Trained(*(np.asarray(o).reshape(shape) for o in out))


def float32_activation(act):
    """A jaxsig Activation with its parameters cast to float32 (the networks stay float32 under x64)."""
    if getattr(act, "params", None) is None:
        return act
    return act.replace(params=jax.tree_util.tree_map(lambda v: np.asarray(v, np.float32), act.params))

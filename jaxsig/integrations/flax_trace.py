"""Running a Flax NNX model with its layers marked: the raw material of :mod:`~jaxsig.integrations.flax_graph`.

While :func:`record` traces ``model(x)`` under :func:`jax.make_jaxpr`, each call
of an ``nnx.Linear``, ``nnx.Conv``, ``nnx.LayerNorm``, ``nnx.RMSNorm``,
``nnx.BatchNorm`` and :class:`jaxsig.flax.NNXActivation` is bracketed by an
identity primitive (the marker) that tags its input and output in the jaxpr,
and described by a :class:`Call`; ``nnx.Dropout`` is replaced by the identity
(the reference network is the evaluation-mode one), and modules mean-field
theory has no rule for (attention, embeddings, recurrent cells) raise
:class:`UnsupportedModelError` at once. :func:`layer_outputs` runs the same
instrumentation eagerly to measure every dense / conv layer's output.

The instrumentation patches ``__call__`` of those classes only for the
duration of one trace, under a lock, and acts only on modules of the traced
model (a context variable holds the recorder), so other threads and other
models run the original methods.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend import core as jcore
from jax.interpreters import ad, batching, mlir

__all__ = [
    "UnsupportedModelError",
    "DENSE",
    "CONV",
    "NORM",
    "ACTIVATION",
    "SUPPORTED",
    "TAP",
    "Call",
    "Recording",
    "record",
    "layer_outputs",
    "module_paths",
    "show",
]

DENSE, CONV, NORM, ACTIVATION = "dense", "conv", "norm", "activation"
_DROPOUT, _UNSUPPORTED = "dropout", "unsupported"


class UnsupportedModelError(ValueError):
    """The model has a part mean-field initialisation cannot follow; the message names it."""


# --- The marker primitive ------------------------------------------------------------------------

TAP = jcore.Primitive("jaxsig_layer_tap")
TAP.def_impl(lambda x, *, index, role: x)
TAP.def_abstract_eval(lambda aval, *, index, role: aval)


def _tap_batch(args, dims, *, index, role):
    # Under nnx.vmap the marked layer has stacked weights; flax_plan.plan refuses it by its kernel shape.
    return TAP.bind(args[0], index=index, role=role), dims[0]


def _tap_jvp(primals, tangents, *, index, role):
    return TAP.bind(primals[0], index=index, role=role), tangents[0]


# The marker is the identity; these rules let slices that contain an activation's markers be
# differentiated and compiled by jaxsig.moments like any other function.
batching.primitive_batchers[TAP] = _tap_batch
ad.primitive_jvps[TAP] = _tap_jvp
mlir.register_lowering(TAP, lambda ctx, x, **_: [x])


class Call(NamedTuple):
    """One call of an instrumented module during the traced ``model(x)``.

    Attributes:
      index: position among the instrumented calls (the order of execution).
      path: the module's path in the model, e.g. ``"blocks.3.dense"`` (``""``
        for the model itself).
      kind: ``"dense"``, ``"conv"``, ``"norm"`` or ``"activation"``.
      cls: the module's class name.
      in_shape, out_shape: shapes of the module's input and output.
      static: what the analysis needs from the call (the activation's name and
        kinks; BatchNorm's ``use_running_average``).
      dtype: the output's dtype.
    """

    index: int
    path: str
    kind: str
    cls: str
    in_shape: tuple
    out_shape: tuple
    static: dict
    dtype: Any


def _unsupported_classes():
    names = (
        "LinearGeneral",
        "Einsum",
        "ConvTranspose",
        "Embed",
        "MultiHeadAttention",
        "GroupNorm",
        "InstanceNorm",
        "LoRA",
        "LoRALinear",
        "LSTMCell",
        "GRUCell",
        "SimpleCell",
        "OptimizedLSTMCell",
        "WeightNorm",
        "SpectralNorm",
    )
    return [getattr(nnx, n) for n in names if hasattr(nnx, n)]


def _instrumented_classes():
    # Imported here, not at the top: jaxsig.integrations.flax re-exports this package's API.
    from jaxsig.integrations.flax import NNXActivation

    table = [
        (nnx.Linear, DENSE),
        (nnx.Conv, CONV),
        (nnx.LayerNorm, NORM),
        (nnx.RMSNorm, NORM),
        (nnx.BatchNorm, NORM),
        (NNXActivation, ACTIVATION),
        (nnx.Dropout, _DROPOUT),
    ]
    return table + [(cls, _UNSUPPORTED) for cls in _unsupported_classes()]


SUPPORTED = (
    "nnx.Linear",
    "nnx.Conv",
    "nnx.LayerNorm",
    "nnx.RMSNorm",
    "nnx.BatchNorm",
    "nnx.Dropout",
    "jaxsig.flax.NNXActivation",
    "elementwise jax functions",
    "residual sums",
    "reshapes",
)

_RECORDER: contextvars.ContextVar = contextvars.ContextVar("jaxsig_flax_recorder", default=None)
_PATCH_LOCK = threading.Lock()


def _wrap(original, kind):
    @functools.wraps(original)
    def call(self, *args, **kwargs):
        rec = _RECORDER.get()
        if rec is None:
            return original(self, *args, **kwargs)
        return rec.intercept(self, kind, original, args, kwargs)

    return call


@contextlib.contextmanager
def _instrumented():
    """Patch ``__call__`` of the instrumented classes for the duration (restored on exit).

    The patched methods only act while a recorder is set (this thread's trace),
    and only on modules of the traced model; every other call goes straight to
    the original method.
    """
    with _PATCH_LOCK:
        saved = []
        try:
            for cls, kind in _instrumented_classes():
                saved.append((cls, cls.__dict__.get("__call__")))
                cls.__call__ = _wrap(cls.__call__, kind)
            yield
        finally:
            for cls, own in reversed(saved):
                if own is None:
                    delattr(cls, "__call__")
                else:
                    cls.__call__ = own


class _Recorder:
    def __init__(self, measure=False):
        self.paths: dict[int, str] = {}
        self.calls: list[Call] = []
        self.seen: set[int] = set()
        self.outputs: Optional[dict] = {} if measure else None

    def intercept(self, module, kind, original, args, kwargs):
        path = self.paths.get(id(module))
        if path is None:  # a module created inside __call__: not part of the model's state
            return original(module, *args, **kwargs)
        if self.outputs is not None:  # measuring: run the layer, keep dense / conv outputs
            if kind == _DROPOUT and args:
                return args[0]
            y = original(module, *args, **kwargs)
            if kind in (DENSE, CONV):
                self.outputs[path] = y
            return y
        name = type(module).__name__
        where = f"{name} at {show(path)}"
        if kind == _UNSUPPORTED:
            raise UnsupportedModelError(
                f"{where} is not supported: mean-field initialisation follows {', '.join(SUPPORTED)}. "
                "Exclude the part of the model that contains it, or initialise that layer yourself."
            )
        if not args:
            raise UnsupportedModelError(f"{where} was called without a positional input; call it as layer(x)")
        if kind == _DROPOUT:  # the evaluation-mode network: dropout is the identity
            return args[0]
        if kind in (DENSE, CONV):
            # A shared activation or norm is fine; a shared weight matrix would get two targets.
            if id(module) in self.seen:
                raise UnsupportedModelError(
                    f"{where} is called more than once in one forward pass (shared weights); mean-field "
                    "initialisation needs each layer's weights to be used once."
                )
            self.seen.add(id(module))
        static = {}
        if kind == ACTIVATION:
            static = {"name": module.activation.name, "kinks": tuple(float(k) for k in module.activation.kinks)}
        elif isinstance(module, nnx.BatchNorm):
            ura = args[1] if len(args) > 1 else kwargs.get("use_running_average")
            static = {"use_running_average": bool(module.use_running_average if ura is None else ura)}
        elif kind == CONV and getattr(module, "mask", None) is not None:
            raise UnsupportedModelError(f"{where} has a weight mask; masked convolutions are not supported")
        index = len(self.calls)
        x = TAP.bind(jnp.asarray(args[0]), index=index, role="in")
        y = original(module, x, *args[1:], **kwargs)
        self.calls.append(
            Call(index, path, kind, name, tuple(x.shape), tuple(jnp.shape(y)), static, jnp.result_type(y))
        )
        return TAP.bind(y, index=index, role="out")


def show(path) -> str:
    """A module path for messages (``""`` is the model itself)."""
    return "the model itself" if path == "" else repr(path)


def _path_str(parts) -> str:
    return ".".join(str(p) for p in parts)


def module_paths(model) -> dict:
    """``{path: module}`` for every NNX module in ``model`` (``""`` is the model itself)."""
    return {_path_str(p): m for p, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)}


def _leaf_path(key_path) -> str:
    parts = []
    for k in key_path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
    if parts and parts[-1] == "value":  # the Variable's own field
        parts.pop()
    return ".".join(parts)


class Recording(NamedTuple):
    """What :func:`record` saw: the closed jaxpr, the instrumented calls, and the state leaves.

    The jaxpr's inputs are the state leaves (in the order of ``leaf_paths``)
    followed by the leaves of ``x``.
    """

    closed: Any
    calls: list
    leaf_paths: list
    leaves: list


def layer_outputs(model, x, call: Optional[Callable] = None) -> dict:
    """The output of every dense / conv layer of ``model(x)``, by path (eagerly, on a copy of the model).

    Dropout is the identity, as in :func:`record`; the copy absorbs state updates
    (BatchNorm statistics), so ``model`` is unchanged.
    """
    copy = nnx.clone(model)
    rec = _Recorder(measure=True)
    rec.paths = {id(node): _path_str(p) for p, node in nnx.iter_graph(copy) if isinstance(node, nnx.Module)}
    token = _RECORDER.set(rec)
    try:
        with _instrumented():
            copy(x) if call is None else call(copy, x)
    finally:
        _RECORDER.reset(token)
    return rec.outputs


def record(model, x, call: Optional[Callable] = None) -> Recording:
    """Trace ``model(x)`` (or ``call(model, x)``) with the layers instrumented.

    The model is split into its graph definition and state, merged back inside
    :func:`jax.make_jaxpr` (so state updates during the call, e.g. BatchNorm
    statistics, stay inside the trace), and called with :func:`jax.disable_jit`
    so that jitted helpers are traced inline. Nothing of the model changes.

    Raises:
      UnsupportedModelError: an unsupported module is called (named in the message).
      TypeError: ``model`` is not an NNX module.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"model must be a Flax NNX module (flax.nnx.Module), got {type(model).__name__}; "
            "for Linen models use nnx.bridge.ToNNX or initialise with jaxsig.flax.init_variances"
        )
    graphdef, state = nnx.split(model)
    flat, treedef = jax.tree_util.tree_flatten_with_path(state)
    leaf_paths = [_leaf_path(kp) for kp, _ in flat]
    leaves = [v for _, v in flat]
    rec = _Recorder()

    def run(leaves, x):
        m = nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, leaves))
        rec.paths = {id(node): _path_str(p) for p, node in nnx.iter_graph(m) if isinstance(node, nnx.Module)}
        return m(x) if call is None else call(m, x)

    token = _RECORDER.set(rec)
    try:
        with _instrumented(), jax.disable_jit():
            closed = jax.make_jaxpr(run)(leaves, x)
    finally:
        _RECORDER.reset(token)
    return Recording(closed, rec.calls, leaf_paths, leaves)

"""A traced model ready for mean-field arithmetic: its layers, their fans and the fixed values (cached).

:func:`plan` traces a model once per structure and input shape
(:func:`jaxsig.integrations.flax_graph.trace`; tracing is the dear part) and
lists its dense / conv layers as :class:`Layer` records: state leaves of the
kernel and bias, ``fan_in``, output units and, for convolutions, the fraction
of kernel taps that see data. Later calls with the same model structure and
input shape (a training loop re-targeting its initialisation) reuse the plan.
:func:`snapshot` is the one pass over the model's state each call makes.
Used by :func:`jaxsig.flax.autoinit` and :func:`jaxsig.flax.diagnose`; not part
of the public API.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsig.integrations import flax_expr as fx
from jaxsig.integrations import flax_graph as fg
from jaxsig.integrations.flax_trace import CONV, DENSE, UnsupportedModelError, module_paths

__all__ = ["Layer", "Plan", "Snapshot", "snapshot", "plan", "check_sample", "effective_scales"]


@dataclasses.dataclass(eq=False)
class Layer:
    """One dense / conv layer of a plan: where its weights are and how many inputs feed a unit."""

    call: int
    path: str
    kind: str
    kernel: int  # state leaf index
    bias: Optional[int]
    fan_in: int
    units: int  # output units averaged in one measurement
    pad: float  # fraction of the kernel taps that see data (1 for dense)


@dataclasses.dataclass(eq=False)
class Plan:
    """The traced structure of one model structure and input shape, and caches that live with it.

    ``composites`` holds the stable function objects built from the model's
    functions (so :func:`jaxsig.moments` compiles once per function, not per
    call), ``affine`` the coefficients of affine slices, and ``writes`` counts
    the :func:`jaxsig.flax.autoinit` calls that wrote weights with this plan.
    """

    graph: fg.ModelGraph
    layers: tuple
    fixed_vars: tuple
    batched: bool  # traced on x[:1]: values of the batch are computed example by example
    composites: dict = dataclasses.field(default_factory=dict)
    affine: dict = dataclasses.field(default_factory=dict)
    writes: int = 0


class _Key:
    """A cache key whose hash is computed once (hashing a deep GraphDef is not free)."""

    __slots__ = ("parts", "hash")

    def __init__(self, parts):
        self.parts, self.hash = parts, hash(parts)

    def __hash__(self):
        return self.hash

    def __eq__(self, other):
        return isinstance(other, _Key) and self.hash == other.hash and self.parts == other.parts


_PLANS: "collections.OrderedDict" = collections.OrderedDict()
_PLAN_CACHE_SIZE = 16


class Snapshot(NamedTuple):
    """One pass over the model: its graph definition, state leaves and modules by path."""

    graphdef: Any
    treedef: Any
    values: list
    modules: dict


def snapshot(model) -> Snapshot:
    """The model's graph definition, state leaves and modules, read once."""
    graphdef, state = nnx.split(model)
    values, treedef = jax.tree_util.tree_flatten(state)
    return Snapshot(graphdef, treedef, values, module_paths(model))


def plan(model, x, call, snap: Snapshot) -> Plan:
    """The traced structure of ``model`` on inputs shaped like ``x`` (cached: tracing is the dear part)."""
    graphdef = snap.graphdef
    # One example is traced: the structure does not depend on the batch, and the activations read
    # off the jaxpr then evaluate on arrays of one example's size (see flax_expr.Slice.packed).
    batched = jnp.ndim(x) >= 2
    key = (graphdef, snap.treedef, jnp.shape(x)[1:] if batched else jnp.shape(x), batched, jnp.result_type(x), call)
    try:
        key = _Key(key)
    except TypeError:
        key = None
    if key is not None and key in _PLANS:
        _PLANS.move_to_end(key)
        return _PLANS[key]
    graph = fg.trace(model, x[:1] if batched else x, call)
    modules = snap.modules
    layers = []
    for c in graph.layers:
        module = modules[c.path]
        kernel, bias = graph.leaf(c.path, "kernel"), graph.leaf(c.path, "bias")
        k_shape = tuple(module.kernel.shape)
        want = 2 if c.kind == DENSE else len(module.kernel_size) + 2
        if len(k_shape) != want or kernel is None:
            raise UnsupportedModelError(
                f"{c.cls} {c.path!r} has a kernel of shape {k_shape}: stacked weights (nnx.vmap / nnx.scan "
                "over layers) are not supported; unroll the layers"
            )
        fan_in = math.prod(k_shape[:-1])
        pad = _padding_fraction(module, c.in_shape) if c.kind == CONV else 1.0
        # (in_shape is one example's: the padding fraction does not depend on the batch.)
        layers.append(
            Layer(
                c.index,
                c.path,
                c.kind,
                kernel,
                bias if module.bias is not None else None,
                fan_in,
                int(k_shape[-1]),
                pad,
            )
        )
    fixed = []
    for c in graph.layers:
        try:
            _collect_fixed(graph.input_expr(c.index), fixed)
        except UnsupportedModelError:
            pass  # raised again, with the layer named, when that layer is needed
    graph.release()
    plan = Plan(graph, tuple(layers), tuple(dict.fromkeys(fixed)), batched)
    if key is not None:
        _PLANS[key] = plan
        if len(_PLANS) > _PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)
    return plan


def _collect_fixed(node, out):
    if isinstance(node, fx.Fixed):
        if node.var is not None:
            out.append(node.var)
    elif isinstance(node, (fx.Elementwise, fx.Layout, fx.Norm)):
        _collect_fixed(node.child, out)
    elif isinstance(node, fx.Add):
        _collect_fixed(node.left, out)
        _collect_fixed(node.right, out)


def _padding_fraction(module, in_shape) -> float:
    """Mean over output positions of the fraction of kernel taps that land inside the input.

    A probe convolution with the layer's geometry (kernel size, strides,
    padding, dilations), one channel, all-ones kernel and input: its output
    counts the taps that see data. ``1`` for ``VALID`` and circular padding.
    """
    n = len(module.kernel_size)
    spatial = tuple(in_shape[-1 - n : -1])
    probe = nnx.Conv(
        1,
        1,
        kernel_size=module.kernel_size,
        strides=module.strides,
        padding=module.padding,
        input_dilation=module.input_dilation,
        kernel_dilation=module.kernel_dilation,
        use_bias=False,
        kernel_init=nnx.initializers.ones,
        param_dtype=jnp.float32,
        rngs=nnx.Rngs(0),
    )
    out = probe(jnp.ones((1,) + spatial + (1,), jnp.float32))
    return float(jnp.mean(out)) / math.prod(module.kernel_size)


def check_sample(x):
    """``x`` as an array after checking it is one non-empty floating-point batch."""
    if isinstance(x, (tuple, list, dict)):
        raise TypeError("x must be one array (a batch of inputs); for several inputs pass call=lambda m, x: m(*x)")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating-point data (a sample batch), got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"x must be a non-empty sample batch, got shape {x.shape}")
    return x


def effective_scales(layer: Layer, values) -> tuple[float, float]:
    """``(sW^2, sb^2)`` of a layer's current weights: ``fan_in mean W^2`` and ``mean b^2`` (0 without bias)."""
    w = np.asarray(values[layer.kernel], np.float64)
    sw2 = float(np.mean(w * w)) * layer.fan_in
    sb2 = float(np.mean(np.asarray(values[layer.bias], np.float64) ** 2)) if layer.bias is not None else 0.0
    return sw2, sb2

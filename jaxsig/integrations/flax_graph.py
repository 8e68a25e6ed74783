"""The mean-field graph of a Flax NNX model: what feeds each ``Linear`` and ``Conv`` layer.

:func:`trace` runs ``model(x)`` once under :func:`jax.make_jaxpr` with the layers
that matter instrumented: each call of an ``nnx.Linear``, ``nnx.Conv``,
``nnx.LayerNorm``, ``nnx.RMSNorm``, ``nnx.BatchNorm`` and
:class:`jaxsig.flax.NNXActivation` is bracketed by an identity primitive that
marks its input and output in the jaxpr (``nnx.Dropout`` is replaced by the
identity: the reference network is the evaluation-mode one). Everything else
in ``__call__`` (``jax.nn.tanh``, ``x * jax.nn.sigmoid(x)``, residual sums,
reshapes) is read from the jaxpr itself. :class:`ModelGraph` then writes the
input of every dense or convolutional layer as an expression in the algebra
that mean-field theory can evaluate:

* :class:`Base` ``(i)``: the output of layer ``i``. In a wide random network
  each unit is a centred Gaussian, uncorrelated with the output of every other
  layer (its weights are fresh and have mean zero).
* :class:`Elementwise` ``(f, e)``: ``f`` applied entrywise to ``e`` (an
  activation, or an affine map such as a residual scale).
* :class:`Add` ``(e1, e2, sign)``: a residual sum ``e1 + sign * e2``.
* :class:`Norm` ``(i, e)``: normalisation layer ``i`` applied to ``e``.
* :class:`Layout` ``(e)``: a transpose or similar (entries are only moved).
* :class:`Fixed` ``(v)``: a value that depends on no layer output (the data,
  constants); evaluated exactly.

An operation the algebra has no rule for (pooling, attention, a product of
two signals, layers inside ``scan``) raises :class:`UnsupportedModelError`
naming the operation and the layers around it. The numbers (variances,
moments) are computed elsewhere, by :mod:`jaxsig.integrations.flax_init`.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxsig.integrations import flax_graph
  >>> model = nnx.Sequential(nnx.Linear(3, 8, rngs=nnx.Rngs(0)), jax.nn.tanh,
  ...                        nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
  >>> graph = flax_graph.trace(model, jnp.ones((4, 3)))
  >>> [(c.path, c.kind) for c in graph.layers]
  [('layers.0', 'dense'), ('layers.2', 'dense')]
  >>> graph.input_expr(graph.layers[1].index).slice.name
  'tanh'
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import re
import threading
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend import core as jcore
from jax.interpreters import ad, batching, mlir

__all__ = [
    "UnsupportedModelError",
    "DENSE",
    "CONV",
    "NORM",
    "ACTIVATION",
    "Call",
    "Slice",
    "Base",
    "Fixed",
    "Elementwise",
    "Add",
    "Norm",
    "Layout",
    "ModelGraph",
    "trace",
    "layer_outputs",
    "module_paths",
]

DENSE, CONV, NORM, ACTIVATION = "dense", "conv", "norm", "activation"
_DROPOUT, _UNSUPPORTED = "dropout", "unsupported"


class UnsupportedModelError(ValueError):
    """The model has a part mean-field initialisation cannot follow; the message names it."""


# --- The marker primitive ------------------------------------------------------------------------

_TAP = jcore.Primitive("jaxsig_layer_tap")
_TAP.def_impl(lambda x, *, index, role: x)
_TAP.def_abstract_eval(lambda aval, *, index, role: aval)


def _tap_batch(args, dims, *, index, role):
    # Under nnx.vmap the marked layer has stacked weights; ModelGraph refuses it by its kernel shape.
    return _TAP.bind(args[0], index=index, role=role), dims[0]


def _tap_jvp(primals, tangents, *, index, role):
    return _TAP.bind(primals[0], index=index, role=role), tangents[0]


# The marker is the identity; these rules let slices that contain an activation's markers be
# differentiated and compiled by jaxsig.moments like any other function.
batching.primitive_batchers[_TAP] = _tap_batch
ad.primitive_jvps[_TAP] = _tap_jvp
mlir.register_lowering(_TAP, lambda ctx, x, **_: [x])


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
    names = ("LinearGeneral", "Einsum", "ConvTranspose", "Embed", "MultiHeadAttention", "GroupNorm",
             "InstanceNorm", "LoRA", "LoRALinear", "LSTMCell", "GRUCell", "SimpleCell",
             "OptimizedLSTMCell", "WeightNorm", "SpectralNorm")
    return [getattr(nnx, n) for n in names if hasattr(nnx, n)]


def _instrumented_classes():
    # Imported here, not at the top: jaxsig.integrations.flax re-exports this package's API.
    from jaxsig.integrations.flax import NNXActivation

    table = [(nnx.Linear, DENSE), (nnx.Conv, CONV), (nnx.LayerNorm, NORM), (nnx.RMSNorm, NORM),
             (nnx.BatchNorm, NORM), (NNXActivation, ACTIVATION), (nnx.Dropout, _DROPOUT)]
    return table + [(cls, _UNSUPPORTED) for cls in _unsupported_classes()]


SUPPORTED = ("nnx.Linear", "nnx.Conv", "nnx.LayerNorm", "nnx.RMSNorm", "nnx.BatchNorm", "nnx.Dropout",
             "jaxsig.flax.NNXActivation", "elementwise jax functions", "residual sums", "reshapes")

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
        where = f"{name} at {_show(path)}"
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
        x = _TAP.bind(jnp.asarray(args[0]), index=index, role="in")
        y = original(module, x, *args[1:], **kwargs)
        self.calls.append(Call(index, path, kind, name, tuple(x.shape), tuple(jnp.shape(y)), static,
                               jnp.result_type(y)))
        return _TAP.bind(y, index=index, role="out")


def _show(path):
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


# --- Primitive classes -------------------------------------------------------------------------------

_ELEMENTWISE = frozenset("""
    abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type copy copy_p
    cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt integer_pow is_finite le lgamma
    log log1p logistic lt max min mul ne neg nextafter not or pow reduce_precision rem round rsqrt
    select_n sign sin sinh sqrt square sub tan tanh xor reshape squeeze expand_dims broadcast_in_dim
""".split())
_CALLS = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "closed_call", "core_call"})
_IDENTITY = frozenset({"convert_element_type", "copy", "copy_p", "reshape", "squeeze", "expand_dims",
                       "reduce_precision", _TAP.name})
_AFFINE = _IDENTITY | {"add", "sub", "mul", "div", "neg"}
_LAYOUT = frozenset({"transpose", "reshape", "squeeze", "expand_dims", "rev", "copy", "copy_p",
                     "convert_element_type"})
_KINK_PRIMS = frozenset({"max", "min", "gt", "ge", "lt", "le", "clamp"})
_SHAPE_ONLY = frozenset({"reshape", "squeeze", "expand_dims", "broadcast_in_dim"})
_TRANSCENDENTAL_SKIP = frozenset({"mul", "add", "sub", "div", "neg", "convert_element_type", "copy", "copy_p",
                                  "reshape", "squeeze", "expand_dims", "broadcast_in_dim", "select_n", "gt",
                                  "ge", "lt", "le", "eq", "ne", "integer_pow", "square", "and", "or", "not",
                                  _TAP.name})


def _jaxpr(constvars, invars, outvars, eqns):
    """A sub-jaxpr of the traced model, with the debug information JAX asks for."""
    info = jcore.DebugInfo("jaxsig.flax", "a slice of the traced model", tuple(f"in{i}" for i in range(len(invars))),
                           tuple(f"out{i}" for i in range(len(outvars))))
    return jcore.Jaxpr(constvars, invars, outvars, eqns, debug_info=info)


def _is_var(v) -> bool:
    return isinstance(v, jcore.Var) and not isinstance(v, jcore.Literal)


def _inner_jaxprs(eqn):
    return list(jcore.jaxprs_in_params(eqn.params))


def _has_tap(jaxpr) -> set:
    """Indices of the instrumented calls whose markers sit inside ``jaxpr`` (recursively)."""
    found = set()
    for e in jaxpr.eqns:
        if e.primitive is _TAP:
            found.add(e.params["index"])
        for inner in _inner_jaxprs(e):
            found |= _has_tap(inner)
    return found


def _call_name(eqn) -> str:
    """The Python function behind a custom_jvp / custom_vjp call (``relu``, ``logaddexp``)."""
    for inner in _inner_jaxprs(eqn):
        info = getattr(inner, "debug_info", None)
        src = getattr(info, "func_src_info", None) or ""
        if src:
            return src.split(" ")[0]
    return eqn.primitive.name


def _elementwise_call(eqn) -> bool:
    """A custom_jvp / custom_vjp / closed call whose body is elementwise (``jax.nn.relu``, ``softplus``)."""
    inner = _inner_jaxprs(eqn)
    return bool(inner) and all(
        (e.primitive.name in _ELEMENTWISE or (e.primitive.name in _CALLS and _elementwise_call(e)))
        for j in inner for e in j.eqns
    )


# --- Expressions ---------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Slice:
    """An elementwise piece of the model between two values, ``v = f(w)``, as a function.

    Attributes:
      kind: ``"identity"`` (type casts, reshapes), ``"affine"`` (``a w + c``) or
        ``"nonlinear"``.
      name: a readable name: the :class:`~jaxsig.flax.NNXActivation`'s, the
        custom-derivative function's (``relu``), or the special functions used
        (``tanh``).
      kinks: points where ``f'`` may jump (comparisons and ``max``/``min``
        against constants, an ``NNXActivation``'s kinks); quadrature panel edges.
      leaves: indices of the state leaves (parameters) ``f`` reads, in the order
        of :meth:`params`.
      in_shape, out_shape, dtype: as traced.
      fun: ``fun(w, *leaf_values) -> [v]`` at the traced shapes.
      signature: the slice's jaxpr as text with its constants: slices with
        equal signatures compute the same function (of their own parameters).
      shared: a cache, shared by the slices of one graph, of ``packed``
        functions by signature.
      activation: the path of the :class:`~jaxsig.flax.NNXActivation` when the
        slice is exactly one call of it (up to casts and reshapes): its own
        jaxsig activation can then be used, at any shape.
    """

    kind: str
    name: str
    kinks: tuple
    leaves: tuple
    in_shape: tuple
    out_shape: tuple
    dtype: Any
    fun: Callable
    signature: Any = None
    shared: dict = dataclasses.field(default_factory=dict)
    activation: Optional[str] = None

    @property
    def packed(self) -> Callable:
        """``f(x, params)`` for ``x`` of any shape: entries are packed into arrays of the traced shape.

        ``f`` is elementwise with position-independent coefficients (checked by
        :class:`ModelGraph`), so entry ``k`` of the output is ``f(x[k])`` however
        the entries are laid out. One function object per signature (twenty
        ``tanh`` layers share one), so that :func:`jaxsig.moments` compiles once
        for all of them.
        """
        key = self.signature if self.signature is not None else id(self)
        if key not in self.shared:
            self.shared[key] = self._pack()
        return self.shared[key]

    def _pack(self) -> Callable:
        size = math.prod(self.in_shape)
        in_shape, fun, dtype = self.in_shape, self.fun, self.dtype
        # One compiled program per number of chunks: eager evaluation would dispatch (and compile)
        # every operation of the slice separately.
        chunked = jax.jit(lambda chunks, params: jax.vmap(lambda c: fun(c, *params)[0])(chunks))

        def f(x, params):
            x = jnp.asarray(x)
            flat = x.reshape(-1).astype(dtype)
            n = flat.shape[0]
            k = max(1, -(-n // size))
            chunks = jnp.pad(flat, (0, k * size - n)).reshape((k,) + in_shape)
            return chunked(chunks, tuple(params)).reshape(-1)[:n].reshape(x.shape)

        f.__name__ = self.name
        return f

    def params(self, values) -> tuple:
        """The current values of the parameters ``f`` reads, from the model's state leaves."""
        return tuple(values[i] for i in self.leaves)

    def __call__(self, w, values):
        """``f(w)`` at the traced shape, with the state leaves ``values``."""
        return self.fun(jnp.asarray(w, self.dtype), *self.params(values))[0]


class Base(NamedTuple):
    """The output of dense / convolutional call ``call``: a centred Gaussian per unit."""

    call: int


class Fixed(NamedTuple):
    """A value that depends on no layer output (data, constants): evaluated exactly.

    ``var`` is the jaxpr variable to evaluate, or ``None`` for a literal, whose
    value is ``value``.
    """

    var: Any
    shape: tuple
    value: Any = None


class Elementwise(NamedTuple):
    """``slice`` applied entrywise to ``child``."""

    slice: Slice
    child: Any
    shape: tuple


class Add(NamedTuple):
    """``left + sign * right``, a residual sum."""

    left: Any
    right: Any
    sign: float
    shape: tuple


class Norm(NamedTuple):
    """Normalisation call ``call`` applied to ``child``."""

    call: int
    child: Any
    shape: tuple


class Layout(NamedTuple):
    """Entries of ``child`` moved (transpose, reversal); ``slice`` moves a concrete array the same way."""

    slice: Slice
    child: Any
    shape: tuple


Expr = Union[Base, Fixed, Elementwise, Add, Norm, Layout]


# --- The graph -----------------------------------------------------------------------------------------


class ModelGraph:
    """The traced model and the mean-field expression of each dense / conv layer's input.

    Built by :func:`trace`. ``layers`` lists the dense and convolutional calls in
    execution order (a topological order of the graph); :meth:`input_expr` gives
    the expression feeding one of them. Expressions are built on first request,
    so a layer whose input cannot be expressed raises only when it is asked for.
    """

    def __init__(self, closed, calls, leaf_paths, state_values):
        n_state = len(state_values)
        self._state_values = list(state_values)
        self.closed = closed
        jaxpr = closed.jaxpr
        self.eqns = jaxpr.eqns
        self.calls = tuple(calls)
        self.leaf_paths = tuple(leaf_paths)
        self.state_vars = tuple(jaxpr.invars[:n_state])
        self.x_vars = tuple(jaxpr.invars[n_state:])
        self.const_of = dict(zip(jaxpr.constvars, closed.consts))
        self.leaf_of = {v: i for i, v in enumerate(self.state_vars)}
        self.producer = {v: i for i, e in enumerate(self.eqns) for v in e.outvars}
        self.in_var, self.out_var, self.marked_in, self._tap_eqn = {}, {}, {}, {}
        for i, e in enumerate(self.eqns):
            inner = set().union(*(_has_tap(j) for j in _inner_jaxprs(e))) if _inner_jaxprs(e) else set()
            if inner:
                names = ", ".join(_show(self.calls[k].path) for k in sorted(inner) if k < len(self.calls))
                raise UnsupportedModelError(
                    f"layer(s) {names} are called inside `{e.primitive.name}` (jax.lax.scan, nnx.scan, "
                    "jax.checkpoint / nnx.remat or control flow); mean-field initialisation follows layers "
                    "called directly in __call__. Unroll the loop (or drop remat) for autoinit and diagnose."
                )
            if e.primitive is _TAP:
                k, role = e.params["index"], e.params["role"]
                if role == "in":
                    self.in_var[k] = e.invars[0]
                    self.marked_in[k] = e.outvars[0]
                else:
                    self.out_var[k] = e.outvars[0]
                self._tap_eqn[i] = (k, role)
        self.layers = tuple(c for c in self.calls if c.kind in (DENSE, CONV))
        if not self.layers:
            raise UnsupportedModelError(
                "the model has no nnx.Linear or nnx.Conv layer called in its forward pass: there is "
                "nothing to initialise (layers held in plain lists are found too; layers that are never "
                "called are not)"
            )
        self.base_of = {self.out_var[c.index]: c.index for c in self.layers}
        self.norm_of = {self.out_var[c.index]: c.index for c in self.calls if c.kind == NORM}
        # Values that depend on some layer output.
        self.dep = set()
        for e in self.eqns:
            if e.primitive is _TAP and e.outvars[0] in self.base_of:
                self.dep.add(e.outvars[0])
            elif any(_is_var(v) and v in self.dep for v in e.invars):
                self.dep.update(e.outvars)
        self._memo: dict = {}
        self._packed: dict = {}

    # -- Queries ------------------------------------------------------------------------------------------

    def release(self, max_size: int = 4096):
        """Drop the traced state values larger than ``max_size`` entries (kernels).

        They were kept only to check that activation coefficients are uniform;
        a cached graph should not hold a model's weights alive.
        """
        self._state_values = [v if np.size(v) <= max_size else None for v in self._state_values]

    def leaf(self, path: str, attr: str) -> Optional[int]:
        """Index of the state leaf ``path.attr`` (e.g. a layer's ``kernel``), or ``None``."""
        name = f"{path}.{attr}" if path else attr
        try:
            return self.leaf_paths.index(name)
        except ValueError:
            return None

    def input_expr(self, call: int) -> Expr:
        """The expression of call ``call``'s input (memoised)."""
        return self._expr(self.in_var[call], call)

    def evaluate(self, outvars, values, x) -> list:
        """Concrete values of ``outvars`` for state leaves ``values`` and input ``x`` (eagerly)."""
        needed = self._cone(outvars)
        eqns = [e for i, e in enumerate(self.eqns) if i in needed]
        jaxpr = _jaxpr(list(self.const_of), list(self.state_vars) + list(self.x_vars), list(outvars), eqns)
        fun = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(jaxpr, list(self.const_of.values())))
        return fun(*values, *jax.tree_util.tree_leaves(x))

    # -- Building expressions -------------------------------------------------------------------------------

    def _cone(self, outvars) -> set:
        """Indices of the equations ``outvars`` depend on."""
        needed, stack = set(), [v for v in outvars if _is_var(v)]
        while stack:
            v = stack.pop()
            i = self.producer.get(v)
            if i is None or i in needed:
                continue
            needed.add(i)
            stack.extend(u for u in self.eqns[i].invars if _is_var(u))
        return needed

    def _name(self, v) -> str:
        """A short description of where value ``v`` comes from, for error messages."""
        layers = sorted({self.base_of[u] for u in self._ancestors(v) if u in self.base_of})
        params = sorted({self.leaf_paths[self.leaf_of[u]] for u in self._ancestors(v, dep_only=False)
                         if u in self.leaf_of and not self.leaf_paths[self.leaf_of[u]].endswith(("kernel", "bias"))})
        text = f"after layer {_show(self.calls[layers[-1]].path)}" if layers else "on the data"
        if params:
            text += f" (it reads the parameter(s) {', '.join(params[:3])})"
        return text

    def _ancestors(self, v, dep_only=True) -> set:
        seen, stack = set(), [v]
        while stack:
            u = stack.pop()
            if not _is_var(u) or u in seen:
                continue
            seen.add(u)
            i = self.producer.get(u)
            if i is not None and (u not in self.base_of or not dep_only):
                stack.extend(self.eqns[i].invars)
        return seen

    def _expr(self, v, consumer) -> Expr:
        if not _is_var(v):
            return Fixed(None, (), np.asarray(v.val))
        key = v
        if key in self._memo:
            return self._memo[key]
        shape = tuple(v.aval.shape)
        if v not in self.dep:
            node = Fixed(v, shape)
        elif v in self.base_of:
            node = Base(self.base_of[v])
        elif v in self.norm_of:
            k = self.norm_of[v]
            node = Norm(k, self._expr(self.in_var[k], consumer), shape)
        else:
            e = self.eqns[self.producer[v]]
            if not self._elementwise(e):
                node = self._non_elementwise(v, e, consumer)
            else:
                w = self._dominator(v)
                if w is None:
                    node = self._combination(v, e, consumer)
                else:
                    sl = self._slice(w, v, consumer)
                    node = Elementwise(sl, self._expr(w, consumer), shape)
        self._memo[key] = node
        return node

    def _elementwise(self, e) -> bool:
        name = e.primitive.name
        if e.primitive is _TAP:
            return e.params["role"] in ("in", "out") and self.calls[e.params["index"]].kind == ACTIVATION
        if name in _CALLS:
            return _elementwise_call(e)
        if name in _SHAPE_ONLY:
            # Order-preserving reshapes of a layer's output are entrywise; broadcasting one is not.
            return name != "broadcast_in_dim" or not any(_is_var(u) and u in self.dep for u in e.invars)
        return name in _ELEMENTWISE

    def _atom(self, v) -> bool:
        if v in self.base_of or v in self.norm_of:
            return True
        return not self._elementwise(self.eqns[self.producer[v]])

    def _dep_operands(self, v):
        e = self.eqns[self.producer[v]]
        return [u for u in e.invars if _is_var(u) and u in self.dep]

    def _up_cone(self, v):
        """Layer-dependent values reachable backwards from ``v`` through elementwise equations."""
        cone, stack = set(), [v]
        while stack:
            u = stack.pop()
            if u in cone:
                continue
            cone.add(u)
            if u is v or not self._atom(u):
                stack.extend(self._dep_operands(u))
        return cone

    def _dominator(self, v):
        """The value furthest from ``v`` that every path from an atom to ``v`` passes through.

        The dominators of ``v`` form a chain; the furthest one gives the longest
        elementwise function ``v = f(w)`` (a whole activation, not one of its
        operations). ``None`` when ``v`` itself is where independent signals meet.
        """
        cone = self._up_cone(v)
        atoms = {u for u in cone if u is not v and self._atom(u)}
        for w in sorted(cone - {v}, key=lambda u: self.producer[u]):
            seen, stack, hit = set(), [v], False
            while stack and not hit:
                u = stack.pop()
                if u is w or u in seen:
                    continue
                seen.add(u)
                if u is not v and u in atoms:
                    hit = True
                elif u is v or not self._atom(u):
                    stack.extend(self._dep_operands(u))
            if not hit:
                return w
        return None

    def _combination(self, v, e, consumer) -> Expr:
        """``v`` combines two independent layer-dependent values: a sum, or unsupported."""
        ops = self._dep_operands(v)
        name = e.primitive.name
        if name in ("add", "sub") and len(ops) == 2:
            a, b = e.invars
            return Add(self._expr(a, consumer), self._expr(b, consumer), 1.0 if name == "add" else -1.0,
                       tuple(v.aval.shape))
        raise UnsupportedModelError(
            f"the input of {self._layer(consumer)} combines two different signals with `{name}` "
            f"({self._name(v)}); mean-field theory here handles sums of independent signals (residual "
            "connections) and functions of one signal, not products or gates"
        )

    def _non_elementwise(self, v, e, consumer) -> Expr:
        ops = self._dep_operands(v)
        if e.primitive.name in _LAYOUT and len(ops) == 1 and e.invars[0] is ops[0]:
            return Layout(self._slice(ops[0], v, consumer, check=False), self._expr(ops[0], consumer),
                          tuple(v.aval.shape))
        raise UnsupportedModelError(
            f"the input of {self._layer(consumer)} goes through `{e.primitive.name}` {self._name(v)}, "
            "which mean-field initialisation cannot follow: it tracks layers "
            f"({', '.join(SUPPORTED)}). Pooling, attention and other mixing operations change the "
            "variance in ways that depend on correlations between units; exclude the layers after it "
            "(exclude=...) or restructure the model."
        )

    def _layer(self, call) -> str:
        c = self.calls[call]
        return f"{c.cls} {_show(c.path)}"

    def _slice(self, w, v, consumer, check=True) -> Slice:
        """The function ``v = f(w)`` as a :class:`Slice` (``w`` dominates ``v``)."""
        # Layer-dependent values strictly above w.
        above, stack = set(), [v]
        while stack:
            u = stack.pop()
            if u is w or u in above:
                continue
            above.add(u)
            stack.extend(self._dep_operands(u))
        eq_idx = {self.producer[u] for u in above}
        # Constant inputs: state leaves (parameters), constants, and equations computing from them.
        leaves, consts, stack = [], [], []
        for i in eq_idx:
            stack.extend(u for u in self.eqns[i].invars if _is_var(u) and u not in self.dep)
        seen = set()
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            if u in self.leaf_of:
                leaves.append(u)
            elif u in self.const_of:
                consts.append(u)
            elif u in self.x_vars or self.producer.get(u) is None:
                raise UnsupportedModelError(
                    f"the input of {self._layer(consumer)} applies an elementwise function whose "
                    f"coefficients depend on the data ({self._name(v)}); that is not an activation"
                )
            else:
                i = self.producer[u]
                eq_idx.add(i)
                stack.extend(t for t in self.eqns[i].invars if _is_var(t))
        eqns = [self.eqns[i] for i in sorted(eq_idx)]
        leaves = sorted(set(leaves), key=lambda u: self.leaf_of[u])
        consts = sorted(set(consts), key=lambda u: list(self.const_of).index(u))
        jaxpr = _jaxpr(consts, [w] + leaves, [v], eqns)
        fun = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(jaxpr, [self.const_of[c] for c in consts]))
        dep_eqns = [self.eqns[i] for i in sorted(self.producer[u] for u in above)]
        kind = self._kind(dep_eqns, above)
        acts = sorted({self._tap_eqn[self.producer[u]][0] for u in above if self.producer[u] in self._tap_eqn})
        kinks = set(self._kinks(eqns, self._aliases(w, above)))
        for k in acts:
            kinks.update(self.calls[k].static["kinks"])
        # The markers' call indices differ between calls of one shared activation; the function does not.
        text = re.sub(r"index=\d+", "index=_", str(jaxpr))
        signature = (text, tuple(np.asarray(self.const_of[c]).tobytes() for c in consts))
        native = self.calls[acts[0]].path if len(acts) == 1 and self._single_call(acts[0], w, above) else None
        sl = Slice(kind, self._slice_name(dep_eqns, acts), tuple(sorted(kinks)),
                   tuple(self.leaf_of[u] for u in leaves), tuple(w.aval.shape), tuple(v.aval.shape),
                   w.aval.dtype, fun, signature, self._packed, native)
        if check and kind == "nonlinear" and native is None:
            self._check_uniform(sl, consumer, v, eqns, w)
        return sl

    def _single_call(self, k, w, above) -> bool:
        """Is the slice ``w -> v`` one call of activation ``k``, up to casts and reshapes around it?"""
        marked_in, t_out = self.marked_in[k], self.out_var[k]
        inside, stack = set(), [self.eqns[self.producer[t_out]].invars[0]]
        while stack:  # the activation's own operations, between its two markers
            u = stack.pop()
            if not _is_var(u) or u in inside or u is marked_in or u not in above:
                continue
            inside.add(u)
            stack.extend(self._dep_operands(u))
        outer = above - inside - {marked_in, t_out}
        if any(self.eqns[self.producer[u]].primitive.name not in _IDENTITY for u in outer):
            return False
        return self.in_var[k] in self._aliases(w, above) or self.in_var[k] is w

    def _kind(self, dep_eqns, above) -> str:
        names = {e.primitive.name for e in dep_eqns}
        if names <= _IDENTITY and not any(e.primitive is _TAP for e in dep_eqns):
            return "identity"
        if names <= _AFFINE and not any(e.primitive is _TAP for e in dep_eqns):
            for e in dep_eqns:
                n_dep = sum(1 for u in e.invars if _is_var(u) and (u in self.dep))
                if e.primitive.name == "mul" and n_dep > 1:
                    return "nonlinear"
                if e.primitive.name == "div" and _is_var(e.invars[1]) and e.invars[1] in self.dep:
                    return "nonlinear"
            return "affine"
        return "nonlinear"

    def _aliases(self, w, above) -> set:
        """``w`` and the values equal to ``w`` up to casts and reshapes, or on part of the line.

        ``max(w, c)``, ``min(w, c)`` and ``clamp`` agree with ``w`` on an interval,
        so a comparison of their output with a constant (``min(max(w, 0), 6)``)
        is a kink of the function of ``w`` there. A spurious kink only adds a
        quadrature panel edge, which costs nothing in accuracy.
        """
        alias = {w}
        for i in sorted(self.producer[u] for u in above):
            e = self.eqns[i]
            ins = [u for u in e.invars if _is_var(u) and u in alias]
            if not ins:
                continue
            identity = e.primitive.name in _IDENTITY and e.invars[0] in alias
            if identity or (e.primitive.name in ("max", "min", "clamp") and len(ins) == 1):
                alias.update(e.outvars)
        return alias

    def _kinks(self, eqns, alias) -> list:
        """Constants that an alias of ``w`` is compared with, or clipped at (``max(w, 0)``)."""
        out = []
        for e in eqns:
            name = e.primitive.name
            if name in _CALLS:
                for inner in _inner_jaxprs(e):
                    inner_alias = {iv for iv, ov in zip(inner.invars, e.invars[-len(inner.invars):])
                                   if _is_var(ov) and ov in alias}
                    out += self._kinks(inner.eqns, inner_alias)
                continue
            if name not in _KINK_PRIMS:
                continue
            ins = list(e.invars)
            if not any(_is_var(u) and u in alias for u in ins):
                continue
            for u in ins:
                if _is_var(u) and u in alias:
                    continue
                val = u.val if isinstance(u, jcore.Literal) else self.const_of.get(u)
                if val is not None and np.size(val) == 1 and np.isfinite(np.asarray(val, np.float64)).all():
                    out.append(float(np.asarray(val, np.float64).reshape(())))
        return out

    def _slice_name(self, dep_eqns, acts) -> str:
        if acts:
            return "+".join(dict.fromkeys(self.calls[k].static["name"] for k in acts))
        names, compound = [], False
        for e in dep_eqns:
            n_dep = sum(1 for u in e.invars if _is_var(u) and u in self.dep)
            compound |= e.primitive.name in ("integer_pow", "square", "pow") or (e.primitive.name == "mul" and n_dep > 1)
            if e.primitive.name in _CALLS:
                names.append(_call_name(e))
            elif e.primitive.name not in _TRANSCENDENTAL_SKIP:
                names.append(e.primitive.name)
        names = list(dict.fromkeys(names))  # execution order, first use
        if not names:
            kinds = {e.primitive.name for e in dep_eqns}
            return "affine" if kinds - _IDENTITY else "identity"
        text = ", ".join(names)
        return f"expr({text})" if compound or len(names) > 1 else text

    def _check_uniform(self, sl, consumer, v, eqns, w):
        """The function must be the same at every position: no per-unit coefficients.

        Every constant operand of the slice's layer-dependent equations must be
        uniform: a scalar, a broadcast of one, an elementwise function of
        uniform values, or an array whose entries are all equal.
        """
        memo: dict = {}

        def uniform(u) -> bool:
            if not _is_var(u) or not u.aval.shape:
                return True
            if u in memo:
                return memo[u]
            memo[u] = True  # guards cycles (there are none in a jaxpr)
            if u in self.leaf_of or u in self.const_of:
                val = self._state_values[self.leaf_of[u]] if u in self.leaf_of else self.const_of[u]
                a = None if val is None else np.asarray(val)
                ok = a is not None and (a.size == 0 or bool(np.all(a == a.reshape(-1)[0])))
            elif u in self.producer:
                e = self.eqns[self.producer[u]]
                name = e.primitive.name
                if name == "broadcast_in_dim" or name in _ELEMENTWISE or (name in _CALLS and _elementwise_call(e)):
                    ok = all(uniform(t) for t in e.invars)
                elif name == "iota":
                    ok = False
                else:
                    ok = False
            else:
                ok = False
            memo[u] = ok
            return ok

        for e in eqns:
            if not any(_is_var(u) and u in self.dep for u in e.invars):
                continue
            for u in e.invars:
                if _is_var(u) and u not in self.dep and not uniform(u):
                    raise UnsupportedModelError(
                        f"the input of {self._layer(consumer)} applies an elementwise function with different "
                        f"coefficients at different units ({self._name(v)}), e.g. a per-channel slope; "
                        "mean-field theory needs the same activation for every unit"
                    )


def layer_outputs(model, x, call: Optional[Callable] = None) -> dict:
    """The output of every dense / conv layer of ``model(x)``, by path (eagerly, on a copy of the model).

    Dropout is the identity, as in :func:`trace`; the copy absorbs state updates
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


def trace(model, x, call: Optional[Callable] = None) -> ModelGraph:
    """Trace ``model(x)`` (or ``call(model, x)``) with the layers instrumented.

    The model is split into its graph definition and state, merged back inside
    :func:`jax.make_jaxpr` (so state updates during the call, e.g. BatchNorm
    statistics, stay inside the trace), and called with :func:`jax.disable_jit`
    so that jitted helpers are traced inline. Nothing of the model changes.

    The structure does not depend on the batch size; callers trace one example
    (``x[:1]``), so that the elementwise functions read off the jaxpr work on
    arrays of one example's size.

    Args:
      model: a Flax NNX module.
      x: a sample input (one array; the leading axis is the batch).
      call: ``call(model, x)`` to run instead of ``model(x)``, e.g.
        ``lambda m, x: m(x, train=False)``.

    Returns:
      A :class:`ModelGraph`.

    Raises:
      UnsupportedModelError: a module or operation that the analysis cannot
        follow (named in the message), or no dense / convolutional layer.
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
    return ModelGraph(closed, rec.calls, leaf_paths, leaves)

"""The mean-field graph of a Flax NNX model: what feeds each ``Linear`` and ``Conv`` layer.

:func:`trace` records ``model(x)`` once with the layers that matter marked
(:func:`jaxsig.integrations.flax_trace.record`). Everything else in
``__call__`` (``jax.nn.tanh``, ``x * jax.nn.sigmoid(x)``, residual sums,
reshapes) is read from the jaxpr itself: :class:`ModelGraph` writes the input
of every dense or convolutional layer as an expression of
:mod:`jaxsig.integrations.flax_expr` (layer outputs, elementwise functions of
them, sums, norms, layouts, fixed values), the algebra mean-field theory can
evaluate. An elementwise function is the longest piece of the jaxpr between
two values that every path from a layer output passes through (a dominator),
so an activation written inline is one function, not a list of operations.

An operation the algebra has no rule for (pooling, attention, a product of
two signals, layers inside ``scan``) raises :class:`UnsupportedModelError`
naming the operation and the layers around it.

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

import re
from typing import Callable, Optional

import jax
import numpy as np
from jax.extend import core as jcore

from jaxsig.integrations.flax_expr import Add, Base, Elementwise, Expr, Fixed, Layout, Norm, Slice
from jaxsig.integrations.flax_primitives import (
    AFFINE,
    CALLS,
    ELEMENTWISE,
    IDENTITY,
    KINK,
    LAYOUT,
    NAME_SKIP,
    SHAPE_ONLY,
    call_name,
    elementwise_call,
    inner_jaxprs,
    is_var,
    sub_jaxpr,
    taps_inside,
)
from jaxsig.integrations.flax_trace import (
    ACTIVATION,
    CONV,
    DENSE,
    NORM,
    SUPPORTED,
    TAP,
    UnsupportedModelError,
    record,
    show,
)

__all__ = ["ModelGraph", "trace"]


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
            inner = set().union(*(taps_inside(j) for j in inner_jaxprs(e))) if inner_jaxprs(e) else set()
            if inner:
                names = ", ".join(show(self.calls[k].path) for k in sorted(inner) if k < len(self.calls))
                raise UnsupportedModelError(
                    f"layer(s) {names} are called inside `{e.primitive.name}` (jax.lax.scan, nnx.scan, "
                    "jax.checkpoint / nnx.remat or control flow); mean-field initialisation follows layers "
                    "called directly in __call__. Unroll the loop (or drop remat) for autoinit and diagnose."
                )
            if e.primitive is TAP:
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
            if e.primitive is TAP and e.outvars[0] in self.base_of:
                self.dep.add(e.outvars[0])
            elif any(is_var(v) and v in self.dep for v in e.invars):
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
        jaxpr = sub_jaxpr(list(self.const_of), list(self.state_vars) + list(self.x_vars), list(outvars), eqns)
        fun = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(jaxpr, list(self.const_of.values())))
        return fun(*values, *jax.tree_util.tree_leaves(x))

    # -- Building expressions -------------------------------------------------------------------------------

    def _cone(self, outvars) -> set:
        """Indices of the equations ``outvars`` depend on."""
        needed, stack = set(), [v for v in outvars if is_var(v)]
        while stack:
            v = stack.pop()
            i = self.producer.get(v)
            if i is None or i in needed:
                continue
            needed.add(i)
            stack.extend(u for u in self.eqns[i].invars if is_var(u))
        return needed

    def _name(self, v) -> str:
        """A short description of where value ``v`` comes from, for error messages."""
        layers = sorted({self.base_of[u] for u in self._ancestors(v) if u in self.base_of})
        params = sorted(
            {
                self.leaf_paths[self.leaf_of[u]]
                for u in self._ancestors(v, dep_only=False)
                if u in self.leaf_of and not self.leaf_paths[self.leaf_of[u]].endswith(("kernel", "bias"))
            }
        )
        text = f"after layer {show(self.calls[layers[-1]].path)}" if layers else "on the data"
        if params:
            text += f" (it reads the parameter(s) {', '.join(params[:3])})"
        return text

    def _ancestors(self, v, dep_only=True) -> set:
        seen, stack = set(), [v]
        while stack:
            u = stack.pop()
            if not is_var(u) or u in seen:
                continue
            seen.add(u)
            i = self.producer.get(u)
            if i is not None and (u not in self.base_of or not dep_only):
                stack.extend(self.eqns[i].invars)
        return seen

    def _expr(self, v, consumer) -> Expr:
        if not is_var(v):
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
        if e.primitive is TAP:
            return e.params["role"] in ("in", "out") and self.calls[e.params["index"]].kind == ACTIVATION
        if name in CALLS:
            return elementwise_call(e)
        if name in SHAPE_ONLY:
            # Order-preserving reshapes of a layer's output are entrywise; broadcasting one is not.
            return name != "broadcast_in_dim" or not any(is_var(u) and u in self.dep for u in e.invars)
        return name in ELEMENTWISE

    def _atom(self, v) -> bool:
        if v in self.base_of or v in self.norm_of:
            return True
        return not self._elementwise(self.eqns[self.producer[v]])

    def _dep_operands(self, v):
        e = self.eqns[self.producer[v]]
        return [u for u in e.invars if is_var(u) and u in self.dep]

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
            return Add(
                self._expr(a, consumer), self._expr(b, consumer), 1.0 if name == "add" else -1.0, tuple(v.aval.shape)
            )
        raise UnsupportedModelError(
            f"the input of {self._layer(consumer)} combines two different signals with `{name}` "
            f"({self._name(v)}); mean-field theory here handles sums of independent signals (residual "
            "connections) and functions of one signal, not products or gates"
        )

    def _non_elementwise(self, v, e, consumer) -> Expr:
        ops = self._dep_operands(v)
        if e.primitive.name in LAYOUT and len(ops) == 1 and e.invars[0] is ops[0]:
            return Layout(
                self._slice(ops[0], v, consumer, check=False), self._expr(ops[0], consumer), tuple(v.aval.shape)
            )
        raise UnsupportedModelError(
            f"the input of {self._layer(consumer)} goes through `{e.primitive.name}` {self._name(v)}, "
            "which mean-field initialisation cannot follow: it tracks layers "
            f"({', '.join(SUPPORTED)}). Pooling, attention and other mixing operations change the "
            "variance in ways that depend on correlations between units; exclude the layers after it "
            "(exclude=...) or restructure the model."
        )

    def _layer(self, call) -> str:
        c = self.calls[call]
        return f"{c.cls} {show(c.path)}"

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
            stack.extend(u for u in self.eqns[i].invars if is_var(u) and u not in self.dep)
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
                stack.extend(t for t in self.eqns[i].invars if is_var(t))
        eqns = [self.eqns[i] for i in sorted(eq_idx)]
        leaves = sorted(set(leaves), key=lambda u: self.leaf_of[u])
        consts = sorted(set(consts), key=lambda u: list(self.const_of).index(u))
        jaxpr = sub_jaxpr(consts, [w] + leaves, [v], eqns)
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
        sl = Slice(
            kind,
            self._slice_name(dep_eqns, acts),
            tuple(sorted(kinks)),
            tuple(self.leaf_of[u] for u in leaves),
            tuple(w.aval.shape),
            tuple(v.aval.shape),
            w.aval.dtype,
            fun,
            signature,
            self._packed,
            native,
        )
        if check and kind == "nonlinear" and native is None:
            self._check_uniform(sl, consumer, v, eqns, w)
        return sl

    def _single_call(self, k, w, above) -> bool:
        """Is the slice ``w -> v`` one call of activation ``k``, up to casts and reshapes around it?"""
        marked_in, t_out = self.marked_in[k], self.out_var[k]
        inside, stack = set(), [self.eqns[self.producer[t_out]].invars[0]]
        while stack:  # the activation's own operations, between its two markers
            u = stack.pop()
            if not is_var(u) or u in inside or u is marked_in or u not in above:
                continue
            inside.add(u)
            stack.extend(self._dep_operands(u))
        outer = above - inside - {marked_in, t_out}
        if any(self.eqns[self.producer[u]].primitive.name not in IDENTITY for u in outer):
            return False
        return self.in_var[k] in self._aliases(w, above) or self.in_var[k] is w

    def _kind(self, dep_eqns, above) -> str:
        names = {e.primitive.name for e in dep_eqns}
        if names <= IDENTITY and not any(e.primitive is TAP for e in dep_eqns):
            return "identity"
        if names <= AFFINE and not any(e.primitive is TAP for e in dep_eqns):
            for e in dep_eqns:
                n_dep = sum(1 for u in e.invars if is_var(u) and (u in self.dep))
                if e.primitive.name == "mul" and n_dep > 1:
                    return "nonlinear"
                if e.primitive.name == "div" and is_var(e.invars[1]) and e.invars[1] in self.dep:
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
            ins = [u for u in e.invars if is_var(u) and u in alias]
            if not ins:
                continue
            identity = e.primitive.name in IDENTITY and e.invars[0] in alias
            if identity or (e.primitive.name in ("max", "min", "clamp") and len(ins) == 1):
                alias.update(e.outvars)
        return alias

    def _kinks(self, eqns, alias) -> list:
        """Constants that an alias of ``w`` is compared with, or clipped at (``max(w, 0)``)."""
        out = []
        for e in eqns:
            name = e.primitive.name
            if name in CALLS:
                for inner in inner_jaxprs(e):
                    inner_alias = {
                        iv for iv, ov in zip(inner.invars, e.invars[-len(inner.invars) :]) if is_var(ov) and ov in alias
                    }
                    out += self._kinks(inner.eqns, inner_alias)
                continue
            if name not in KINK:
                continue
            ins = list(e.invars)
            if not any(is_var(u) and u in alias for u in ins):
                continue
            for u in ins:
                if is_var(u) and u in alias:
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
            n_dep = sum(1 for u in e.invars if is_var(u) and u in self.dep)
            compound |= e.primitive.name in ("integer_pow", "square", "pow") or (
                e.primitive.name == "mul" and n_dep > 1
            )
            if e.primitive.name in CALLS:
                names.append(call_name(e))
            elif e.primitive.name not in NAME_SKIP:
                names.append(e.primitive.name)
        names = list(dict.fromkeys(names))  # execution order, first use
        if not names:
            kinds = {e.primitive.name for e in dep_eqns}
            return "affine" if kinds - IDENTITY else "identity"
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
            if not is_var(u) or not u.aval.shape:
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
                if name == "broadcast_in_dim" or name in ELEMENTWISE or (name in CALLS and elementwise_call(e)):
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
            if not any(is_var(u) and u in self.dep for u in e.invars):
                continue
            for u in e.invars:
                if is_var(u) and u not in self.dep and not uniform(u):
                    raise UnsupportedModelError(
                        f"the input of {self._layer(consumer)} applies an elementwise function with different "
                        f"coefficients at different units ({self._name(v)}), e.g. a per-channel slope; "
                        "mean-field theory needs the same activation for every unit"
                    )


def trace(model, x, call: Optional[Callable] = None) -> ModelGraph:
    """Trace ``model(x)`` (or ``call(model, x)``) with the layers instrumented.

    (:func:`jaxsig.integrations.flax_trace.record`; nothing of the model changes.)

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
    rec = record(model, x, call)
    return ModelGraph(rec.closed, rec.calls, rec.leaf_paths, rec.leaves)

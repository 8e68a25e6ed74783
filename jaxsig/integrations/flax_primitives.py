"""What the primitives of a traced model mean to the mean-field graph, and small jaxpr helpers.

:class:`~jaxsig.integrations.flax_graph.ModelGraph` reads a model's jaxpr by
primitive name: which operations act entry by entry (and so may be part of an
activation), which only cast or move entries, which are affine, which put a
kink in a function (comparisons, ``max``/``min`` against constants), and which
wrap a body (``custom_jvp_call`` for ``jax.nn.relu``) that must itself be
elementwise.
"""

from __future__ import annotations

from jax.extend import core as jcore

from jaxsig.integrations.flax_trace import TAP

__all__ = [
    "ELEMENTWISE",
    "CALLS",
    "IDENTITY",
    "AFFINE",
    "LAYOUT",
    "KINK",
    "SHAPE_ONLY",
    "NAME_SKIP",
    "sub_jaxpr",
    "is_var",
    "inner_jaxprs",
    "taps_inside",
    "call_name",
    "elementwise_call",
]

ELEMENTWISE = frozenset(
    """
    abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type copy copy_p
    cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt integer_pow is_finite le lgamma
    log log1p logistic lt max min mul ne neg nextafter not or pow reduce_precision rem round rsqrt
    select_n sign sin sinh sqrt square sub tan tanh xor reshape squeeze expand_dims broadcast_in_dim
""".split()
)
CALLS = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "closed_call", "core_call"})
IDENTITY = frozenset(
    {"convert_element_type", "copy", "copy_p", "reshape", "squeeze", "expand_dims", "reduce_precision", TAP.name}
)
AFFINE = IDENTITY | {"add", "sub", "mul", "div", "neg"}
LAYOUT = frozenset({"transpose", "reshape", "squeeze", "expand_dims", "rev", "copy", "copy_p", "convert_element_type"})
KINK = frozenset({"max", "min", "gt", "ge", "lt", "le", "clamp"})
SHAPE_ONLY = frozenset({"reshape", "squeeze", "expand_dims", "broadcast_in_dim"})
# Not named after: arithmetic, casts, comparisons and the marker (the name of an inline
# activation is that of its special functions, "tanh", "erf", "logistic").
NAME_SKIP = frozenset(
    """
    mul add sub div neg convert_element_type copy copy_p reshape squeeze expand_dims broadcast_in_dim
    select_n gt ge lt le eq ne integer_pow square and or not
""".split()
) | {TAP.name}


def sub_jaxpr(constvars, invars, outvars, eqns):
    """A sub-jaxpr of the traced model, with the debug information JAX asks for."""
    info = jcore.DebugInfo(
        "jaxsig.flax",
        "a slice of the traced model",
        tuple(f"in{i}" for i in range(len(invars))),
        tuple(f"out{i}" for i in range(len(outvars))),
    )
    return jcore.Jaxpr(constvars, invars, outvars, eqns, debug_info=info)


def is_var(v) -> bool:
    """A jaxpr variable (not a literal)."""
    return isinstance(v, jcore.Var) and not isinstance(v, jcore.Literal)


def inner_jaxprs(eqn):
    """The jaxprs inside an equation's parameters (call bodies, branches)."""
    return list(jcore.jaxprs_in_params(eqn.params))


def taps_inside(jaxpr) -> set:
    """Indices of the instrumented calls whose markers sit inside ``jaxpr`` (recursively)."""
    found = set()
    for e in jaxpr.eqns:
        if e.primitive is TAP:
            found.add(e.params["index"])
        for inner in inner_jaxprs(e):
            found |= taps_inside(inner)
    return found


def call_name(eqn) -> str:
    """The Python function behind a custom_jvp / custom_vjp call (``relu``, ``logaddexp``)."""
    for inner in inner_jaxprs(eqn):
        info = getattr(inner, "debug_info", None)
        src = getattr(info, "func_src_info", None) or ""
        if src:
            return src.split(" ")[0]
    return eqn.primitive.name


def elementwise_call(eqn) -> bool:
    """A custom_jvp / custom_vjp / closed call whose body is elementwise (``jax.nn.relu``, ``softplus``)."""
    inner = inner_jaxprs(eqn)
    return bool(inner) and all(
        (e.primitive.name in ELEMENTWISE or (e.primitive.name in CALLS and elementwise_call(e)))
        for j in inner
        for e in j.eqns
    )

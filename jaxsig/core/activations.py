"""Elementwise activation functions and a registry by name.

Every activation here is a pure JAX function that follows the dtype of its
input, with a gradient that stays finite everywhere it is evaluated (overflow-safe
exponentials, clipped branches). An :class:`Activation` bundles the function
with its default parameters and the points where ``phi'`` may jump (its
*kinks*), which the quadrature places on panel edges.

Plain callables work too: anywhere jaxsig takes an activation it accepts
``phi(x)``, ``phi(x, params)`` with ``params`` any pytree of arrays, or an
:class:`Activation`.

Examples:
  >>> import jaxsig
  >>> act = jaxsig.activations.get("leaky_relu")
  >>> act.params, act.kinks
  ({'negative_slope': 0.01}, (0.0,))
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import erf as _erf
from jax.scipy.special import erfc as _erfc

from jaxsig.core._validate import check_params

__all__ = [
    "Activation",
    "as_activation",
    "prepare",
    "Prepared",
    "get",
    "names",
    "resolve",
    "family",
    "family_names",
    "register_family",
    "register",
    "PAPER",
    "SELU_ALPHA",
    "SELU_SCALE",
    "relu",
    "leaky_relu",
    "tanh",
    "sigmoid",
    "swish",
    "swish_beta",
    "gelu",
    "gelu_tanh",
    "mish",
    "telu",
    "elu",
    "selu",
    "softplus",
    "softplus_beta",
    "erf",
    "hard_tanh",
    "relu6",
    "sin",
    "identity",
    "signed_sqrt",
    "monomial",
]

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclasses.dataclass(frozen=True, eq=False)
class Activation:
    """An elementwise activation with its metadata.

    Attributes:
      name: registry name.
      fn: ``fn(x)`` when ``params`` is ``None``, else ``fn(x, params)``.
      params: default parameters (a pytree of floats or arrays), or ``None``.
      kinks: points where ``phi'`` may jump; used as quadrature panel edges so
        that Gaussian expectations stay exact. ``0`` is always an edge. Either
        numbers, or a function ``kinks(params)`` returning an array of
        breakpoints that move with the parameters (a piecewise-linear family
        with learnable breakpoints): the Gaussian statistics are then cut at
        them and differentiable in them.
      formula: the definition, for tables and docs.
    """

    name: str
    fn: Callable[..., jax.Array]
    params: Any = None
    kinks: tuple[float, ...] | Callable[[Any], jax.Array] = ()
    formula: str = ""

    def __call__(self, x, params=None):
        """Evaluate ``phi(x)`` (with ``params``, or the defaults)."""
        if params is None:
            params = self.params
        return self.fn(x) if params is None else self.fn(x, params)

    @property
    def has_params(self) -> bool:
        """Whether ``fn`` takes a second argument (``params is not None``)."""
        return self.params is not None

    def bind(self, params) -> Callable[[jax.Array], jax.Array]:
        """``x -> phi(x, params)``."""
        return lambda x: self(x, params)

    def replace(self, **changes) -> "Activation":
        """A copy with some fields replaced (``act.replace(params=p)``)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self):
        extra = f", params={self.params}" if self.params is not None else ""
        return f"Activation({self.name!r}{extra})"


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """An activation ready for computation: what every internal caller passes around.

    A pytree whose only leaves are the parameters (cast to the working dtype), so
    it is an ordinary argument of ``jit``, ``vmap``, ``grad`` and custom
    derivative rules; the function, name and kinks are static metadata (compared
    by identity and equality), so ``jit`` compiles once per function and kink set
    and never on new parameter values. Built by :func:`prepare`; users pass
    names, :class:`Activation` objects or callables instead.

    Attributes:
      fn: ``fn(x)`` when ``params`` is ``None``, else ``fn(x, params)``.
      params: the parameters (a pytree of arrays), or ``None``.
      name: for messages.
      kinks: points where ``phi'`` may jump (sorted, unique).
      kink_fn: ``kink_fn(params)``, breakpoints that move with the parameters, or ``None``.
    """

    fn: Callable[..., jax.Array]
    params: Any
    name: str
    kinks: tuple[float, ...]
    kink_fn: Callable[[Any], jax.Array] | None = None

    def __call__(self, x):
        """``phi(x; params)``."""
        return self.fn(x) if self.params is None else self.fn(x, self.params)

    def breakpoints(self):
        """The breakpoints that depend on the parameters (``kink_fn(params)``,
        flattened), or ``None``."""
        if self.kink_fn is None:
            return None
        return jnp.ravel(jnp.asarray(self.kink_fn(self.params)))

    def replace(self, **changes) -> "Prepared":
        """A copy with some fields replaced (``act.replace(params=p)``)."""
        return dataclasses.replace(self, **changes)


jax.tree_util.register_pytree_node(
    Prepared,
    lambda a: ((a.params,), (a.fn, a.name, a.kinks, a.kink_fn)),
    lambda meta, children: Prepared(meta[0], children[0], meta[1], meta[2], meta[3]),
)


# --- The eight activations of the paper ------------------------------------


def relu(x):
    """ReLU: ``max(x, 0)``."""
    return jnp.maximum(x, 0)


def leaky_relu(x, params):
    """Leaky ReLU: ``x`` for ``x > 0``, ``a x`` otherwise (``a = params["negative_slope"]``)."""
    return jnp.where(x > 0, x, params["negative_slope"] * x)


def tanh(x):
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + e^{-x})``."""
    return jax.nn.sigmoid(x)


def swish(x):
    """Swish / SiLU: ``x sigmoid(x)``."""
    return x * jax.nn.sigmoid(x)


def swish_beta(x, params):
    """Swish-beta: ``x sigmoid(beta x)``; ``beta -> inf`` gives ReLU."""
    return x * jax.nn.sigmoid(params["beta"] * x)


def gelu(x):
    """GELU, exact: ``x Phi(x) = x erfc(-x / sqrt 2) / 2``.

    Written with ``erfc`` so that the left tail keeps full relative precision.
    """
    return 0.5 * x * _erfc(-x * _SQRT_HALF)


def gelu_tanh(x):
    """GELU, tanh approximation: ``x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``."""
    return 0.5 * x * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def mish(x):
    """Mish: ``x tanh(softplus(x))``."""
    return x * jnp.tanh(jax.nn.softplus(x))


def telu(x):
    """TeLU: ``x tanh(e^x)``.

    ``tanh(e^x) = 1`` to machine precision for ``x >= 4``; clipping the exponent
    at 10 keeps ``e^x`` and the gradient ``sech^2(e^x) e^x`` finite.
    """
    return x * jnp.tanh(jnp.exp(jnp.minimum(x, 10.0)))


# --- Further standard activations --------------------------------------------


def elu(x, params):
    """ELU: ``x`` for ``x > 0``, ``alpha (e^x - 1)`` otherwise."""
    # expm1 of the clipped argument: the unused branch must not overflow, or its
    # infinite gradient times zero would poison the derivative with NaN.
    neg = params["alpha"] * jnp.expm1(jnp.minimum(x, 0.0))
    return jnp.where(x > 0, x, neg)


def selu(x):
    """SELU: ``scale * elu(x; alpha)`` with the self-normalising constants."""
    return SELU_SCALE * jnp.where(x > 0, x, SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0.0)))


def softplus(x):
    """Softplus: ``log(1 + e^x)`` (overflow-safe)."""
    return jax.nn.softplus(x)


def softplus_beta(x, params):
    """Softplus with sharpness: ``log(1 + e^{beta x}) / beta``; ``beta -> inf`` gives ReLU."""
    beta = params["beta"]
    return jax.nn.softplus(beta * x) / beta


def erf(x):
    """Error function ``erf(x)``."""
    return _erf(x)


def hard_tanh(x):
    """Hard tanh: ``clip(x, -1, 1)``."""
    return jnp.clip(x, -1.0, 1.0)


def relu6(x):
    """ReLU6: ``clip(x, 0, 6)``."""
    return jnp.clip(x, 0.0, 6.0)


def sin(x):
    """Sine (periodic: ``tv`` and ``c`` diverge)."""
    return jnp.sin(x)


def identity(x):
    """Identity ``x``."""
    return x


def signed_sqrt(x):
    """``sign(x) sqrt|x|``: unbounded, slope 0, infinite intercept and ``tv``."""
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


def monomial(k: int) -> Activation:
    """The monomial ``x^k`` (superlinear for ``k >= 2``)."""
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k must be a positive integer, got {k=}")
    return Activation(f"x^{k}", lambda x: x**k, None, (), f"x^{k}")


PAPER = ("relu", "leaky_relu", "tanh", "sigmoid", "swish", "gelu", "mish", "telu")
"""The eight activations of arXiv:2510.08456, in the paper's order."""

_REGISTRY: dict[str, Activation] = {}
_ALIASES = {
    "silu": "swish",
    "leakyrelu": "leaky_relu",
    "hardtanh": "hard_tanh",
    "gelu_exact": "gelu",
    "linear": "identity",
    "square": "x^2",
    "cube": "x^3",
}


def register(act: Activation, *, overwrite: bool = False) -> Activation:
    """Add ``act`` to the registry under ``act.name``."""
    if not isinstance(act, Activation):
        raise TypeError(f"register takes an Activation, got {type(act).__name__}")
    if act.name in _REGISTRY and not overwrite:
        raise ValueError(f"an activation named {act.name!r} is already registered; pass overwrite=True")
    _REGISTRY[act.name] = act
    return act


for _a in [
    Activation("relu", relu, None, (0.0,), "max(x, 0)"),
    Activation("leaky_relu", leaky_relu, {"negative_slope": 0.01}, (0.0,), "x if x > 0 else a x"),
    Activation("tanh", tanh, None, (), "tanh(x)"),
    Activation("sigmoid", sigmoid, None, (), "1 / (1 + exp(-x))"),
    Activation("swish", swish, None, (), "x sigmoid(x)"),
    Activation("gelu", gelu, None, (), "x Phi(x)"),
    Activation("mish", mish, None, (), "x tanh(softplus(x))"),
    Activation("telu", telu, None, (), "x tanh(exp(x))"),
    Activation("gelu_tanh", gelu_tanh, None, (), "x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) / 2"),
    Activation("elu", elu, {"alpha": 1.0}, (0.0,), "x if x > 0 else alpha (exp(x) - 1)"),
    Activation("selu", selu, None, (0.0,), "scale (x if x > 0 else alpha (exp(x) - 1))"),
    Activation("softplus", softplus, None, (), "log(1 + exp(x))"),
    Activation("softplus_beta", softplus_beta, {"beta": 1.0}, (), "log(1 + exp(beta x)) / beta"),
    Activation("swish_beta", swish_beta, {"beta": 1.0}, (), "x sigmoid(beta x)"),
    Activation("erf", erf, None, (), "erf(x)"),
    Activation("hard_tanh", hard_tanh, None, (-1.0, 1.0), "clip(x, -1, 1)"),
    Activation("relu6", relu6, None, (0.0, 6.0), "clip(x, 0, 6)"),
    Activation("sin", sin, None, (), "sin(x)"),
    Activation("identity", identity, None, (), "x"),
    Activation("signed_sqrt", signed_sqrt, None, (0.0,), "sign(x) sqrt|x|"),
    monomial(2),
    monomial(3),
    monomial(4),
]:
    register(_a)

#: The functions of the built-in activations above: elementwise by construction,
#: which tests/test_signature.py::test_builtin_activations_are_elementwise checks
#: for each, so the library's elementwise probe (eager calls, about 35 ms each)
#: skips them.
BUILTIN_FUNCTIONS = frozenset(_a.fn for _a in _REGISTRY.values())


def names() -> list[str]:
    """Registered activation names."""
    return sorted(_REGISTRY)


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _did_you_mean(name: str, candidates) -> str:
    close = difflib.get_close_matches(_key(name), list(candidates), n=3)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""


def get(name: str) -> Activation:
    """Look up an activation by name (case-insensitive; ``"silu"`` etc. are aliases).

    Raises:
      KeyError: naming the closest matches and listing every valid name.
    """
    if not isinstance(name, str):
        raise TypeError(f"activation name must be a string, got {type(name).__name__}")
    key = _ALIASES.get(_key(name), _key(name))
    if key in _REGISTRY:
        return _REGISTRY[key]
    hint = _did_you_mean(name, [*_REGISTRY, *_ALIASES])
    raise KeyError(f"unknown activation {name!r}.{hint} Valid names: {', '.join(names())}.")


# --- Families (registered by jaxsig.designing.families) ----------------------

_FAMILIES: dict[str, Callable[..., Activation]] = {}
_FAMILY_ALIASES: dict[str, str] = {}


def register_family(name: str, factory: Callable[..., Activation], aliases=()) -> None:
    """Register ``factory(**config)``, which returns a parametrised activation
    (a :class:`jaxsig.families.Family`), under ``name`` and ``aliases``."""
    _FAMILIES[name] = factory
    _FAMILY_ALIASES.update({a: name for a in aliases})


def family_names() -> list[str]:
    """Registered family names, in registration order."""
    return list(_FAMILIES)


def family(name: str, **config) -> Activation:
    """The family called ``name`` (aliases allowed), built with ``config``."""
    if not isinstance(name, str):
        raise TypeError(f"family must be a name or a jaxsig.families.Family, got {type(name).__name__}")
    key = _FAMILY_ALIASES.get(_key(name), _key(name))
    if key not in _FAMILIES:
        hint = _did_you_mean(name, [*_FAMILIES, *_FAMILY_ALIASES])
        raise KeyError(f"unknown family {name!r}.{hint} Valid families: {', '.join(family_names())}.")
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    try:
        return _FAMILIES[key](**config)
    except TypeError as e:
        raise TypeError(f"family {key!r} does not take options {sorted(config)}: {e}") from None


def resolve(name: str, *, prefer: str = "activation") -> Activation:
    """The one name resolver of jaxsig: a registered activation or a registered
    family (at its default parameters), by name or alias.

    Both registries are consulted, the ``prefer``-red one first, so a name in
    only one of them resolves the same way everywhere. Three names are in both,
    the family being the activation's generalisation: ``"swish_beta"`` (the
    activation ``x sigmoid(beta x)``; the family adds ``scale`` and ``shift``),
    ``"elu"`` and ``"selu"`` (family aliases of ``"scaled_elu"``). Entry points
    that measure or use an activation (``signature``, the mean-field theory,
    kernels, Flax modules, the CLI's ``-a``) prefer activations; :func:`jaxsig.design`,
    which needs parameters to search, prefers families.

    Args:
      name: the name (case-insensitive; ``-`` and ``_`` are the same).
      prefer: ``"activation"`` or ``"family"``.

    Raises:
      KeyError: the name is in neither registry, with the closest matches and both lists.
    """
    if not isinstance(name, str):
        raise TypeError(f"activation name must be a string, got {type(name).__name__}")
    if prefer not in ("activation", "family"):
        raise ValueError(f"prefer must be 'activation' or 'family', got {prefer!r}")
    key = _key(name)
    is_act = _ALIASES.get(key, key) in _REGISTRY
    is_fam = _FAMILY_ALIASES.get(key, key) in _FAMILIES
    if is_fam and (prefer == "family" or not is_act):
        return family(name)
    if is_act:
        return get(name)
    hint = _did_you_mean(name, [*_REGISTRY, *_ALIASES, *_FAMILIES, *_FAMILY_ALIASES])
    raise KeyError(
        f"unknown activation {name!r}: not a registered activation nor a family.{hint} "
        f"Valid names: {', '.join(names())}. Valid families: {', '.join(family_names())}."
    )


def prepare(phi, params=None, *, dtype) -> Prepared:
    """The :class:`Prepared` activation of ``phi`` (resolved by :func:`as_activation`),
    its parameters cast to ``dtype``.

    Raises:
      TypeError: ``params`` is not a pytree of numbers or arrays.
    """
    if isinstance(phi, Prepared) and params is None:
        act = phi
    else:
        act = as_activation(phi, params)
    cast = None
    if act.params is not None:
        try:
            cast = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), act.params)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"params of {act.name!r} must be a pytree of numbers or arrays, got {act.params!r} ({e})"
            ) from e
    if callable(act.kinks):
        return Prepared(act.fn, cast, act.name, (), act.kinks)
    return Prepared(act.fn, cast, act.name, tuple(sorted({float(k) for k in act.kinks})))


def as_activation(phi, params=None, kinks=()) -> Activation:
    """Normalise a name, :class:`Activation` or callable to an :class:`Activation`.

    Args:
      phi: a registered name, an :class:`Activation`, or a callable
        ``phi(x)`` / ``phi(x, params)``.
      params: parameters overriding the activation's defaults: the same pytree
        structure and leaf shapes as those defaults, where it has any.
      kinks: extra points where ``phi'`` may jump.

    Raises:
      TypeError: ``phi`` is neither a name, an Activation nor a callable; a leaf
        of ``params`` is not numeric, or its structure is not the defaults'.
      ValueError: a leaf of ``params`` has another shape than its default.
    """
    if isinstance(phi, str):
        act = resolve(phi)
    elif isinstance(phi, Activation):
        act = phi
    elif isinstance(phi, Prepared):
        act = Activation(phi.name, phi.fn, phi.params, phi.kink_fn or phi.kinks)
    elif callable(phi):
        name = getattr(phi, "__name__", None) or type(phi).__name__
        act = Activation(name, phi, None, ())
    else:
        raise TypeError(
            f"phi must be a callable phi(x) or phi(x, params), an Activation, or a "
            f"registered name, got {type(phi).__name__}"
        )
    if kinks and callable(act.kinks):
        raise TypeError(f"{act.name!r} has breakpoints given by a function of its parameters; put extra kinks there")
    if params is not None:
        check_params(act.name, params, act.params)
    if params is not None or kinks:
        act = dataclasses.replace(
            act,
            params=act.params if params is None else params,
            kinks=act.kinks if callable(act.kinks) else tuple(act.kinks) + tuple(float(k) for k in kinks),
        )
    return act

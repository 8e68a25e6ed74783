"""Parametrised activation families: the search spaces of :func:`jaxsig.design`.

A :class:`Family` is an :class:`~jaxsig.Activation` whose default ``params``
are its starting point, with a way to draw random starting points for
restarts and a JSON-able ``config`` from which :func:`get` rebuilds it. Every
family is differentiable in every parameter (almost everywhere: absolute
values have the one-sided derivatives ``+-1``), has linear tails, and declares its
kinks so that the quadrature stays exact.

=================  =======================================================  =========
name               phi(x; params)                                           kinks
=================  =======================================================  =========
``swish_beta``     ``scale * x * sigmoid(beta x) + shift``                  none
``scaled_elu``     ``lam * (x if x > 0 else alpha (e^x - 1)) + shift``      ``0``
``rational``       safe Padé ``P(x) / Q(x)``, ``Q >= 1``, linear tails      ``0``
``blend``          ``shift + sum_k w_k basis_k(x)``                         basis'
``pwl``            piecewise linear, fixed knots, free slopes               knots
``pwl_monotone``   piecewise linear, slopes ``softplus(raw) > 0``           knots
=================  =======================================================  =========

Why an output ``shift`` in every family: by the Gaussian Poincaré inequality
``Var phi(X) <= sigma^2 E[phi'(X)^2] = sigma^2 g2^2``, so a design that asks for
``m2 = 1`` and ``g2 <= 0.8`` at ``sigma = 1`` needs ``m1^2 = m2 - Var >= 0.36``:
no activation through the origin with a small mean (Swish, GELU, SELU) can
have both, whatever its shape parameters.

Examples:
  >>> import jaxsig
  >>> fam = jaxsig.families.get("scaled_elu")
  >>> fam.params["lam"] == jaxsig.activations.SELU_SCALE
  True
  >>> round(float(jaxsig.moments(fam, 1.0).m2), 6)   # SELU: m2(1) = 1
  1.0
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core.activations import SELU_ALPHA, SELU_SCALE, Activation
from jaxsig.designing.fitting import Fit, fit

__all__ = [
    "Family",
    "get",
    "names",
    "swish_beta",
    "scaled_elu",
    "rational",
    "blend",
    "piecewise_linear",
    "DEFAULT_BASIS",
    "DEFAULT_KNOTS",
    "Fit",
    "fit",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Family(Activation):
    """A parametrised activation: an :class:`~jaxsig.Activation` plus restarts.

    ``params`` (inherited) are the default initial parameters; the family is
    usable anywhere an Activation is (``jaxsig.signature(fam, params=p)``).

    Attributes:
      random_init: ``random_init(key, n)`` returns ``n`` random starting points,
        a params pytree whose leaves have a leading axis of size ``n``.
      config: the keyword arguments that rebuild this family with :func:`get`
        (JSON-able), as a tuple of ``(key, value)`` pairs.
      doc: the parametrisation in words.
    """

    random_init: Callable[[jax.Array, int], Any] = None
    config: tuple = ()
    doc: str = ""

    @property
    def init_params(self):
        """The default starting point (same as ``params``)."""
        return self.params

    def activation(self, params=None) -> Activation:
        """A plain :class:`~jaxsig.Activation` with ``params`` (default: ``init_params``).

        It shares ``fn`` with the family, so compiled signatures are reused.
        """
        params = self.params if params is None else params
        return Activation(self.name, self.fn, params, self.kinks, self.formula)

    def spec(self) -> dict:
        """``{"name": ..., "config": {...}}``: what :func:`get` needs to rebuild it."""
        return {"name": self.name, "config": {k: _jsonable(v) for k, v in self.config}}

    def __repr__(self):
        cfg = "".join(f", {k}={v!r}" for k, v in self.config)
        return f"Family({self.name!r}{cfg})"


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def _perturb(key, params, n, scale):
    """``n`` copies of ``params`` plus Gaussian noise of std ``scale`` (a pytree or float)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    scales = jax.tree_util.tree_leaves(scale) if not isinstance(scale, (int, float)) else [scale] * len(leaves)
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, leaf, s in zip(keys, leaves, scales):
        leaf = jnp.asarray(leaf)
        noise = jax.random.normal(k, (n,) + leaf.shape, dtype=leaf.dtype)
        out.append(leaf + jnp.asarray(s, leaf.dtype) * noise)
    return jax.tree_util.tree_unflatten(treedef, out)


def _float_params(tree):
    """Default parameters as float64 NumPy (cast to the working dtype at use)."""
    return jax.tree_util.tree_map(
        lambda v: np.asarray(v, np.float64), tree, is_leaf=lambda v: isinstance(v, (list, tuple))
    )


# --- Swish-beta --------------------------------------------------------------------------


def _swish_beta(x, params):
    return params["scale"] * x * jax.nn.sigmoid(params["beta"] * x) + params["shift"]


@functools.lru_cache(maxsize=None)
def swish_beta() -> Family:
    """Swish-beta with output gain and bias: ``scale * x * sigmoid(beta x) + shift``.

    Parameters ``beta`` (sharpness: ``0`` gives ``x/2``, ``inf`` ReLU), ``scale``,
    ``shift``; default ``(1, 1, 0)`` is Swish/SiLU. Smooth; slopes
    ``(scale, 0)`` for ``beta > 0``.
    """
    init = _float_params({"beta": 1.0, "scale": 1.0, "shift": 0.0})

    def random_init(key, n):
        return _perturb(key, init, n, {"beta": 0.5, "scale": 0.2, "shift": 0.3})

    return Family(
        "swish_beta",
        _swish_beta,
        init,
        (),
        "scale x sigmoid(beta x) + shift",
        random_init=random_init,
        doc=swish_beta.__doc__,
    )


# --- Scaled ELU ----------------------------------------------------------------------------


def _scaled_elu(x, params):
    # expm1 of the clipped argument: the unused branch must not overflow, or its
    # infinite gradient times zero would poison the derivative with NaN.
    neg = params["alpha"] * jnp.expm1(jnp.minimum(x, 0.0))
    return params["lam"] * jnp.where(x > 0, x, neg) + params["shift"]


@functools.lru_cache(maxsize=None)
def scaled_elu() -> Family:
    """Scaled ELU: ``lam * (x if x > 0 else alpha (e^x - 1)) + shift``.

    The family of SELU: the default ``lam = 1.0507...``, ``alpha = 1.6732...``,
    ``shift = 0`` is SELU (``m1(1) = 0``, ``m2(1) = 1``). ``phi'`` jumps by
    ``lam (1 - alpha)`` at ``0`` unless ``alpha = 1``; ``tv = |lam| (|1 - alpha| + |alpha|)``.
    """
    init = _float_params({"lam": SELU_SCALE, "alpha": SELU_ALPHA, "shift": 0.0})

    def random_init(key, n):
        return _perturb(key, init, n, {"lam": 0.2, "alpha": 0.4, "shift": 0.3})

    return Family(
        "scaled_elu",
        _scaled_elu,
        init,
        (0.0,),
        "lam (x if x > 0 else alpha (exp(x) - 1)) + shift",
        random_init=random_init,
        doc=scaled_elu.__doc__,
    )


# --- Safe rational (Padé) ---------------------------------------------------------------------

# Least-squares fit of GELU on [-4, 4] (weights sqrt(N(0,1) density + 0.02)), see
# ``rational``; max error 0.022 on [-3, 3]. Order: slope, offset, a0, a1, a2, b1, b2, b4.
_RATIONAL_GELU = (
    0.49999987500000,
    3.12723258000000,
    -0.00497674686000,
    0.49999889100000,
    0.45518666000000,
    0.0,
    -1.03841094000000,
    0.08898786220000,
)


def _rational(x, params):
    s, beta = params["slope"], params["offset"]
    a0, a1, a2 = params["numerator"][0], params["numerator"][1], params["numerator"][2]
    b1, b2, b4 = (jnp.abs(params["denominator"][i]) for i in range(3))
    # phi = s x + beta + R(x) / Q(x) with R = P - (s x + beta) Q. Numerator and
    # denominator are divided by m^4, m = max(1, |x|), so that no power of x
    # overflows (float32 reaches x = 2**48 on the ladders) and the remainder R/Q
    # keeps full relative accuracy in the tails.
    ax = jnp.abs(x)
    w = 1.0 / jnp.maximum(1.0, ax)
    v, av = x * w, ax * w
    w2 = w * w
    w3 = w2 * w
    w4 = w2 * w2
    q = w4 + b1 * av * w3 + b2 * v * v * w2 + b4 * v**4
    r = (a0 - beta) * w4 + (a1 - s) * v * w3 - beta * b1 * av * w3 + (a2 - beta * b2) * v * v * w2
    r = r - s * b1 * v * av * w2
    return s * x + beta + r / q


@functools.lru_cache(maxsize=None)
def rational() -> Family:
    """Safe Padé activation with exact linear asymptotes (a constrained PAU).

    ``phi(x) = P(x) / Q(x)`` with the safe denominator of Padé Activation Units
    (Molina et al., 2020), here ``Q(x) = 1 + |b1| |x| + |b2| x^2 + |b4| x^4 >= 1``,
    which never vanishes, and the degree-5 numerator

    ``P(x) = a0 + a1 x + a2 x^2 + s |b2| x^3 + beta |b4| x^4 + s |b4| x^5``.

    Equivalently ``phi(x) = s x + beta + R(x) / Q(x)`` with a remainder
    ``R / Q = O(x^-2)`` on both sides. The three top numerator coefficients are
    tied (and the cubic denominator term dropped) because an unconstrained
    PAU of degrees (5, 4) approaches its asymptote like ``1/x``, which makes
    ``c = int |phi - alpha x - beta|`` diverge logarithmically; tied, ``c`` is
    finite for every parameter value with ``b4 != 0``. Like every rational
    function with linear tails, both slopes are equal: ``alpha_+ = alpha_- = s``.

    Parameters: ``slope`` (``s``), ``offset`` (``beta``), ``numerator``
    (``a0, a1, a2``), ``denominator`` (``b1, b2, b4``). The default is a
    least-squares fit of GELU on ``[-4, 4]`` (max error 0.022 on ``[-3, 3]``).
    Kink at ``0`` (from ``|b1| |x|``).
    """
    s, beta, a0, a1, a2, b1, b2, b4 = _RATIONAL_GELU
    init = _float_params(
        {
            "slope": s,
            "offset": beta,
            "numerator": [a0, a1, a2],
            "denominator": [b1, b2, b4],
        }
    )

    def random_init(key, n):
        return _perturb(
            key,
            init,
            n,
            {
                "slope": 0.1,
                "offset": 0.3,
                "numerator": np.full(3, 0.1),
                "denominator": np.full(3, 0.1),
            },
        )

    return Family(
        "rational",
        _rational,
        init,
        (0.0,),
        "(a0 + a1 x + a2 x^2 + s|b2| x^3 + beta|b4| x^4 + s|b4| x^5) / (1 + |b1||x| + |b2| x^2 + |b4| x^4)",
        random_init=random_init,
        doc=rational.__doc__,
    )


# --- Blend of basis activations ----------------------------------------------------------------

DEFAULT_BASIS = ("relu", "gelu", "swish", "tanh", "sigmoid", "identity")
"""Basis of the default :func:`blend` family."""


@functools.lru_cache(maxsize=None)
def _blend(basis: tuple[str, ...]) -> Family:
    acts = [_activations.get(b) for b in basis]
    fns = list(acts)  # each Activation evaluates with its own default parameters

    def fn(x, params):
        w = params["weights"]
        out = params["shift"] + w[0] * fns[0](x)
        for k in range(1, len(fns)):
            out = out + w[k] * fns[k](x)
        return out

    start = "gelu" if "gelu" in basis else basis[0]
    init = _float_params({"weights": [1.0 if b == start else 0.0 for b in basis], "shift": 0.0})

    def random_init(key, n):
        return _perturb(key, init, n, {"weights": np.full(len(basis), 0.2), "shift": 0.3})

    kinks = tuple(sorted({k for a in acts for k in a.kinks}))
    formula = "shift + " + " + ".join(f"w{k} {b}(x)" for k, b in enumerate(basis))
    return Family(
        "blend",
        fn,
        init,
        kinks,
        formula,
        random_init=random_init,
        config=(("basis", basis),),
        doc=blend.__doc__,
    )


def blend(basis: Sequence[str] = DEFAULT_BASIS) -> Family:
    """Learnable blend of basis activations: ``phi(x) = shift + sum_k w_k basis_k(x)``.

    Free (signed) weights over registered activations (default: ReLU, GELU,
    Swish, tanh, sigmoid, identity); the default start is pure GELU
    (``w = e_gelu``, ``shift = 0``). Linear in its parameters, so ``m1``, ``g1``
    are linear and ``m2``, ``g2^2`` quadratic in ``w``. Kinks: those of the basis.

    Args:
      basis: registered activation names (their default parameters are used).
    """
    basis = tuple(str(b) for b in basis)
    if not basis:
        raise ValueError("basis must name at least one activation, e.g. basis=('relu', 'tanh')")
    for b in basis:
        _activations.get(b)  # raises KeyError listing the valid names
    if len(set(basis)) != len(basis):
        raise ValueError(f"basis has repeated entries: {basis}")
    return _blend(basis)


# --- Piecewise linear ---------------------------------------------------------------------------

DEFAULT_KNOTS = tuple(float(t) for t in np.linspace(-3.0, 3.0, 9))
"""Knots of the default piecewise-linear families: ``-3, -2.25, ..., 3``."""


def _gelu_np(x):
    from math import erf

    return np.array([0.5 * t * (1.0 + erf(t / math.sqrt(2.0))) for t in np.atleast_1d(x)])


@functools.lru_cache(maxsize=None)
def _pwl(knots: tuple[float, ...], monotone: bool) -> Family:
    t = np.asarray(knots)
    lower = np.concatenate([[-np.inf], t])
    upper = np.concatenate([t, [np.inf]])
    # Each segment's contribution at x = 0, so that params["value"] = phi(0).
    at_zero = np.clip(0.0, lower, upper)

    def fn(x, params):
        slopes = params["raw_slopes"] if monotone else params["slopes"]
        if monotone:
            slopes = jax.nn.softplus(slopes)
        x = jnp.asarray(x)
        lo = jnp.asarray(lower, x.dtype)
        hi = jnp.asarray(upper, x.dtype)
        seg = jnp.clip(x[..., None], lo, hi) - jnp.asarray(at_zero, x.dtype)
        return params["value"] + jnp.sum(slopes * seg, axis=-1)

    # Default: the interpolant of GELU at the knots, with GELU's tail slopes 0 and 1.
    secants = np.diff(_gelu_np(t)) / np.diff(t)
    slopes = np.concatenate([[0.0], secants, [1.0]])
    value = float(np.interp(0.0, t, _gelu_np(t)))
    if monotone:
        # GELU dips below 0 on (-inf, 0): floor its slopes at 0.01 (the nearest
        # increasing shape), then invert softplus.
        slopes = np.maximum(slopes, 1e-2)
        raw = slopes + np.log(-np.expm1(-slopes))
        init = _float_params({"raw_slopes": raw, "value": value})
        noise = {"raw_slopes": np.full(t.size + 1, 0.3), "value": 0.3}
        name, formula = "pwl_monotone", "value + int_0^x s(t) dt, s = softplus(raw) piecewise constant"
    else:
        init = _float_params({"slopes": slopes, "value": value})
        noise = {"slopes": np.full(t.size + 1, 0.1), "value": 0.3}
        name, formula = "pwl", "value + int_0^x s(t) dt, s piecewise constant"

    def random_init(key, n):
        return _perturb(key, init, n, noise)

    return Family(
        name,
        fn,
        init,
        tuple(knots),
        formula,
        random_init=random_init,
        config=(("knots", tuple(knots)),),
        doc=piecewise_linear.__doc__,
    )


def piecewise_linear(knots: Sequence[float] = DEFAULT_KNOTS, *, monotone: bool = False) -> Family:
    """Piecewise-linear activation with fixed knots ``t_1 < ... < t_K``.

    ``phi(x) = value + int_0^x s(u) du`` where ``s = s_j`` on the ``j``-th of the
    ``K + 1`` intervals ``(-inf, t_1], [t_1, t_2], ..., [t_K, inf)``; so
    ``phi(0) = value``, the slopes are ``(alpha_-, alpha_+) = (s_0, s_K)``,
    ``tv = sum_j |s_j - s_{j-1}|`` and ``c`` is finite (the tails are exactly
    linear). Parameters: ``slopes`` (``K + 1``) and ``value``; with
    ``monotone=True`` (name ``pwl_monotone``) the slopes are
    ``softplus(raw_slopes) > 0`` and ``phi`` is increasing.

    The default start interpolates GELU at the knots (tails: slopes 0 and 1);
    the monotone one floors those slopes at 0.01. The knots are the kinks.

    Args:
      knots: strictly increasing finite knots (default: 9 in ``[-3, 3]``).
      monotone: parametrise the slopes to be positive.
    """
    knots = tuple(float(k) for k in knots)
    if not knots or not all(map(math.isfinite, knots)) or any(b <= a for a, b in zip(knots, knots[1:])):
        raise ValueError(f"knots must be finite and strictly increasing, got {knots=}")
    return _pwl(knots, bool(monotone))


# --- Registry --------------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[..., Family]] = {
    "swish_beta": swish_beta,
    "scaled_elu": scaled_elu,
    "rational": rational,
    "blend": blend,
    "pwl": lambda knots=DEFAULT_KNOTS: piecewise_linear(knots, monotone=False),
    "pwl_monotone": lambda knots=DEFAULT_KNOTS: piecewise_linear(knots, monotone=True),
}
_ALIASES = {
    "swish_beta": ("swish",),
    "scaled_elu": ("selu", "elu"),
    "rational": ("pau", "pade"),
    "pwl": ("piecewise_linear",),
}
for _name, _factory in _FACTORIES.items():
    _activations.register_family(_name, _factory, _ALIASES.get(_name, ()))


def names() -> list[str]:
    """Names of the built-in families."""
    return _activations.family_names()


def get(name, **config) -> Family:
    """The family called ``name`` (a :class:`Family` passes through).

    An explicit family lookup: ``get("selu")`` is the scaled-ELU family. Where a
    name may be an activation or a family, jaxsig resolves it with
    :func:`jaxsig.activations.resolve` (activations first).

    Args:
      name: one of :func:`names` (aliases: ``pau``, ``pade``, ``selu``, ...).
      **config: options of the factory (``basis`` for ``blend``, ``knots`` for
        ``pwl``); lists are accepted where tuples are expected (JSON).

    Raises:
      KeyError: naming the closest matches and listing the families.
      TypeError: an option the family does not take.
    """
    if isinstance(name, Family):
        return name
    return _activations.family(name, **config)

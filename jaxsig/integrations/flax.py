"""Flax adapters: jaxsig activations as Flax modules, a signature regulariser,
and initialisers from the variance map.

Three pieces, for the two Flax APIs (NNX, the current one, and Linen, which most
research code still uses):

* :class:`NNXActivation` and :class:`LinenActivation` apply any jaxsig
  activation or family elementwise. Its parameters are either learnable (an
  ``nnx.Param`` / a Linen ``"params"`` entry, initialised from the activation's
  defaults) or fixed constants, for instance those of a design result
  (:meth:`NNXActivation.from_design`).
* :func:`signature_regularizer` is a differentiable penalty on violated
  signature targets (the target language of :func:`jaxsig.design`), to add to a
  training loss so that a learnable activation keeps its design properties.
* :func:`variance_preserving_init` and :func:`critical_init` return Flax
  ``(kernel_init, bias_init)`` pairs whose weight and bias variances make ``q``
  a fixed point of the variance map ``V(q) = sW^2 m2(sqrt q) + sb^2`` (and, for
  the critical one, put the network at the edge of chaos ``chi1 = 1``).

Flax is optional: ``import jaxsig`` never imports it, and this module raises an
``ImportError`` naming the extra to install (``pip install 'jaxsig[flax]'``).

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxsig import flax as jflax
  >>> act = jflax.NNXActivation("swish_beta", learnable=True)
  >>> [round(float(y), 4) for y in act(jnp.array([0.0, 1.0]))]   # x sigmoid(beta x), beta = 1
  [0.0, 0.7311]
  >>> kernel_init, bias_init = jflax.variance_preserving_init("relu", q=1.0)
  >>> layer = nnx.Linear(256, 256, kernel_init=kernel_init, bias_init=bias_init, rngs=nnx.Rngs(0))
  >>> round(float(jnp.var(layer.kernel[...]) * 256), 1)    # sW^2 = 1 / m2(1) = 2 for ReLU
  2.0
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

try:
    # Absolute imports: inside jaxsig/flax.py, "flax" is the Flax package.
    import flax.linen as nn
    from flax import nnx
    from flax.core import unfreeze as _flax_unfreeze
except ImportError as e:  # pragma: no cover - exercised only without Flax
    raise ImportError(
        "jaxsig.flax needs Flax, which is an optional dependency of jaxsig. Install it with: pip install 'jaxsig[flax]'"
    ) from e

from jaxsig.core import activations as _activations
from jaxsig.designing import targets as _targets
from jaxsig.integrations.flax_diagnose import Diagnosis, LayerDiagnosis, diagnose, plot_diagnosis
from jaxsig.integrations.flax_init import AutoInitReport, LayerInit, autoinit
from jaxsig.integrations.flax_trace import UnsupportedModelError
from jaxsig.theory import meanfield as _dynamics

__all__ = [
    "NNXActivation",
    "LinenActivation",
    "signature_regularizer",
    "InitVariances",
    "Initializers",
    "init_variances",
    "variance_preserving_init",
    "critical_init",
    "autoinit",
    "diagnose",
    "plot_diagnosis",
    "AutoInitReport",
    "LayerInit",
    "Diagnosis",
    "LayerDiagnosis",
    "UnsupportedModelError",
]


# --- Resolving activations -------------------------------------------------------


def _resolve(activation, params=None) -> _activations.Activation:
    """A name, Activation, Family or callable -> an Activation with its parameters
    (names by :func:`jaxsig.activations.resolve`: activations, then families)."""
    return _activations.as_activation(activation, params)


def _design_parts(result):
    """``(activation, params)`` of a design result or a path to its JSON file."""
    if isinstance(result, (str, os.PathLike)):
        from jaxsig.designing.result import DesignResult  # imported late: designing sits beside us

        result = DesignResult.load(result)
    try:
        return result.activation, result.params
    except AttributeError:
        raise TypeError(
            "from_design takes a jaxsig.designer.DesignResult or the path of a JSON file "
            f"written by DesignResult.save, got {type(result).__name__}"
        ) from None


def _values(tree):
    """The arrays inside a pytree of ``nnx.Variable``s (and plain arrays)."""

    def is_var(v):
        return isinstance(v, nnx.Variable)

    return jax.tree_util.tree_map(lambda v: v[...] if is_var(v) else v, tree, is_leaf=is_var)


# --- NNX -----------------------------------------------------------------------------


class NNXActivation(nnx.Module):
    """An elementwise jaxsig activation as a Flax NNX module: ``y = phi(x; params)``.

    Args:
      activation: a registered activation name (``"gelu"``), a family name
        (``"rational"``), a :class:`jaxsig.Activation` or
        :class:`jaxsig.families.Family`, or a callable ``phi(x)`` /
        ``phi(x, params)``.
      params: parameter values overriding the activation's defaults (a pytree
        with the structure of ``activation.params``).
      learnable: if ``True`` every parameter leaf is an ``nnx.Param`` (trained
        by ``nnx.Optimizer(model, tx, wrt=nnx.Param)``); if ``False`` they are
        constant arrays that ``nnx.grad`` and optimisers leave alone.
      param_dtype: dtype of the stored parameters.

    Attributes:
      activation: the resolved :class:`jaxsig.Activation` (its ``params`` are
        the initial values).
      params: the parameters: a pytree of ``nnx.Param`` (learnable), of arrays
        (fixed), or ``None`` for a parameter-free activation.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxsig import flax as jflax
      >>> act = jflax.NNXActivation("leaky_relu", learnable=True)
      >>> g = nnx.grad(lambda m: m(jnp.array([-2.0, 3.0])).sum())(act)
      >>> float(g["params"]["negative_slope"][...])    # d/da (-2 a) = -2
      -2.0
    """

    def __init__(self, activation="gelu", *, params=None, learnable: bool = False, param_dtype=jnp.float32):
        act = _resolve(activation, params)
        if learnable and act.params is None:
            raise ValueError(
                f"activation {act.name!r} has no parameters to learn; pass learnable=False "
                "or a parametrised activation (e.g. 'swish_beta', 'rational')"
            )
        self.activation = act
        self.learnable = bool(learnable)
        if act.params is None:
            self.params = None
        else:
            leaf = (
                (lambda p: nnx.Param(jnp.asarray(p, param_dtype)))
                if learnable
                else (lambda p: jnp.asarray(p, param_dtype))
            )
            self.params = nnx.data(jax.tree_util.tree_map(leaf, act.params))

    @classmethod
    def from_design(cls, result, *, learnable: bool = False, param_dtype=jnp.float32) -> "NNXActivation":
        """The activation of a design result (fixed parameters by default).

        Args:
          result: a :class:`jaxsig.designer.DesignResult` or the path of its JSON
            file (``DesignResult.save``).
          learnable: start from the designed parameters and train them.
          param_dtype: dtype of the stored parameters.
        """
        activation, params = _design_parts(result)
        return cls(activation, params=params, learnable=learnable, param_dtype=param_dtype)

    @property
    def values(self):
        """The current parameter values as a plain pytree of arrays (or ``None``)."""
        return None if self.params is None else _values(self.params)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``phi(x; params)`` elementwise."""
        return self.activation(x, self.values)


# --- Linen ---------------------------------------------------------------------------


class LinenActivation(nn.Module):
    """An elementwise jaxsig activation as a Flax Linen module: ``y = phi(x; params)``.

    With ``learnable=True`` the parameters live in the ``"params"`` collection,
    initialised from the activation's defaults (or ``params``): a dict of
    parameters becomes one entry per key (``variables["params"]["act"]["beta"]``),
    so the module's subtree *is* the activation's parameter dict; any other
    pytree is stored whole under the key ``"params"``. With ``learnable=False``
    they are constants and the module has no variables.

    Attributes:
      activation: a registered activation or family name, a
        :class:`jaxsig.Activation` / :class:`jaxsig.families.Family`, or a
        callable ``phi(x)`` / ``phi(x, params)``.
      params: parameter values overriding the activation's defaults.
      learnable: whether the parameters are trainable Flax params.
      param_dtype: dtype of the parameters (learnable or fixed).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxsig import flax as jflax
      >>> act = jflax.LinenActivation("swish_beta", learnable=True)
      >>> variables = act.init(jax.random.key(0), jnp.ones(3))
      >>> variables["params"]
      {'beta': Array(1., dtype=float32)}
    """

    activation: Any = "gelu"
    params: Any = None
    learnable: bool = False
    param_dtype: Any = jnp.float32

    @classmethod
    def from_design(cls, result, *, learnable: bool = False, **kwargs) -> "LinenActivation":
        """The activation of a design result (fixed parameters by default).

        Args:
          result: a :class:`jaxsig.designer.DesignResult` or the path of its JSON file.
          learnable: start from the designed parameters and train them.
          **kwargs: further module attributes (``name``, ``param_dtype``).
        """
        activation, params = _design_parts(result)
        return cls(activation=activation, params=params, learnable=learnable, **kwargs)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``phi(x; params)`` elementwise."""
        act = _resolve(self.activation, _unfreeze(self.params))
        if act.params is None:
            if self.learnable:
                raise ValueError(
                    f"activation {act.name!r} has no parameters to learn; pass learnable=False "
                    "or a parametrised activation (e.g. 'swish_beta', 'rational')"
                )
            return act(x)
        dtype = self.param_dtype

        def cast(value):
            return jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), value)

        if not self.learnable:
            return act(x, cast(act.params))

        def init(value):
            return lambda _key: cast(value)

        if isinstance(act.params, dict):
            params = {k: self.param(str(k), init(v)) for k, v in act.params.items()}
        else:
            params = self.param("params", init(act.params))
        return act(x, params)


def _unfreeze(tree):
    # Linen freezes dict attributes into FrozenDicts; activations index plain dicts.
    return None if tree is None else _flax_unfreeze(tree)


# --- The signature regulariser ------------------------------------------------------------


def signature_regularizer(
    targets,
    activation,
    params=None,
    *,
    sigma: Optional[float] = None,
    q: Optional[float] = None,
    sigma_b2: Optional[float] = None,
    rule=None,
) -> jax.Array:
    """Differentiable penalty on the targets that ``phi(.; params)`` violates.

    For targets in the language of :func:`jaxsig.design`
    (:data:`jaxsig.targets.GRAMMAR`: ``"g2 <= 0.8"``, ``"m2 == 1"``,
    ``"g2@2.0 <= 0.8"``, ``"tv < 5"``, ``"c < inf"``, ``"minimize eta"``, ...),
    with component values ``v_i`` at the current parameters, bounds ``b_i`` and
    weights ``w_i``::

        R(params) = sum_{<=, <} w_i max(v_i - b_i, 0)^2
                  + sum_{>=, >} w_i max(b_i - v_i, 0)^2
                  + sum_{==}    w_i (v_i - b_i)^2
                  + sum_{minimize} w_i v_i - sum_{maximize} w_i v_i
                  + (inf if a finiteness check such as "c < inf" fails, else 0)

    i.e. :func:`jaxsig.targets.penalty`. Add ``lam * R`` to a training loss to
    keep a learnable activation near its design: ``R`` is ``0`` while every
    inequality and equality holds, and its gradient pulls the parameters back
    when one is violated. Gaussian components (``m1 g1 g2 m2 eta g4
    dm2_dsigma``) cost one :func:`jaxsig.moments` call; ``tv``, ``c``, slopes and
    intercepts one :func:`jaxsig.signature` call, several times dearer to
    compile and run (second derivatives, ladders): inside a training step prefer
    Gaussian targets, and check the others at the end. Pure ``jax.numpy``: it runs
    under ``jit`` and ``grad`` (differentiate with respect to ``params``, or to
    the module holding them).

    Mean-field targets (``chi1 q_star dV xi_q xi_c``, :mod:`jaxsig.designing.network`)
    are evaluated, as in :func:`jaxsig.design`, at the operating point ``(q, sigma_b2)``:
    the variance-preserving initialisation ``sW^2 = (q - sb^2) / m2(sqrt q)``, where
    ``chi1 = sW^2 g2(sqrt q)^2`` and ``dV = sW^2 dm2/dq``. Pass the same ``q`` and
    ``sigma_b2`` as to ``design`` to keep a designed activation at its design while it
    trains, e.g. ``signature_regularizer(["m1 == 0", "chi1 == 1"], act, q=1.0,
    sigma_b2=0.1)``. At ``sigma_b2 = 0``, ``m1 == 0`` and ``chi1 == 1`` together hold
    only for a linear ``phi`` (Gaussian Poincaré inequality,
    :func:`jaxsig.targets.poincare_note`): the penalty then stays positive.

    Args:
      targets: target text(s), e.g. ``["g2 <= 0.8", "m2 == 1"]``, or parsed
        :class:`jaxsig.targets.Targets` (parse once outside a training step to
        skip re-parsing at each trace).
      activation: an :class:`NNXActivation` (its current parameters are used
        unless ``params`` is given), a :class:`LinenActivation`, or anything
        :func:`jaxsig.signature` accepts (name, Activation, family, callable).
      params: the activation's parameters: for a Linen model, the module's
        subtree of ``variables["params"]``; default: the module's current ones
        (NNX) or the activation's defaults.
      sigma: the input scale of Gaussian components written without ``@``
        (default ``1``).
      q: the pre-activation variance of the operating point of the mean-field
        targets (default ``1``), as in :func:`jaxsig.design`; ``q > sigma_b2``.
      sigma_b2: the bias variance of that operating point (default ``0``).
        For parsed :class:`jaxsig.targets.Targets`, ``sigma``, ``q`` and ``sigma_b2``
        default to the ones they were parsed with (given, they re-parse the targets).
        Python numbers: the operating point is part of the parsed targets, not traced.
      rule: quadrature rule, as in :func:`jaxsig.signature`.

    Returns:
      A scalar in the working dtype of ``params``.

    Raises:
      ValueError: ``sigma`` is not positive, or not ``q > sigma_b2 >= 0``.

    Examples:
      >>> import jax
      >>> from jaxsig import flax as jflax
      >>> act = jflax.NNXActivation("leaky_relu", learnable=True)   # g2(1)^2 = (1 + a^2) / 2
      >>> round(float(jflax.signature_regularizer("g2 <= 0.5", act)), 6)   # (sqrt(0.50005) - 0.5)^2
      0.042908
      >>> # Leaky ReLU at q = 1, sb^2 = 0.2: chi1 = (q - sb^2) / q = 0.8, so (0.8 - 1)^2
      >>> round(float(jflax.signature_regularizer("chi1 == 1", act, q=1.0, sigma_b2=0.2)), 6)
      0.04
    """
    if isinstance(activation, NNXActivation):
        act = activation.activation
        if params is None:
            params = activation.values
    elif isinstance(activation, LinenActivation):
        act = _resolve(activation.activation, _unfreeze(activation.params))
        if params is not None:
            params = _unfreeze(params)
            # A non-dict parameter tree is stored whole under the key "params".
            if not isinstance(act.params, dict) and isinstance(params, dict) and set(params) == {"params"}:
                params = params["params"]
    else:
        act = _resolve(activation)
    if params is None:
        params = act.params
    if isinstance(targets, _targets.Targets):
        # A parsed Targets keeps its own input scale and operating point unless told otherwise.
        sigma = targets.sigma if sigma is None else sigma
        q = targets.q if q is None else q
        sigma_b2 = targets.sigma_b2 if sigma_b2 is None else sigma_b2
    parsed = _targets.parse_targets(
        targets,
        sigma=1.0 if sigma is None else sigma,
        q=1.0 if q is None else q,
        sigma_b2=0.0 if sigma_b2 is None else sigma_b2,
    )
    return _targets.penalty(parsed, act, params, rule=rule)


# --- Initialisers from the variance map -----------------------------------------------


class InitVariances(NamedTuple):
    """Weight and bias variances for a fixed point of the variance map.

    A dense layer ``h' = W phi(h) + b`` with ``W_ij ~ N(0, sigma_w2 / fan_in)``
    and ``b_i ~ N(0, sigma_b2)`` maps pre-activations of second moment ``q``
    (per unit, in the wide limit) to ``V(q) = sigma_w2 m2(sqrt q) + sigma_b2``.

    Attributes:
      sigma_w2: ``sW^2``, the weight variance times ``fan_in``.
      sigma_b2: ``sb^2``, the bias variance.
      q: the fixed point ``q* = V(q*)`` these variances were chosen for.
      chi1: ``sW^2 g2(sqrt q*)^2``: ordered (``< 1``), chaotic (``> 1``) or
        critical (``= 1``); the per-layer growth of small perturbations.
      slope: ``V'(q*) = sW^2 dm2/dq``: the fixed point attracts nearby
        variances when ``< 1`` and repels them when ``> 1``.
    """

    sigma_w2: float
    sigma_b2: float
    q: float
    chi1: float
    slope: float

    def initializers(self) -> "Initializers":
        """The :class:`Initializers` drawing ``N(0, sigma_w2 / fan_in)`` and ``N(0, sigma_b2)``.

        Gaussian, not truncated: the variance map assumes Gaussian weights
        (for wide layers only the variance matters, by the central limit theorem).
        """
        kernel_init = jax.nn.initializers.variance_scaling(self.sigma_w2, "fan_in", "normal")
        if self.sigma_b2 > 0:
            return Initializers(kernel_init, jax.nn.initializers.normal(math.sqrt(self.sigma_b2)), self)
        return Initializers(kernel_init, jax.nn.initializers.zeros, self)


class Initializers:
    """A kernel initialiser that also carries its bias initialiser.

    Called, it is the kernel initialiser ``init(key, shape, dtype)``, so it can be
    passed as ``kernel_init=`` directly; unpacked, it is the pair
    ``kernel_init, bias_init = ...``.

    Attributes:
      kernel_init: draws ``W ~ N(0, sigma_w2 / fan_in)``.
      bias_init: draws ``b ~ N(0, sigma_b2)`` (zeros when ``sigma_b2 = 0``).
      variances: the :class:`InitVariances` they realise.
    """

    def __init__(self, kernel_init: Callable, bias_init: Callable, variances: InitVariances):
        self.kernel_init = kernel_init
        self.bias_init = bias_init
        self.variances = variances

    def __call__(self, key, shape, dtype=jnp.float32):
        """``kernel_init(key, shape, dtype)``."""
        return self.kernel_init(key, shape, dtype)

    def __iter__(self):
        return iter((self.kernel_init, self.bias_init))

    def __repr__(self):
        v = self.variances
        return f"Initializers(sigma_w2={v.sigma_w2:.6g}, sigma_b2={v.sigma_b2:.6g}, q={v.q:.6g})"


def init_variances(phi, q=1.0, sigma_b2=None, *, critical: bool = False, params=None, rule=None) -> InitVariances:
    """Weight and bias variances that make ``q`` a fixed point of the variance map.

    With ``m2(sigma) = E[phi(sigma Z)^2]`` and ``g2(sigma)^2 = E[phi'(sigma Z)^2]``:

    * variance preserving (default): ``sW^2 = (q - sb^2) / m2(sqrt q)``, so that
      ``V(q) = sW^2 m2(sqrt q) + sb^2 = q``;
    * ``critical=True`` (edge of chaos): ``sW^2 = 1 / g2(sqrt q)^2`` (so
      ``chi1 = 1``) and ``sb^2 = q - sW^2 m2(sqrt q)``, which must be ``>= 0``.

    Evaluated eagerly (Python floats): initialisers are built once, outside
    ``jit``. For the first layer, whose inputs are data and not activations, use
    ``phi="identity"`` (``m2(sqrt q) = q``) with inputs standardised to mean
    square ``q``. Computed by :func:`jaxsig.dynamics.init_for_fixed_q` and
    :func:`jaxsig.dynamics.critical_init`, with the slope from
    :func:`jaxsig.dynamics.variance_map_slope`.

    Args:
      phi: activation (name, :class:`jaxsig.Activation`, family or callable).
      q: the fixed point ``q* > 0``: the pre-activation second moment to keep.
      sigma_b2: bias variance ``0 <= sb^2 < q`` (default ``0``); not allowed with
        ``critical=True``, which determines it.
      critical: choose the edge-of-chaos pair instead.
      params: parameters of ``phi`` (default: its own).
      rule: quadrature rule, as in :func:`jaxsig.moments`.

    Returns:
      An :class:`InitVariances`.

    Raises:
      ValueError: ``q`` or ``sigma_b2`` out of range, ``m2(sqrt q)`` or
        ``g2(sqrt q)`` zero or non-finite, or no critical pair with ``sb^2 >= 0``.

    Examples:
      >>> from jaxsig import flax as jflax
      >>> v = jflax.init_variances("relu", q=1.0)
      >>> round(v.sigma_w2, 6), round(v.chi1, 6)   # He et al.: sW^2 = 2
      (2.0, 1.0)
    """
    q = float(q)
    if not (math.isfinite(q) and q > 0):
        raise ValueError(f"q must be positive and finite, got {q=} (the pre-activation second moment to keep)")
    if critical and sigma_b2 is not None:
        raise ValueError("critical=True determines sigma_b2 = q - m2(sqrt q) / g2(sqrt q)^2; do not pass sigma_b2")
    act = _resolve(phi, params)
    if critical:
        init = _dynamics.critical_init(act, q=q, rule=rule)
        if not float(init.sigma_b2) >= 0:
            raise ValueError(
                f"{act.name!r} has no edge-of-chaos initialisation with fixed point {q=}: it would need "
                f"sigma_b2 = q - m2/g2^2 = {float(init.sigma_b2):.4g} < 0. Try another q, or use "
                "variance_preserving_init (chi1 != 1)."
            )
    else:
        sb2 = 0.0 if sigma_b2 is None else float(sigma_b2)
        if not (0.0 <= sb2 < q):
            raise ValueError(f"sigma_b2 must satisfy 0 <= sigma_b2 < q, got sigma_b2={sb2}, {q=}")
        init = _dynamics.init_for_fixed_q(act, q, sb2, rule=rule)
    sw2 = float(init.sigma_w2)
    if not (math.isfinite(sw2) and sw2 > 0):
        raise ValueError(f"{act.name!r} at {q=} gives sigma_w2 = {sw2}: m2(sqrt q) or g2(sqrt q) is 0 or not finite")
    slope = float(_dynamics.variance_map_slope(act, q, sw2, rule=rule))
    return InitVariances(sw2, float(init.sigma_b2), q, float(init.chi1), slope)


def variance_preserving_init(phi, q=1.0, sigma_b2=0.0, *, params=None, rule=None) -> Initializers:
    """Flax initialisers that keep the pre-activation second moment at ``q``.

    ``kernel_init`` draws ``W ~ N(0, sW^2 / fan_in)`` and ``bias_init``
    ``b ~ N(0, sb^2)`` with ``sW^2 = (q - sb^2) / m2(sqrt q)`` (see
    :func:`init_variances`), so ``q`` is a fixed point of
    ``V(q) = sW^2 m2(sqrt q) + sb^2``. Pass them to ``nnx.Linear`` /
    ``nn.Dense`` as ``kernel_init=`` and ``bias_init=`` for every layer that
    follows a ``phi``; ``fan_in`` is the kernel's second-to-last axis, as in
    Flax's own ``variance_scaling``.

    Args:
      phi: activation (name, :class:`jaxsig.Activation`, family or callable).
      q: the fixed point ``q* > 0``.
      sigma_b2: bias variance ``0 <= sb^2 < q``.
      params: parameters of ``phi`` (default: its own).
      rule: quadrature rule, as in :func:`jaxsig.moments`.

    Returns:
      :class:`Initializers`: the kernel initialiser ``init(key, shape, dtype)``
      (pass it as ``kernel_init=``), which unpacks as ``(kernel_init, bias_init)``.

    Examples:
      >>> import jax
      >>> from jaxsig import flax as jflax
      >>> kernel_init, bias_init = jflax.variance_preserving_init("tanh", q=1.0)
      >>> w = kernel_init(jax.random.key(0), (512, 512))
      >>> round(float(w.var() * 512), 1)        # 1 / m2(1) = 2.536 for tanh
      2.5
    """
    return init_variances(phi, q, sigma_b2, params=params, rule=rule).initializers()


def critical_init(phi, *, q=1.0, params=None, rule=None) -> Initializers:
    """Flax initialisers at the edge of chaos with fixed point ``q``.

    ``sW^2 = 1 / g2(sqrt q)^2`` makes ``chi1 = sW^2 g2^2 = 1`` (gradients
    neither explode nor vanish, to first order) and ``sb^2 = q - sW^2 m2(sqrt q)``
    makes ``q`` the fixed point; see :func:`init_variances`.

    Returns:
      :class:`Initializers` drawing ``N(0, sW^2 / fan_in)`` (called) and, unpacked as
      ``(kernel_init, bias_init)``, ``N(0, sb^2)``. ``q`` is keyword-only, as in
      :func:`jaxsig.dynamics.critical_init`, whose positional argument is ``sigma_b2``.

    Raises:
      ValueError: when ``sb^2`` would be negative (no critical pair at this ``q``).

    Examples:
      >>> from jaxsig import flax as jflax
      >>> v = jflax.init_variances("tanh", q=1.0, critical=True)
      >>> round(v.sigma_w2, 4), round(v.sigma_b2, 4), round(v.chi1, 6)
      (2.1533, 0.151, 1.0)
    """
    return init_variances(phi, q, critical=True, params=params, rule=rule).initializers()

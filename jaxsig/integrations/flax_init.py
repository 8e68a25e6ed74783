"""Mean-field initialisation and diagnosis of Flax NNX models, read off the model itself.

:func:`autoinit` sets the weight and bias scales of every ``nnx.Linear`` and
``nnx.Conv`` layer of a model so that its pre-activations have the second
moment mean-field theory asks for; :func:`diagnose` measures a model on a batch
and compares each layer with the theory's prediction. Both find the model's
structure by tracing ``model(x)`` (:mod:`jaxsig.integrations.flax_graph`): which
layer feeds which, through which activation (a
:class:`~jaxsig.flax.NNXActivation` at its current, possibly learned,
parameters, or any elementwise ``jax.numpy`` code in ``__call__``), residual
sums, normalisation layers and reshapes.

The theory. A dense layer ``h = W a + b`` with ``W_ij`` of mean 0 and variance
``sW^2 / fan_in`` and ``b_i`` of variance ``sb^2`` gives, per unit and averaged
over the weights,

.. math:: E[h^2] = \\sigma_w^2\\, E[a^2] + \\sigma_b^2,

and in a wide network every layer output is a centred Gaussian, uncorrelated
with every other layer's output (Poole et al. 2016). The input second moment
``E[a^2]`` follows from the structure:

* ``a = phi(g)`` with ``g ~ N(mu, s^2)`` a Gaussian pre-activation:
  ``E[a^2] = m2``, the signature's second moment (:func:`jaxsig.moments`);
* a residual sum of independent signals: second moments add, plus
  ``2 E[u] E[v]`` cross terms;
* LayerNorm / RMSNorm / BatchNorm: in the wide limit an affine map with the
  input's statistics, ``y = s (a - E a) / sqrt(Var a + eps) + b``, so
  ``E[y^2] = s^2 Var a / (Var a + eps) + b^2``: the norm resets ``q`` to its
  affine scale;
* the data: measured on ``x``;
* convolutions: ``fan_in = k_1 ... k_d C_in``, and with zero padding only a
  fraction ``p`` of the taps sees data (``p`` is computed from the padding),
  so ``E[h^2] = sW^2 p E[a^2] + sb^2``.

Perturbations of a pre-activation ``g`` grow through ``a = phi(g)`` and the
next layer by ``chi1 = sW^2 p E[phi'(g)^2] = sW^2 p g2^2`` per layer (in
squared norm): ordered (``< 1``), critical (``= 1``), chaotic (``> 1``).

References:
  Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli, "Exponential expressivity in
  deep neural networks through transient chaos", NeurIPS 2016.
  Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation",
  ICLR 2017.
  Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington, "Dynamical isometry and
  a mean field theory of CNNs", ICML 2018.
  Mishkin & Matas, "All you need is a good init", ICLR 2016 (LSUV, the
  data-driven alternative).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.integrations import flax_graph as fg
from jaxsig.integrations import flax_propagation as fp
from jaxsig.integrations.flax_graph import UnsupportedModelError
from jaxsig.theory import meanfield as _mf

__all__ = [
    "UnsupportedModelError",
    "LayerInit",
    "AutoInitReport",
    "LayerDiagnosis",
    "Diagnosis",
    "autoinit",
    "diagnose",
    "plot_diagnosis",
]

MODES = ("preserve", "critical")
WEIGHTS = ("rescale", "redraw")


# --- Results -------------------------------------------------------------------------------------------


class LayerInit(NamedTuple):
    """What :func:`autoinit` did to one dense or convolutional layer.

    Attributes:
      path: the layer's path in the model (``"layers.3"``).
      kind: ``"dense"`` or ``"conv"``.
      input: what feeds the layer: ``"data"``, the activation's name
        (``"tanh"``, ``"rational"``, ``"expr(logistic)"`` for ``x * sigmoid(x)``
        written inline), ``"linear"`` (another layer's output, maybe through a
        norm), ``"residual stream"`` (a sum of layer outputs) or
        ``"sum of n signals"``.
      fan_in: inputs per output unit (``k_1 ... k_d C_in`` for a convolution).
      sigma_w2: ``sW^2``: the weights' second moment times ``fan_in``.
      sigma_b2: ``sb^2``: the biases' second moment.
      q_in: ``E[a^2]``, the input's second moment predicted at the targets
        (times the padding fraction ``p`` for convolutions).
      q: the output's second moment, ``sW^2 q_in + sb^2``: the target.
      chi1: ``sW^2 p E[phi'(g)^2]``, the growth of perturbations of the
        pre-activation ``g`` feeding the layer; NaN where the input is not one
        activation of one layer (data, residual sums).
      slope: ``d q / d q_prev``, the variance map's slope ``V'(q)``: below 1
        the target attracts nearby variances, above 1 it repels them and
        finite-width fluctuations grow by this factor per layer; NaN where
        ``chi1`` is.
      set: ``False`` for a layer left as it was (``exclude``); its numbers are
        then those of its current weights.
    """

    path: str
    kind: str
    input: str
    fan_in: int
    sigma_w2: float
    sigma_b2: float
    q_in: float
    q: float
    chi1: float
    slope: float
    set: bool


class AutoInitReport(NamedTuple):
    """The result of :func:`autoinit`: one :class:`LayerInit` per layer, in execution order.

    Attributes:
      layers: per layer, what was set.
      mode: ``"preserve"`` or ``"critical"``.
      q: the target second moment.
      sigma_b2: the requested bias variance (``None``: the mode's default).
      weights: ``"rescale"`` or ``"redraw"``.
    """

    layers: tuple
    mode: str
    q: float
    sigma_b2: Optional[float]
    weights: str

    def __str__(self):
        head = ("path", "kind", "input", "fan_in", "sW^2", "sb^2", "q_in", "q", "chi1", "V'(q)")
        rows = [(l.path + ("" if l.set else " (kept)"), l.kind, l.input, str(l.fan_in), _num(l.sigma_w2),
                 _num(l.sigma_b2), _num(l.q_in), _num(l.q), _num(l.chi1), _num(l.slope)) for l in self.layers]
        lines = [f"autoinit: mode={self.mode}, q={self.q:g}, sigma_b2={self.sigma_b2}, weights={self.weights}",
                 _table(head, rows)]
        repel = [l.path for l in self.layers if l.slope > 1 + 1e-6]
        if repel:
            worst = max(l.slope for l in self.layers if l.slope > 1 + 1e-6)
            lines.append(
                f"note: the target repels nearby variances at {len(repel)} layer(s) (V'(q) up to {worst:.3f} > 1): "
                "finite-width fluctuations grow by that factor per layer; a larger sigma_b2 (preserve mode) "
                "lowers V'(q) = (1 - sb^2/q) d log m2 / d log q"
            )
        return "\n".join(lines)


class LayerDiagnosis(NamedTuple):
    """One dense or convolutional layer as measured on a batch and as mean-field theory predicts it.

    Attributes:
      path, kind, input, fan_in: as in :class:`LayerInit`.
      sigma_w2: ``fan_in`` times the kernel's mean square (the effective
        ``sW^2`` of the current weights).
      sigma_b2: the bias's mean square (``0`` without a bias).
      measured_q: the output's second moment ``mean h^2`` over the batch and
        the units.
      measured_mean, measured_var: its mean and variance over the batch and
        the units.
      predicted_q: mean-field prediction of ``measured_q``: the variance map
        propagated input by input from the data through the model's own
        structure and weight scales, averaged over the batch.
      ratio: ``measured_q / predicted_q``.
      rel_sd: the relative standard deviation of one input's measured second
        moment about the prediction at this width (the finite-width error
        model, see :func:`diagnose`); NaN where the model does not apply.
      chi1: ``sW^2 p E[phi'(g)^2]`` at the predicted input variance.
      phase: ``"ordered"``, ``"critical"`` or ``"chaotic"`` by ``chi1``, or
        ``""`` where ``chi1`` is undefined.
      q_star, chi1_star, slope, xi_q, xi_c: the fixed point of this layer's
        variance map were it repeated (``q* = sW^2 p E[L(sqrt(q*) Z)^2] + sb^2``
        for the function ``L`` from the previous layer's output to this
        layer's input), ``chi1`` and ``V'(q*)`` there, and the depth scales
        ``xi_q = -1 / log V'(q*)``, ``xi_c = -1 / log C'(c*)``; NaN where
        undefined. ``xi_c = -1 / log chi1*`` in the ordered phase, ``inf`` at
        the edge of chaos and where ``q* = 0``; in the chaotic phase from the
        correlation map's fixed point ``c* < 1`` (the network's, when its hidden
        layers share one map: one 2-D solve instead of one per layer).
    """

    path: str
    kind: str
    input: str
    fan_in: int
    sigma_w2: float
    sigma_b2: float
    measured_q: float
    measured_mean: float
    measured_var: float
    predicted_q: float
    ratio: float
    rel_sd: float
    chi1: float
    phase: str
    q_star: float
    chi1_star: float
    slope: float
    xi_q: float
    xi_c: float


class Diagnosis(NamedTuple):
    """The result of :func:`diagnose`: per-layer measurements and predictions, and a verdict.

    Attributes:
      layers: one :class:`LayerDiagnosis` per dense / convolutional layer.
      depth: the number of dense / convolutional layers on the longest path.
      phase: the network's phase (``"ordered"``, ``"critical"``, ``"chaotic"``),
        ``"mixed"`` when its layers disagree, or ``"residual"`` (a residual
        stream: the phase of the per-layer maps does not apply).
      chi1: the network's ``chi1``: at the common fixed point when the hidden
        layers are alike, else the geometric mean of the per-layer values.
      xi_c: the correlation depth scale of the network (``inf`` at the edge of
        chaos; NaN where undefined).
      verdict: a sentence summing it up.
    """

    layers: tuple
    depth: int
    phase: str
    chi1: float
    xi_c: float
    verdict: str

    def __str__(self):
        head = ("path", "input", "sW^2", "sb^2", "q measured", "q predicted", "ratio", "sd", "mean",
                "chi1", "phase", "q*", "xi_q", "xi_c")
        rows = [(l.path, l.input, _num(l.sigma_w2), _num(l.sigma_b2), _num(l.measured_q), _num(l.predicted_q),
                 _num(l.ratio), _num(l.rel_sd), _num(l.measured_mean), _num(l.chi1), l.phase, _num(l.q_star),
                 _num(l.xi_q), _num(l.xi_c)) for l in self.layers]
        return _table(head, rows) + "\n" + self.verdict


def _num(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def _table(head, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


# --- autoinit -----------------------------------------------------------------------------------------------


def _effective(layer: fp.Layer, values):
    w = np.asarray(values[layer.kernel], np.float64)
    sw2 = float(np.mean(w * w)) * layer.fan_in
    sb2 = float(np.mean(np.asarray(values[layer.bias], np.float64) ** 2)) if layer.bias is not None else 0.0
    return sw2, sb2


def _check_x(x):
    if isinstance(x, (tuple, list, dict)):
        raise TypeError("x must be one array (a batch of inputs); for several inputs pass call=lambda m, x: m(*x)")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating-point data (a sample batch), got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"x must be a non-empty sample batch, got shape {x.shape}")
    return x


def autoinit(
    model,
    x,
    *,
    q: float = 1.0,
    mode: str = "preserve",
    sigma_b2: Optional[float] = None,
    weights: str = "rescale",
    key=0,
    exclude: Iterable[str] = (),
    call: Optional[Callable] = None,
) -> AutoInitReport:
    """Set the weight and bias scales of every dense / conv layer from mean-field theory (in place).

    For each ``nnx.Linear`` and ``nnx.Conv`` layer, in execution order, with
    ``A = E[a^2]`` the second moment of its input predicted from the layers
    before it (at their targets; see the module docstring for the rules) and
    ``p`` the padding fraction (``1`` for dense layers):

    * ``mode="preserve"``: ``sb^2 = sigma_b2`` (default ``0``) and
      ``sW^2 = (q - sb^2) / (p A)``, so the output has second moment ``q``.
      After an activation ``phi`` of a layer at ``q`` this is
      ``sW^2 = (q - sb^2) / m2(sqrt q)``: He initialisation for ReLU
      (``sW^2 = 2``), ``1 / m2(1) = 2.536`` for tanh at ``q = 1``.
    * ``mode="critical"`` (the edge of chaos), for a layer fed by
      ``phi(g)``: with ``sigma_b2=None``, ``sW^2 = 1 / (p E[phi'(g)^2])`` (so
      ``chi1 = 1``) and ``sb^2 = q - sW^2 p A`` (so the output keeps ``q``;
      tanh at ``q = 1``: ``sW^2 = 2.153``, ``sb^2 = 0.151``); with ``sigma_b2``
      given, ``sW^2`` is the critical weight variance of
      :func:`jaxsig.dynamics.edge_of_chaos` for ``phi`` and that ``sb^2``
      (tanh at ``sb^2 = 0``: ``sW^2 = 1``; ReLU: ``2``), and the targets follow
      the variance map from ``q`` at the first layer. Layers fed by the data,
      a bare linear signal or a residual sum have no activation to be
      critical for and are set as in ``"preserve"`` with ``sb^2 = sigma_b2``
      (default ``0``).

    The activation's moments are those of its current parameters, so calling
    ``autoinit`` again after a learnable activation has moved re-targets the
    network. The traced structure is cached per model structure and input
    shape: only the first call traces; later calls cost a few
    :func:`jaxsig.moments` evaluations and one pass over the weights.

    Weights (``weights=``):

    * ``"rescale"`` (default): scale each kernel (and bias) so that its mean
      square is exactly ``sW^2 / fan_in`` (``sb^2``): the directions of the
      current weights are kept, so the model's own seed still matters and no
      key is needed. An all-zero array (e.g. Flax's default zero bias when
      ``sb^2 > 0``) is drawn from ``N(0, 1)`` with ``key`` first.
    * ``"redraw"``: draw ``W ~ N(0, sW^2 / fan_in)`` and ``b ~ N(0, sb^2)``
      afresh with ``key``.

    Args:
      model: a Flax NNX module; its dense / conv layers are updated in place.
      x: a sample input batch, as the model takes it (leading axis: batch).
      q: the target second moment of the pre-activations (``> 0``).
      mode: ``"preserve"`` or ``"critical"``.
      sigma_b2: bias variance ``0 <= sb^2 < q`` (see ``mode``).
      weights: ``"rescale"`` or ``"redraw"``.
      key: an int seed or ``jax.random`` key for the draws.
      exclude: paths of layers to leave as they are (e.g. ``("head",)``); their
        current scales are used to predict what follows them.
      call: ``call(model, x)`` to run instead of ``model(x)``.

    Returns:
      An :class:`AutoInitReport` (its ``str`` is a table).

    Raises:
      UnsupportedModelError: a model part mean-field theory cannot follow
        (named), or no dense / conv layer.
      ValueError: bad arguments, or no edge of chaos at this ``q`` for some
        layer (``sb^2`` would be negative; the message names the layer).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxsig import flax as jflax
      >>> model = nnx.Sequential(nnx.Linear(16, 256, rngs=nnx.Rngs(0)), jax.nn.relu,
      ...                        nnx.Linear(256, 256, rngs=nnx.Rngs(1)))
      >>> report = jflax.autoinit(model, jnp.ones((8, 16)))
      >>> round(report.layers[1].sigma_w2, 6)     # He: (1 - 0) / m2(1) = 1 / (1/2)
      2.0
      >>> round(float(jnp.mean(model.layers[2].kernel[...] ** 2) * 256), 4)
      2.0
    """
    q = float(q)
    if not (math.isfinite(q) and q > 0):
        raise ValueError(f"q must be positive and finite, got {q=} (the pre-activation second moment to aim at)")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode=}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights=}")
    if sigma_b2 is not None:
        sigma_b2 = float(sigma_b2)
        if not (0.0 <= sigma_b2 < q):
            raise ValueError(f"sigma_b2 must satisfy 0 <= sigma_b2 < q, got {sigma_b2=}, {q=}")
    x = _check_x(x)
    snap = fp.snapshot(model)
    plan = fp.plan(model, x, call, snap)
    exclude = set(exclude)
    known = {l.path for l in plan.layers}
    if exclude - known:
        raise ValueError(f"exclude names unknown layer(s) {sorted(exclude - known)}; the layers are {sorted(known)}")
    values = snap.values
    prop = fp.Propagation(plan, snap, x, per_input=False)
    rows, new = [], {}
    for layer in plan.layers:
        st = prop.layer_input(layer)
        a_eff = layer.pad * st["q_in"]
        chi_gain = layer.pad * st["g2sq"]
        where = f"layer {layer.path!r} (input: {st['label']})"
        if layer.path in exclude:
            sw2, sb2 = _effective(layer, values)
        else:
            sw2, sb2 = _choose(layer, st, a_eff, chi_gain, q, mode, sigma_b2, prop, where)
            new[layer.path] = (sw2, sb2)
        q_out = sw2 * a_eff + sb2
        prop.q[layer.call] = q_out
        slope = _slope(prop, st, sw2 * layer.pad, where)
        rows.append(LayerInit(layer.path, layer.kind, st["label"], layer.fan_in, float(sw2), float(sb2),
                              float(a_eff), float(q_out), float(sw2 * chi_gain), slope, layer.path not in exclude))
    _write(snap.modules, plan, new, weights, key)
    return AutoInitReport(tuple(rows), mode, q, sigma_b2, weights)


def _choose(layer, st, a_eff, chi_gain, q, mode, sigma_b2, prop, where):
    """``(sW^2, sb^2)`` for one layer."""
    has_bias = layer.bias is not None
    gain_known = st["activation"] and np.isfinite(chi_gain) and chi_gain > 0
    if not (np.isfinite(a_eff) and a_eff > 0):
        raise ValueError(f"{where}: the input's second moment is {a_eff}; nothing to scale")
    if mode == "critical" and gain_known:
        if sigma_b2 is None:
            sw2 = 1.0 / chi_gain
            sb2 = q - sw2 * a_eff
            if abs(sb2) <= 1e-12 * q:
                sb2 = 0.0
            if sb2 < 0:
                raise ValueError(
                    f"{where}: no edge of chaos keeps q={q:g}: chi1 = 1 needs sW^2 = 1/(p g2^2) = {sw2:.4g}, "
                    f"and then sigma_b2 = q - sW^2 p m2 = {sb2:.4g} < 0. Choose another q, pass sigma_b2 "
                    "(critical weight variance at that bias, variance following the map), or use mode='preserve'"
                )
            if sb2 > 0 and not has_bias:
                raise ValueError(
                    f"{where} has no bias (use_bias=False), but the edge of chaos at q={q:g} needs "
                    f"sigma_b2 = {sb2:.4g}; give the layer a bias or use mode='preserve'"
                )
            return sw2, sb2
        if st["link"] is None:
            raise UnsupportedModelError(
                f"{where}: critical mode with a given sigma_b2 needs the input to be one activation of one "
                "earlier layer with the same function for every unit; pass sigma_b2=None or mode='preserve'"
            )
        if sigma_b2 > 0 and not has_bias:
            raise ValueError(f"{where} has no bias (use_bias=False); pass sigma_b2=0")
        act, _, lparams, dtype = prop.link(st["link"])
        edge = _mf.edge_of_chaos(act, jnp.asarray(sigma_b2, dtype), params=lparams)
        return float(edge.sigma_w2) / layer.pad, sigma_b2
    sb2 = (sigma_b2 or 0.0) if has_bias else 0.0
    return (q - sb2) / a_eff, sb2


def _slope(prop, st, sw2p, where) -> float:
    """``V'(q) = d q_out / d q_base`` for a layer whose input is one function of one earlier layer.

    For ``L(x) = a f(cb x + shift)`` (no offset) ``E[L^2] = a^2 m2_f(sigma)`` with
    ``sigma = |cb| sqrt(q_base)``, so ``V'(q) = sW^2 p a^2 (dm2/dsigma) sigma / (2 q_base)``,
    from the moments already computed; with an offset the link's own moments are used.
    """
    if st["link"] is None or st["base"] is None:
        return float("nan")
    fn, params, kinks, name, dtype, cb, shift, a, c = st["link"]
    q_b = np.asarray(prop.q[st["base"]], np.float64)
    if c == 0:
        sigma = abs(cb) * np.sqrt(q_b)
        m = prop.gaussian(fn, params, kinks, name, sigma, shift, where, dtype)
        return float(np.mean(sw2p * a * a * m["dm2_dsigma"] * sigma / (2 * q_b)))
    act, _, lparams, dtype = prop.link(st["link"])
    sigma = np.sqrt(q_b)
    m = prop.gaussian(act.fn, lparams, act.kinks, act.name, sigma, 0.0, where, dtype)
    return float(np.mean(sw2p * m["dm2_dsigma"] / (2 * sigma)))


def _key(key):
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    return key


def _write(modules, plan, new, weights, key):
    """Kernels with mean square ``sW^2 / fan_in`` and biases with mean square ``sb^2``."""
    todo = [l for l in plan.layers if l.path in new]
    if not todo:
        return
    key = _key(key)
    arrays, targets, slots = [], [], []
    for layer in todo:
        sw2, sb2 = new[layer.path]
        module = modules[layer.path]
        arrays.append(module.kernel.get_value())
        targets.append(sw2 / layer.fan_in)
        slots.append((module, "kernel"))
        if module.bias is not None:
            arrays.append(module.bias.get_value())
            targets.append(sb2)
            slots.append((module, "bias"))
    redraw = weights == "redraw"
    if plan.writes and not redraw:
        # Later calls of a plan (a training loop): one compiled rescaling per array shape, and one
        # transfer of all the mean squares to the host to spot all-zero arrays, which are drawn.
        outs = [_rescaled(a, jnp.asarray(t, a.dtype)) if t > 0 else (None, None) for a, t in zip(arrays, targets)]
        squares = jax.device_get([m for _, m in outs if m is not None])
        it = iter(squares)
        zeros: dict = {}
        for i, ((module, name), a, t, (out, _)) in enumerate(zip(slots, arrays, targets, outs)):
            if out is None:
                key_ = (a.shape, a.dtype)
                out = zeros[key_] if key_ in zeros else zeros.setdefault(key_, jnp.zeros_like(a))
            elif not float(next(it)) > 0:
                out = _set_scale(a, t, key, i, False)
            getattr(module, name).set_value(out)
    else:
        # The first call writes eagerly: nothing to compile, so it is not held up.
        for i, ((module, name), a, t) in enumerate(zip(slots, arrays, targets)):
            getattr(module, name).set_value(_set_scale(a, t, key, i, redraw))
    plan.writes += 1


def _set_scale(a, t, key, i, redraw):
    """``a`` with mean square ``t``: rescaled (or drawn from ``N(0, 1)`` if all zero), or redrawn.

    Draws use ``fold_in(key, i)`` for array ``i``.
    """
    if t <= 0:
        return jnp.zeros_like(a)
    if redraw:
        return jax.random.normal(jax.random.fold_in(key, i), a.shape, a.dtype) * math.sqrt(t)
    m = float(jnp.mean(a * a))
    if not m > 0:
        a = jax.random.normal(jax.random.fold_in(key, i), a.shape, a.dtype)
        m = float(jnp.mean(a * a))
    # Rescale mode sets the mean square exactly, drawn or not.
    return a * jnp.asarray(math.sqrt(t / m), a.dtype)


@jax.jit
def _rescaled(a, t):
    m = jnp.mean(a * a)
    return a * jnp.sqrt(t / jnp.where(m > 0, m, 1.0)), m


# --- diagnose -----------------------------------------------------------------------------------------------


def diagnose(model, x, *, call: Optional[Callable] = None, phase_tol: float = 1e-2) -> Diagnosis:
    """Measure each dense / conv layer on ``x`` and compare it with mean-field theory.

    Measured: the output ``h`` of every layer on the batch: ``mean h^2``,
    ``mean h`` and ``var h`` over the batch and the units.

    Predicted: the same second moment from the model's structure and its
    current weight scales (``sW^2 = fan_in mean W^2``, ``sb^2 = mean b^2``),
    propagated input by input: the first layer's ``q_1(x) = sW^2 mean(x^2) + sb^2``
    (or whatever the data pass through), then ``q_l = sW^2 p E[a^2] + sb^2``
    with ``E[a^2]`` from the rules of the module docstring at the predicted
    ``q`` of the layers before. ``predicted_q`` is its batch mean.

    Finite-width error model (``rel_sd``), for layers fed by one function ``L``
    of one earlier layer's output (a chain): given that layer, the ``n`` units
    of this one are independent ``N(0, s_l)`` with
    ``s_l = sW^2 p mean_j L(h_j)^2 + sb^2``, so one input's measured
    ``mean_i h_i^2 = s_l chi^2_n / n`` (relative variance ``2 / n``), and the
    mean over the ``fan_in`` inputs fluctuates about its expectation with
    variance ``Var[L^2] / fan_in``. To first order (delta method) the relative
    error ``d_l`` of ``s_l`` obeys ``d_l = kappa_l d_{l-1} + sW^2 p (mean L^2 - E L^2) / q_l``
    with ``kappa_l = V'(q_{l-1}) q_{l-1} / q_l``, ``d_1 = 0`` for a layer fed
    by the data, so

    .. math:: \\mathrm{Var}\\, d_l = \\kappa_l^2 \\mathrm{Var}\\, d_{l-1}
              + \\frac{(\\sigma_w^2 p)^2 \\mathrm{Var}[L^2]}{\\mathrm{fan\\_in}\\; q_l^2},
              \\qquad \\mathrm{rel\\_sd}_l = \\sqrt{\\mathrm{Var}\\, d_l + 2 / n},

    evaluated per input and reported as the root mean square over the batch.
    Second-order (Jensen) biases, ``O(1 / n)``, are neglected. Averaging over
    the batch does not divide it by ``sqrt(B)``: the inputs share the weights.
    For convolutions ``n`` is the number of output channels (positions share
    weights) and ``fan_in`` is ``p`` times the kernel's.

    Phase and depth scales, per layer: ``chi1`` at the predicted input
    variance and the fixed point of the layer's own variance map
    (:func:`jaxsig.dynamics.fixed_point`, :func:`jaxsig.dynamics.correlation_fixed_point`).
    The verdict uses the fixed point of the mean scales when the hidden layers
    share one map (same ``L``; ``sW^2``, ``sb^2`` within 5%), the geometric mean of the
    per-layer ``chi1`` otherwise, and states the depth against the
    trainability rule of thumb ``L <~ 6 xi_c`` (Schoenholz et al. 2017).

    Args:
      model: a Flax NNX module (not modified).
      x: a sample batch (leading axis: batch).
      call: ``call(model, x)`` to run instead of ``model(x)``.
      phase_tol: ``|chi1 - 1| <= phase_tol`` counts as critical (default 1%: the
        sampling error of ``sW^2`` for a drawn ``n x n`` kernel is
        ``sqrt(2) / n``, 0.6% at ``n = 256``).

    Returns:
      A :class:`Diagnosis` (its ``str`` is a table and the verdict).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxsig import flax as jflax
      >>> layers = [nnx.Linear(64, 64, rngs=nnx.Rngs(i)) for i in range(8)]
      >>> model = nnx.Sequential(*[f for l in layers for f in (l, jax.nn.relu)][:-1])
      >>> x = jax.random.normal(jax.random.key(0), (32, 64))
      >>> jflax.diagnose(model, x).phase      # Flax's lecun init: chi1 = sW^2 / 2 = 1/2
      'ordered'
      >>> _ = jflax.autoinit(model, x)         # He: sW^2 = 2
      >>> jflax.diagnose(model, x).phase
      'critical'
    """
    x = _check_x(x)
    snap = fp.snapshot(model)
    plan = fp.plan(model, x, call, snap)
    values = snap.values
    per_input = x.ndim >= 2
    measured = fg.layer_outputs(model, x, call)
    outs = [measured[l.path] for l in plan.layers]
    prop = fp.Propagation(plan, snap, x, per_input=per_input)
    records, links, var_rel, depth_of = [], [], {}, {}
    for layer, h in zip(plan.layers, outs):
        h = np.asarray(h, np.float64)
        where = f"layer {layer.path!r}"
        sw2, sb2 = _effective(layer, values)
        try:
            st = prop.layer_input(layer)
        except UnsupportedModelError as e:
            raise UnsupportedModelError(f"diagnose: {e}") from None
        sw2p = sw2 * layer.pad
        q_pred = sw2p * np.asarray(st["q_in"]) + sb2
        prop.q[layer.call] = q_pred
        ratio = float(np.mean(h * h) / np.mean(q_pred))
        chi = sw2p * np.asarray(st["g2sq"])
        # Error model (see the docstring): relative variance of the conditional variance.
        if st["label"] == "data":
            v = np.zeros_like(np.asarray(q_pred))
        elif st["link"] is not None and st["base"] in var_rel:
            q_b = np.asarray(prop.q[st["base"]], np.float64)
            e2, de2, e4 = _link_moments(prop, st["link"], q_b, where)
            kappa = sw2p * de2 * np.sqrt(q_b) / (2 * q_pred)
            v = kappa**2 * var_rel[st["base"]] + sw2p**2 * np.maximum(e4 - e2**2, 0) / (
                layer.fan_in * layer.pad * q_pred**2)
        else:
            v = np.full(np.shape(q_pred), np.nan)
        var_rel[layer.call] = v
        rel_sd = float(np.sqrt(np.mean(v + 2.0 / layer.units)))
        bases = _upstream(plan.graph.input_expr(layer.call))
        depth_of[layer.call] = 1 + max((depth_of.get(b, 0) for b in bases), default=0)
        records.append(dict(
            path=layer.path, kind=layer.kind, input=st["label"], fan_in=layer.fan_in, sigma_w2=sw2, sigma_b2=sb2,
            measured_q=float(np.mean(h * h)), measured_mean=float(np.mean(h)), measured_var=float(np.var(h)),
            predicted_q=float(np.mean(q_pred)), ratio=ratio, rel_sd=rel_sd, chi1=float(np.mean(chi)),
            phase=_phase(float(np.mean(chi)), phase_tol), q_star=np.nan, chi1_star=np.nan, slope=np.nan,
            xi_q=np.nan, xi_c=np.nan, c_star=np.nan, residual=st["residual"],
        ))
        if st["link"] is not None and st["base"] is not None:
            links.append((len(records) - 1, st["link"], sw2p, sb2, float(np.mean(prop.q[st["base"]]))))
    residual = any(r["residual"] for r in records)
    network = None if residual else _network_map(prop, links, phase_tol)
    _fixed_points(prop, records, links, phase_tol, network)
    depth = max(depth_of.values())
    phase, chi1, xi_c, verdict = _verdict(records, links, depth, network, phase_tol)
    layers = tuple(LayerDiagnosis(**{k: r[k] for k in LayerDiagnosis._fields}) for r in records)
    return Diagnosis(layers, depth, phase, chi1, xi_c, verdict)


def _link_moments(prop, link, q_b, where):
    """``E[L^2]``, ``d E[L^2] / d sigma`` and ``E[L^4]`` at ``sigma = sqrt(q_b)`` for the link ``L``.

    With no offset, ``L(x) = a f(cb x + shift)`` gives them from the moments of
    ``f`` (already computed for the layer's input) and of ``f^2`` at
    ``sigma_G = |cb| sigma``; with an offset, from the link's own moments.
    """
    fn, params, kinks, name, dtype, cb, shift, a, c = link
    if c == 0:
        sigma = abs(cb) * np.sqrt(q_b)
        m = prop.gaussian(fn, params, kinks, name, sigma, shift, where, dtype)
        sq = prop.square(fn)
        m4 = prop.gaussian(sq, params, kinks, name + "^2", sigma, shift, where, dtype)["m2"]
        return a * a * m["m2"], a * a * m["dm2_dsigma"] * abs(cb), a**4 * m4
    act, act_sq, lparams, dtype = prop.link(link)
    sigma = np.sqrt(q_b)
    m = prop.gaussian(act.fn, lparams, act.kinks, act.name, sigma, 0.0, where, dtype)
    m4 = prop.gaussian(act_sq.fn, lparams, act_sq.kinks, act_sq.name, sigma, 0.0, where, dtype)["m2"]
    return m["m2"], m["dm2_dsigma"], m4


def _upstream(node) -> set:
    if isinstance(node, fg.Base):
        return {node.call}
    if isinstance(node, (fg.Elementwise, fg.Layout, fg.Norm)):
        return _upstream(node.child)
    if isinstance(node, fg.Add):
        return _upstream(node.left) | _upstream(node.right)
    return set()


def _phase(chi, tol) -> str:
    if not np.isfinite(chi):
        return ""
    return _mf.PHASES[0] if chi < 1 - tol else (_mf.PHASES[2] if chi > 1 + tol else _mf.PHASES[1])


def _fixed_point(prop, act, lparams, dtype, sw2, sb2, q0, phase_tol, chaotic=None):
    """Fixed points and depth scales of ``q -> sW^2 p E[L(sqrt q Z)^2] + sb^2`` for arrays of variances.

    ``xi_c`` from the slope of the correlation map at its stable fixed point:
    ``C'(1) = chi1`` at a positive ``q*`` in the ordered phase (``c* = 1``,
    ``xi_c = -1 / log chi1``, Schoenholz et al. 2017), ``inf`` at the edge of
    chaos and where ``q* = 0`` (the network is linear near ``q = 0``: with
    ``sb^2 = 0`` correlations are kept while the signal itself vanishes, at the
    rate ``xi_q``); in the chaotic phase :func:`jaxsig.dynamics.correlation_fixed_point`
    solves for ``c* < 1`` (a 2-D quadrature per Newton step: the dear part of
    :func:`diagnose`, done only for chaotic layers), unless ``chaotic = (xi_c, c*)``
    gives the values to use instead.
    """
    sw2, sb2 = jnp.asarray(sw2, dtype), jnp.asarray(sb2, dtype)
    q0 = jnp.asarray(np.clip(np.asarray(q0, np.float64), 1e-6, 1e3), dtype)
    sol = _mf.fixed_point(act, sw2, sb2, params=lparams, q0=q0, phase_tol=phase_tol)
    out = {k: np.asarray(v, np.float64) for k, v in (
        ("q_star", sol.q_star), ("chi1_star", sol.chi1), ("slope", sol.slope), ("xi_q", sol.xi_q))}
    chi, q_star = out["chi1_star"], out["q_star"]
    with np.errstate(divide="ignore"):
        xi = np.where(chi < 1, -1.0 / np.log(np.where(chi < 1, chi, 0.5)), np.inf)
    xi = np.where((q_star == 0) | ~np.isfinite(q_star), np.inf, xi)
    c_star = np.where(chi <= 1, 1.0, np.nan)
    hot = np.flatnonzero((chi > 1) & (q_star > 0) & np.isfinite(q_star))
    if hot.size and chaotic is not None:
        xi[hot], c_star[hot] = chaotic
    elif hot.size:
        cf = _mf.correlation_fixed_point(act, sw2[hot], sb2[hot], params=lparams,
                                         q_star=jnp.asarray(q_star[hot], dtype))
        xi[hot] = np.asarray(cf.xi_c, np.float64)
        c_star[hot] = np.asarray(cf.c_star, np.float64)
    out.update(xi_c=xi, c_star=c_star)
    return out


def _link_key(prop, link):
    act, _, lparams, _ = prop.link(link)
    return (id(act.fn), tuple(np.asarray(p).tobytes() for p in jax.tree_util.tree_leaves(lparams)))


def _network_map(prop, links, tol):
    """The fixed point of the hidden layers' common map, or ``None`` if they do not share one.

    Layers share a map when their link function is the same and their ``sW^2``
    and ``sb^2`` are within 5% of the median (a drawn ``n x n`` kernel scatters
    by ``sqrt(2) / n``); the network's fixed point is then that of their mean
    scales.
    """
    if not links:
        return None
    keys = {_link_key(prop, link) for _, link, *_ in links}
    sw2 = np.array([m[2] for m in links])
    sb2 = np.array([m[3] for m in links])
    if len(keys) != 1 or np.any(np.abs(sw2 / np.median(sw2) - 1) > 0.05) or np.any(
            np.abs(sb2 - np.median(sb2)) > 0.05 * max(np.median(sw2), 1e-12)):
        return None
    act, _, lparams, dtype = prop.link(links[0][1])
    sol = _fixed_point(prop, act, lparams, dtype, [sw2.mean()], [sb2.mean()], [np.median([m[4] for m in links])], tol)
    return {k: float(v[0]) for k, v in sol.items()}


def _fixed_points(prop, records, links, phase_tol, network):
    """Per-layer fixed point and depth scales, one batched solve per distinct link function.

    When the layers share the network's map, a chaotic layer's ``xi_c`` and
    ``c*`` are the network's (one correlation solve instead of one per layer).
    """
    groups: dict = {}
    for i, link, sw2p, sb2, q0 in links:
        groups.setdefault(_link_key(prop, link), (link, []))[1].append((i, sw2p, sb2, q0))
    shared = (network["xi_c"], network["c_star"]) if network is not None else None
    for link, members in groups.values():
        act, _, lparams, dtype = prop.link(link)
        out = _fixed_point(prop, act, lparams, dtype, [m[1] for m in members], [m[2] for m in members],
                           [m[3] for m in members], phase_tol, chaotic=shared)
        for j, (i, *_) in enumerate(members):
            records[i].update({k: float(v[j]) for k, v in out.items()})


def _verdict(records, links, depth, network, tol):
    """``(phase, chi1, xi_c, sentence)`` for the whole network."""
    residual = any(r["residual"] for r in records)
    z = [abs(r["ratio"] - 1) / r["rel_sd"] for r in records if np.isfinite(r["rel_sd"]) and r["rel_sd"] > 0]
    agree = (f"; measured second moments within {max(z):.1f} sd of the prediction (finite-width error model)"
             if z else "")
    q_first, q_last = records[0]["predicted_q"], records[-1]["predicted_q"]
    if residual:
        chis = [r["chi1"] for r in records if np.isfinite(r["chi1"]) and r["chi1"] > 0]
        gain = f"; branch gains chi1 from {min(chis):.3g} to {max(chis):.3g}" if chis else ""
        text = (f"residual: the variance adds along the residual stream (predicted q from {q_first:.3g} at the "
                f"first layer to {q_last:.3g} at the last){gain}; depth {depth}")
        return "residual", float("nan"), float("nan"), text + agree
    if not links:
        return "", float("nan"), float("nan"), f"no hidden layer fed by an activation; depth {depth}" + agree
    if network is not None:
        chi1, xi_c, q_star, slope, c_star = (network[k] for k in ("chi1_star", "xi_c", "q_star", "slope", "c_star"))
        phase = _phase(chi1, tol)
        at = f"chi1 = {chi1:.4g} at q* = {q_star:.3g}"
    else:
        chis = np.array([records[i]["chi1"] for i, *_ in links])
        chis = chis[np.isfinite(chis) & (chis > 0)]
        chi1 = float(np.exp(np.mean(np.log(chis)))) if chis.size else float("nan")
        phase = _phase(chi1, tol) or "mixed"
        xi_c = (-1.0 / math.log(chi1) if phase == "ordered" else float("inf") if phase == "critical"
                else float(np.nanmin([records[i]["xi_c"] for i, *_ in links])))
        q_star, slope, c_star = float("nan"), float("nan"), float("nan")
        at = f"geometric-mean chi1 = {chi1:.4g} over {chis.size} layers with different maps"
    if np.isfinite(q_star) and q_star == 0:
        # The variance dies out: near q = 0 the network is linear, correlations are kept, and what is
        # lost is the signal itself, at the rate V'(0) = chi1(0) per layer.
        xi_q = -1.0 / math.log(slope) if 0 < slope < 1 - tol else float("inf")
        if np.isfinite(xi_q):
            body = (f"{phase} ({at}): the signal dies out, q shrinking by V'(0) = {slope:.3g} per layer "
                    f"(xi_q = {xi_q:.3g}); depth {depth}")
            body += (f" > 6 xi_q = {6 * xi_q:.0f}: expect vanishing gradients and training to fail"
                     if depth > 6 * xi_q else f" <= 6 xi_q = {6 * xi_q:.0f}")
        else:
            body = (f"{phase} ({at}): the variance decays to 0 as a power law, not exponentially (V'(0) = 1); "
                    f"depth {depth}")
        xi_c = xi_q
    elif np.isinf(q_star):
        body = f"{phase} ({at}): the variance grows without bound (q* = inf); depth {depth}"
    elif phase == "critical" or not np.isfinite(xi_c):
        body = f"critical ({at}): correlations propagate with no exponential depth scale; depth {depth}"
    else:
        how = ("inputs become indistinguishable" if phase == "ordered" else
               f"inputs decorrelate towards c* = {c_star:.2g}" if np.isfinite(c_star) else "inputs decorrelate")
        body = (f"{phase} ({at}): correlations forget the input within ~{max(xi_c, 1):.0f} layers "
                f"(xi_c = {xi_c:.3g}; {how}); depth {depth}")
        limit = 6 * xi_c
        if depth > limit:
            grad = "vanishing" if phase == "ordered" else "exploding"
            body += f" > 6 xi_c = {limit:.0f}: expect {grad} gradients and training to fail"
        else:
            body += f" <= 6 xi_c = {limit:.0f}: trainable by the mean-field rule"
    if np.isfinite(slope) and slope > 1 + tol and np.isfinite(q_star) and q_star > 0:
        body += f"; the variance fixed point repels (V'(q*) = {slope:.3f}): finite-width fluctuations grow per layer"
    body += f"; predicted q from {q_first:.3g} (first layer) to {q_last:.3g} (last)"
    return phase, float(chi1), float(xi_c), body + agree


# --- Figure -------------------------------------------------------------------------------------------------


def plot_diagnosis(diagnosis: Diagnosis, ax=None, *, title: Optional[str] = None):
    """Measured vs predicted second moment per layer (log scale), with the finite-width band.

    Markers: ``measured_q``; line: ``predicted_q``; shaded: ``predicted_q (1 +- rel_sd)``
    where the error model applies. Matplotlib is imported here, not with the module.

    Args:
      diagnosis: a :class:`Diagnosis`.
      ax: a Matplotlib axes to draw on (default: a new figure).
      title: the axes title (default: the network's phase and depth).

    Returns:
      The Matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
    else:
        fig = ax.figure
    layers = np.arange(1, len(diagnosis.layers) + 1)
    pred = np.array([l.predicted_q for l in diagnosis.layers])
    meas = np.array([l.measured_q for l in diagnosis.layers])
    sd = np.array([l.rel_sd for l in diagnosis.layers])
    ok = np.isfinite(sd)
    ax.fill_between(layers[ok], (pred * np.maximum(1 - sd, 1e-3))[ok], (pred * (1 + sd))[ok], color="C0",
                    alpha=0.15, lw=0, label="prediction +- 1 sd (finite width)")
    ax.plot(layers, pred, "-", color="C0", lw=1.5, label="predicted (mean field)")
    ax.plot(layers, meas, "o", color="C3", ms=3.5, mfc="none", label="measured")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("pre-activation second moment")
    ax.set_title(title if title is not None else f"{diagnosis.phase}, depth {diagnosis.depth}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig

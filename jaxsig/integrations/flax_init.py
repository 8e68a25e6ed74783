"""Mean-field initialisation of Flax NNX models, read off the model itself.

:func:`autoinit` sets the weight and bias scales of every ``nnx.Linear`` and
``nnx.Conv`` layer of a model so that its pre-activations have the second
moment mean-field theory asks for; :func:`jaxsig.flax.diagnose`
(:mod:`jaxsig.integrations.flax_diagnose`) measures a model on a batch and
compares each layer with the theory's prediction. Both find the model's
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

from jaxsig.core._format import format_number, render_table
from jaxsig.integrations import flax_plan as fpl
from jaxsig.integrations import flax_propagation as fp
from jaxsig.integrations.flax_trace import UnsupportedModelError
from jaxsig.theory import meanfield as _mf

__all__ = ["LayerInit", "AutoInitReport", "autoinit"]

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
        rows = [
            (
                layer.path + ("" if layer.set else " (kept)"),
                layer.kind,
                layer.input,
                str(layer.fan_in),
                format_cell(layer.sigma_w2),
                format_cell(layer.sigma_b2),
                format_cell(layer.q_in),
                format_cell(layer.q),
                format_cell(layer.chi1),
                format_cell(layer.slope),
            )
            for layer in self.layers
        ]
        lines = [
            f"autoinit: mode={self.mode}, q={self.q:g}, sigma_b2={self.sigma_b2}, weights={self.weights}",
            format_table(head, rows),
        ]
        repel = [layer.path for layer in self.layers if layer.slope > 1 + 1e-6]
        if repel:
            worst = max(layer.slope for layer in self.layers if layer.slope > 1 + 1e-6)
            lines.append(
                f"note: the target repels nearby variances at {len(repel)} layer(s) (V'(q) up to {worst:.3f} > 1): "
                "finite-width fluctuations grow by that factor per layer; a larger sigma_b2 (preserve mode) "
                "lowers V'(q) = (1 - sb^2/q) d log m2 / d log q"
            )
        return "\n".join(lines)


def format_cell(v) -> str:
    """A number in the tables of :class:`AutoInitReport` and :class:`~jaxsig.flax.Diagnosis`.

    Four significant digits, NaN as ``-``; tiny values are results here (the
    variance of a dying network, ``1e-59``), not rounding noise, so nothing is
    shown as ``0``.
    """
    return format_number(v, 4, nan="-", zero_below=0.0)


def format_table(head, rows) -> str:
    """Left-aligned text table (:func:`jaxsig.core._format.render_table`)."""
    return render_table(head, rows, "text", "l" * len(head))


# --- autoinit -----------------------------------------------------------------------------------------------


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
    x = fpl.check_sample(x)
    snap = fpl.snapshot(model)
    plan = fpl.plan(model, x, call, snap)
    exclude = set(exclude)
    known = {layer.path for layer in plan.layers}
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
            sw2, sb2 = fpl.effective_scales(layer, values)
        else:
            sw2, sb2 = _choose(layer, st, a_eff, chi_gain, q, mode, sigma_b2, prop, where)
            new[layer.path] = (sw2, sb2)
        q_out = sw2 * a_eff + sb2
        prop.q[layer.call] = q_out
        slope = _slope(prop, st, sw2 * layer.pad, where)
        rows.append(
            LayerInit(
                layer.path,
                layer.kind,
                st["label"],
                layer.fan_in,
                float(sw2),
                float(sb2),
                float(a_eff),
                float(q_out),
                float(sw2 * chi_gain),
                slope,
                layer.path not in exclude,
            )
        )
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
    todo = [layer for layer in plan.layers if layer.path in new]
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

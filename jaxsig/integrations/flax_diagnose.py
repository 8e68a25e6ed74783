"""Diagnosis of a Flax NNX model against mean-field theory: measured and predicted, layer by layer.

:func:`diagnose` runs the model on a batch, measures every dense / conv
layer's output, and predicts the same second moment from the model's own
structure and weight scales by the rules of :mod:`jaxsig.integrations.flax_init`
(the variance map, input by input), with a finite-width error model; it
reports each layer's ``chi1``, phase, fixed point and depth scales and a
verdict for the whole network. :func:`plot_diagnosis` draws measured against
predicted.

References:
  Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation",
  ICLR 2017 (depth scales, the ``L <~ 6 xi_c`` trainability rule).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.integrations import flax_expr as fx
from jaxsig.integrations import flax_plan as fpl
from jaxsig.integrations import flax_propagation as fp
from jaxsig.integrations.flax_init import format_cell, format_table
from jaxsig.integrations.flax_trace import UnsupportedModelError, layer_outputs
from jaxsig.theory import meanfield as _mf

__all__ = ["LayerDiagnosis", "Diagnosis", "diagnose", "plot_diagnosis"]


# --- Results -------------------------------------------------------------------------------------------


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
        head = (
            "path",
            "input",
            "sW^2",
            "sb^2",
            "q measured",
            "q predicted",
            "ratio",
            "sd",
            "mean",
            "chi1",
            "phase",
            "q*",
            "xi_q",
            "xi_c",
        )
        rows = [
            (
                layer.path,
                layer.input,
                format_cell(layer.sigma_w2),
                format_cell(layer.sigma_b2),
                format_cell(layer.measured_q),
                format_cell(layer.predicted_q),
                format_cell(layer.ratio),
                format_cell(layer.rel_sd),
                format_cell(layer.measured_mean),
                format_cell(layer.chi1),
                layer.phase,
                format_cell(layer.q_star),
                format_cell(layer.xi_q),
                format_cell(layer.xi_c),
            )
            for layer in self.layers
        ]
        return format_table(head, rows) + "\n" + self.verdict


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
    x = fpl.check_sample(x)
    snap = fpl.snapshot(model)
    plan = fpl.plan(model, x, call, snap)
    values = snap.values
    per_input = x.ndim >= 2
    measured = layer_outputs(model, x, call)
    outs = [measured[layer.path] for layer in plan.layers]
    prop = fp.Propagation(plan, snap, x, per_input=per_input)
    records, links, var_rel, depth_of = [], [], {}, {}
    for layer, h in zip(plan.layers, outs):
        h = np.asarray(h, np.float64)
        where = f"layer {layer.path!r}"
        sw2, sb2 = fpl.effective_scales(layer, values)
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
                layer.fan_in * layer.pad * q_pred**2
            )
        else:
            v = np.full(np.shape(q_pred), np.nan)
        var_rel[layer.call] = v
        rel_sd = float(np.sqrt(np.mean(v + 2.0 / layer.units)))
        bases = _upstream(plan.graph.input_expr(layer.call))
        depth_of[layer.call] = 1 + max((depth_of.get(b, 0) for b in bases), default=0)
        records.append(
            dict(
                path=layer.path,
                kind=layer.kind,
                input=st["label"],
                fan_in=layer.fan_in,
                sigma_w2=sw2,
                sigma_b2=sb2,
                measured_q=float(np.mean(h * h)),
                measured_mean=float(np.mean(h)),
                measured_var=float(np.var(h)),
                predicted_q=float(np.mean(q_pred)),
                ratio=ratio,
                rel_sd=rel_sd,
                chi1=float(np.mean(chi)),
                phase=_phase(float(np.mean(chi)), phase_tol),
                q_star=np.nan,
                chi1_star=np.nan,
                slope=np.nan,
                xi_q=np.nan,
                xi_c=np.nan,
                c_star=np.nan,
                residual=st["residual"],
            )
        )
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
    if isinstance(node, fx.Base):
        return {node.call}
    if isinstance(node, (fx.Elementwise, fx.Layout, fx.Norm)):
        return _upstream(node.child)
    if isinstance(node, fx.Add):
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
    out = {
        k: np.asarray(v, np.float64)
        for k, v in (("q_star", sol.q_star), ("chi1_star", sol.chi1), ("slope", sol.slope), ("xi_q", sol.xi_q))
    }
    chi, q_star = out["chi1_star"], out["q_star"]
    with np.errstate(divide="ignore"):
        xi = np.where(chi < 1, -1.0 / np.log(np.where(chi < 1, chi, 0.5)), np.inf)
    xi = np.where((q_star == 0) | ~np.isfinite(q_star), np.inf, xi)
    c_star = np.where(chi <= 1, 1.0, np.nan)
    hot = np.flatnonzero((chi > 1) & (q_star > 0) & np.isfinite(q_star))
    if hot.size and chaotic is not None:
        xi[hot], c_star[hot] = chaotic
    elif hot.size:
        cf = _mf.correlation_fixed_point(
            act, sw2[hot], sb2[hot], params=lparams, q_star=jnp.asarray(q_star[hot], dtype)
        )
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
    if (
        len(keys) != 1
        or np.any(np.abs(sw2 / np.median(sw2) - 1) > 0.05)
        or np.any(np.abs(sb2 - np.median(sb2)) > 0.05 * max(np.median(sw2), 1e-12))
    ):
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
        out = _fixed_point(
            prop,
            act,
            lparams,
            dtype,
            [m[1] for m in members],
            [m[2] for m in members],
            [m[3] for m in members],
            phase_tol,
            chaotic=shared,
        )
        for j, (i, *_) in enumerate(members):
            records[i].update({k: float(v[j]) for k, v in out.items()})


def _verdict(records, links, depth, network, tol):
    """``(phase, chi1, xi_c, sentence)`` for the whole network."""
    residual = any(r["residual"] for r in records)
    z = [abs(r["ratio"] - 1) / r["rel_sd"] for r in records if np.isfinite(r["rel_sd"]) and r["rel_sd"] > 0]
    agree = (
        f"; measured second moments within {max(z):.1f} sd of the prediction (finite-width error model)" if z else ""
    )
    q_first, q_last = records[0]["predicted_q"], records[-1]["predicted_q"]
    if residual:
        chis = [r["chi1"] for r in records if np.isfinite(r["chi1"]) and r["chi1"] > 0]
        gain = f"; branch gains chi1 from {min(chis):.3g} to {max(chis):.3g}" if chis else ""
        text = (
            f"residual: the variance adds along the residual stream (predicted q from {q_first:.3g} at the "
            f"first layer to {q_last:.3g} at the last){gain}; depth {depth}"
        )
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
        xi_c = (
            -1.0 / math.log(chi1)
            if phase == "ordered"
            else float("inf")
            if phase == "critical"
            else float(np.nanmin([records[i]["xi_c"] for i, *_ in links]))
        )
        q_star, slope, c_star = float("nan"), float("nan"), float("nan")
        at = f"geometric-mean chi1 = {chi1:.4g} over {chis.size} layers with different maps"
    if np.isfinite(q_star) and q_star == 0:
        # The variance dies out: near q = 0 the network is linear, correlations are kept, and what is
        # lost is the signal itself, at the rate V'(0) = chi1(0) per layer.
        xi_q = -1.0 / math.log(slope) if 0 < slope < 1 - tol else float("inf")
        if np.isfinite(xi_q):
            body = (
                f"{phase} ({at}): the signal dies out, q shrinking by V'(0) = {slope:.3g} per layer "
                f"(xi_q = {xi_q:.3g}); depth {depth}"
            )
            body += (
                f" > 6 xi_q = {6 * xi_q:.0f}: expect vanishing gradients and training to fail"
                if depth > 6 * xi_q
                else f" <= 6 xi_q = {6 * xi_q:.0f}"
            )
        else:
            body = (
                f"{phase} ({at}): the variance decays to 0 as a power law, not exponentially (V'(0) = 1); depth {depth}"
            )
        xi_c = xi_q
    elif np.isinf(q_star):
        body = f"{phase} ({at}): the variance grows without bound (q* = inf); depth {depth}"
    elif phase == "critical" or not np.isfinite(xi_c):
        body = f"critical ({at}): correlations propagate with no exponential depth scale; depth {depth}"
    else:
        how = (
            "inputs become indistinguishable"
            if phase == "ordered"
            else f"inputs decorrelate towards c* = {c_star:.2g}"
            if np.isfinite(c_star)
            else "inputs decorrelate"
        )
        body = (
            f"{phase} ({at}): correlations forget the input within ~{max(xi_c, 1):.0f} layers "
            f"(xi_c = {xi_c:.3g}; {how}); depth {depth}"
        )
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
    pred = np.array([layer.predicted_q for layer in diagnosis.layers])
    meas = np.array([layer.measured_q for layer in diagnosis.layers])
    sd = np.array([layer.rel_sd for layer in diagnosis.layers])
    ok = np.isfinite(sd)
    ax.fill_between(
        layers[ok],
        (pred * np.maximum(1 - sd, 1e-3))[ok],
        (pred * (1 + sd))[ok],
        color="C0",
        alpha=0.15,
        lw=0,
        label="prediction +- 1 sd (finite width)",
    )
    ax.plot(layers, pred, "-", color="C0", lw=1.5, label="predicted (mean field)")
    ax.plot(layers, meas, "o", color="C3", ms=3.5, mfc="none", label="measured")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("pre-activation second moment")
    ax.set_title(title if title is not None else f"{diagnosis.phase}, depth {diagnosis.depth}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig

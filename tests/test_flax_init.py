"""Tests of mean-field initialisation and diagnosis of Flax NNX models (jaxsig.flax.autoinit, jaxsig.flax.diagnose).

Independent references: closed forms (He initialisation, ``sW^2 = 2`` for ReLU;
the edge of chaos of tanh at ``sb^2 = 0``, ``sW^2 = 1 / tanh'(0)^2 = 1``;
leaky ReLU's ``m2 = (1 + a^2) / 2``; residual variances adding), SciPy adaptive
quadrature for every other Gaussian moment (tanh, shifted tanh, relu6, a
LayerNorm-shifted ReLU, the rational family at its current parameters),
:mod:`jaxsig.dynamics` for the phase of a network, and sampled networks for the
statistical test, whose tolerance is derived in its docstring.
"""

from __future__ import annotations

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import integrate

import jaxsig
from jaxsig import dynamics
from jaxsig import flax as jflax
from jaxsig.integrations import flax_graph, flax_plan
from jaxsig.integrations.flax import NNXActivation

F = jnp.float64
CLOSED = 1e-10  # closed forms and SciPy references: the quadrature is exact to ~1e-14 here


# --- Helpers -------------------------------------------------------------------------------------------


def _gauss(f, mu=0.0, sigma=1.0, points=()):
    """``E[f(mu + sigma Z)]``, ``Z ~ N(0, 1)``, by adaptive SciPy quadrature (split at ``points`` in z)."""

    def g(z):
        return f(mu + sigma * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    edges = sorted({-40.0, 40.0, *((p - mu) / sigma for p in points)})
    return sum(integrate.quad(g, a, b, epsabs=1e-15, epsrel=1e-13, limit=400)[0] for a, b in zip(edges, edges[1:]))


def _mlp(act, depth, width=64, d_in=12, seed=0, use_bias=True, out=None, kernel_init=None, bias_init=None):
    """``depth`` dense layers ``Linear -> act -> Linear -> ...`` (float64), optionally a readout of ``out`` units."""
    rngs = nnx.Rngs(seed)
    kw = dict(param_dtype=F, use_bias=use_bias, rngs=rngs)
    if kernel_init is not None:
        kw["kernel_init"] = kernel_init
    if bias_init is not None:
        kw["bias_init"] = bias_init
    layers = [nnx.Linear(d_in, width, **kw)]
    for _ in range(depth - 1):
        layers += [act, nnx.Linear(width, width, **kw)]
    if out:
        layers += [act, nnx.Linear(width, out, **kw)]
    return nnx.Sequential(*layers)


def _x(n=16, d=12, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, d), F) * 1.3 + 0.2  # off-centre data


def _sw2(layer):
    """Measured ``fan_in * mean(W^2)`` of a dense layer."""
    w = np.asarray(layer.kernel[...])
    return float(np.mean(w * w) * w.shape[0])


def _sb2(layer):
    return float(np.mean(np.asarray(layer.bias[...]) ** 2))


def _dense(model):
    return [m for m in model.layers if isinstance(m, nnx.Linear)]


# --- Closed forms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "act",
    [jax.nn.relu, NNXActivation("relu"), lambda h: jnp.maximum(h, 0.0)],
    ids=["jax.nn.relu", "NNXActivation", "inline"],
)
def test_relu_gets_he_initialisation(act):
    model = _mlp(act, depth=5)
    x = _x()
    report = jflax.autoinit(model, x)
    first, *hidden = report.layers
    # First layer: the data's second moment is measured, sW^2 = q / mean(x^2).
    assert first.input == "data"
    assert first.sigma_w2 == pytest.approx(1.0 / float(jnp.mean(x * x)), rel=1e-12)
    for layer, row in zip(_dense(model)[1:], hidden):
        assert row.input == "relu" or row.input.startswith("expr") or row.input == "max"
        assert row.sigma_w2 == pytest.approx(2.0, abs=CLOSED)  # (1 - 0) / m2(1) = 1 / (1/2)
        assert (row.sigma_b2, row.q, row.chi1, row.slope) == pytest.approx((0.0, 1.0, 1.0, 1.0), abs=CLOSED)
        assert _sw2(layer) == pytest.approx(2.0, abs=CLOSED)  # rescale mode sets the mean square exactly
        assert _sb2(layer) == 0.0
    for mode, sb2 in (("critical", 0.0), ("critical", None)):
        report = jflax.autoinit(model, x, mode=mode, sigma_b2=sb2)
        for row in report.layers[1:]:
            assert (row.sigma_w2, row.sigma_b2) == pytest.approx((2.0, 0.0), abs=CLOSED)


def test_tanh_edge_of_chaos_and_fixed_q_closed_forms():
    model = _mlp(jnp.tanh, depth=4)
    x = _x()
    report = jflax.autoinit(model, x, mode="critical", sigma_b2=0.0)
    for layer, row in zip(_dense(model)[1:], report.layers[1:]):
        assert row.sigma_w2 == pytest.approx(1.0, abs=CLOSED)  # 1 / tanh'(0)^2
        assert row.sigma_b2 == 0.0
        assert _sw2(layer) == pytest.approx(1.0, abs=CLOSED)
    # The targets then follow the variance map from q = 1: q_2 = m2(1) for tanh.
    m2 = _gauss(lambda u: math.tanh(u) ** 2)
    assert report.layers[1].q == pytest.approx(m2, abs=CLOSED)

    g2sq = _gauss(lambda u: math.cosh(u) ** -4)  # E[tanh'(Z)^2]
    report = jflax.autoinit(model, x, mode="critical")  # fixed q = 1
    for layer, row in zip(_dense(model)[1:], report.layers[1:]):
        assert row.sigma_w2 == pytest.approx(1 / g2sq, abs=CLOSED)
        assert row.sigma_b2 == pytest.approx(1 - m2 / g2sq, abs=CLOSED)
        assert (row.q, row.chi1) == pytest.approx((1.0, 1.0), abs=CLOSED)
        assert (_sw2(layer), _sb2(layer)) == pytest.approx((1 / g2sq, 1 - m2 / g2sq), abs=CLOSED)

    q, sb2 = 2.0, 0.3  # preserve: sW^2 = (q - sb^2) / m2(sqrt q)
    report = jflax.autoinit(model, x, q=q, sigma_b2=sb2)
    m2q = _gauss(lambda u: math.tanh(u) ** 2, sigma=math.sqrt(q))
    for row in report.layers[1:]:
        assert (row.sigma_w2, row.sigma_b2, row.q) == pytest.approx(((q - sb2) / m2q, sb2, q), abs=CLOSED)
    assert report.layers[0].sigma_w2 == pytest.approx((q - sb2) / float(jnp.mean(x * x)), rel=1e-12)


def test_kinks_of_plain_functions_are_found():
    # Leaky ReLU written inline: m2 = (1 + a^2) / 2 at q = 1; the kink at 0 is a panel edge anyway.
    model = _mlp(lambda h: jnp.where(h > 0, h, 0.1 * h), depth=3)
    report = jflax.autoinit(model, _x())
    for row in report.layers[1:]:
        assert row.sigma_w2 == pytest.approx(2.0 / 1.01, abs=CLOSED)
    # relu6 = clip(h, 0, 6) at q = 9: the kink at 6 must be found for the quadrature to be exact.
    model = _mlp(lambda h: jnp.clip(h, 0.0, 6.0), depth=3)
    graph = flax_graph.trace(model, _x())
    assert graph.input_expr(graph.layers[1].index).slice.kinks == (0.0, 6.0)
    report = jflax.autoinit(model, _x(), q=9.0)
    m2 = _gauss(lambda u: min(max(u, 0.0), 6.0) ** 2, sigma=3.0, points=(0.0, 6.0))
    for row in report.layers[1:]:
        assert row.sigma_w2 == pytest.approx(9.0 / m2, abs=CLOSED)


def test_off_centre_activation_and_layernorm_affine():
    # tanh(h + 0.3): an activation of a shifted Gaussian (mu != 0).
    model = _mlp(lambda h: jnp.tanh(h + 0.3), depth=3)
    report = jflax.autoinit(model, _x())
    m2 = _gauss(lambda u: math.tanh(u) ** 2, mu=0.3)
    assert report.layers[1].sigma_w2 == pytest.approx(1 / m2, abs=CLOSED)
    # Linear -> LayerNorm(scale 1.5, bias 0.2) -> relu -> Linear: LN resets q; its affine sets the moments.
    rngs = nnx.Rngs(0)
    ln = nnx.LayerNorm(
        64,
        scale_init=nnx.initializers.constant(1.5),
        bias_init=nnx.initializers.constant(0.2),
        param_dtype=F,
        rngs=rngs,
    )
    model = nnx.Sequential(
        nnx.Linear(12, 64, param_dtype=F, rngs=rngs), ln, jax.nn.relu, nnx.Linear(64, 64, param_dtype=F, rngs=rngs)
    )
    report = jflax.autoinit(model, _x(), q=2.0)
    s = 1.5 / math.sqrt(1 + ln.epsilon / 2.0)  # (h - 0) / sqrt(Var h + eps), Var h = q = 2, times the scale
    m2 = _gauss(lambda u: max(u, 0.0) ** 2, mu=0.2, sigma=s, points=(0.0,))
    assert report.layers[1].q_in == pytest.approx(m2, abs=CLOSED)
    assert report.layers[1].sigma_w2 == pytest.approx(2.0 / m2, abs=CLOSED)


class _PreActResNet(nnx.Module):
    """``h_0 = W_in x``, ``h_{k+1} = h_k + W2 relu(W1 relu(h_k))``, readout ``W_out relu(h_K)``."""

    def __init__(self, blocks=3, width=64, seed=0):
        rngs = nnx.Rngs(seed)
        kw = dict(param_dtype=F, rngs=rngs)
        self.inp = nnx.Linear(12, width, **kw)
        self.blocks = nnx.List(
            [nnx.Dict(l1=nnx.Linear(width, width, **kw), l2=nnx.Linear(width, width, **kw)) for _ in range(blocks)]
        )
        self.out = nnx.Linear(width, 5, **kw)

    def __call__(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b.l2(jax.nn.relu(b.l1(jax.nn.relu(h))))
        return self.out(jax.nn.relu(h))


def test_residual_sums_add_variances():
    model = _PreActResNet()
    report = jflax.autoinit(model, _x())
    rows = {r.path: r for r in report.layers}
    for k in range(3):
        # The stream carries 1 + k layer outputs of variance 1: relu of it has m2 = (1 + k) / 2.
        assert rows[f"blocks.{k}.l1"].sigma_w2 == pytest.approx(2.0 / (1 + k), abs=CLOSED)
        assert rows[f"blocks.{k}.l1"].input == "relu"
        assert rows[f"blocks.{k}.l2"].sigma_w2 == pytest.approx(2.0, abs=CLOSED)
    assert rows["out"].sigma_w2 == pytest.approx(2.0 / 4, abs=CLOSED)
    assert all(r.q == pytest.approx(1.0, abs=CLOSED) for r in report.layers)
    assert jflax.diagnose(model, _x()).phase == "residual"


def test_convolution_padding_fraction_and_batchnorm():
    rngs = nnx.Rngs(0)
    kw = dict(param_dtype=F, rngs=rngs)
    model = nnx.Sequential(
        nnx.Conv(2, 8, (3, 3), **kw),
        jax.nn.relu,
        nnx.Conv(8, 8, (3, 3), **kw),
        jax.nn.relu,
        nnx.Conv(8, 8, (3, 3), padding="VALID", **kw),
    )
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 2), F)
    report = jflax.autoinit(model, x)
    p = (22 / 24) ** 2  # SAME padding on 8x8: per axis, 2 of the 24 tap positions fall outside
    assert report.layers[0].fan_in == 18 and report.layers[1].fan_in == 72
    assert report.layers[1].sigma_w2 == pytest.approx(2.0 / p, abs=CLOSED)
    assert report.layers[2].sigma_w2 == pytest.approx(2.0, abs=CLOSED)  # VALID: every tap sees data
    assert report.layers[0].sigma_w2 == pytest.approx(1.0 / (p * float(jnp.mean(x * x))), rel=1e-12)
    # BatchNorm in evaluation mode with fresh statistics: y = h / sqrt(1 + eps).
    bn = nnx.BatchNorm(64, use_running_average=True, **kw)
    model = nnx.Sequential(nnx.Linear(12, 64, **kw), bn, jax.nn.relu, nnx.Linear(64, 64, **kw))
    report = jflax.autoinit(model, _x())
    assert report.layers[1].sigma_w2 == pytest.approx(2.0 * (1 + bn.epsilon), abs=CLOSED)


class _Norms(nnx.Module):
    """``Linear -> norm -> Dropout -> relu -> Linear``: the norm resets q, dropout is the identity."""

    def __init__(self, norm):
        rngs = nnx.Rngs(0)
        self.a, self.b = nnx.Linear(12, 64, param_dtype=F, rngs=rngs), nnx.Linear(64, 64, param_dtype=F, rngs=rngs)
        self.norm = norm
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        h = self.norm(self.a(x))
        return self.b(jax.nn.relu(self.drop(h)))


# Flax keeps BatchNorm's running statistics in float32 whatever param_dtype says; their update warns.
@pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types")
@pytest.mark.parametrize("kind", ["rms", "batch-train"])
def test_rmsnorm_batchnorm_training_mode_and_dropout(kind):
    rngs = nnx.Rngs(0)
    q = 2.0
    if kind == "rms":  # y = h / sqrt(mean h^2 + eps): second moment q / (q + eps)
        norm = nnx.RMSNorm(64, param_dtype=F, rngs=rngs)
    else:  # per-unit batch statistics: in the mean-field limit the same map as LayerNorm's
        norm = nnx.BatchNorm(64, use_running_average=False, param_dtype=F, rngs=rngs)
    model = _Norms(norm)
    report = jflax.autoinit(model, _x(), q=q)
    m2 = 0.5 * q / (q + norm.epsilon)  # relu of a centred Gaussian of that variance
    assert report.layers[1].q_in == pytest.approx(m2, abs=CLOSED)
    assert report.layers[1].sigma_w2 == pytest.approx(q / m2, abs=CLOSED)
    stats = [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(model, nnx.BatchStat))]
    jflax.diagnose(model, _x())
    after = [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(model, nnx.BatchStat))]
    assert all(np.array_equal(a, b) for a, b in zip(stats, after))  # diagnose runs a copy


class _PerUnitSlope(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.a, self.b = nnx.Linear(12, 16, rngs=rngs), nnx.Linear(16, 4, rngs=rngs)
        self.slope = nnx.Param(jnp.linspace(0.0, 0.3, 16))  # a per-channel PReLU

    def __call__(self, x):
        h = self.a(x)
        return self.b(jnp.where(h > 0, h, self.slope[...] * h))


def test_per_unit_activation_coefficients_are_refused():
    with pytest.raises(jflax.UnsupportedModelError, match="different coefficients at different units"):
        jflax.autoinit(_PerUnitSlope(), _x().astype(jnp.float32))


class _Learnable(nnx.Module):
    def __init__(self, depth=4, width=64):
        rngs = nnx.Rngs(0)
        self.act = NNXActivation("rational", learnable=True, param_dtype=F)
        self.layers = nnx.List(
            [nnx.Linear(12 if i == 0 else width, width, param_dtype=F, rngs=rngs) for i in range(depth)]
        )

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else self.act(x))
        return x


def test_learned_activation_is_retargeted_without_retracing(monkeypatch):
    traces = []
    real = flax_graph.trace
    monkeypatch.setattr(flax_graph, "trace", lambda *a, **k: traces.append(1) or real(*a, **k))
    model, x = _Learnable(), _x()
    flax_plan._PLANS.clear()
    base = np.asarray(model.act.params["numerator"][...])
    for scale in (1.0, 1.3, 0.7):  # as if training had moved the activation
        model.act.params["numerator"][...] = jnp.asarray(base * scale, F)
        report = jflax.autoinit(model, x)
        values = model.act.values
        # Independent reference: SciPy quadrature of the module's own function at its current parameters.
        m2 = _gauss(lambda u, act=model.act: float(act(jnp.asarray(u, F))) ** 2)
        assert report.layers[1].sigma_w2 == pytest.approx(1 / m2, rel=1e-9)
        assert report.layers[1].input == "rational"
        assert float(jaxsig.moments(model.act.activation, 1.0, params=values).m2) == pytest.approx(m2, rel=1e-9)
        # The weights follow (later calls write through the compiled path).
        assert _sw2(model.layers[1]) == pytest.approx(1 / m2, rel=1e-9)
    assert len(traces) == 1  # traced once; later calls reuse the structure
    model.layers[2].kernel.set_value(jnp.zeros((64, 64), F))  # an all-zero kernel is drawn, then scaled
    report = jflax.autoinit(model, x)
    assert _sw2(model.layers[2]) == pytest.approx(report.layers[2].sigma_w2, rel=1e-12)
    assert np.std(np.asarray(model.layers[2].kernel[...])) > 0


def test_redraw_exclude_and_rescale_directions():
    model, x = _mlp(jnp.tanh, depth=4, width=256), _x()
    before = [np.asarray(layer.kernel[...]) for layer in _dense(model)]
    report = jflax.autoinit(model, x, exclude=("layers.4",))
    after = [np.asarray(layer.kernel[...]) for layer in _dense(model)]
    # Rescaling keeps directions: each kernel is a multiple of the old one; the excluded one is untouched.
    for b, a in zip(before, after):
        ratio = a / b
        assert np.allclose(ratio, ratio.flat[0], rtol=1e-12)
    assert np.array_equal(before[2], after[2]) and not report.layers[2].set
    # The layer after the excluded one is targeted from its actual output scale q_4 = sW_4^2 m2(1).
    q4 = _sw2(_dense(model)[2]) * _gauss(lambda u: math.tanh(u) ** 2)
    assert report.layers[2].q == pytest.approx(q4, rel=1e-9)
    m2 = _gauss(lambda u: math.tanh(u) ** 2, sigma=math.sqrt(q4))
    assert report.layers[3].sigma_w2 == pytest.approx(1 / m2, abs=CLOSED)
    # Redraw: fresh Gaussian weights, mean square within 5 sampling sd (relative sd sqrt(2 / size)).
    jflax.autoinit(model, x, weights="redraw", key=3, mode="critical")
    g2sq = _gauss(lambda u: math.cosh(u) ** -4)
    w = np.asarray(_dense(model)[1].kernel[...])
    assert np.mean(w * w) * 256 == pytest.approx(1 / g2sq, rel=5 * math.sqrt(2 / w.size))
    kurtosis = np.mean(w**4) / np.mean(w * w) ** 2
    assert kurtosis == pytest.approx(3.0, abs=0.1)  # Gaussian, not truncated
    b = np.asarray(_dense(model)[1].bias[...])
    assert np.mean(b * b) == pytest.approx(1 - _gauss(lambda u: math.tanh(u) ** 2) / g2sq, rel=5 * math.sqrt(2 / 256))
    w2 = np.asarray(jflax.autoinit(model, x, weights="redraw", key=4) and _dense(model)[1].kernel[...])
    assert not np.allclose(w, w2)


def test_float32_model_precision_follows_its_dtype():
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(nnx.Linear(12, 64, rngs=rngs), jax.nn.relu, nnx.Linear(64, 64, rngs=rngs))
    report = jflax.autoinit(model, _x().astype(jnp.float32))
    assert report.layers[1].sigma_w2 == pytest.approx(2.0, rel=1e-6)
    assert model.layers[2].kernel[...].dtype == jnp.float32


# --- diagnose ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sw2, sb2, phase", [(0.7, 0.05, "ordered"), (3.0, 0.05, "chaotic"), (1.0, 0.0, "critical")])
def test_diagnose_reports_the_phase_of_the_fixed_point(sw2, sb2, phase):
    init = jax.nn.initializers.variance_scaling(sw2, "fan_in", "normal")
    binit = jax.nn.initializers.normal(math.sqrt(sb2)) if sb2 else jax.nn.initializers.zeros
    model = _mlp(jnp.tanh, depth=8, width=256, kernel_init=init, bias_init=binit)
    d = jflax.diagnose(model, _x(64))
    assert d.phase == phase and d.depth == 8
    assert f"{phase} (" in d.verdict and "depth 8" in d.verdict
    # The network's chi1 is that of the fixed point of its mean scales (jaxsig.dynamics).
    hidden = d.layers[1:]
    mean_sw2 = np.mean([layer.sigma_w2 for layer in hidden])
    mean_sb2 = np.mean([layer.sigma_b2 for layer in hidden])
    q0 = float(np.median([layer.predicted_q for layer in d.layers[:-1]]))
    fp = dynamics.fixed_point("tanh", mean_sw2, mean_sb2, q0=q0)
    assert d.chi1 == pytest.approx(float(fp.chi1), rel=1e-8)
    if phase == "ordered":  # xi_c = -1 / log chi1 in the ordered phase (c* = 1)
        assert d.xi_c == pytest.approx(-1 / math.log(float(fp.chi1)), rel=1e-6)
    # Per layer: chi1 = sW^2 E[tanh'(g)^2] at the predicted variance of the layer before.
    l1 = d.layers[2]
    q_prev = d.layers[1].predicted_q
    assert l1.chi1 == pytest.approx(
        l1.sigma_w2 * _gauss(lambda u: math.cosh(u) ** -4, sigma=math.sqrt(q_prev)), rel=2e-2
    )  # per-input predictions, averaged: Jensen at a few %
    # Measured within the finite-width error model.
    assert all(abs(layer.ratio - 1) <= 4 * layer.rel_sd for layer in d.layers)


def test_diagnose_flax_default_gelu_is_ordered_and_dies_out():
    model = _mlp(
        lambda h: jax.nn.gelu(h, approximate=False), depth=12, width=64, kernel_init=nnx.initializers.lecun_normal()
    )
    d = jflax.diagnose(model, _x(16))
    assert d.phase == "ordered"
    assert "the signal dies out" in d.verdict and "training to fail" in d.verdict
    # GELU near 0 is h / 2: the variance falls by sW^2 / 4 per layer.
    q = [layer.predicted_q for layer in d.layers]
    assert q[-1] / q[-2] == pytest.approx(d.layers[-1].sigma_w2 / 4, rel=2e-2)
    assert q[-1] < 1e-5 * q[0]
    text = str(d)
    assert "q measured" in text and d.verdict in text


def test_statistical_variance_after_autoinit_matches_finite_width_error():
    """After autoinit, measured per-layer second moments stay within 4 sd/sqrt(S) of their targets.

    Error model (stated in :func:`jaxsig.flax.diagnose`): given layer ``l - 1``,
    the ``n`` units of layer ``l`` are iid ``N(0, s_l)``, so one input's measured
    second moment is ``s_l chi^2_n / n`` (relative variance ``2/n``), and ``s_l``
    itself carries the fluctuation of ``mean_j L(h_j)^2`` over the ``fan_in``
    units before it, propagated by the delta method:
    ``Var d_l = kappa_l^2 Var d_{l-1} + sW^4 Var[L^2] / (fan_in q_l^2)``.
    ``rel_sd`` is the resulting sd of one input's ``measured / predicted``. For
    ``S`` independent networks (seeds), the seed-average of the batch-averaged
    ratio has sd at most ``rel_sd / sqrt(S)`` (the batch shares the weights, so
    no credit is taken for it); ``4`` of them is a 6e-5 two-sided tail per layer
    for a Gaussian. Jensen biases are ``O(1/n) = 0.002``, far inside. The test's
    power: the same measurements against targets 20% off at every layer fail.
    """
    from sklearn.datasets import load_digits

    x = load_digits().data
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    x = jnp.asarray(x[::30][:48], F)
    width, depth, seeds = 512, 10, 6
    cases = {
        "tanh critical": (jnp.tanh, dict(mode="critical")),
        "gelu preserve, sb2 = 0.25": (lambda h: jax.nn.gelu(h, approximate=False), dict(sigma_b2=0.25)),
    }
    for name, (act, kw) in cases.items():
        ratios, sds, wrong = [], None, []
        for seed in range(seeds):
            model = _mlp(act, depth=depth, width=width, d_in=64, seed=seed)
            report = jflax.autoinit(model, x, key=seed, **kw)
            d = jflax.diagnose(model, x)
            measured = np.array([layer.measured_q for layer in d.layers])
            targets = np.array([r.q for r in report.layers])
            ratios.append(measured / targets)
            wrong.append(measured / (targets * 1.2))
            sds = np.array([layer.rel_sd for layer in d.layers])
        mean = np.mean(ratios, axis=0)
        tol = 4 * sds / math.sqrt(seeds)
        assert np.all(np.isfinite(sds)) and np.all(sds < 0.25), (name, sds)
        assert np.all(np.abs(mean - 1) <= tol), (name, mean, tol)
        assert np.any(np.abs(np.mean(wrong, axis=0) - 1) > tol), name


# --- Errors ------------------------------------------------------------------------------------------------


class _Gate(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.a, self.b, self.c = (
            nnx.Linear(12, 16, rngs=rngs),
            nnx.Linear(12, 16, rngs=rngs),
            nnx.Linear(16, 4, rngs=rngs),
        )

    def __call__(self, x):
        return self.c(jnp.tanh(self.a(x)) * self.b(x))


class _Pool(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.a, self.b = nnx.Linear(12, 16, rngs=rngs), nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.a(x))
        return self.b(h.reshape(h.shape[0], 4, 4).mean(axis=1))


class _Shared(nnx.Module):
    def __init__(self):
        self.a = nnx.Linear(12, 12, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.a(jnp.tanh(self.a(x)))


class _Attention(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.a = nnx.Linear(12, 16, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=16, decode=False, rngs=rngs)

    def __call__(self, x):
        h = self.a(x)[:, None, :]
        return self.attn(h)


class _Remat(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.a, self.b = nnx.Linear(12, 16, rngs=rngs), nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x):
        return jax.checkpoint(lambda h: self.b(jnp.tanh(h)))(self.a(x))


class _PostAct(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.a, self.b, self.c = (
            nnx.Linear(12, 16, rngs=rngs),
            nnx.Linear(16, 16, rngs=rngs),
            nnx.Linear(16, 4, rngs=rngs),
        )

    def __call__(self, x):
        h = jax.nn.relu(self.a(x))
        return self.c(jax.nn.relu(h + self.b(h)))


@pytest.mark.parametrize(
    "model, match",
    [
        (nnx.Sequential(jnp.tanh), "no nnx.Linear or nnx.Conv"),
        (_Gate(), r"Linear 'c' combines two different signals with `mul`"),
        (_Pool(), r"goes through `reduce_sum`.*after layer 'a'"),
        (_Shared(), r"Linear at 'a' is called more than once"),
        (_Attention(), r"MultiHeadAttention at 'attn' is not supported"),
        (_Remat(), r"layer\(s\) 'b' are called inside `remat"),
        (_PostAct(), "post-activation residual"),
    ],
    ids=["no-layer", "gate", "pooling", "shared", "attention", "remat", "post-activation"],
)
def test_unsupported_models_are_refused_by_name(model, match):
    x = _x().astype(jnp.float32)
    with pytest.raises(jflax.UnsupportedModelError, match=match):
        jflax.autoinit(model, x)


def test_bad_arguments_are_explained():
    model, x = _mlp(jnp.tanh, depth=2), _x()
    with pytest.raises(ValueError, match="q must be positive"):
        jflax.autoinit(model, x, q=0.0)
    with pytest.raises(ValueError, match=r"mode must be one of \('preserve', 'critical'\)"):
        jflax.autoinit(model, x, mode="chaos")
    with pytest.raises(ValueError, match="weights must be one of"):
        jflax.autoinit(model, x, weights="orthogonal")
    with pytest.raises(ValueError, match="sigma_b2 must satisfy 0 <= sigma_b2 < q"):
        jflax.autoinit(model, x, sigma_b2=1.5)
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['head'\]; the layers are"):
        jflax.autoinit(model, x, exclude=("head",))
    with pytest.raises(TypeError, match="floating-point data"):
        jflax.autoinit(model, jnp.ones((4, 12), jnp.int32))
    with pytest.raises(TypeError, match="one array"):
        jflax.autoinit(model, (x, x))
    with pytest.raises(TypeError, match="Flax NNX module"):
        jflax.diagnose(jnp.tanh, x)
    with pytest.raises(ValueError, match=r"no edge of chaos keeps q=1.*use mode='preserve'"):
        jflax.autoinit(_mlp(jax.nn.sigmoid, depth=2), x, mode="critical")  # m2/g2^2 > 1: sb^2 < 0
    with pytest.raises(ValueError, match=r"has no bias \(use_bias=False\)"):
        jflax.autoinit(_mlp(jnp.tanh, depth=2, use_bias=False), x, mode="critical")


# --- Results --------------------------------------------------------------------------------------------------


def test_results_are_immutable_tables_and_the_figure_is_lazy(tmp_path):
    model, x = _mlp(jnp.tanh, depth=3), _x()
    report = jflax.autoinit(model, x, mode="critical")
    with pytest.raises(AttributeError):
        report.mode = "preserve"
    text = str(report)
    assert "sW^2" in text and "layers.2" in text and "mode=critical" in text
    d = jflax.diagnose(model, x)
    with pytest.raises(AttributeError):
        d.layers[0].measured_q = 1.0
    assert isinstance(d.layers[0], jflax.LayerDiagnosis) and len(d.layers) == 3
    import matplotlib

    matplotlib.use("Agg")
    fig = jflax.plot_diagnosis(d)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2
    fig.savefig(tmp_path / "d.png")
    code = "import sys, jaxsig.flax\nassert 'matplotlib' not in sys.modules\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr

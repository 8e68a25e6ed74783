"""Tests of jaxsig.flax: modules, regulariser, initialisers, and a real network at init.

Independent references: the plain activation functions (module outputs and
gradients), closed forms (leaky ReLU's ``g2``, ``m2``; ReLU's ``sW^2 = 2``),
SciPy quadrature (tanh's ``m2``, ``g2``), central finite differences, and
simulation of deep networks with a tolerance derived below.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import integrate

import jaxsig
from jaxsig import dynamics
from jaxsig import flax as jflax

# A design result shipped with the examples (examples/design_demo.py writes it).
DESIGN_JSON = pathlib.Path(__file__).resolve().parents[1] / "examples" / "designed_result.json"

# Activations with and without parameters, flat and nested (rational: lists).
CASES = ["gelu", "tanh", "leaky_relu", "swish_beta", "rational", "scaled_elu", "pwl_monotone"]


def _xs(n=41, dtype=jnp.float64):
    return jnp.linspace(-4.0, 4.0, n, dtype=dtype) + 0.013  # off-centre: not symmetric


def _leaves(state):
    """Array leaves of an NNX state, in key order (lists become int-keyed, same order)."""
    return [v[...] for v in jax.tree_util.tree_leaves(state, is_leaf=lambda v: isinstance(v, nnx.Variable))]


def _plain(name):
    """The reference: the registered activation, else the family (the documented order)."""
    if name in jaxsig.activations.names():
        return jaxsig.activations.get(name)
    return jaxsig.families.get(name)


# --- Import behaviour --------------------------------------------------------------------


def test_import_is_lazy_and_missing_flax_is_explained():
    code = (
        "import sys\n"
        "import jaxsig\n"
        "assert 'flax' not in sys.modules, 'import jaxsig imported flax'\n"
        "sys.modules['flax'] = None\n"  # simulate Flax not installed
        "try:\n"
        "    import jaxsig.flax\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "pip install 'jaxsig[flax]'" in out.stdout


# --- Modules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, learnable",
    [(n, False) for n in CASES] + [(n, True) for n in CASES if n not in ("gelu", "tanh")],
)
def test_modules_match_the_plain_function(name, learnable):
    act = _plain(name)
    x = _xs()
    expected = act(x) if act.params is None else act(x, act.params)
    nnx_mod = jflax.NNXActivation(name, learnable=learnable, param_dtype=jnp.float64)
    np.testing.assert_allclose(nnx_mod(x), expected, rtol=1e-15, atol=1e-15)
    linen_mod = jflax.LinenActivation(name, learnable=learnable, param_dtype=jnp.float64)
    variables = linen_mod.init(jax.random.key(0), x)
    np.testing.assert_allclose(linen_mod.apply(variables, x), expected, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(jax.jit(linen_mod.apply)(variables, x), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(nnx_mod, x), expected, rtol=1e-14, atol=1e-15)
    # Learnable: the parameters live in Flax's collections; fixed: they do not.
    n_params = len(jax.tree_util.tree_leaves(nnx.state(nnx_mod, nnx.Param)))
    n_linen = len(jax.tree_util.tree_leaves(variables))
    n_expected = len(jax.tree_util.tree_leaves(act.params)) if learnable else 0
    assert n_params == n_linen == n_expected


def test_module_parameter_override_and_float32():
    x = _xs(dtype=jnp.float32)
    mod = jflax.NNXActivation("leaky_relu", params={"negative_slope": 0.2})
    np.testing.assert_allclose(mod(x), jnp.where(x > 0, x, 0.2 * x), rtol=1e-7)
    assert mod(x).dtype == jnp.float32
    lin = jflax.LinenActivation("leaky_relu", params={"negative_slope": 0.2}, learnable=True)
    variables = lin.init(jax.random.key(0), x)
    assert variables["params"]["negative_slope"].dtype == jnp.float32
    np.testing.assert_allclose(variables["params"]["negative_slope"], 0.2, rtol=1e-7)
    assert lin.apply(variables, x).dtype == jnp.float32


@pytest.mark.parametrize("name", ["leaky_relu", "swish_beta", "rational"])
def test_learnable_parameters_receive_the_right_gradients(name):
    act = _plain(name)
    x = _xs()
    f = lambda p: jnp.sum(jnp.sin(act(x, p)))  # noqa: E731  (a nonlinear readout)
    p64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), act.params)
    expected = jax.grad(f)(p64)

    want = jax.tree_util.tree_leaves(expected)
    assert all(bool(jnp.all(jnp.abs(g) > 0)) for g in want)

    mod = jflax.NNXActivation(name, learnable=True, param_dtype=jnp.float64)
    grads = nnx.grad(lambda m: jnp.sum(jnp.sin(m(x))))(mod)
    got = _leaves(grads)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)

    lin = jflax.LinenActivation(name, learnable=True, param_dtype=jnp.float64)
    variables = lin.init(jax.random.key(0), x)
    g_lin = jax.tree_util.tree_leaves(jax.grad(lambda v: jnp.sum(jnp.sin(lin.apply(v, x))))(variables))
    assert len(g_lin) == len(want)
    for a, b in zip(g_lin, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_fixed_parameters_are_not_trained():
    mod = jflax.NNXActivation("swish_beta")
    grads = nnx.grad(lambda m: jnp.sum(m(_xs())))(mod)
    assert jax.tree_util.tree_leaves(grads) == []
    lin = jflax.LinenActivation("swish_beta")
    assert lin.init(jax.random.key(0), _xs()) == {}


def test_bad_module_arguments_are_explained():
    with pytest.raises(ValueError, match="no parameters to learn"):
        jflax.NNXActivation("gelu", learnable=True)
    with pytest.raises(ValueError, match="no parameters to learn"):
        jflax.LinenActivation("gelu", learnable=True).init(jax.random.key(0), _xs())
    with pytest.raises(KeyError, match="not a registered activation"):
        jflax.NNXActivation("gleu")
    with pytest.raises(TypeError, match="DesignResult"):
        jflax.NNXActivation.from_design(42)


# --- Design round trip ------------------------------------------------------------------------


@pytest.mark.skipif(not DESIGN_JSON.exists(), reason="examples/designed_result.json not present")
def test_from_design_round_trip(tmp_path):
    from jaxsig.designer import DesignResult

    result = DesignResult.load(DESIGN_JSON)
    saved = json.loads(DESIGN_JSON.read_text())
    x = _xs()
    expected = result.activation(x)
    # The stored parameters, read independently of DesignResult.
    fam = jaxsig.families.get(saved["family"]["name"], **saved["family"]["config"])
    params = jax.tree_util.tree_map(np.asarray, saved["params"], is_leaf=lambda v: isinstance(v, list))
    np.testing.assert_allclose(expected, fam(x, params), rtol=1e-15)

    for source in (DESIGN_JSON, result, result.save(tmp_path / "again.json")):
        mod = jflax.NNXActivation.from_design(source, param_dtype=jnp.float64)
        np.testing.assert_allclose(mod(x), expected, rtol=1e-15)
        lin = jflax.LinenActivation.from_design(source, param_dtype=jnp.float64)
        np.testing.assert_allclose(lin.apply(lin.init(jax.random.key(0), x), x), expected, rtol=1e-15)
    learn = jflax.NNXActivation.from_design(DESIGN_JSON, learnable=True, param_dtype=jnp.float64)
    np.testing.assert_allclose(learn(x), expected, rtol=1e-15)
    assert len(jax.tree_util.tree_leaves(nnx.state(learn, nnx.Param))) == len(jax.tree_util.tree_leaves(params))
    # The designed parameters meet their Gaussian targets (tv and c are the FD test's).
    gaussian = [t for t in saved["targets"] if t.split()[0] in ("m2", "g2")]
    assert len(gaussian) == 2
    assert float(jflax.signature_regularizer(gaussian, learn)) <= 1e-10


# --- The regulariser ----------------------------------------------------------------------------


def _leaky_penalty(a):
    """Closed form for leaky ReLU (slope a): g2(s)^2 = (1 + a^2)/2, m2(s) = s^2 (1 + a^2)/2."""
    g2 = math.sqrt((1 + a * a) / 2)
    m2_at_2 = 4 * (1 + a * a) / 2
    value = (g2 - 0.5) ** 2 + 3.0 * (m2_at_2 - 1.0) ** 2
    grad = (g2 - 0.5) * a / g2 + 3.0 * 2 * (m2_at_2 - 1.0) * 4 * a
    return value, grad


LEAKY_TARGETS = ["g2 <= 0.5", "m2@2.0 == 1 weight 3", "g1 >= 0"]  # the last one holds: no term


@pytest.mark.parametrize("a", [0.3, -0.4])
def test_regularizer_closed_form_value_and_gradient(a):
    value, grad = _leaky_penalty(a)
    mod = jflax.NNXActivation("leaky_relu", params={"negative_slope": a}, learnable=True, param_dtype=jnp.float64)
    np.testing.assert_allclose(jflax.signature_regularizer(LEAKY_TARGETS, mod), value, rtol=1e-12)
    g = nnx.grad(lambda m: jflax.signature_regularizer(LEAKY_TARGETS, m))(mod)
    np.testing.assert_allclose(g["params"]["negative_slope"][...], grad, rtol=1e-10)
    # Linen: the module's params subtree is the activation's parameter dict.
    lin = jflax.LinenActivation("leaky_relu", params={"negative_slope": a}, learnable=True, param_dtype=jnp.float64)
    p = lin.init(jax.random.key(0), _xs())["params"]

    def reg(p):
        return jflax.signature_regularizer(LEAKY_TARGETS, lin, p)

    np.testing.assert_allclose(jax.jit(reg)(p), value, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(reg)(p)["negative_slope"], grad, rtol=1e-10)


def test_regularizer_vanishes_when_targets_hold():
    mod = jflax.NNXActivation("leaky_relu", params={"negative_slope": 0.3}, learnable=True, param_dtype=jnp.float64)
    targets = ["g2 <= 0.9", "m2 >= 0.1", "m1@0.5 <= 1"]
    assert float(jflax.signature_regularizer(targets, mod)) == 0.0
    g = nnx.grad(lambda m: jflax.signature_regularizer(targets, m))(mod)
    assert float(g["params"]["negative_slope"][...]) == 0.0


# Every kind of target: <=, >=, ==, @sigma, weight, objective.
FAMILY_TARGETS = ["g2@0.7 <= 0.5", "m1 == 0.1 weight 2", "m2@2.0 >= 5", "eta <= 0.01", "minimize g4 weight 0.1"]


def test_regularizer_gradient_matches_finite_differences():
    """FAMILY_TARGETS on a 3-parameter family at off-centre parameters; central
    differences with h = 1e-5 in float64 (truncation O(h^2) ~ 1e-10, rounding
    ~ eps / h ~ 1e-11)."""
    targets = jaxsig.targets.parse_targets(FAMILY_TARGETS)
    fam = jaxsig.families.get("swish_beta")
    p0 = {"beta": 1.3, "scale": 0.9, "shift": -0.2}
    mod = jflax.NNXActivation(fam, params=p0, learnable=True, param_dtype=jnp.float64)

    def reg(p):
        return jflax.signature_regularizer(targets, fam, p)

    g = nnx.grad(lambda m: jflax.signature_regularizer(targets, m))(mod)
    np.testing.assert_allclose(reg(p0), jflax.signature_regularizer(targets, mod), rtol=1e-15)
    h = 1e-5
    for k in p0:
        up, down = dict(p0), dict(p0)
        up[k] += h
        down[k] -= h
        fd = (float(reg(up)) - float(reg(down))) / (2 * h)
        got = float(g["params"][k][...])
        assert abs(got) > 1e-3, k
        np.testing.assert_allclose(got, fd, rtol=1e-6, err_msg=k)


def test_regularizer_gradient_reaches_the_activation_in_a_network():
    """In a real loss (cross-entropy + lam * R) the activation's gradient is the sum of both parts."""
    targets = jaxsig.targets.parse_targets(FAMILY_TARGETS)
    lam = 0.5

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(64, 32, param_dtype=jnp.float64, rngs=rngs)
            self.act = jflax.NNXActivation(jaxsig.families.get("swish_beta"), learnable=True, param_dtype=jnp.float64)
            self.l2 = nnx.Linear(32, 10, param_dtype=jnp.float64, rngs=rngs)

        def __call__(self, x):
            return self.l2(self.act(self.l1(x)))

    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = jnp.asarray(x[:32] / 16.0), jnp.asarray(y[:32])
    net = Net(nnx.Rngs(0))

    def ce(m):
        import optax

        return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

    def reg(m):
        return jflax.signature_regularizer(targets, m.act)

    g_total = nnx.grad(lambda m: ce(m) + lam * reg(m))(net)["act"]["params"]
    g_ce = nnx.grad(ce)(net)["act"]["params"]
    g_reg = nnx.grad(reg)(net)["act"]["params"]
    for k in ("beta", "scale", "shift"):
        assert abs(float(g_reg[k][...])) > 1e-3, k
        np.testing.assert_allclose(g_total[k][...], g_ce[k][...] + lam * g_reg[k][...], rtol=1e-10, atol=1e-14)


# Mean-field targets at an off-centre operating point, with a term of each kind.
NETWORK_TARGETS = ["chi1 == 1", "dV <= 0.1", "m1 == 0"]
OPERATING_POINT = dict(q=1.5, sigma_b2=0.2)


def _swish_network_penalty(p, q, sb2):
    """SciPy reference for NETWORK_TARGETS on ``scale x sigmoid(beta x) + shift``: at the
    variance-preserving point sW^2 = (q - sb^2) / m2(sqrt q), chi1 = sW^2 E[phi'(sqrt q Z)^2],
    dV = sW^2 dm2/dq = sW^2 E[phi phi'(sqrt q Z) Z] / sqrt q; m1 at sigma = 1."""
    b, a, c = p["beta"], p["scale"], p["shift"]

    def sig(x):
        return 1.0 / (1.0 + math.exp(-b * x))

    def phi(x):
        return a * x * sig(x) + c

    def dphi(x):
        return a * (sig(x) + b * x * sig(x) * (1.0 - sig(x)))

    def e(f):
        return integrate.quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40, epsabs=1e-14)[0]

    s = math.sqrt(q)
    sw2 = (q - sb2) / e(lambda z: phi(s * z) ** 2)
    chi1 = sw2 * e(lambda z: dphi(s * z) ** 2)
    dv = sw2 * e(lambda z: phi(s * z) * dphi(s * z) * z) / s
    m1 = e(phi)
    assert dv > 0.1  # the inequality is violated: its term counts
    return (chi1 - 1.0) ** 2 + (dv - 0.1) ** 2 + m1**2


def test_regularizer_network_targets_at_the_operating_point():
    """chi1, dV at (q, sigma_b2) as design evaluates them, against SciPy; eager and under jit."""
    fam = jaxsig.families.get("swish_beta")
    p0 = {"beta": 1.3, "scale": 0.9, "shift": -0.2}
    ref = _swish_network_penalty(p0, OPERATING_POINT["q"], OPERATING_POINT["sigma_b2"])
    parsed = jaxsig.targets.parse_targets(NETWORK_TARGETS, **OPERATING_POINT)  # what design minimises
    design_value = jaxsig.targets.penalty(parsed, fam, p0)
    np.testing.assert_allclose(design_value, ref, rtol=1e-10)

    def reg(p):
        return jflax.signature_regularizer(NETWORK_TARGETS, fam, p, **OPERATING_POINT)

    np.testing.assert_allclose(reg(p0), design_value, rtol=1e-14)
    np.testing.assert_allclose(jax.jit(reg)(p0), design_value, rtol=1e-12)
    # A parsed Targets keeps its operating point; the default one (q = 1, sb^2 = 0) differs.
    np.testing.assert_allclose(jflax.signature_regularizer(parsed, fam, p0), design_value, rtol=1e-14)
    assert abs(float(jflax.signature_regularizer(NETWORK_TARGETS, fam, p0)) - ref) > 1e-3
    # Gradients under jit (NNX module, nnx.jit) match eager ones and central differences.
    mod = jflax.NNXActivation(fam, params=p0, learnable=True, param_dtype=jnp.float64)
    grad = nnx.jit(nnx.grad(lambda m: jflax.signature_regularizer(NETWORK_TARGETS, m, **OPERATING_POINT)))(mod)
    eager = jax.grad(reg)(p0)
    h = 1e-5
    for k in p0:
        up, down = dict(p0, **{k: p0[k] + h}), dict(p0, **{k: p0[k] - h})
        fd = (float(reg(up)) - float(reg(down))) / (2 * h)
        np.testing.assert_allclose(grad["params"][k][...], eager[k], rtol=1e-12, err_msg=k)
        np.testing.assert_allclose(eager[k], fd, rtol=1e-6, err_msg=k)
    with pytest.raises(ValueError, match="q must exceed sigma_b2"):
        jflax.signature_regularizer(NETWORK_TARGETS, fam, p0, q=0.1, sigma_b2=0.2)


# --- Initialisers ---------------------------------------------------------------------------------


def _gauss(f):
    """E[f(Z)], Z ~ N(0, 1), by adaptive SciPy quadrature."""
    return integrate.quad(
        lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40, epsabs=1e-14, epsrel=1e-13, limit=200
    )[0]


def test_init_variances_closed_forms():
    v = jflax.init_variances("relu", q=1.0)  # He: m2(sigma) = sigma^2 / 2
    assert v == pytest.approx((2.0, 0.0, 1.0, 1.0, 1.0), rel=1e-12)
    v = jflax.init_variances("relu", q=3.0, sigma_b2=0.5)  # (q - sb2) / (q / 2)
    assert v.sigma_w2 == pytest.approx(2 * 2.5 / 3.0, rel=1e-12)
    assert v.chi1 == pytest.approx(v.sigma_w2 / 2, rel=1e-12)
    v = jflax.init_variances("relu", q=1.0, critical=True)
    assert (v.sigma_w2, v.sigma_b2) == pytest.approx((2.0, 0.0), abs=1e-12)
    # tanh at q = 1 against SciPy.
    m2 = _gauss(lambda z: math.tanh(z) ** 2)
    g2sq = _gauss(lambda z: math.cosh(z) ** -4)
    dm2 = _gauss(lambda z: 2 * math.tanh(z) * math.cosh(z) ** -2 * z) / 2  # d m2(sqrt q)/dq at q = 1
    v = jflax.init_variances("tanh", q=1.0, sigma_b2=0.2)
    assert (v.sigma_w2, v.chi1, v.slope) == pytest.approx((0.8 / m2, 0.8 / m2 * g2sq, 0.8 / m2 * dm2), rel=1e-10)
    v = jflax.init_variances("tanh", q=1.0, critical=True)
    assert (v.sigma_w2, v.sigma_b2, v.chi1) == pytest.approx((1 / g2sq, 1 - m2 / g2sq, 1.0), rel=1e-10)


def test_initializers_draw_the_stated_variances():
    v = jflax.init_variances("tanh", q=1.0, critical=True)
    kernel_init, bias_init = jflax.critical_init("tanh", q=1.0)
    fan_in, fan_out = 300, 400
    w = kernel_init(jax.random.key(1), (fan_in, fan_out), jnp.float64)
    b = bias_init(jax.random.key(2), (20000,), jnp.float64)
    # Sample variance of N iid Gaussians: relative std sqrt(2/N); allow 5 of them.
    assert float(jnp.var(w)) * fan_in == pytest.approx(v.sigma_w2, rel=5 * math.sqrt(2 / w.size))
    assert float(jnp.var(b)) == pytest.approx(v.sigma_b2, rel=5 * math.sqrt(2 / b.size))
    assert abs(float(jnp.mean(w))) < 5 * math.sqrt(v.sigma_w2 / fan_in / w.size)
    # Gaussian, not truncated: the fourth moment is 3 sigma^4 (truncation at 2 sd gives ~2.4).
    kurt = float(jnp.mean(w**4) / jnp.mean(w**2) ** 2)
    assert kurt == pytest.approx(3.0, abs=0.1)
    k0, b0 = jflax.variance_preserving_init("relu")
    assert float(jnp.var(k0(jax.random.key(3), (500, 500), jnp.float64))) * 500 == pytest.approx(2.0, rel=0.02)
    assert float(jnp.max(jnp.abs(b0(jax.random.key(4), (10,), jnp.float64)))) == 0.0


def test_init_errors_are_explained():
    with pytest.raises(ValueError, match="q must be positive"):
        jflax.init_variances("tanh", q=0.0)
    with pytest.raises(ValueError, match="sigma_b2 must satisfy"):
        jflax.variance_preserving_init("tanh", q=1.0, sigma_b2=1.0)
    with pytest.raises(ValueError, match="do not pass sigma_b2"):
        jflax.init_variances("tanh", 1.0, 0.1, critical=True)
    with pytest.raises(ValueError, match="no edge-of-chaos initialisation"):
        jflax.critical_init("sigmoid", q=1.0)  # m2/g2^2 > 1: would need sb^2 < 0


# --- A real network at initialisation ---------------------------------------------------------------


def _pre_activations(phi, inits, x, depth, width, key, seeds):
    """``h_l`` of independent Linen MLPs ``h_l = Dense_l(phi(h_{l-1}))``, ``h_1 = Dense_1(x)``.

    ``seeds`` independent networks (vmapped); layers are built one at a time by Flax's own
    ``nn.Dense.init`` with the given initialisers (one compile per layer shape).

    Returns:
      ``(S, depth, B)``: the per-input second moment ``mean_i h_i^2`` over units.
    """
    act = jflax.LinenActivation(phi, param_dtype=jnp.float64)
    first, hidden = (nn.Dense(width, kernel_init=k, bias_init=b) for k, b in inits)

    @jax.jit
    def start(keys):
        return jax.vmap(lambda k: first.init_with_output(k, x)[0])(keys)

    @jax.jit
    def step(keys, h):
        return jax.vmap(lambda k, h: hidden.init_with_output(k, act.apply({}, h))[0])(keys, h)

    layer_keys = jax.random.split(key, (depth, seeds))
    h = start(layer_keys[0])
    out = [jnp.mean(h * h, axis=-1)]
    for layer in range(1, depth):
        h = step(layer_keys[layer], h)
        out.append(jnp.mean(h * h, axis=-1))
    return np.asarray(jnp.stack(out, axis=1))


def _predict(act, q1, sw2, sb2, depth, width, spread=True):
    """Variance map from q1 per input, and the relative sd of one measurement at width n.

    Given layer l-1, the units of layer l are iid N(0, s_l) with
    s_l = sW^2 A + sb^2, A = mean_j phi(h_j^{l-1})^2, so the measured
    q_l = mean_i h_i^2 = s_l chi2_n / n (relative variance 2/n), and A
    fluctuates about m2 with variance Var[phi^2] / n. To first order
    (delta method) the relative error d_l of s_l obeys
    d_l = kappa_l d_{l-1} + sW^2 (A - m2) / q_l, kappa_l = V'(q_{l-1}) q_{l-1} / q_l,
    d_1 = 0 (the first layer sees the input itself), so
    Var d_l = kappa_l^2 Var d_{l-1} + sW^4 Var[phi^2](q_{l-1}) / (n q_l^2),
    and one measurement has relative sd sqrt(Var d_l + 2/n).
    """
    square = lambda x: act(x) ** 2  # noqa: E731  (E[phi^4] is m2 of phi^2)
    q, v = [q1], [np.zeros_like(q1)]
    for _ in range(depth - 1):
        qp = q[-1]
        qn = np.asarray(dynamics.variance_map(act, qp, sw2, sb2))
        q.append(qn)
        if not spread:
            continue
        kappa = np.asarray(dynamics.variance_map_slope(act, qp, sw2)) * qp / qn
        m2 = np.asarray(jaxsig.moments(act, np.sqrt(qp)).m2)
        m4 = np.asarray(jaxsig.moments(square, np.sqrt(qp)).m2)
        v.append(kappa**2 * v[-1] + sw2**2 * (m4 - m2**2) / (width * qn**2))
    return np.array(q), (np.sqrt(np.array(v) + 2.0 / width) if spread else None)


# A swish_beta activation designed for m2 == 1, g2 <= 0.8 at sigma = 1 (rounded): mean 0.72.
DESIGNED = {"beta": 1.26, "scale": 1.21, "shift": 0.43}


@pytest.mark.parametrize("case", ["tanh-critical", "designed-preserving", "gelu-lecun"])
def test_per_layer_variance_at_init_matches_the_variance_map(case):
    """Depth 20, width 256 on standardised digits: measured q_l against the variance map.

    Tolerance: for S independent networks the seed-average of the per-input
    ratio q_l / q_l^pred has standard deviation at most sd_l / sqrt(S), where sd_l
    is the delta-method sd of one measurement (see _predict); averaging over the
    B inputs helps less than 1/sqrt(B) because inputs share the weights, so no
    credit is taken for it. Assert |mean - 1| <= 4 sd_l / sqrt(S) at every layer;
    the second-order (Jensen) bias is O(1/n) ~ 0.004, far inside. The test also
    checks that a prediction made with sW^2 off by 20% would be rejected.
    """
    from sklearn.datasets import load_digits

    depth, width, seeds, batch = 20, 256, 16, 64
    x = load_digits().data
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    x = jnp.asarray(x[::28][:batch])

    name, scheme = case.split("-")
    if name == "designed":
        phi = jaxsig.families.get("swish_beta").activation(DESIGNED)
    else:
        phi = jaxsig.activations.get(name)
    if scheme == "critical":
        v = jflax.init_variances(phi, 1.0, critical=True)
        inits = (jflax.variance_preserving_init("identity", 1.0, v.sigma_b2), v.initializers())
        sw2, sb2, sw2_0 = v.sigma_w2, v.sigma_b2, 1.0 - v.sigma_b2
    elif scheme == "preserving":
        v = jflax.init_variances(phi, 1.0, 0.1)
        inits = (jflax.variance_preserving_init("identity", 1.0, 0.1), v.initializers())
        sw2, sb2, sw2_0 = v.sigma_w2, 0.1, 0.9
    else:  # Flax's default Dense init: truncated lecun_normal (variance 1 / fan_in), zero bias
        inits = ((nn.initializers.lecun_normal(), nn.initializers.zeros),) * 2
        sw2, sb2, sw2_0 = 1.0, 0.0, 1.0

    measured = _pre_activations(phi, inits, x, depth, width, jax.random.key(7), seeds)

    q1 = sw2_0 * np.mean(np.asarray(x) ** 2, axis=1) + sb2
    predicted, sd = _predict(phi, q1, sw2, sb2, depth, width)
    ratio = (measured / predicted).mean(axis=(0, 2))
    tol = 4 * sd.max(axis=1) / math.sqrt(seeds)
    assert np.all(np.abs(ratio - 1) <= tol), (ratio, tol)

    wrong, _ = _predict(phi, q1, 1.2 * sw2, sb2, depth, width, spread=False)
    wrong_ratio = (measured / wrong).mean(axis=(0, 2))
    assert np.any(np.abs(wrong_ratio - 1) > tol)

"""The integral signature against independent references and mathematical laws."""

import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import problems as P
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxsig
from jaxsig import activations as A
from jaxsig.quadrature import Composite, GaussHermite

REFERENCE = json.loads((pathlib.Path(__file__).parent / "data" / "mpmath_reference.json").read_text())
GAUSS_FIELDS = ("m1", "g1", "g2", "m2", "eta")
PI = math.pi


def assert_close(value, expected, tol, what=""):
    assert P.close(value, expected, tol), f"{what}: got {float(value)!r}, expected {float(expected)!r}"


# --- Accuracy against mpmath (issue 2 targets) ----------------------------------


@pytest.mark.parametrize("name", A.PAPER)
def test_gaussian_statistics_match_mpmath(name):
    rows = [r for r in REFERENCE["gaussian"] if r["activation"] == name]
    assert len(rows) == 25
    sigma = jnp.asarray([r["sigma"] for r in rows])
    mu = jnp.asarray([r["mu"] for r in rows])
    sig, aux = jaxsig.signature_with_aux(name, sigma, mu=mu)
    for field in (*GAUSS_FIELDS, "g4"):
        got = getattr(sig, field) if field in GAUSS_FIELDS else getattr(aux, field)
        for g, r in zip(np.asarray(got), rows):
            assert_close(g, r[field], P.GAUSS_TOL, f"{name} {field} sigma={r['sigma']} mu={r['mu']}")


@pytest.mark.parametrize("name", A.PAPER)
def test_slopes_tv_c_match_mpmath(name):
    ref = P.PAPER_REFS[name]
    line = REFERENCE["line"][name]
    sig = jaxsig.signature(name, 1.0)
    assert_close(sig.alpha_plus, float(ref.alpha[0]), 1e-12, f"{name} alpha_plus")
    assert_close(sig.alpha_minus, float(ref.alpha[1]), 1e-12, f"{name} alpha_minus")
    assert_close(sig.tv, line["tv"], P.LINE_TOL, f"{name} tv")
    assert_close(sig.c, line["c"], P.LINE_TOL, f"{name} c")


@pytest.mark.parametrize("name,sigma,mu", [("gelu", 0.2, 1.3), ("telu", 20.0, -2.0), ("relu", 0.05, 2.0)])
def test_reference_table_is_genuine(name, sigma, mu):
    """Recompute rows of the committed table live, from the mpmath definitions."""
    live = P.gaussian_reference(name, sigma, mu)
    row = next(r for r in REFERENCE["gaussian"] if (r["activation"], r["sigma"], r["mu"]) == (name, sigma, mu))
    for k, v in live.items():
        assert v == pytest.approx(row[k], rel=1e-14, abs=1e-300)


def test_line_reference_is_genuine():
    assert P.line_reference("swish") == pytest.approx(REFERENCE["line"]["swish"], rel=1e-14)


# --- Closed forms of SPEC ----------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.05, 0.5, 1.0, 3.0, 20.0])
def test_relu_closed_form(sigma):
    s, aux = jaxsig.signature_with_aux("relu", sigma)
    expected = dict(
        m1=sigma / math.sqrt(2 * PI),
        g1=0.5,
        g2=1 / math.sqrt(2),
        m2=sigma**2 / 2,
        eta=sigma**2 * (0.25 - 1 / (2 * PI)),
        alpha_plus=1.0,
        alpha_minus=0.0,
        tv=1.0,
        c=0.0,
    )
    for k, v in expected.items():
        assert_close(getattr(s, k), v, 1e-13, f"relu {k}")
    assert_close(aux.dm2_dsigma, sigma, 1e-12, "relu dm2/dsigma")
    assert jaxsig.GROWTH_CLASSES[int(aux.growth)] == "A1"


@pytest.mark.parametrize("sigma", [0.1, 1.0, 7.0])
def test_tanh_sigmoid_closed_forms(sigma):
    t = jaxsig.signature("tanh", sigma)
    assert abs(float(t.m1)) < 1e-15
    assert_close(t.g1, 1 - float(t.m2), 1e-13, "tanh g1 = 1 - m2")
    assert_close(t.tv, 2.0, 1e-12, "tanh tv")
    assert_close(t.c, 2 * math.log(2), 1e-12, "tanh c")
    s = jaxsig.signature("sigmoid", sigma)
    assert_close(s.m1, 0.5, 1e-14, "sigmoid m1")
    assert_close(s.tv, 0.5, 1e-12, "sigmoid tv")
    assert_close(s.c, 2 * math.log(2), 1e-12, "sigmoid c")


@pytest.mark.parametrize("sigma", [0.05, 0.7, 2.0, 20.0])
def test_swish_gelu_softplus_erf_closed_forms(sigma):
    sw = jaxsig.signature("swish", sigma)
    assert_close(sw.g1, 0.5, 1e-13, "swish g1")
    assert_close(sw.c, PI**2 / 6, 1e-12, "swish c")
    ge = jaxsig.signature("gelu", sigma)
    assert_close(ge.m1, sigma**2 / math.sqrt(2 * PI * (1 + sigma**2)), 1e-14, "gelu m1")
    assert_close(ge.g1, 0.5, 1e-13, "gelu g1")
    assert_close(ge.c, 0.5, 1e-12, "gelu c")
    sp = jaxsig.signature("softplus", sigma)
    assert (float(sp.alpha_plus), float(sp.alpha_minus)) == (1.0, 0.0)
    assert_close(sp.c, PI**2 / 6, 1e-12, "softplus c")
    er = jaxsig.signature("erf", sigma)
    assert_close(er.m2, 2 / PI * math.asin(2 * sigma**2 / (1 + 2 * sigma**2)), 1e-14, "erf m2")
    assert_close(er.tv, 4 / math.sqrt(PI), 1e-12, "erf tv")
    assert_close(er.c, 2 / math.sqrt(PI), 1e-12, "erf c")


def test_piecewise_linear_closed_forms():
    ht = jaxsig.signature("hard_tanh", 1.0)
    assert_close(ht.g1, math.erf(1 / math.sqrt(2)), 1e-14, "hard_tanh g1 = P(|Z| < 1)")
    assert_close(ht.tv, 2.0, 1e-14, "hard_tanh tv")
    assert_close(ht.c, 1.0, 1e-14, "hard_tanh c")
    r6 = jaxsig.signature("relu6", 2.0)
    assert_close(r6.g1, 0.5 * math.erf(3 / math.sqrt(2)), 1e-14, "relu6 g1 = P(0 < X < 6)")
    assert_close(r6.tv, 2.0, 1e-14, "relu6 tv")
    assert_close(r6.c, 18.0, 1e-14, "relu6 c")
    lk = jaxsig.signature("leaky_relu", 1.0)
    assert (float(lk.alpha_plus), float(lk.alpha_minus)) == (1.0, 0.01)
    assert_close(lk.tv, 0.99, 1e-14, "leaky tv")


# --- Divergence: inf where SPEC says, never NaN or a large finite number ------------


def _x_plus_sin(x):
    return x + jnp.sin(x)


def _x_sin(x):
    return x * jnp.sin(x)


def _x_log(x):
    return x * jnp.log1p(jnp.abs(x))


def _sqrt_tail(x):
    # slope 1, intercept 0, but |phi - x| ~ |x|^-1/2: c diverges, tv is finite
    return x + x / (1 + jnp.abs(x)) ** 1.5


def _inverse_square_tail(x):
    # |phi - x| = 1/(1+x^2): c = pi exactly, via the power-law tail extrapolation
    return x + 1 / (1 + x * x)


@pytest.mark.parametrize(
    "phi,alpha,tv,c",
    [
        ("x^2", (np.inf, -np.inf), np.inf, np.inf),
        ("x^3", (np.inf, np.inf), np.inf, np.inf),
        ("sin", (0.0, 0.0), np.inf, np.inf),
        (_x_plus_sin, (1.0, 1.0), np.inf, np.inf),
        ("signed_sqrt", (0.0, 0.0), np.inf, np.inf),
        (_x_log, (np.inf, np.inf), np.inf, np.inf),  # odd: phi/x = log(1+|x|)
        (_sqrt_tail, (1.0, 1.0), None, np.inf),
        (_inverse_square_tail, (1.0, 1.0), None, PI),
    ],
)
def test_divergent_components_are_inf(phi, alpha, tv, c):
    sig, aux = jaxsig.signature_with_aux(phi, 1.0)
    assert (float(sig.alpha_plus), float(sig.alpha_minus)) == pytest.approx(alpha, abs=1e-10)
    if tv is not None:
        assert float(sig.tv) == tv
    else:
        assert np.isfinite(float(sig.tv))
    assert_close(sig.c, c, 1e-8, "c")
    for v in (*sig, aux.g4):
        assert not np.any(np.isnan(np.asarray(v))), sig


def test_oscillating_slope_has_no_limit():
    sig, aux = jaxsig.signature_with_aux(_x_sin, 1.0)
    # x sin x / x = sin x has no limit: the slope is undefined (NaN), and c is inf.
    assert np.isnan(float(sig.alpha_plus)) and np.isnan(float(sig.alpha_minus))
    assert float(sig.c) == np.inf and float(sig.tv) == np.inf
    assert jaxsig.GROWTH_CLASSES[int(aux.growth)] == "A1"


def test_intercepts_and_signed_area():
    _, aux = jaxsig.signature_with_aux("tanh", 1.0)
    assert (float(aux.beta_plus), float(aux.beta_minus)) == (1.0, -1.0)
    assert abs(float(aux.b)) < 1e-13  # odd: the two signed areas cancel
    assert_close(aux.b_plus, -math.log(2), 1e-12, "tanh b_plus = int (tanh - 1)")
    _, aux = jaxsig.signature_with_aux("softplus", 1.0)
    assert_close(aux.b, 2 * PI**2 / 12, 1e-12, "softplus b")


# --- Laws ---------------------------------------------------------------------------


def _affine(x, p):
    return p["k"] * jnp.tanh(x + 0.3) + p["a"] + p["b"] * x


@settings(max_examples=12, deadline=None)
@given(
    # |b| < 1e3 eps max|phi(x)/x| is reported as slope 0 (indistinguishable from
    # sublinear growth; README, limits), so the slopes drawn are 0 or at least 1e-9.
    a=st.floats(-3, 3),
    b=st.one_of(st.just(0.0), st.floats(1e-9, 2), st.floats(-2, -1e-9)),
    k=st.floats(0.2, 3),
    sigma=st.floats(0.1, 5),
    mu=st.floats(-1.5, 1.5),
)
def test_affine_and_scaling_laws(a, b, k, sigma, mu):
    base = jaxsig.signature(_affine, sigma, mu=mu, params=dict(k=1.0, a=0.0, b=0.0))
    shifted = jaxsig.signature(_affine, sigma, mu=mu, params=dict(k=1.0, a=a, b=b))
    for f in ("eta", "tv", "c"):
        if f == "c" and b != 0:
            continue  # the asymptotes move with phi; c is checked below
        assert_close(getattr(shifted, f), getattr(base, f), 1e-11, f)
    assert_close(shifted.eta, base.eta, 1e-11, "eta")
    assert_close(shifted.c, base.c, 1e-10, "c invariant under + a + b x")
    assert_close(shifted.m1, float(base.m1) + a + b * mu, 1e-12, "m1")
    assert_close(shifted.g1, float(base.g1) + b, 1e-12, "g1")
    assert_close(shifted.alpha_plus, float(base.alpha_plus) + b, 1e-12, "alpha_plus")
    scaled = jaxsig.signature(_affine, sigma, mu=mu, params=dict(k=k, a=0.0, b=0.0))
    for f, power in dict(m1=1, g1=1, g2=1, m2=2, eta=2, tv=1, c=1).items():
        assert_close(getattr(scaled, f), float(getattr(base, f)) * k**power, 1e-11, f)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", [1e-14, 1e-6, 1e9])
@pytest.mark.parametrize("name", ["softplus", "sin", "tanh", "leaky_relu"])
def test_far_from_unit_scale_the_line_functionals_scale_with_phi(name, scale, dtype):
    # The slopes, intercepts, tv, c, b, the growth class and every status of
    # a phi are a times those of phi. The limits' tolerances have a floor at unit
    # scale: 1e-14 softplus had slope 0 and c = inf, 1e9 sin(x) slope 2.6e-5
    # and growth A1, 1e-14 sin(x) a finite intercept.
    act = jaxsig.activations.get(name)
    if act.params is None:
        scaled = jaxsig.Activation(f"{scale} {name}", lambda x: scale * act.fn(x), None, act.kinks)
    else:
        scaled = jaxsig.Activation(f"{scale} {name}", lambda x, p: scale * act.fn(x, p), act.params, act.kinks)
    one = jnp.asarray(1.0, dtype)
    s0, aux0 = jaxsig.signature_with_aux(act, one)
    s1, aux1 = jaxsig.signature_with_aux(scaled, one)
    assert [np.asarray(v).tolist() for v in aux1.status] == [np.asarray(v).tolist() for v in aux0.status]
    assert int(aux1.growth) == int(aux0.growth)
    rtol = 2e-6 if dtype == "float32" else 1e-12
    for f in ("alpha_plus", "alpha_minus", "tv", "c", "beta_plus", "beta_minus", "b"):
        got = float(getattr(s1, f) if f in s1._fields else getattr(aux1, f))
        want = float(getattr(s0, f) if f in s0._fields else getattr(aux0, f))
        if not math.isfinite(want):
            assert got == want or (math.isnan(got) and math.isnan(want)), f
        else:
            # Intercepts that vanish are zero to rounding on the scale of phi.
            assert got == pytest.approx(scale * want, rel=rtol, abs=64 * scale * float(jnp.finfo(dtype).eps)), f


def _rescaled(x, p):
    return jnp.tanh(p["a"] * x) + A.gelu(p["a"] * x)


@settings(max_examples=10, deadline=None)
@given(a=st.floats(0.3, 3.0), sigma=st.floats(0.1, 4.0))
def test_input_rescaling(a, sigma):
    """phi(a x) at sigma has the Gaussian statistics of phi at a sigma (g's scale by a)."""
    scaled = jaxsig.signature(_rescaled, sigma, params=dict(a=a))
    plain = jaxsig.signature(_rescaled, a * sigma, params=dict(a=1.0))
    assert_close(scaled.m1, plain.m1, 1e-12, "m1")
    assert_close(scaled.m2, plain.m2, 1e-12, "m2")
    assert_close(scaled.eta, plain.eta, 1e-12, "eta")
    assert_close(scaled.g1, a * float(plain.g1), 1e-12, "g1")
    assert_close(scaled.g2, a * float(plain.g2), 1e-12, "g2")
    assert_close(scaled.tv, a * float(plain.tv), 1e-10, "tv scales with a")
    assert_close(scaled.c, float(plain.c) / a, 1e-10, "c scales with 1/a")


@pytest.mark.parametrize("name", ["tanh", "erf", "hard_tanh", "sin", "x^3", "signed_sqrt"])
def test_odd_activation_has_zero_mean(name):
    s = jaxsig.signature(name, jnp.asarray([0.3, 1.0, 4.0]))
    # Zero up to rounding on the scale of phi(X) (x^3 at sigma = 4: sqrt(m2) = 248).
    assert np.all(np.abs(np.asarray(s.m1)) < 4e-16 * np.maximum(1.0, np.sqrt(np.asarray(s.m2))))


def test_selu_self_normalises():
    s = jaxsig.signature("selu", 1.0)
    assert abs(float(s.m1)) < 1e-8 and abs(float(s.m2) - 1) < 1e-8


@pytest.mark.parametrize("family", ["softplus_beta", "swish_beta"])
def test_sharpness_limit_tends_to_relu(family):
    relu = jaxsig.signature("relu", 1.0, mu=0.3)
    errors = []
    for beta in (10.0, 100.0, 1000.0):
        s = jaxsig.signature(family, 1.0, mu=0.3, params={"beta": beta})
        errors.append(max(abs(float(getattr(s, f)) - float(getattr(relu, f))) for f in GAUSS_FIELDS))
        assert (float(s.alpha_plus), float(s.alpha_minus)) == (1.0, 0.0)
        assert_close(s.c, PI**2 / 6 / beta**2, 1e-10, f"{family} c = pi^2/(6 beta^2)")
        # TV(phi') is invariant under x -> beta x: softplus' = sigmoid has TV 1
        # (ReLU's value), Swish' overshoots and keeps TV 1.39936 in the limit.
        expected_tv = 1.0 if family == "softplus_beta" else REFERENCE["line"]["swish"]["tv"]
        assert_close(s.tv, expected_tv, 1e-10, f"{family} tv")
    # Gaussian statistics converge at rate 1/beta (g1, g2 see phi' = sigmoid(beta x),
    # which differs from the step on a band of width 1/beta): about 10x per decade.
    assert errors[1] < errors[0] / 8 and errors[2] < errors[1] / 8 and errors[2] < 3e-4


# --- Derivatives --------------------------------------------------------------------


def _fd(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize(
    "name,param,value",
    [
        ("swish_beta", "beta", 1.3),
        ("softplus_beta", "beta", 0.7),
        ("elu", "alpha", 1.4),
        ("leaky_relu", "negative_slope", 0.2),
    ],
)
def test_gradients_wrt_params_match_finite_differences(name, param, value):
    act = A.get(name)

    def sig(v):
        return jaxsig.signature(act, 1.2, mu=0.4, params={param: v})

    jac = jax.jacfwd(sig)(value)  # one compilation for all nine components
    rev = jax.grad(lambda v: sum(sig(v)))(value)  # reverse mode agrees
    fd = jax.tree_util.tree_map(lambda a, b: (a - b) / 2e-5, sig(value + 1e-5), sig(value - 1e-5))
    for field in jaxsig.FIELDS:
        g, f = float(getattr(jac, field)), float(getattr(fd, field))
        assert g == pytest.approx(f, rel=2e-6, abs=2e-7), (name, field, g, f)
    assert float(rev) == pytest.approx(sum(float(v) for v in jac), rel=1e-10)


@pytest.mark.parametrize("name", ["gelu", "relu", "tanh", "mish"])
def test_gradients_wrt_sigma_mu(name):
    for field in GAUSS_FIELDS:

        def f(s, m, field=field):
            return getattr(jaxsig.moments(name, s, mu=m), field)

        gs, gm = jax.grad(f, argnums=(0, 1))(0.8, -0.3)
        assert float(gs) == pytest.approx(float(_fd(lambda s: f(s, -0.3), 0.8)), rel=1e-6, abs=1e-8)
        assert float(gm) == pytest.approx(float(_fd(lambda m: f(0.8, m), -0.3)), rel=1e-6, abs=1e-8)
    _, aux = jaxsig.signature_with_aux(name, 0.8)
    dm2 = jax.grad(lambda s: jaxsig.moments(name, s).m2)(0.8)
    assert float(aux.dm2_dsigma) == pytest.approx(float(dm2), rel=1e-12)


# --- jit, vmap, shapes, dtypes ------------------------------------------------------


def test_batched_sigma_equals_vmap_and_jit():
    sig = jnp.asarray([0.1, 0.5, 2.0, 9.0])
    mu = jnp.asarray([0.0, -1.0, 0.5, 2.0])
    batched = jaxsig.signature("mish", sig, mu=mu)
    mapped = jax.vmap(lambda s, m: jaxsig.signature("mish", s, mu=m))(sig, mu)
    jitted = jax.jit(lambda s, m: jaxsig.signature("mish", s, mu=m))(sig, mu)
    for a, b, c in zip(batched, mapped, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-15)
    grid = jaxsig.signature("gelu", sig[:, None], mu=mu[None, :])
    assert all(v.shape == (4, 4) for v in grid)


def test_vmap_over_params():
    act = A.get("swish_beta")
    betas = jnp.asarray([0.5, 1.0, 4.0])
    out = jax.vmap(lambda b: jaxsig.signature(act, 1.0, params={"beta": b}))(betas)
    for i, b in enumerate(np.asarray(betas)):
        one = jaxsig.signature(act, 1.0, params={"beta": float(b)})
        for f in jaxsig.FIELDS:
            np.testing.assert_allclose(getattr(out, f)[i], getattr(one, f), rtol=1e-13)


@pytest.mark.parametrize("name", A.PAPER)
def test_float32(name):
    s32 = jaxsig.signature(name, jnp.float32(1.3), mu=jnp.float32(0.4))
    s64 = jaxsig.signature(name, 1.3, mu=0.4)
    for f in jaxsig.FIELDS:
        v32, v64 = getattr(s32, f), float(getattr(s64, f))
        assert v32.dtype == jnp.float32
        # c misses the 1e-5 goal for Swish and Mish (3e-5): phi(x) - x cancels in
        # float32 where the tail is below ~1e-6 (see README, "accuracy").
        tol = P.F32_C_RTOL if f == "c" else P.F32_RTOL
        assert_close(v32, v64, tol, f"{name} {f} float32")


def test_composite_beats_gauss_hermite():
    """The paper's plain Gauss-Hermite loses accuracy at kinks and steep slopes."""
    sigma = 10.0
    exact = sigma / math.sqrt(2 * PI)
    gh = jaxsig.moments("relu", sigma, rule=GaussHermite(order=256))
    comp = jaxsig.moments("relu", sigma)
    assert abs(float(gh.m1) - exact) / exact > 1e-5
    assert abs(float(comp.m1) - exact) / exact < 1e-14
    gh_tanh = jaxsig.moments("tanh", sigma, rule="gauss_hermite")
    comp_tanh = jaxsig.moments("tanh", sigma)
    assert abs(float(gh_tanh.g1) - float(comp_tanh.g1)) / float(comp_tanh.g1) > 1e-3


def test_gauss_hermite_exact_for_polynomials():
    m = jaxsig.moments("x^3", 1.7, mu=0.3, rule=GaussHermite(order=8))
    s, mu = 1.7, 0.3
    assert_close(m.m1, mu**3 + 3 * mu * s**2, 1e-13, "E[X^3]")
    assert_close(m.m2, float(jaxsig.moments("x^3", s, mu=mu).m2), 1e-12, "E[X^6] both rules")


def test_small_sigma_at_zero_mean():
    """Halving panels toward 0 keep mu = 0 accurate far below sigma_min."""
    for sigma in (1e-2, 1e-3, 1e-4):
        m = jaxsig.moments("tanh", sigma)
        # m2 = sigma^2 - 2 sigma^4 + O(sigma^6) for tanh
        assert_close(m.m2 / sigma**2, 1 - 2 * sigma**2, 20 * sigma**4, f"tanh m2 at sigma={sigma}")


def test_moments_agree_with_signature():
    s, aux = jaxsig.signature_with_aux("telu", 0.9, mu=-0.2)
    m = jaxsig.moments("telu", 0.9, mu=-0.2)
    for f in GAUSS_FIELDS:
        assert float(getattr(m, f)) == pytest.approx(float(getattr(s, f)), rel=1e-14)
    assert float(m.g4) == pytest.approx(float(aux.g4), rel=1e-14)


def test_kink_off_grid_needs_declaring():
    """A kink declared through Activation.kinks is an exact panel edge."""
    shifted = A.Activation("shifted_relu", lambda x: jnp.maximum(x - 0.123, 0.0), kinks=(0.123,))
    m = jaxsig.moments(shifted, 1.0)
    z = 0.123
    exact_g1 = 0.5 * math.erfc(z / math.sqrt(2))
    assert_close(m.g1, exact_g1, 1e-14, "P(X > 0.123)")


# --- Bad input ------------------------------------------------------------------------


def test_errors_are_clear():
    with pytest.raises(ValueError, match="sigma must be positive"):
        jaxsig.signature("relu", 0.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        jaxsig.signature("relu", jnp.asarray([1.0, -2.0]))
    with pytest.raises(ValueError, match="sigma must be positive"):
        jaxsig.signature("relu", float("nan"))
    with pytest.raises(ValueError, match="mu must be finite"):
        jaxsig.signature("relu", 1.0, mu=float("inf"))
    with pytest.raises(TypeError, match="phi must be a callable"):
        jaxsig.signature(3.0, 1.0)
    with pytest.raises(KeyError, match="Did you mean 'gelu'"):
        jaxsig.signature("gleu", 1.0)
    with pytest.raises(ValueError, match="elementwise"):
        jaxsig.signature(jax.nn.softmax, 1.0)
    with pytest.raises(ValueError, match="elementwise"):
        jaxsig.signature(lambda x: x - jnp.mean(x), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        jaxsig.signature(lambda x: jnp.exp(x * x), 1.0)
    with pytest.raises(ValueError, match="unknown quadrature rule"):
        jaxsig.signature("relu", 1.0, rule="simpson")
    with pytest.raises(TypeError, match="sigma has dtype int32"):
        jaxsig.signature("relu", jnp.asarray([1, 2], dtype=jnp.int32))
    with pytest.raises(TypeError, match="floating-point"):
        jaxsig.signature(lambda x: (x > 0).astype(jnp.int32), 1.0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_builtin_activations_are_elementwise(dtype):
    # The library's elementwise probe skips the built-in activations
    # (jaxsig.core.activations.BUILTIN_FUNCTIONS): this is their check, the probe's
    # own (a vector call equals the calls on each scalar), on more points.
    from jaxsig.core.activations import BUILTIN_FUNCTIONS

    x = np.array([-30.0, -3.7, -1.1, -0.3, -1e-3, 0.0, 1e-3, 0.2, 0.7, 1.0, 1.9, 4.2, 6.5, 30.0])
    seen = set()
    for name in A.names():
        act = A.prepare(name, dtype=jnp.dtype(dtype))
        if act.fn not in BUILTIN_FUNCTIONS:
            continue  # an activation another test registered
        seen.add(act.fn)
        vec = np.asarray(act(jnp.asarray(x, dtype)))
        one = np.array([np.asarray(act(jnp.asarray(v, dtype))).reshape(()) for v in x])
        assert vec.shape == x.shape and vec.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(vec, one, rtol=4 * np.finfo(dtype).eps, atol=0, err_msg=name)
    assert seen == BUILTIN_FUNCTIONS and len(seen) == 23


def test_params_of_the_wrong_structure_shape_or_type_are_named():
    # Each once failed inside phi with JAX's or Python's own message, or (a
    # string) was read as 1.0 without a word.
    with pytest.raises(TypeError, match=r"structure of its defaults .*missing \['beta'\] unexpected \['b'\]"):
        jaxsig.signature("swish_beta", 1.0, params={"b": 1.0})
    with pytest.raises(TypeError, match=r"structure of its defaults \{'beta': 1.0\}, got \{'beta': \[1.0, 2.0\]\}"):
        jaxsig.signature("swish_beta", 1.0, params={"beta": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"params\['beta'\] of 'swish_beta' must have shape \(\) .*got shape \(2,\)"):
        jaxsig.signature("swish_beta", 1.0, params={"beta": np.array([1.0, 2.0])})
    with pytest.raises(TypeError, match=r"params\['beta'\] .* real number.*a string is not a number"):
        jaxsig.signature("swish_beta", 1.0, params={"beta": "1"})
    with pytest.raises(TypeError, match=r"params\['beta'\] .* real number"):
        jaxsig.moments("swish_beta", 1.0, params={"beta": 1.0 + 2.0j})
    with pytest.raises(TypeError, match=r"params\[0\] of '_power' must be a real number"):
        jaxsig.signature(_power, 1.0, params=("2",))
    # The right structure passes, as Python numbers, integers or arrays, and
    # under jit and vmap (where a leaf is one row).
    want = float(jaxsig.moments("swish_beta", 1.0, params={"beta": 2.0}).m2)
    assert float(jaxsig.moments("swish_beta", 1.0, params={"beta": 2}).m2) == want
    jitted = jax.jit(lambda b: jaxsig.moments("swish_beta", 1.0, params={"beta": b}).m2)
    assert float(jitted(jnp.asarray(2.0))) == pytest.approx(want, rel=1e-14)
    rows = jax.vmap(lambda b: jaxsig.moments("swish_beta", 1.0, params={"beta": b}).m2)(jnp.asarray([2.0, 2.0]))
    np.testing.assert_allclose(np.asarray(rows), want, rtol=1e-14)


def _power(x, p):
    return jnp.abs(x) ** p[0]


def test_under_jit_nonfinite_phi_gives_nan_not_numbers():
    def bad(x):
        return jnp.exp(x * x)

    sig, aux = jax.jit(lambda s: jaxsig.signature_with_aux(bad, s))(1.0)
    assert not bool(aux.finite)
    assert all(np.isnan(float(getattr(sig, f))) for f in GAUSS_FIELDS)


def test_out_of_domain_warns():
    with pytest.warns(UserWarning, match="x_max"):
        jaxsig.moments("relu", 80.0)
    with pytest.warns(UserWarning, match="sigma_min"):
        jaxsig.moments("relu", 0.001, mu=1.0)
    wide = Composite(x_max=2048.0)
    assert_close(jaxsig.moments("relu", 80.0, rule=wide).m2, 80.0**2 / 2, 1e-13, "wide grid")


def _tanh_plus_gelu(x, p):
    return jnp.tanh(p["a"] * x) + A.gelu(p["a"] * x)


@pytest.mark.parametrize("a", [0.7, 2.0])
def test_c_where_phi_crosses_its_asymptote(a):
    """tanh(ax) + GELU(ax) crosses its left asymptote y = -1 twice; c stays exact."""
    import mpmath as mp

    with mp.workdps(25):
        A_ = mp.mpf(a)

        def left(x):
            return mp.tanh(A_ * x) + 1 + A_ * x * mp.ncdf(A_ * x)

        grid = [mp.mpf(-k) / (40 * A_) for k in range(400)]
        roots = [mp.findroot(left, (u, v), solver="anderson") for u, v in zip(grid[1:], grid) if left(u) * left(v) < 0]
        assert len(roots) == 2

        def right(x):
            return abs(mp.tanh(A_ * x) + A_ * x * mp.ncdf(A_ * x) - A_ * x - 1)

        ref = mp.quad(right, [0, 1, 10, 80]) + mp.quad(lambda x: abs(left(x)), sorted([-80 / A_, *roots, 0]))
    got = jaxsig.signature(_tanh_plus_gelu, 1.0, params={"a": a}).c
    assert_close(got, float(ref), 1e-12, "c with crossings")


def _x2_sin(x):
    return x * x * jnp.sin(x)


def _log_growth(x):
    return jnp.log1p(jnp.abs(x))


@pytest.mark.parametrize(
    "phi, growth",
    [
        ("sin", "A0"),  # bounded, no limit at +-inf
        ("tanh", "A0"),
        ("signed_sqrt", "A1"),  # unbounded with slope 0
        (_log_growth, "A1"),
        ("relu", "A1"),
        (_x2_sin, "A>1"),  # no slope, but |phi(x)/x| = |x sin x| is unbounded
        ("x^2", "A>1"),
    ],
)
def test_growth_class(phi, growth):
    for dtype in (jnp.float64, jnp.float32):
        _, aux = jaxsig.signature_with_aux(phi, jnp.asarray(1.0, dtype))
        assert jaxsig.GROWTH_CLASSES[int(aux.growth)] == growth, (phi, dtype)


def test_switching_x64_off_in_one_process():
    """Cached lines and compiled stages must survive jax_enable_x64 being turned off."""
    code = (
        "import jax; jax.config.update('jax_enable_x64', True); import jaxsig\n"
        "a = float(jaxsig.signature('gelu', 1.0).c)\n"
        "jax.config.update('jax_enable_x64', False)\n"
        "s = jaxsig.signature('gelu', 1.0)\n"
        "assert s.c.dtype.name == 'float32', s.c.dtype\n"
        "assert abs(float(s.c) - a) < 1e-5, (float(s.c), a)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)

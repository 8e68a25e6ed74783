"""Growth classes, shape facts and the design-principle report card.

Expected classifications are written down by hand from the definitions of the
functions (not computed by jaxsig); report-card numbers are checked against
closed forms of the Gaussian moments.
"""

import functools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsig
from jaxsig import activations as A
from jaxsig import taxonomy

SQRT2PI = math.sqrt(2 * math.pi)


# --- Classification catalogue: every registered activation ------------------------
# (growth, bounded, saturating -/+, kinks, smooth, parity, monotone, infinite)

INF4 = ("alpha_plus", "alpha_minus", "tv", "c")
EXPECTED = {
    "relu": ("A1", False, (True, False), (0.0,), False, "neither", True, ()),
    "leaky_relu": ("A1", False, (False, False), (0.0,), False, "neither", True, ()),
    "tanh": ("A0", True, (True, True), (), True, "odd", True, ()),
    "sigmoid": ("A0", True, (True, True), (), True, "neither", True, ()),
    "swish": ("A1", False, (True, False), (), True, "neither", False, ()),
    "swish_beta": ("A1", False, (True, False), (), True, "neither", False, ()),
    "gelu": ("A1", False, (True, False), (), True, "neither", False, ()),
    "gelu_tanh": ("A1", False, (True, False), (), True, "neither", False, ()),
    "mish": ("A1", False, (True, False), (), True, "neither", False, ()),
    "telu": ("A1", False, (True, False), (), True, "neither", False, ()),
    # ELU with alpha = 1 is C^1: phi'(0-) = alpha e^0 = 1 = phi'(0+); only phi'' jumps.
    "elu": ("A1", False, (True, False), (), True, "neither", True, ()),
    # SELU: phi'(0-) = scale * alpha != scale = phi'(0+).
    "selu": ("A1", False, (True, False), (0.0,), False, "neither", True, ()),
    "softplus": ("A1", False, (True, False), (), True, "neither", True, ()),
    "softplus_beta": ("A1", False, (True, False), (), True, "neither", True, ()),
    "erf": ("A0", True, (True, True), (), True, "odd", True, ()),
    "hard_tanh": ("A0", True, (True, True), (-1.0, 1.0), False, "odd", True, ()),
    "relu6": ("A0", True, (True, True), (0.0, 6.0), False, "neither", True, ()),
    # sin is bounded (SPEC: A0) but has no limit at +-inf: not saturating; its
    # derivative oscillates forever (tv = inf) and it has no asymptote (c = inf).
    "sin": ("A0", True, (False, False), (), True, "odd", False, ("tv", "c")),
    "identity": ("A1", False, (False, False), (), True, "odd", True, ()),
    # sign(x) sqrt|x|: unbounded with slope 0 (A1); phi' = 1/(2 sqrt|x|) blows up at 0.
    # E[phi'(X)^2] = E[1/(4|X|)] diverges: g2 is infinite too (issue 14).
    "signed_sqrt": ("A1", False, (False, False), (), False, "odd", True, ("g2", "tv", "c")),
    "x^2": ("A>1", False, (False, False), (), True, "even", False, INF4),
    "x^3": ("A>1", False, (False, False), (), True, "odd", True, INF4),
    "x^4": ("A>1", False, (False, False), (), True, "even", False, INF4),
}


@functools.lru_cache(maxsize=None)
def sig_aux(name, sigma=1.0):
    """Signature and auxiliary of a registered activation (cached across tests)."""
    return jaxsig.signature_with_aux(name, sigma)


def test_catalogue_covers_every_registered_activation():
    assert set(EXPECTED) == set(A.names())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify_every_builtin(name):
    growth, bounded, (sat_m, sat_p), kinks, smooth, parity, monotone, infinite = EXPECTED[name]
    c = taxonomy.classify(name, signature=sig_aux(name))
    assert c.name == name
    assert c.growth == growth
    assert c.bounded is bounded
    assert (c.saturating_minus, c.saturating_plus) == (sat_m, sat_p)
    assert c.kinks == kinks
    assert c.smooth is smooth
    assert c.parity == parity
    assert c.monotone is monotone
    assert set(c.infinite) == set(infinite)
    assert c.undefined == ()
    # A0 means bounded, A>1 means an infinite slope: the class and the facts agree.
    assert (growth == "A0") == c.bounded
    assert (growth == "A>1") == any(f in c.infinite for f in ("alpha_plus", "alpha_minus"))


def test_classify_computes_the_signature_when_not_given():
    assert taxonomy.classify("x^2") == taxonomy.classify("x^2", signature=sig_aux("x^2"))
    assert taxonomy.classify("signed_sqrt").growth == "A1"


def test_classify_with_a_sigma_batched_signature():
    sig = jaxsig.signature_with_aux("relu", jnp.array([0.5, 1.0, 2.0]), mu=0.5)
    assert taxonomy.classify("relu", signature=sig) == taxonomy.classify("relu", signature=sig_aux("relu"))


def given(alpha_plus, alpha_minus, beta_plus, beta_minus, tv, c, dtype=jnp.float64, growth="A1"):
    """A hand-made (Signature, Auxiliary) with known sigma-free fields.

    classify reads only the slopes, intercepts, growth class, tv and c (and looks
    for inf/NaN in the Gaussian fields, set to 0 here), so facts about a function
    whose asymptotics are known in closed form can be tested without computing
    its signature. (The growth class itself is the core's: see
    tests/test_signature.py::test_growth_class.)
    """

    def f(v):
        return jnp.asarray(v, dtype)

    zero = f(0.0)
    sig = jaxsig.Signature(zero, zero, zero, zero, zero, f(alpha_plus), f(alpha_minus), f(tv), f(c))
    aux = jaxsig.Auxiliary(
        zero,
        zero,
        zero,
        zero,
        f(beta_plus),
        f(beta_minus),
        zero,
        jnp.int32(jaxsig.GROWTH_CLASSES.index(growth)),
        jnp.bool_(True),
    )
    return sig, aux


NAN, INF = math.nan, math.inf


def test_parameters_change_the_facts():
    # leaky ReLU with slope -1 is |x|: even, not monotone, still kinked at 0.
    c = taxonomy.classify("leaky_relu", params={"negative_slope": -1.0}, signature=given(1, -1, 0, 0, 2, 0))
    assert (c.parity, c.monotone, c.kinks, c.growth) == ("even", False, (0.0,), "A1")
    # ... and with slope 1 it is the identity: smooth and odd.
    c = taxonomy.classify("leaky_relu", params={"negative_slope": 1.0}, signature=given(1, 1, 0, 0, 0, 0))
    assert (c.parity, c.smooth, c.kinks) == ("odd", True, ())
    # ELU with alpha = 2: phi'(0-) = 2 != 1, a kink.
    c = taxonomy.classify("elu", params={"alpha": 2.0}, signature=given(1, 0, 0, -2, 2, 2))
    assert (c.kinks, c.smooth, c.saturating_minus) == ((0.0,), False, True)


def absolute(x):
    return jnp.abs(x)


def x_sin(x):
    return x * jnp.sin(x)


def x2_sin(x):
    return x * x * jnp.sin(x)


def bump(x):
    return jnp.exp(-x * x)


def test_undeclared_kink_at_zero_is_found():
    c = taxonomy.classify(absolute, signature=given(1, -1, 0, 0, 2, 0))
    assert (c.kinks, c.parity, c.monotone, c.growth) == ((0.0,), "even", False, "A1")


def test_oscillating_growth_without_slopes():
    # x sin x: phi(x)/x has no limit but stays bounded -> A1, slopes undefined.
    c = taxonomy.classify(x_sin, signature=given(NAN, NAN, NAN, NAN, INF, INF))
    assert c.growth == "A1"
    assert set(c.undefined) == {"alpha_plus", "alpha_minus"}
    assert not c.bounded and c.infinite == ("tv", "c")
    # x^2 sin x: |phi(x)/x| grows without bound -> superlinear (computed signature).
    assert taxonomy.classify(x2_sin).growth == "A>1"


def test_oscillating_slopes_from_the_real_signature():
    # The same through jaxsig.signature: the slopes of x sin x have no limit.
    c = taxonomy.classify(x_sin)
    assert (c.growth, set(c.undefined)) == ("A1", {"alpha_plus", "alpha_minus"})


def test_bounded_non_monotone_even():
    # exp(-x^2): tv = 4 max|phi'| = 4 sqrt(2/e), c = sqrt(pi).
    sig, aux = jaxsig.signature_with_aux(bump, 1.0)
    np.testing.assert_allclose(
        [float(sig.tv), float(sig.c)], [4 * math.sqrt(2 / math.e), math.sqrt(math.pi)], rtol=1e-13
    )
    c = taxonomy.classify(bump, signature=(sig, aux))
    assert (c.growth, c.parity, c.monotone, c.saturating_plus, c.saturating_minus) == (
        "A0",
        "even",
        False,
        True,
        True,
    )
    assert c.infinite == () and c.smooth


@pytest.mark.parametrize(
    "name, sig",
    [("relu", (1, 0, 0, 0, 1, 0)), ("relu6", (0, 0, 6, 0, 2, 18)), ("signed_sqrt", (0, 0, INF, -INF, INF, INF))],
)
def test_classify_float32(name, sig):
    # relu6's kink at 6 needs the wider float32 probe step (1024 eps |b|).
    growth = EXPECTED[name][0]
    c32 = taxonomy.classify(name, signature=given(*sig, dtype=jnp.float32, growth=growth))
    c64 = taxonomy.classify(name, signature=given(*sig, growth=growth))
    assert c32 == c64
    growth, bounded, _, kinks, smooth, parity, monotone, _ = EXPECTED[name]
    assert (c32.growth, c32.bounded, c32.kinks, c32.smooth, c32.parity, c32.monotone) == (
        growth,
        bounded,
        kinks,
        smooth,
        parity,
        monotone,
    )


def test_classify_rejects_bad_signatures():
    with pytest.raises(ValueError, match="pair"):
        taxonomy.classify("relu", signature=sig_aux("relu")[0])
    table = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), sig_aux("relu"), sig_aux("tanh"))
    with pytest.raises(ValueError, match="several values"):
        taxonomy.classify("relu", signature=table)


# --- Report card --------------------------------------------------------------------


def card_of(name, sigma=1.0, **kw):
    return taxonomy.report_card(*sig_aux(name, sigma), sigma, **kw)


def test_relu_card_closed_forms():
    card = card_of("relu")
    assert float(card.contraction.value) == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    assert bool(card.contraction.passed) and float(card.contraction.threshold) == 0.8
    # He initialisation: sW^2 = q / m2 = 1 / (1/2) = 2; m2 ∝ sigma^2 so V' = 1 (marginal).
    assert float(card.weight_variance) == pytest.approx(2.0, rel=1e-12)
    assert float(card.log_slope) == pytest.approx(2.0, rel=1e-10)
    assert float(card.variance.value) == pytest.approx(1.0, rel=1e-10)
    assert bool(card.variance.passed)
    assert float(card.chi1) == pytest.approx(1.0, rel=1e-12)  # edge of chaos
    assert float(card.bias_mean.value) == pytest.approx(1 / SQRT2PI, rel=1e-12)
    assert not bool(card.bias_mean.passed)  # 0.399 > 0.3
    assert float(card.correlation) == pytest.approx(1 / math.pi, rel=1e-12)  # m1^2/m2
    assert float(card.bias_area.value) == pytest.approx(0.0, abs=1e-12) and bool(card.bias_area.passed)
    assert float(card.conditioning.value) == pytest.approx(1.0, rel=1e-10) and bool(card.conditioning.passed)
    assert float(card.tails.value) == pytest.approx(0.0, abs=1e-10) and bool(card.tails.passed)
    assert not bool(card.all_passed())


def test_tanh_card():
    card = card_of("tanh")
    assert float(card.conditioning.value) == pytest.approx(2.0, rel=1e-10)
    assert bool(card.conditioning.passed)
    assert float(card.tails.value) == pytest.approx(2 * math.log(2), rel=1e-8)
    assert float(card.bias_mean.value) == pytest.approx(0.0, abs=1e-14)
    # tanh saturates: m2 grows slower than sigma^2, the fixed point is stable.
    assert 0 < float(card.variance.value) < 1
    assert bool(card.all_passed())


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_erf_variance_principle_closed_form(sigma):
    # m2 = (2/pi) arcsin(u), u = 2 s^2 / (1 + 2 s^2); dm2/ds = (2/pi) u' / sqrt(1 - u^2).
    u = 2 * sigma**2 / (1 + 2 * sigma**2)
    du = 4 * sigma / (1 + 2 * sigma**2) ** 2
    m2 = 2 / math.pi * math.asin(u)
    dm2 = 2 / math.pi * du / math.sqrt(1 - u * u)
    card = card_of("erf", sigma)
    assert float(card.weight_variance) == pytest.approx(sigma**2 / m2, rel=1e-10)
    assert float(card.log_slope) == pytest.approx(sigma * dm2 / m2, rel=1e-9)
    assert float(card.variance.value) == pytest.approx(sigma**2 / m2 * dm2 / (2 * sigma), rel=1e-9)


def test_square_fails_everything_it_should():
    # x^2: g2 = 2 sigma, m2 = 3 sigma^4, V' = (d log m2/d log sigma)/2 = 2, chi1 = 4/3.
    card = card_of("x^2")
    assert float(card.contraction.value) == pytest.approx(2.0, rel=1e-12)
    assert float(card.variance.value) == pytest.approx(2.0, rel=1e-10)
    assert float(card.chi1) == pytest.approx(4 / 3, rel=1e-10)
    assert float(card.bias_mean.value) == pytest.approx(1.0, rel=1e-12)
    assert math.isnan(float(card.bias_area.value))
    assert math.isinf(float(card.conditioning.value)) and math.isinf(float(card.tails.value))
    assert not any(bool(p.passed) for p in card.principles().values())


def test_gelu_bias_off_centre():
    # m1 of x Phi(x) at X = mu + sigma Z (closed form): mu Phi(mu/s) + sigma^2 phi(mu/s) / s,
    # s = sqrt(1 + sigma^2).
    sigma, mu = 1.3, 0.4
    s = math.sqrt(1 + sigma**2)
    m1 = mu * 0.5 * math.erfc(-mu / s / math.sqrt(2)) + sigma**2 * math.exp(-0.5 * (mu / s) ** 2) / (s * SQRT2PI)
    sig, aux = jaxsig.signature_with_aux("gelu", sigma, mu=mu)
    card = taxonomy.report_card(sig, aux, sigma, m1_max=0.5)
    assert float(card.bias_mean.value) == pytest.approx(m1, rel=1e-10)
    assert bool(card.bias_mean.passed) == (m1 <= 0.5)
    assert float(card.bias_area.value) == pytest.approx(0.5, rel=1e-8)  # b = -1/2 for GELU


def test_thresholds_are_respected():
    assert not bool(card_of("relu", g2_max=0.7).contraction.passed)
    assert not bool(card_of("relu", tv_max=1.0).conditioning.passed)  # strict: tv < tv_max
    assert bool(card_of("relu", tv_max=1.0 + 1e-9).conditioning.passed)
    assert bool(card_of("relu", m1_max=0.4).bias_mean.passed)
    assert not bool(card_of("tanh", c_max=1.0).tails.passed)
    assert not bool(card_of("relu", variance_slope_max=0.9).variance.passed)


def test_bias_variance():
    # relu, q = 1, sb^2 = 1/2: sW^2 = (1 - 1/2) / (1/2) = 1; V' = (1 - sb^2/q) * 2/2 = 1/2.
    card = card_of("relu", bias_variance=0.5)
    assert float(card.weight_variance) == pytest.approx(1.0, rel=1e-12)
    assert float(card.variance.value) == pytest.approx(0.5, rel=1e-10)
    assert float(card.chi1) == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="bias_variance"):
        card_of("relu", bias_variance=1.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        taxonomy.report_card(*sig_aux("relu"), -1.0)


def test_variance_map_fixed_point_by_iteration():
    """sW^2 really keeps q fixed, and V' predicts how a perturbation of q evolves."""
    sigma = 1.0
    card = card_of("tanh", sigma)
    sw2 = float(card.weight_variance)

    def V(q):
        return sw2 * float(jaxsig.moments("tanh", math.sqrt(q)).m2)

    assert V(sigma**2) == pytest.approx(sigma**2, rel=1e-12)
    dq = 1e-4
    assert (V(1 + dq) - V(1 - dq)) / (2 * dq) == pytest.approx(float(card.variance.value), rel=1e-6)


NAMES = ("relu", "tanh", "x^2", "gelu", "sigmoid")


def stacked(names, sigma=1.0):
    pairs = [sig_aux(n, sigma) for n in names]
    return jax.tree_util.tree_map(lambda *v: jnp.stack(v), *pairs)


def test_batched_card_equals_per_activation_cards():
    sig, aux = stacked(NAMES)
    card = taxonomy.report_card(sig, aux)
    assert card.contraction.value.shape == (len(NAMES),)
    for i, n in enumerate(NAMES):
        single = card_of(n)
        for a, b in zip(jax.tree_util.tree_leaves(card), jax.tree_util.tree_leaves(single)):
            np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b))
    # jit and vmap give the same card.
    jitted = jax.jit(taxonomy.report_card)(sig, aux)
    vmapped = jax.vmap(taxonomy.report_card)(sig, aux)
    for a, b, c in zip(*(jax.tree_util.tree_leaves(t) for t in (card, jitted, vmapped))):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-14)
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(c, float), rtol=1e-14)


def test_card_over_a_sigma_grid():
    sigma = jnp.array([0.5, 1.0, 2.0])
    sig, aux = jaxsig.signature_with_aux("relu", sigma)
    card = taxonomy.report_card(sig, aux, sigma)
    # relu: sW^2 = 2 and V' = 1 at every sigma (positive homogeneity); g2 constant.
    np.testing.assert_allclose(card.weight_variance, 2.0, rtol=1e-12)
    np.testing.assert_allclose(card.variance.value, 1.0, rtol=1e-9)
    np.testing.assert_allclose(card.bias_mean.value, np.asarray(sigma) / SQRT2PI, rtol=1e-12)


def test_card_float32():
    sig, aux = jaxsig.signature_with_aux("relu", jnp.float32(1.0))
    card = taxonomy.report_card(sig, aux, jnp.float32(1.0))
    assert card.variance.value.dtype == jnp.float32
    # The marginal V' = 1 of ReLU passes in float32 too (slack sqrt(eps)).
    assert float(card.variance.value) == pytest.approx(1.0, rel=1e-5)
    assert bool(card.variance.passed)
    assert float(card.weight_variance) == pytest.approx(2.0, rel=1e-6)


def erf_closed_form(s):
    """Signature and auxiliary of erf at X = s Z from closed forms, in jax.numpy.

    m2 = (2/pi) arcsin(2 s^2 / (1 + 2 s^2)), g1 = E[phi'] = (2/sqrt(pi)) / sqrt(1 + 2 s^2),
    g2^2 = (4/pi) / sqrt(1 + 4 s^2); slopes 0, tv = 4/sqrt(pi), c = 2/sqrt(pi), b = 0.
    """
    u = 2 * s * s / (1 + 2 * s * s)
    m2 = 2 / jnp.pi * jnp.arcsin(u)
    g1 = 2 / jnp.sqrt(jnp.pi) / jnp.sqrt(1 + 2 * s * s)
    g2 = jnp.sqrt(4 / jnp.pi / jnp.sqrt(1 + 4 * s * s))
    dm2 = jax.grad(lambda t: 2 / jnp.pi * jnp.arcsin(2 * t * t / (1 + 2 * t * t)))(s)
    zero = jnp.zeros_like(s)
    sig = jaxsig.Signature(
        zero, g1, g2, m2, m2 - s * s * g1 * g1, zero, zero, zero + 4 / jnp.sqrt(jnp.pi), zero + 2 / jnp.sqrt(jnp.pi)
    )
    g4 = zero + jnp.nan  # not read by the card
    aux = jaxsig.Auxiliary(g4, zero, zero, zero, zero + 1.0, zero - 1.0, dm2, jnp.int32(0), jnp.bool_(True))
    return sig, aux


def test_card_from_closed_forms_matches_computed_and_differentiates():
    s = 1.0
    closed = taxonomy.report_card(*erf_closed_form(jnp.asarray(s)), s)
    computed = card_of("erf", s)
    for a, b in zip(jax.tree_util.tree_leaves(closed), jax.tree_util.tree_leaves(computed)):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-9, atol=1e-12)

    # The card is differentiable: d sW^2 / d sigma against finite differences.
    def sw2(t):
        return taxonomy.report_card(*erf_closed_form(t), t).weight_variance

    def f(t):
        return t * t / (2 / math.pi * math.asin(2 * t * t / (1 + 2 * t * t)))

    fd = (f(s + 1e-6) - f(s - 1e-6)) / 2e-6
    assert float(jax.grad(sw2)(s)) == pytest.approx(fd, rel=1e-7)


def test_explain():
    lines = taxonomy.explain(card_of("relu"))
    assert [ln.key for ln in lines] == list(taxonomy.PRINCIPLES)
    assert [ln.number for ln in lines] == ["1", "2", "3", "3", "4", "5"]
    assert [ln.rule for ln in lines] == ["g2 <= 0.8", "V'(q*) <= 1", "|m1| <= 0.3", "|b| <= 1.5", "tv < 5", "c < inf"]
    assert [ln.passed for ln in lines] == [True, True, False, True, True, True]
    by = {ln.key: ln for ln in lines}
    assert "g2^2 = 0.5" in by["contraction"].sentence and "shrink" in by["contraction"].sentence
    assert "sW^2 = 2 keeps q = 1 fixed" in by["variance"].sentence
    assert "edge of chaos" in by["variance"].sentence and "persist" in by["variance"].sentence
    assert "0.3183" in by["bias_mean"].sentence  # 1/pi
    for ln in lines:
        assert ln.sentence.endswith(".") and "\n" not in ln.sentence


def test_explain_batched_and_undefined():
    card = taxonomy.report_card(*stacked(NAMES))
    sq = {ln.key: ln for ln in taxonomy.explain(card, NAMES.index("x^2"))}
    assert "undefined" in sq["bias_area"].sentence
    assert "unbounded variation" in sq["conditioning"].sentence
    assert "grow" in sq["variance"].sentence and "chaotic" in sq["variance"].sentence
    tanh = taxonomy.explain(card, NAMES.index("tanh"))
    assert tanh == taxonomy.explain(card_of("tanh"))
    assert "uncorrelated" in tanh[2].sentence  # m1 = 0 (to rounding) for odd tanh


def test_format_number():
    f = taxonomy.format_number
    assert [f(math.inf), f(-math.inf), f(math.nan), f(5.5e-17), f(-2e-13)] == ["inf", "-inf", "undefined", "0", "0"]
    assert (f(1 / 3), f(1 / 3, 6), f(12345678.0), f(1e-9)) == ("0.3333", "0.333333", "1.235e+07", "1e-09")


def test_classify_finds_kinks_nobody_declared():
    # A plain callable with kinks at 0.3711 and -1.25 (not declared): classify
    # locates them from the jumps of phi' (the core warns too) and does not call it smooth.
    phi = lambda x: jnp.maximum(x - 0.3711, 0.0) - 0.5 * jnp.maximum(x + 1.25, 0.0)  # noqa: E731
    with pytest.warns(UserWarning, match="no kink is declared"):
        c = taxonomy.classify(phi)
    np.testing.assert_allclose(c.kinks, (-1.25, 0.3711), atol=1e-9)
    assert not c.smooth


STUDY_JSON = pathlib.Path(__file__).resolve().parents[1] / "examples" / "criticality_study.json"


def test_explain_says_what_training_measured():
    """Contraction's trade of depth for stability and variance management's margin are stated
    on every card, with the numbers of examples/criticality_study.json (when present)."""
    lines = {ln.key: ln for ln in taxonomy.explain(card_of("tanh"))}
    assert "trades depth for stability" in lines["contraction"].finding
    assert "V'(q*) <= 0.87" in lines["variance"].finding
    assert all(ln.finding == "" for k, ln in lines.items() if k not in ("contraction", "variance"))
    if not STUDY_JSON.exists():
        pytest.skip("examples/criticality_study.json not present")
    rows = json.loads(STUDY_JSON.read_text())["rows"]
    acc50 = {n: float(np.mean(r["test"]["50"])) for n, r in rows.items()}
    slope = {n: r["theory"]["principles"]["variance"]["value"] for n, r in rows.items()}
    failing = sorted(n for n, r in rows.items() if not r["theory"]["principles"]["contraction"]["passed"])
    assert failing == ["crit_elu", "selu"]
    assert f"{acc50['selu']:.2f} and {acc50['crit_elu']:.2f}" in lines["contraction"].finding
    trained = {n for n in rows if acc50[n] >= 0.5}
    assert max(slope[n] for n in trained) <= 0.875 and min(slope[n] for n in rows if n not in trained) >= 0.975
    assert f"{min(acc50[n] for n in trained):.2f} to {max(acc50[n] for n in trained):.2f}" in lines["variance"].finding
    untrained = [acc50[n] for n in rows if n not in trained]
    assert f"{min(untrained):.2f} to {max(untrained):.2f}" in lines["variance"].finding

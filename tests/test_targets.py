"""The target language: parsing, errors, semantics, evaluation, penalties, jit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

import jaxsig
from jaxsig import families
from jaxsig import targets as T
from jaxsig.targets import Target

FAM = families.get("swish_beta")

# --- Parsing ------------------------------------------------------------------------------

PARSED = [
    ("g2 <= 0.8", Target("g2", "<=", 0.8, None, 1.0)),
    ("g2@2.0 <= 0.8", Target("g2", "<=", 0.8, 2.0, 1.0)),
    ("tv < 5", Target("tv", "<", 5.0, None, 1.0)),
    ("m2 == 1", Target("m2", "==", 1.0, None, 1.0)),
    ("m1==0", Target("m1", "==", 0.0, None, 1.0)),
    ("c < inf", Target("c", "<", math.inf, None, 1.0)),
    ("alpha_minus > -inf", Target("alpha_minus", ">", -math.inf, None, 1.0)),
    ("eta >= 1e-3", Target("eta", ">=", 1e-3, None, 1.0)),
    ("  dm2_dsigma@0.5 > -.25  ", Target("dm2_dsigma", ">", -0.25, 0.5, 1.0)),
    ("minimize eta", Target("eta", "minimize", math.nan, None, 1.0)),
    ("maximize g1@0.5 weight 3", Target("g1", "maximize", math.nan, 0.5, 3.0)),
    ("min b", Target("b", "minimize", math.nan, None, 1.0)),
    ("tv < 5 weight=2.5", Target("tv", "<", 5.0, None, 2.5)),
]


def same(a: Target, b: Target):
    return (
        a[:2] == b[:2]
        and a.sigma == b.sigma
        and a.weight == b.weight
        and (a.value == b.value or (math.isnan(a.value) and math.isnan(b.value)))
    )


@pytest.mark.parametrize("text,expected", PARSED)
def test_parse_and_canonical_text_round_trip(text, expected):
    (got,) = T.parse_targets(text).specs
    assert same(got, expected)
    (again,) = T.parse_targets(str(got)).specs
    assert same(again, got)


def test_many_targets_in_one_string_or_a_list():
    a = T.parse_targets("g2 <= 0.8; tv < 5\nm2 == 1")
    b = T.parse_targets(["g2 <= 0.8", "tv < 5", "m2 == 1"])
    assert a.texts == b.texts == ("g2 <= 0.8", "tv < 5", "m2 == 1")
    assert len(a) == 3 and [s.component for s in a] == ["g2", "tv", "m2"]
    assert T.parse_targets(a) is a
    assert str(a) == "g2 <= 0.8; tv < 5; m2 == 1"


def test_arrays_hold_the_numbers_and_default_sigma():
    t = T.parse_targets(["g2@2 <= 0.8", "m2 == 1", "minimize eta weight 0.5", "c < inf"], sigma=1.5)
    arr = t.arrays
    assert [T.COMPONENTS[i] for i in arr.index] == ["g2", "m2", "eta", "c"]
    assert [T.OPS[i] for i in arr.op] == ["<=", "==", "minimize", "<"]
    np.testing.assert_array_equal(arr.sigma, [2.0, 1.5, 1.5, 1.5])
    np.testing.assert_array_equal(arr.weight, [1.0, 1.0, 0.5, 1.0])
    assert arr.value[3] == np.inf and np.isnan(arr.value[2])
    assert t.needs_signature and not T.parse_targets("g2 <= 1").needs_signature
    assert t.constrained == (0, 1, 3)


BAD = [
    ("g2 <== 0.8", "expected a number after '<=', got '=' at column 6"),
    ("g3 <= 1", "unknown component 'g3' at column 1; did you mean"),
    ("tv@2 < 5", "'tv' does not depend on sigma: drop '@2'"),
    ("g2@0 < 5", "sigma must be positive"),
    ("m2 = 1", "write '==' for equality"),
    ("c == inf", "write 'c < inf'"),
    ("c < -inf", "can never hold"),
    ("g2 <= ", "got the end of the text"),
    ("minimize", "expected a component name"),
    ("minimize g2 <= 1", "unexpected '<=' at column 13"),
    ("g2 <= 0.8 weight -1", "weight must be positive"),
    ("g2 <= 0.8 extra", "unexpected 'extra' at column 11"),
    ("g2 $ 1", "got '$' at column 4"),
    ("$", "unexpected character '$' at column 1"),
]


@pytest.mark.parametrize("text,fragment", BAD)
def test_parse_errors_name_the_token_and_show_the_grammar(text, fragment):
    with pytest.raises(T.TargetError) as info:
        T.parse_targets(text)
    msg = str(info.value)
    assert fragment in msg
    assert "Grammar:" in msg and "constraint := expr OP bound [weight]" in msg


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="no targets given"):
        T.parse_targets(" ; ")
    with pytest.raises(TypeError, match="must be a string"):
        T.parse_targets([1.0])
    with pytest.raises(ValueError, match="sigma must be positive"):
        T.parse_targets("g2 <= 1", sigma=0.0)


# --- Semantics on given values --------------------------------------------------------------

SEM = T.parse_targets(
    [
        "g2 <= 0.8",
        "tv < 5",
        "m2 == 1",
        "c < inf",
        "m1 >= 0.1",
        "g1 > 0.5",
        "minimize eta",
        "maximize g4 weight 2",
        "alpha_minus > -inf",
    ]
)


@jax.jit
def everything(arrays, v, eq_tol=None):
    """All value-level functions at once: one compilation instead of many eager ones."""
    return dict(
        residuals=T.residuals(arrays, v),
        violations=T.violations_of(arrays, v),
        margins=T.margins(arrays, v),
        satisfied=T.satisfied(arrays, v, eq_tol=eq_tol),
        objective=T.objective(arrays, v),
        penalty=T.penalty_of(arrays, v),
    )


def test_residuals_margins_violations_satisfied():
    v = jnp.asarray([0.9, 5.0, 1.0 + 2e-9, np.inf, 0.3, 0.5, 0.25, 1.5, -3.0])
    out = everything(SEM.arrays, v)
    r = np.asarray(out["residuals"])
    np.testing.assert_allclose(r[:3], [0.1, 0.0, 2e-9], rtol=1e-12, atol=1e-15)
    assert r[3] == np.inf and r[8] == 0.0 and r[6] == 0.0 and r[7] == 0.0
    np.testing.assert_allclose(r[4:6], [-0.2, 0.0], atol=1e-15)
    viol = np.asarray(out["violations"])
    np.testing.assert_allclose(viol, [0.1, 0.0, 2e-9, np.inf, 0.0, 0.0, 0.0, 0.0, 0.0], atol=1e-15)
    marg = np.asarray(out["margins"])
    np.testing.assert_allclose(marg[[0, 1, 2, 4, 5]], [-0.1, 0.0, -2e-9, 0.2, 0.0], atol=1e-15)
    assert np.isnan(marg[6]) and np.isnan(marg[7])
    #          g2     tv(strict at bound)  m2(within 1e-8)  c(inf)  m1    g1(strict)  objectives  finite
    assert list(np.asarray(out["satisfied"])) == [False, False, True, False, True, False, True, True, True]
    assert not everything(SEM.arrays, v, 1e-9)["satisfied"][2]
    np.testing.assert_allclose(out["objective"], 0.25 - 2 * 1.5, rtol=1e-15)
    # the methods are the same functions
    np.testing.assert_array_equal(SEM.margins(v), marg)
    np.testing.assert_array_equal(SEM.satisfied(v), out["satisfied"])


def test_nan_values_violate_and_float32_tolerance():
    t = T.parse_targets(["m2 == 1", "g2 <= 1"])
    out = everything(t.arrays, jnp.asarray([np.nan, np.nan]))
    assert np.all(np.isinf(out["violations"])) and not np.any(out["satisfied"])
    v32 = jnp.asarray([1.0 + 5e-5, 0.5], jnp.float32)
    assert T.default_eq_tol(jnp.float32) == 1e-4 and T.default_eq_tol(jnp.float64) == 1e-8
    assert bool(everything(t.arrays, v32)["satisfied"][0])
    assert not bool(everything(t.arrays, v32.astype(jnp.float64))["satisfied"][0])


def test_penalty_from_values():
    t = T.parse_targets(["g2 <= 0.8 weight 2", "m2 == 1", "m1 >= 0", "c < inf", "minimize eta weight 0.5"])
    v = jnp.asarray([1.0, 0.7, -0.1, 3.0, 0.2])
    expect = 2 * 0.2**2 + 0.3**2 + 0.1**2 + 0.0 + 0.5 * 0.2
    np.testing.assert_allclose(everything(t.arrays, v)["penalty"], expect, rtol=1e-14)
    assert everything(t.arrays, v.at[3].set(np.inf))["penalty"] == np.inf


# --- Evaluation against closed forms ------------------------------------------------------------


def selu_closed_forms(lam, alpha, s):
    """Scaled ELU ``lam (x if x > 0 else alpha (e^x - 1))`` at input scale ``s``, in closed form.

    With ``E[e^{sZ} 1{Z<0}] = e^{s^2/2} Phi(-s)``: ``m1``, ``g1``, ``g2``, ``m2``; the
    slopes are ``(lam, 0)``, the left intercept ``-lam alpha``, so
    ``c = int_-inf^0 lam alpha e^x dx = lam alpha``; ``phi'`` rises from 0 to
    ``lam alpha`` and jumps to ``lam`` at 0: ``tv = lam (alpha + |1 - alpha|)``.
    """
    e1 = math.exp(s * s / 2) * ndtr(-s)
    e2 = math.exp(2 * s * s) * ndtr(-2 * s)
    return dict(
        m1=lam * (s / math.sqrt(2 * math.pi) + alpha * (e1 - 0.5)),
        g1=lam * (0.5 + alpha * e1),
        g2=lam * math.sqrt(0.5 + alpha**2 * e2),
        m2=lam**2 * (s * s / 2 + alpha**2 * (e2 - 2 * e1 + 0.5)),
        alpha_plus=lam,
        alpha_minus=0.0,
        beta_minus=-lam * alpha,
        c=lam * alpha,
        tv=lam * (alpha + abs(1 - alpha)),
    )


def test_evaluate_against_closed_forms():
    # The scaled_elu family (SELU at its default; here off-default parameters).
    fam = families.get("scaled_elu")
    p = {"lam": np.asarray(0.9), "alpha": np.asarray(1.3), "shift": np.asarray(0.0)}
    texts = [
        "g1@0.5 >= 0.5",
        "m1@3 <= 1",
        "c < inf",
        "c <= 1",
        "alpha_plus >= 1",
        "alpha_minus <= 0",
        "m2@2 <= 3",
        "g2 <= 1.1",
        "tv == 1.44",
        "beta_minus > -inf",
    ]
    t = T.parse_targets(texts)
    v = np.asarray(T.evaluate(t, fam, p))
    cf = {s: selu_closed_forms(0.9, 1.3, s) for s in (0.5, 1.0, 2.0, 3.0)}
    expect = [
        cf[0.5]["g1"],
        cf[3.0]["m1"],
        cf[1.0]["c"],
        cf[1.0]["c"],
        0.9,
        0.0,
        cf[2.0]["m2"],
        cf[1.0]["g2"],
        cf[1.0]["tv"],
        cf[1.0]["beta_minus"],
    ]
    np.testing.assert_allclose(v, expect, rtol=1e-12, atol=1e-14)
    # verdicts from the closed forms: c = 1.17 > 1, tv = 0.9 * 1.6 = 1.44 exactly
    ok = [expect[0] >= 0.5, expect[1] <= 1, True, False, False, True, expect[6] <= 3, expect[7] <= 1.1, True, True]
    assert [bool(x) for x in t.satisfied(v)] == ok
    # SELU itself: m2(1) = 1 to the precision of its constants
    np.testing.assert_allclose(
        T.evaluate("m2 == 1", fam),
        [selu_closed_forms(jaxsig.activations.SELU_SCALE, jaxsig.activations.SELU_ALPHA, 1.0)["m2"]],
        rtol=1e-13,
    )


def test_evaluate_gaussian_only_skips_the_signature_and_full_false_reads_nan():
    t = T.parse_targets(["m2@2 == 2", "tv < 5"])
    v = np.asarray(T.evaluate(t.arrays, "relu", full=False))
    assert v[0] == pytest.approx(2.0, rel=1e-14) and np.isnan(v[1])
    erf = T.evaluate("m2@0.7 <= 1", "erf")  # SPEC: m2 = (2/pi) arcsin(2 s^2 / (1 + 2 s^2))
    s2 = 0.49
    np.testing.assert_allclose(erf, [2 / math.pi * math.asin(2 * s2 / (1 + 2 * s2))], rtol=1e-13)


def test_violations_and_penalty_of_an_activation():
    t = T.parse_targets(["g2 <= 0.5", "m2 == 1"])
    np.testing.assert_allclose(T.violations(t, "relu"), [1 / math.sqrt(2) - 0.5, 0.5], rtol=1e-13)
    np.testing.assert_allclose(T.penalty(t, "relu"), (1 / math.sqrt(2) - 0.5) ** 2 + 0.25, rtol=1e-13)


# --- Differentiation, jit, vmap, dtypes ------------------------------------------------------------

GAUSS = T.parse_targets(["g2@1.3 <= 0.6", "m2 == 1", "m1@0.7 >= 0.5 weight 2", "minimize eta weight 0.1"])


def test_penalty_gradient_matches_finite_differences():
    p = {"beta": jnp.asarray(1.3), "scale": jnp.asarray(1.1), "shift": jnp.asarray(0.2)}
    vg = jax.jit(jax.value_and_grad(lambda q: T.penalty(GAUSS, FAM, q)))  # one compilation for both
    g = vg(p)[1]
    for k in p:
        h = 1e-6
        fd = (vg({**p, k: p[k] + h})[0] - vg({**p, k: p[k] - h})[0]) / (2 * h)
        np.testing.assert_allclose(g[k], fd, rtol=1e-6)


def test_jit_vmap_agree_and_new_bounds_do_not_retrace():
    traces = []

    @jax.jit
    def pen(arrays, params):
        traces.append(1)
        return T.penalty_of(arrays, T.evaluate(arrays, FAM, params, full=False))

    p = {"beta": jnp.asarray(0.8), "scale": jnp.asarray(1.2), "shift": jnp.asarray(0.1)}
    # the penalty written out from the moments (independent of targets' gathering)
    m = {
        k: np.asarray(getattr(jaxsig.moments(FAM, s, params=p), k))
        for k, s in (("g2", 1.3), ("m2", 1.0), ("m1", 0.7), ("eta", 1.0))
    }
    by_hand = max(m["g2"] - 0.6, 0) ** 2 + (m["m2"] - 1) ** 2 + 2 * max(0.5 - m["m1"], 0) ** 2 + 0.1 * m["eta"]
    np.testing.assert_allclose(pen(GAUSS.arrays, p), by_hand, rtol=1e-13)
    looser = T.parse_targets(["g2@1.3 <= 0.9", "m2 == 0.5", "m1@0.7 >= 0.1 weight 3", "minimize eta weight 1"])
    pen(looser.arrays, p)
    assert len(traces) == 1
    batch = jax.tree_util.tree_map(lambda v: jnp.stack([v, 1.1 * v]), p)
    out = jax.jit(jax.vmap(pen, in_axes=(None, 0)))(GAUSS.arrays, batch)
    np.testing.assert_allclose(out[1], pen(GAUSS.arrays, jax.tree_util.tree_map(lambda v: 1.1 * v, p)), rtol=1e-13)


def test_precision_follows_the_params():
    p32 = {k: jnp.asarray(v, jnp.float32) for k, v in FAM.params.items()}
    v32 = T.evaluate(GAUSS, FAM, p32)
    v64 = T.evaluate(GAUSS, FAM, FAM.params)
    assert v32.dtype == jnp.float32 and v64.dtype == jnp.float64
    np.testing.assert_allclose(v32[:3], v64[:3], rtol=1e-5)

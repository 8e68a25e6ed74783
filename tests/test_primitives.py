"""Direct tests of the core's primitives: the ladder limit's four cases, the
composite grid and its line, the numerical helpers, statuses, formatting and JSON."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsig.core import _numerics, _progress, limits, quadrature
from jaxsig.core._format import format_number, from_json_number, json_number, to_json
from jaxsig.core._validate import check_range, working_dtype

EPS = float(jnp.finfo(jnp.float64).eps)
K = np.arange(1, 41, dtype=np.float64)  # a dyadic ladder x_k = 2**k


def _limit(a, **kw):
    a = jnp.asarray(a)
    kw.setdefault("rtol", 1e3 * EPS)
    return limits.ladder_limit(a, EPS * jnp.abs(a), **kw)


# --- ladder_limit: the four cases ------------------------------------------------------


def test_converged_sequence_takes_its_settled_value():
    a = 1.25 + 2.0 ** -(4 * K)  # settles to rounding after ~13 rungs
    out = _limit(a)
    assert int(out.status) == limits.CONVERGED
    assert float(out.value) == 1.25


@pytest.mark.parametrize("p", [1.0, 2.0, 0.5])
def test_power_law_tail_is_extrapolated_exactly(p):
    # phi(x)/x - alpha ~ x^-p on x = 2**k: a geometric sequence of ratio 2**-p, which
    # stops short of rounding on a 40-rung ladder for p <= 1: Aitken gives the limit.
    a = 3.0 + 7.0 * 2.0 ** (-p * K)
    out = _limit(a)
    assert int(out.status) in (limits.GEOMETRIC, limits.CONVERGED)
    assert abs(float(out.value) - 3.0) <= 64 * EPS * 3.0


def test_slow_power_law_is_geometric_not_converged():
    a = 1.0 + 2.0 ** (-0.25 * K)  # the last increments are ~1e-3: far from rounding
    out = _limit(a)
    assert int(out.status) == limits.GEOMETRIC
    assert abs(float(out.value) - 1.0) <= 1e-12


@pytest.mark.parametrize("a, sign", [(K, 1.0), (-(2.0**K), -1.0), (K**2, 1.0)])
def test_growth_diverges_with_its_sign(a, sign):
    out = _limit(a)  # log x, -x, (log x)^2 on the ladder
    assert int(out.status) == limits.DIVERGENT
    assert float(out.value) == sign * math.inf


def test_oscillation_has_no_limit():
    a = (-1.0) ** K  # sin-like: bounded, no limit
    out = _limit(a)
    assert int(out.status) == limits.NO_LIMIT
    assert math.isnan(float(out.value))


def test_irregular_monotone_sum_diverges():
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.uniform(0.5, 1.5, K.size))  # non-negative increments that do not shrink
    out = _limit(a, monotone=True)
    assert int(out.status) == limits.DIVERGENT
    assert float(out.value) == math.inf


def test_overflowed_terms_are_divergence_not_nan():
    a = np.array([1.0, 10.0, 1e200, np.inf, np.inf, np.inf])
    out = _limit(a)
    assert int(out.status) == limits.DIVERGENT and float(out.value) == math.inf


def test_batched_rows_are_independent_and_gradients_finite():
    rows = jnp.stack([jnp.asarray(3.0 + 2.0**-K), jnp.asarray((-1.0) ** K), jnp.asarray(K)])
    out = limits.ladder_limit(rows, EPS * jnp.abs(rows), rtol=1e3 * EPS)
    np.testing.assert_array_equal(np.asarray(out.status), [limits.GEOMETRIC, limits.NO_LIMIT, limits.DIVERGENT])
    g = jax.grad(lambda c: limits.ladder_limit(c + 2.0**-K, EPS * jnp.ones_like(K), rtol=1e3 * EPS).value)(3.0)
    assert float(g) == pytest.approx(1.0, abs=1e-12)


def test_converged_intercept_is_aitken_accelerated_before_the_noise_floor():
    # An intercept phi(x) - alpha x on x = 2**k: the limit -1, an x^-2 correction
    # and rounding noise eps * alpha * x. The plain converged term stops where the
    # noise meets the correction (~1e-10); Aitken's value on the earlier, steady
    # rungs removes the correction. Noise drawn at its stated size, fixed seed.
    x = 2.0 ** np.arange(1, 33)
    rng = np.random.default_rng(1)
    noise = EPS * 1.6 * x
    a = -1.0 + 1.0 / (3.0 * x**2) - 1.0 / (5.0 * x**4) + noise * rng.uniform(-0.5, 0.5, x.size)
    out = limits.ladder_limit(jnp.asarray(a), jnp.asarray(noise), rtol=64 * EPS, refine=True)
    plain = limits.ladder_limit(jnp.asarray(a), jnp.asarray(noise), rtol=64 * EPS)
    assert int(out.status) == int(plain.status) == limits.CONVERGED
    assert abs(float(out.value) + 1.0) <= 1e-12 < abs(float(plain.value) + 1.0)
    # It never moves a settled value: a constant tail is returned exactly.
    const = _limit(np.concatenate([2.0 + 2.0 ** -(4 * K[:10]), np.full(30, 2.0)]), refine=True)
    assert float(const.value) == 2.0


def test_batched_ladders_match_separate_calls():
    # Rows of different lengths, tolerances and monotonicity in one program.
    seqs = [3.0 + 2.0**-K, np.cumsum(2.0 ** -K[:12]), (-1.0) ** K[:20] / K[:20]]
    kw = [dict(rtol=1e3 * EPS), dict(rtol=64 * EPS, monotone=True), dict(rtol=1e3 * EPS)]
    together = limits.ladder_limits(
        *((jnp.asarray(a), EPS * jnp.abs(jnp.asarray(a))) for a in seqs),
        rtol=[k["rtol"] for k in kw],
        monotone=[k.get("monotone", False) for k in kw],
    )
    for a, k, got in zip(seqs, kw, together):
        alone = _limit(a, **k)
        assert int(got.status) == int(alone.status)
        assert float(got.value) == float(alone.value) or (math.isnan(got.value) and math.isnan(alone.value))


def test_geometric_extrapolation_removes_the_next_order_too():
    # Cumulative shells of an x^-2 remainder with an x^-4 correction: ratios drift
    # like 4^-k: one Aitken step is good to 8.9e-8 here; Richardson's, which
    # removes the 2^-k, 4^-k and 8^-k corrections in turn, to rounding.
    x = 2.0 ** np.arange(0, 10)
    a = np.pi - 1.0 / x + 1.0 / (3.0 * x**3)
    plain = _limit(a, monotone=True, window=2)
    out = _limit(a, monotone=True, window=2, accelerate=True)
    assert int(out.status) == int(plain.status) == limits.GEOMETRIC
    assert abs(float(plain.value) - np.pi) == pytest.approx(8.94e-8, rel=1e-2)
    assert abs(float(out.value) - np.pi) <= 1e-14
    # A non-integer exponent (x^-1.5 shells): Aitken's adaptive ratio is kept.
    b = 2.0 - 2.0 ** (-1.5 * np.arange(0, 10))
    assert float(_limit(b, monotone=True, window=2, accelerate=True).value) == pytest.approx(2.0, abs=1e-15)
    value, shrinking = limits.extrapolate(jnp.asarray(a))
    assert bool(shrinking) and abs(float(value) - np.pi) <= 1e-7
    _, growing = limits.extrapolate(jnp.asarray(K))
    assert not bool(growing)


def test_composite_resolves_its_validated_densities_and_not_beyond():
    rule = quadrature.Composite()
    sigma = jnp.asarray([1e-8, 1e-6, 0.01, 0.05, 20.0, 60.0])
    mu = jnp.asarray([0.0, 0.0, 1.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(rule.resolves(sigma, mu)), [False, True, False, True, True, False])
    assert float(rule.h_inner) / rule.panel_sigmas == pytest.approx(7.63e-7, rel=1e-3)


def test_status_messages_and_describe():
    assert limits.Status(limits.DIVERGENT).message.startswith("diverges")
    assert limits.describe(np.array([limits.CONVERGED, limits.NO_LIMIT])) == [
        limits.Status.CONVERGED.message,
        limits.Status.NO_LIMIT.message,
    ]
    assert int(limits.worst(jnp.array([0, 2]), jnp.array([1, 1]))[1]) == 2


# --- The composite grid and its line ---------------------------------------------------


def test_composite_edges_are_symmetric_sorted_and_hold_every_power_of_two():
    rule = quadrature.Composite()
    e = rule.edges()
    assert np.all(np.diff(e) > 0)
    np.testing.assert_array_equal(e, -e[::-1])
    assert 0.0 in e and e[0] == -rule.x_max and e[-1] == rule.x_max
    for k in range(int(math.log2(rule.x_max)) + 1):
        assert 2.0**k in e


def test_panels_resolve_the_narrowest_density_they_must():
    # Width <= panel_sigmas * sigma_min on the uniform part, and no wider than
    # panel_sigmas times the smallest sigma whose density reaches x further out.
    rule = quadrature.Composite()
    e = rule.edges()
    a, b = e[:-1], e[1:]
    x = np.maximum(np.abs(a), np.abs(b))
    h0 = rule.panel_sigmas * rule.sigma_min
    allowed = np.maximum(h0, rule.panel_sigmas * (x - rule.mu_max) / 8.0) * (1 + 1e-12)
    # A panel may straddle into the next regime (+h0), and an edge within
    # h0 |d| / 4 of a power of two d is dropped, merging its sliver into a neighbour.
    sliver = 0.25 * h0 * np.maximum(x, 1.0)
    assert np.all(b - a <= allowed + h0)
    inner = np.abs(b) <= rule.mu_max
    assert np.all((b - a)[inner] <= h0 + sliver[inner] + 1e-12)


def test_kinks_become_edges_and_nearby_edges_go():
    rule = quadrature.Composite().with_kinks((0.3711, -2.5))
    e = rule.edges()
    h0 = rule.panel_sigmas * rule.sigma_min
    for k in (0.3711, -2.5):
        assert k in e
        near = e[np.abs(e - k) < 1e-3 * h0]
        np.testing.assert_array_equal(near, [k])
    assert quadrature.Composite().with_kinks((0.0, 1.0, 1.0)).kinks == (1.0,)


@pytest.mark.parametrize("degree", [0, 6, 30, 31])
def test_rule_is_exact_for_polynomials_up_to_its_degree(degree):
    # Each panel's 16-point Gauss-Legendre rule is exact to degree 31, so the
    # composite rule is too (odd degrees cancel to the rounding of their terms).
    rule = quadrature.Composite(order=16, x_max=8.0)
    x, w = rule.nodes_and_weights()
    exact = 0.0 if degree % 2 else 2.0 * 8.0 ** (degree + 1) / (degree + 1)
    scale = float(np.sum(np.abs(w * x**degree)))
    assert abs(float(np.sum(w * x**degree)) - exact) <= 64 * EPS * scale


def test_rule_is_not_exact_beyond_its_degree():
    # On one panel [-1, 1] the order-2 rule integrates x^3 but not x^4.
    x, w = np.polynomial.legendre.leggauss(2)
    assert abs(np.sum(w * x**3)) < 1e-15 and abs(np.sum(w * x**4) - 2 / 5) > 0.1


def test_line_ladders_point_at_powers_of_two_and_approach_kinks():
    rule = quadrature.Composite().with_kinks((0.75,))
    line = rule.line(jnp.float64)
    np.testing.assert_array_equal(line.x[line.pos], 2.0 ** np.arange(1, 49))
    np.testing.assert_array_equal(line.x[line.neg], -(2.0 ** np.arange(1, 49)))
    for b, (left, right) in zip(sorted({0.0, 0.75}), line.inner):
        d_left, d_right = b - line.x[left], line.x[right] - b
        assert np.all(d_left > 0) and np.all(d_right > 0)
        assert np.all(np.diff(d_left) < 0) and d_left[-1] <= 2.0**-30  # approaching b
    # Weights live on [-x_max, x_max] only, and integrate 1 there.
    body = np.zeros(line.x.size, bool)
    body[line.body] = True
    assert np.all(line.w[~body] == 0)
    assert np.sum(line.w) == pytest.approx(2 * rule.x_max, rel=1e-14)


def test_gaussian_weights_integrate_the_density_to_one():
    rule = quadrature.Composite()
    x, w = rule.gaussian(jnp.asarray([0.05, 1.0, 20.0]), jnp.asarray([2.0, -0.7, 0.0]), jnp.float64)
    np.testing.assert_allclose(np.asarray(jnp.sum(w, axis=-1)), 1.0, atol=1e-14)


def test_unknown_rule_names_the_choices():
    with pytest.raises(ValueError, match="composite"):
        quadrature.get_rule("simpson")


# --- Numerical helpers -----------------------------------------------------------------


def test_safe_div_and_inverse_values_and_gradients():
    assert float(_numerics.safe_div(1.0, 0.0)) == 0.0
    assert float(_numerics.safe_div(1.0, 0.0, jnp.inf)) == math.inf
    assert float(_numerics.inverse(0.0)) == math.inf
    g = jax.grad(lambda d: _numerics.safe_div(3.0, d))(0.0)
    assert float(g) == 0.0
    assert float(jax.grad(lambda d: _numerics.safe_div(3.0, d))(2.0)) == pytest.approx(-0.75)


@pytest.mark.parametrize("p", [2, 4])
def test_safe_root_has_a_finite_gradient_at_zero(p):
    assert float(jax.grad(lambda v: _numerics.safe_root(v, p))(0.0)) == 0.0
    assert float(jax.grad(lambda v: _numerics.safe_root(v, p))(16.0)) == pytest.approx(16.0 ** (1 / p - 1) / p)
    assert float(_numerics.safe_sqrt(-1.0)) == 0.0


def test_derivatives_of_sin_by_nested_forward_mode():
    x = jnp.linspace(-3.0, 3.0, 7)
    f0, f1, f2, f3 = _numerics.derivatives(jnp.sin, x, 3)
    np.testing.assert_allclose(np.asarray(f1), np.cos(np.asarray(x)), atol=1e-15)
    np.testing.assert_allclose(np.asarray(f2), -np.sin(np.asarray(x)), atol=1e-15)
    np.testing.assert_allclose(np.asarray(f3), -np.cos(np.asarray(x)), atol=1e-15)
    np.testing.assert_allclose(np.asarray(_numerics.derivative(jnp.sin, 2)(x)), np.asarray(f2))


def test_is_concrete_sees_tracers():
    assert _numerics.is_concrete(1.0, {"a": jnp.ones(2)})
    seen = []
    jax.jit(lambda v: seen.append(_numerics.is_concrete(v)) or v)(1.0)
    assert seen == [False]


# --- Validation ------------------------------------------------------------------------


def test_working_dtype_names_the_argument():
    with pytest.raises(TypeError, match="sigma\\[1\\] has dtype int32"):
        working_dtype({"sigma": [1.0, np.int32(2)], "mu": 0.0})
    with pytest.raises(TypeError, match="sigma must be a number"):
        working_dtype({"sigma": "1.0"})
    with pytest.raises(TypeError, match="mu must be a number"):
        working_dtype({"sigma": 1.0, "mu": None})
    with pytest.raises(TypeError, match="float32 or float64"):
        working_dtype({"sigma": jnp.bfloat16(1.0)})
    assert working_dtype({"sigma": np.float32(1.0)}) == jnp.float32
    assert working_dtype({"sigma": 1.0}, {"beta": np.float32(1.0)}) == jnp.float32


def test_check_range_messages():
    with pytest.raises(ValueError, match="sigma must be positive and finite, got sigma=\\[-1.\\]"):
        check_range("sigma", np.array([1.0, -1.0]), low=0.0, strict=True)
    with pytest.raises(ValueError, match="q must be non-negative"):
        check_range("q", -0.5, low=0.0)
    check_range("mu", 0.0)  # passes


# --- Formatting, JSON, progress --------------------------------------------------------


def test_format_number():
    assert [format_number(v) for v in (math.inf, -math.inf, math.nan, 1e-15, 0.123456)] == [
        "inf",
        "-inf",
        "undefined",
        "0",
        "0.1235",
    ]


def test_json_round_trip_of_non_finite_numbers():
    doc = to_json({"a": np.array([1.5, np.inf, -np.inf, np.nan]), "b": (np.float32(2.0), True, 3)})
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    assert back["a"][:3] == [1.5, "inf", "-inf"] and back["a"][3] is None
    values = [from_json_number(v) for v in back["a"]]
    assert values[:3] == [1.5, math.inf, -math.inf] and math.isnan(values[3])
    assert json_number(np.nan) is None and back["b"] == [2.0, True, 3]


def test_progress_lines_when_enabled_and_silence_when_not(capsys):
    with _progress.progress(2, False, "task") as advance:
        advance("a")
    assert capsys.readouterr().err == ""
    with _progress.progress(2, True, "task") as advance:
        advance("first")
        advance("second")
    err = capsys.readouterr().err
    assert "task: [1/2] first" in err and "task: [2/2] second" in err

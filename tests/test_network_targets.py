"""Mean-field targets (chi1, q_star, dV, xi_q, xi_c) and arithmetic expressions of components.

References are independent of jaxsig's quadrature and solvers:

* ReLU in closed form: ``m2(s) = s^2 / 2``, ``g2^2 = 1/2``, so the variance-preserving
  ``sW^2 = 2 (q - sb2) / q`` and ``chi1 = dV = (q - sb2) / q``; ReLU never reaches the
  chaotic phase, so ``xi_c = -1 / log chi1``.
* erf in closed form (Williams' arcsine kernel): ``E[erf(u) erf(v)] = (2/pi) arcsin(2 c q / (1 + 2 q))``,
  ``g2^2 = (4/pi) / sqrt(1 + 4 q)``, ``dm2/dq = (4/pi) / ((1 + 2 q) sqrt(1 + 4 q))``; the chaotic
  root ``c*`` by mpmath's ``findroot``.
* ``tanh(x + 0.3)`` (no symmetry): 1-D expectations by mpmath quadrature at 30 digits, the
  correlation map by its Mehler series ``E[f(u) f(v)] = sum_k h_k^2 c^k`` (normalised
  Hermite coefficients ``h_k``, panelled Gauss–Legendre), root by Brent.

Tolerance 1e-10 relative throughout (the agreement is ~1e-14).
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy.optimize import brentq

import jaxsig
from jaxsig import families
from jaxsig import targets as T

NET = ["chi1 == 1", "q_star == 1", "dV < 1", "xi_q < 1", "xi_c < 1"]
RTOL = 1e-10


def _evaluate(phi, texts, q, sb2, params=None):
    t = T.parse_targets(texts, q=q, sigma_b2=sb2)
    return np.asarray(T.evaluate(t, phi, params))


def _xi(rate):
    return math.inf if abs(rate) >= 1 else -1.0 / math.log(abs(rate))


# --- ReLU and erf in closed form ------------------------------------------------------------------


@pytest.mark.parametrize("q,sb2", [(1.0, 0.0), (1.0, 0.1), (2.5, 0.3), (0.5, 0.4)])
def test_relu_closed_forms(q, sb2):
    v = _evaluate("relu", NET, q, sb2)
    chi1 = (q - sb2) / q
    expect = [chi1, q, chi1, _xi(chi1), _xi(chi1)]
    np.testing.assert_allclose(v, expect, rtol=RTOL)
    op = T.operating_point("relu", q, sb2)
    np.testing.assert_allclose(op.sigma_w2, 2 * (q - sb2) / q, rtol=RTOL)


def erf_reference(q, sb2):
    q, sb2 = mp.mpf(q), mp.mpf(sb2)
    a = 2 * q / (1 + 2 * q)
    m2 = 2 / mp.pi * mp.asin(a)
    sw2 = (q - sb2) / m2
    chi1 = sw2 * 4 / mp.pi / mp.sqrt(1 + 4 * q)
    dv = sw2 * 4 / mp.pi / ((1 + 2 * q) * mp.sqrt(1 + 4 * q))

    def C(c):
        return (sw2 * 2 / mp.pi * mp.asin(a * c) + sb2) / q

    def dC(c):
        return sw2 * 2 / mp.pi * a / mp.sqrt(1 - (a * c) ** 2) / q

    if chi1 <= 1:
        slope = chi1
    elif sb2 == 0:
        slope = dC(0)  # erf is odd: c* = 0
    else:
        slope = dC(mp.findroot(lambda c: C(c) - c, mp.mpf("0.5")))
    return [float(chi1), float(q), float(dv), _xi(float(dv)), _xi(float(slope))]


@pytest.mark.parametrize("q,sb2", [(1.0, 0.0), (1.0, 0.05), (3.0, 1.0), (0.3, 0.2)])
def test_erf_closed_forms_in_both_phases(q, sb2):
    mp.mp.dps = 30
    ref = erf_reference(q, sb2)
    np.testing.assert_allclose(_evaluate("erf", NET, q, sb2), ref, rtol=RTOL)


def test_the_phases_covered_are_the_ones_claimed():
    chi1 = [float(T.operating_point("erf", q, sb2).chi1) for q, sb2 in [(1.0, 0.0), (1.0, 0.05), (0.3, 0.2)]]
    assert chi1[0] > 1 and chi1[1] > 1 and chi1[2] < 1


# --- tanh(x + 0.3) against mpmath and a Mehler series -------------------------------------------------


def _mehler_squares(f, s, K=200):
    """``h_k^2``, ``h_k = E[f(s Z) He_k(Z)] / sqrt(k!)``, by Gauss–Legendre on 56 panels of [-14, 14]."""
    t, w = np.polynomial.legendre.leggauss(64)
    edges = np.linspace(-14.0, 14.0, 57)
    a, b = edges[:-1, None], edges[1:, None]
    z = (a + (b - a) * (t + 1) / 2).ravel()
    wz = ((b - a) / 2 * w).ravel() * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    fz = f(s * z)
    h_prev, h, out = np.zeros_like(z), np.ones_like(z), []
    for k in range(K + 1):
        out.append(np.sum(wz * fz * h))
        h_prev, h = h, (z * h - math.sqrt(k) * h_prev) / math.sqrt(k + 1)
    return np.asarray(out) ** 2


def shifted_tanh_reference(q, sb2):
    mp.mp.dps = 30
    s = mp.sqrt(q)

    def f(x):
        return mp.tanh(x + mp.mpf("0.3"))

    def E(g):
        return mp.quad(lambda z: g(z) * mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi), [-mp.inf, -6, 0, 6, mp.inf])

    m2 = E(lambda z: f(s * z) ** 2)
    g2sq = E(lambda z: mp.sech(s * z + mp.mpf("0.3")) ** 4)
    dm2_ds = E(lambda z: 2 * f(s * z) * mp.sech(s * z + mp.mpf("0.3")) ** 2 * z)
    sw2, chi1 = float((q - sb2) / m2), float((q - sb2) / m2 * g2sq)
    dv = float((q - sb2) / m2 * dm2_ds / (2 * s))
    h2 = _mehler_squares(lambda x: np.tanh(x + 0.3), float(s))
    k = np.arange(h2.size)
    if chi1 > 1:
        c_star = brentq(lambda c: (sw2 * np.sum(h2 * c**k) + sb2) / q - c, 0.0, 1 - 1e-12, xtol=1e-15)
        slope = sw2 * np.sum(k[1:] * h2[1:] * c_star ** (k[1:] - 1)) / q
    else:
        slope = chi1
    return [chi1, q, dv, _xi(dv), _xi(slope)]


@pytest.mark.parametrize("q,sb2", [(1.0, 0.05), (1.0, 0.0), (2.0, 0.3), (0.5, 0.02)])
def test_shifted_tanh_against_mpmath_and_mehler(q, sb2):
    v = _evaluate(lambda x: jnp.tanh(x + 0.3), NET, q, sb2)
    np.testing.assert_allclose(v, shifted_tanh_reference(q, sb2), rtol=RTOL)


def test_agrees_with_jaxsig_dynamics():
    fam = families.get("scaled_elu")
    p = {"lam": np.asarray(1.0), "alpha": np.asarray(3.0), "shift": np.asarray(0.3)}
    q, sb2 = 1.3, 0.1
    v = _evaluate(fam, NET, q, sb2, p)
    init = jaxsig.dynamics.init_for_fixed_q(fam, q, sb2, params=p)
    cfp = jaxsig.dynamics.correlation_fixed_point(fam, init.sigma_w2, sb2, params=p, q_star=q)
    dv = jaxsig.dynamics.variance_map_slope(fam, q, init.sigma_w2, params=p)
    assert float(cfp.c_star) < 1  # the chaotic phase
    np.testing.assert_allclose(v[[0, 2, 4]], [init.chi1, dv, cfp.xi_c], rtol=1e-12)


def test_poincare_bound_chi1_at_least_one_for_mean_zero_at_zero_bias():
    """sb2 = 0 and m1 = 0: chi1 = sigma^2 g2^2 / m2 >= 1 (Gaussian Poincaré), = 1 only if linear."""
    fam = families.get("swish_beta")
    t = T.parse_targets(["chi1 == 1"], q=1.7)
    starts = fam.random_init(jax.random.key(0), 6)
    chis = []
    for i in range(6):
        p = jax.tree_util.tree_map(lambda x, i=i: x[i], starts)
        p["shift"] = p["shift"] - jaxsig.moments(fam, math.sqrt(1.7), params=p).m1  # mean zero at sigma = sqrt(q)
        chis.append(float(T.evaluate(t, fam, p)[0]))
    assert min(chis) > 1.0
    linear = {"beta": np.asarray(0.0), "scale": np.asarray(0.7), "shift": np.asarray(0.0)}  # 0.35 x
    np.testing.assert_allclose(T.evaluate(t, fam, linear), [1.0], rtol=1e-13)


# --- Gradients, jit, vmap ----------------------------------------------------------------------------


GRAD_CASES = [
    # (family, params, q, sb2): ordered and chaotic, smooth and kinked (scaled_elu: phi' jumps at 0)
    ("swish_beta", {"beta": 1.5, "scale": 1.8, "shift": 0.3}, 1.0, 0.1),
    ("swish_beta", {"beta": 2.5, "scale": 1.2, "shift": -0.3}, 1.2, 0.2),
    ("scaled_elu", {"lam": 1.3, "alpha": 1.6, "shift": 0.05}, 1.0, 0.1),
    ("scaled_elu", {"lam": 1.0, "alpha": 3.0, "shift": 0.3}, 1.0, 0.1),
]


GRAD_TEXTS = ["chi1 == 1", "dV < 1", "xi_q < 1", "xi_c < 1", "g2^2 / m2 - m1 <= 1"]


@functools.partial(jax.jit, static_argnums=0)
def _values(fam, arrays, p):
    return T.evaluate(arrays, fam, p, full=False)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _jacobian(fam, arrays, p, forward=False):
    return (jax.jacfwd if forward else jax.jacrev)(lambda p: T.evaluate(arrays, fam, p, full=False))(p)


@pytest.mark.parametrize("name,p,q,sb2", GRAD_CASES)
def test_gradients_match_finite_differences(name, p, q, sb2):
    """Reverse mode (the search) against central differences; forward mode (the polish) on
    the chaotic kinked case, where xi_c's implicit gradient needs d C'/dc with phi'' singular."""
    fam = families.get(name)
    arrays = T.parse_targets(GRAD_TEXTS, q=q, sigma_b2=sb2).arrays
    p = {k: jnp.asarray(v) for k, v in p.items()}
    assert np.all(np.isfinite(_values(fam, arrays, p)))
    rev = _jacobian(fam, arrays, p)
    for k in p:
        h = 1e-5
        fd = (_values(fam, arrays, {**p, k: p[k] + h}) - _values(fam, arrays, {**p, k: p[k] - h})) / (2 * h)
        np.testing.assert_allclose(rev[k], fd, rtol=2e-6, atol=1e-8)
    if name == "scaled_elu" and p["alpha"] == 3.0:
        fwd = _jacobian(fam, arrays, p, True)
        for k in p:
            np.testing.assert_allclose(fwd[k], rev[k], rtol=1e-10, atol=1e-12)


def test_chaotic_cases_are_chaotic():
    for name, p, q, sb2, chaotic in [(c[0], c[1], c[2], c[3], i % 2 == 1) for i, c in enumerate(GRAD_CASES)]:
        op = T.operating_point(families.get(name), q, sb2, params={k: np.asarray(v) for k, v in p.items()})
        assert (float(op.chi1) > 1) == chaotic, (name, float(op.chi1))


def test_gradient_in_the_operating_point():
    t = T.parse_targets(["chi1 == 1", "xi_c < 1"], q=1.0, sigma_b2=0.05)

    def f(q, sb2):
        arr = dataclasses.replace(t.arrays, q=q, sigma_b2=sb2)
        return T.evaluate(arr, "erf")

    g = jax.jit(jax.jacfwd(f, argnums=(0, 1)))(1.0, 0.05)
    h = 1e-6
    fd_q = (f(1.0 + h, 0.05) - f(1.0 - h, 0.05)) / (2 * h)
    fd_b = (f(1.0, 0.05 + h) - f(1.0, 0.05 - h)) / (2 * h)
    np.testing.assert_allclose(g[0], fd_q, rtol=1e-6)
    np.testing.assert_allclose(g[1], fd_b, rtol=1e-6)


def test_jit_vmap_and_no_retrace_for_a_new_operating_point():
    fam = families.get("swish_beta")
    traces = []

    @jax.jit
    def values(arrays, params):
        traces.append(1)
        return T.evaluate(arrays, fam, params, full=False)

    texts = ["chi1 == 1", "m1 - 0.1 * g1 <= 0", "xi_c >= 10"]
    a = T.parse_targets(texts, q=1.0, sigma_b2=0.1)
    b = T.parse_targets(texts, q=2.0, sigma_b2=0.3)
    p = {k: jnp.asarray(v) for k, v in fam.params.items()}
    va, vb = values(a.arrays, p), values(b.arrays, p)
    assert len(traces) == 1
    np.testing.assert_allclose(va, T.evaluate(a, fam, p), rtol=1e-13)
    np.testing.assert_allclose(vb, T.evaluate(b, fam, p), rtol=1e-13)
    batch = jax.tree_util.tree_map(lambda x: jnp.stack([x, 1.2 * x + 0.1]), p)
    out = jax.vmap(values, in_axes=(None, 0))(a.arrays, batch)
    other = jax.tree_util.tree_map(lambda x: 1.2 * x + 0.1, p)
    np.testing.assert_allclose(out[1], T.evaluate(a, fam, other), rtol=1e-12)


# --- Expressions ---------------------------------------------------------------------------------------

EXPRESSIONS = [
    # text, canonical text, value from the moments m (sigma = 1) and m2 at sigma = 2
    ("g2^2 / m2 == 1", "g2^2 / m2 == 1", lambda m, m2_2: m.g2**2 / m.m2),
    ("m1 - 0.1 * g1 <= 0", "m1 - 0.1 * g1 <= 0", lambda m, m2_2: m.m1 - 0.1 * m.g1),
    ("m1 <= 0.1*g1", "m1 - 0.1 * g1 <= 0", lambda m, m2_2: m.m1 - 0.1 * m.g1),
    ("-g2^2 >= -1", "-g2^2 >= -1", lambda m, m2_2: -(m.g2**2)),
    ("2^3^2 * g2 <= 1", "2^3^2 * g2 <= 1", lambda m, m2_2: 512 * m.g2),
    ("(m1 + g1) * 2 <= 1", "(m1 + g1) * 2 <= 1", lambda m, m2_2: 2 * (m.m1 + m.g1)),
    ("m1 - (g1 - g2) <= 0", "m1 - (g1 - g2) <= 0", lambda m, m2_2: m.m1 - (m.g1 - m.g2)),
    (
        "sqrt(m2) + abs(m1) - log(g2) * exp(eta) <= 3",
        None,
        lambda m, m2_2: np.sqrt(m.m2) + abs(m.m1) - np.log(m.g2) * np.exp(m.eta),
    ),
    ("m2@2 / m2 ** 0.5 >= 1", "m2@2 / m2^0.5 >= 1", lambda m, m2_2: m2_2 / m.m2**0.5),
    ("m2 == 1/3", "m2 == 0.3333333333333333", lambda m, m2_2: m.m2),
    ("maximize g1 - m1^2 weight 2", "maximize g1 - m1^2 weight 2", lambda m, m2_2: m.g1 - m.m1**2),
]


@pytest.mark.parametrize("text,canonical,by_hand", EXPRESSIONS)
def test_expressions_evaluate_and_round_trip(text, canonical, by_hand):
    fam = families.get("swish_beta")
    p = {"beta": np.asarray(1.3), "scale": np.asarray(1.1), "shift": np.asarray(0.2)}
    (spec,) = T.parse_targets(text).specs
    if canonical is not None:
        assert str(spec) == canonical
    (again,) = T.parse_targets(str(spec)).specs
    assert again.tree == spec.tree and again.op == spec.op and again.weight == spec.weight
    m = jax.tree_util.tree_map(float, jaxsig.moments(fam, 1.0, params=p))
    m2_2 = float(jaxsig.moments(fam, 2.0, params=p).m2)
    np.testing.assert_allclose(T.evaluate(text, fam, p), [by_hand(m, m2_2)], rtol=1e-13)


def test_expressions_share_leaves_and_mix_with_signature_components():
    t = T.parse_targets(["g2 <= 0.8", "g2^2 / m2 == 1", "tv - 2 * g1 < 1", "c < inf"])
    assert [T.COMPONENTS[i] for i in t.arrays.index] == ["g2", "m2", "tv", "g1", "c"]
    assert list(t.arrays.cheap) == [True, True, False, False]
    v = np.asarray(T.evaluate(t, "relu"))
    np.testing.assert_allclose(v, [1 / math.sqrt(2), 0.5 / 0.5, 1 - 2 * 0.5, 0.0], rtol=1e-12, atol=1e-14)


def test_functions_keep_gradients_finite_at_zero():
    fam = families.get("blend")
    p = {k: jnp.asarray(v) for k, v in fam.params.items()}
    t = T.parse_targets(["sqrt(m1 - m1) + abs(g1 - g1) <= 1"])
    g = jax.grad(lambda p: T.evaluate(t, fam, p)[0])(p)
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))
    assert np.isnan(T.evaluate("sqrt(-g2) <= 1", fam, p)[0]) and T.evaluate("log(m1 - m1) <= 1", fam, p)[0] == -np.inf


BAD = [
    ("(g2 <= 1", "expected ')' to close the '(' at column 1"),
    ("g2 + <= 1", "expected a component name such as g2, a number or '('"),
    ("sqrt g2 <= 1", "expected '(' after 'sqrt'"),
    ("sine(g2) <= 1", "unknown component 'sine'"),
    ("g2 * inf <= 1", "'inf' at column 6 can only be a bound"),
    ("chi1@2 == 1", "read at the operating point (the q= and sigma_b2= keywords)"),
    ("2 * 3 <= 7", "names no component"),
    ("minimize 2", "the objective '2' names no component"),
    ("g2 <= 1/0", "is not a finite number"),
    ("g2 <= m2 weight", "expected a positive weight"),
]


@pytest.mark.parametrize("text,fragment", BAD)
def test_expression_errors(text, fragment):
    with pytest.raises(T.TargetError) as info:
        T.parse_targets(text)
    assert fragment in str(info.value) and "Grammar:" in str(info.value)


def test_operating_point_is_checked():
    with pytest.raises(ValueError, match="q must exceed sigma_b2"):
        T.parse_targets("chi1 == 1", q=0.1, sigma_b2=0.1)
    with pytest.raises(ValueError, match="sigma_b2 .* must be non-negative"):
        T.parse_targets("chi1 == 1", sigma_b2=-0.1)
    with pytest.raises(ValueError, match="q .* must be positive"):
        T.parse_targets("chi1 == 1", q=0.0)


def test_poincare_note():
    assert T.poincare_note(T.parse_targets(["m1 == 0", "chi1 == 1"], sigma_b2=0.1)) is None
    assert T.poincare_note(T.parse_targets(["m1 == 0.1", "chi1 <= 0.9"])) is None
    assert T.poincare_note(T.parse_targets(["m1@2 == 0", "chi1 <= 0.9"])) is None  # m1 at sigma != sqrt(q)
    note = T.poincare_note(T.parse_targets(["m1 == 0", "chi1 <= 0.9"]))
    assert "Poincaré" in note and "'chi1 <= 0.9' cannot hold" in note and "sigma_b2 > 0" in note
    note = T.poincare_note(T.parse_targets(["m1@2 == 0", "chi1 == 1"], q=4.0))
    assert "only a linear activation" in note

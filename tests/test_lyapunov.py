"""Primitive-based Lyapunov functions of T(x) = phi(a x + b): the primitive, its
Bregman divergence, the range of phi', and the proven descent constant.

References are independent of jaxsig's quadrature: closed-form primitives
evaluated in mpmath at 40 digits (the dilogarithm for softplus and Swish), the
descent constant recomputed by hand from closed-form extremes of phi', and, for
the theorem itself, every ratio D(x_{t+1}) / D(x_t) observed on seeded grids of
random (a, b, x0).
"""

import math
import zlib

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy import optimize
from scipy.stats import norm as normal

from jaxsig import dynamics as D
from jaxsig.theory.meanfield import lyapunov as L

mp.mp.dps = 40

PRIM_RTOL = 1e-13  # relative to max(1, |F|)
BREG_RTOL = 1e-12  # relative to D itself
RANGE_TOL = 1e-12
GRAD_RTOL = 1e-6  # central differences with h = 1e-6
STEPS = 24  # one trajectory length everywhere: one compiled program per activation


# --- Closed-form primitives F(x) = int_0^x phi, in mpmath ----------------------------------------


def _softplus(x):
    return mp.log1p(mp.exp(x))


def _F_softplus(x):
    # d/dt [-Li2(-e^t)] = log(1 + e^t); Li2(-1) = -pi^2 / 12.
    return -mp.polylog(2, -mp.exp(x)) - mp.pi**2 / 12


def _F_gelu(x):
    # d/dt [((t^2 - 1) Phi(t) + t phi(t)) / 2] = t Phi(t); the value at 0 is -1/4.
    return ((x**2 - 1) * mp.ncdf(x) + x * mp.npdf(x)) / 2 + mp.mpf(1) / 4


PRIMITIVES = {
    "tanh": (mp.tanh, lambda x: mp.log(mp.cosh(x))),
    "relu": (lambda x: max(x, 0), lambda x: max(x, 0) ** 2 / 2),
    "leaky_relu": (lambda x: x if x > 0 else x / 100, lambda x: x**2 / 2 if x > 0 else x**2 / 200),
    "softplus": (_softplus, _F_softplus),
    "sigmoid": (lambda x: 1 / (1 + mp.exp(-x)), lambda x: _softplus(x) - mp.log(2)),
    "swish": (lambda x: x / (1 + mp.exp(-x)), lambda x: x * _softplus(x) - _F_softplus(x)),
    "gelu": (lambda x: x * mp.ncdf(x), _F_gelu),
    "elu": (lambda x: x if x > 0 else mp.expm1(x), lambda x: x**2 / 2 if x > 0 else mp.expm1(x) - x),
    "erf": (mp.erf, lambda x: x * mp.erf(x) + mp.expm1(-(x**2)) / mp.sqrt(mp.pi)),
    "hard_tanh": (lambda x: max(-1, min(1, x)), lambda x: x**2 / 2 if abs(x) <= 1 else abs(x) - mp.mpf(1) / 2),
}

POINTS = [-40.0, -7.5, -1.3, -0.2, 0.0, 1e-4, 0.6, 2.5, 9.0, 60.0, 3000.0]


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_against_closed_forms(name):
    F = PRIMITIVES[name][1]
    got = np.asarray(L.primitive(name, jnp.asarray(POINTS)))
    ref = np.array([float(F(mp.mpf(x))) for x in POINTS])
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() <= PRIM_RTOL, (name, err.max(), POINTS[int(err.argmax())])


def test_primitive_with_params_gradients_and_float32():
    beta = 3.0
    x = np.array([-4.0, -0.5, 0.3, 2.0, 15.0])

    def ref(v, b):
        return float(_F_softplus(mp.mpf(b) * mp.mpf(v)) / mp.mpf(b) ** 2)

    got = L.primitive("softplus_beta", x, params={"beta": beta})
    np.testing.assert_allclose(got, [ref(v, beta) for v in x], rtol=PRIM_RTOL, atol=PRIM_RTOL)
    # dF/dx = phi(x), also at 0 (an edge of the panels) and at a kink.
    for name, v in (("tanh", 0.7), ("tanh", 0.0), ("relu", 0.0), ("relu", 1.3), ("elu", -0.4)):
        phi = PRIMITIVES[name][0]
        np.testing.assert_allclose(jax.grad(lambda t, n=name: L.primitive(n, t))(v), float(phi(mp.mpf(v))), atol=1e-14)
    # d/dbeta against central differences of the mpmath reference.
    g = jax.grad(lambda b: L.primitive("softplus_beta", 2.0, params={"beta": b}))(beta)
    fd = (ref(2.0, beta + 1e-6) - ref(2.0, beta - 1e-6)) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=GRAD_RTOL)
    f32 = L.primitive("tanh", jnp.asarray(x, jnp.float32))
    assert f32.dtype == jnp.float32
    np.testing.assert_allclose(f32, np.log(np.cosh(x)), rtol=2e-6, atol=2e-7)


# --- The Bregman divergence -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tanh", "softplus", "swish", "gelu", "elu", "relu", "hard_tanh"])
def test_bregman_divergence_against_the_difference_of_primitives(name):
    phi, F = PRIMITIVES[name]
    x_star = 0.37
    # Far points and points 1e-7 from x*, where the difference form would cancel in float64.
    x = np.array([-6.0, -1.0, 0.0, 0.36999990, 0.37000010, 0.9, 1.0 + 1e-9, 8.0])
    xs = mp.mpf(x_star)

    def ref(v):
        v = mp.mpf(v)
        return F(v) - F(xs) - phi(xs) * (v - xs)

    got = np.asarray(L.bregman_divergence(name, x, x_star))
    want = np.array([float(ref(v)) for v in x])
    np.testing.assert_allclose(got, want, rtol=BREG_RTOL, atol=0)
    # Gradients: dD/dx = phi(x) - phi(x*), dD/dx* = -phi'(x*) (x - x*).
    dphi = float(mp.diff(phi, xs))
    for v in (-1.0, 0.9, 8.0):
        gx, gs = jax.grad(lambda u, s: L.bregman_divergence(name, u, s), argnums=(0, 1))(v, x_star)
        np.testing.assert_allclose(gx, float(phi(mp.mpf(v)) - phi(xs)), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(gs, -dphi * (v - x_star), rtol=1e-12, atol=1e-14)


def test_bregman_quadratic_sandwich_and_broadcasting():
    # (m/2)(x - x*)^2 <= D <= (M/2)(x - x*)^2 with [m, M] = range of tanh' between them.
    x_star = np.array([[-0.4], [0.2], [1.1]])
    x = np.linspace(-3.0, 3.0, 13)
    d = np.asarray(L.bregman_divergence("tanh", x, x_star))
    assert d.shape == (3, 13)
    lo, hi = np.minimum(x, x_star), np.maximum(x, x_star)
    m, M = (np.asarray(v) for v in L.derivative_range("tanh", lo, hi))
    h2 = (x - x_star) ** 2 / 2
    assert np.all(m * h2 <= d * (1 + 1e-14)) and np.all(d <= M * h2 * (1 + 1e-14))
    assert np.all(d >= 0)


# --- The range of phi' on an interval ------------------------------------------------------------------


def _sech2(x):
    return 1 / math.cosh(x) ** 2


def _swish_prime(x):
    s = 1 / (1 + math.exp(-x))
    return s * (1 + x * (1 - s))


def _swish_min():
    # swish'' = s (1 - s) (2 + x (1 - 2 s)) vanishes at the minimum of swish'.
    def d2(x):
        s = 1 / (1 + math.exp(-x))
        return 2 + x * (1 - 2 * s)

    return _swish_prime(optimize.brentq(d2, -3.0, -2.0, xtol=1e-15))


RANGES = [
    ("tanh", -2.0, 0.5, _sech2(2.0), 1.0),
    ("tanh", 0.3, 0.9, _sech2(0.9), _sech2(0.3)),
    ("swish", -5.0, 0.0, _swish_min(), 0.5),
    ("gelu", 0.0, 3.0, 0.5, normal.cdf(math.sqrt(2)) + math.sqrt(2) * normal.pdf(math.sqrt(2))),
    ("relu", -1.0, 1.0, 0.0, 1.0),
    ("relu", 0.0, 2.0, 1.0, 1.0),  # the kink at an end does not count
    ("relu", -2.0, 0.0, 0.0, 0.0),
    ("leaky_relu", -1.0, 0.0, 0.01, 0.01),
    ("elu", -1.0, 0.5, math.exp(-1.0), 1.0),
    ("hard_tanh", -3.0, 0.5, 0.0, 1.0),
    ("signed_sqrt", 0.25, 1.0, 0.5, 1.0),
    ("signed_sqrt", -1.0, 1.0, 0.5, math.inf),  # phi' -> inf at 0
]


def test_derivative_range_closed_forms():
    for name, lo, hi, m, M in RANGES:
        got = [float(v) for v in L.derivative_range(name, lo, hi)]
        np.testing.assert_allclose(got, [m, M], rtol=RANGE_TOL, atol=RANGE_TOL, err_msg=f"{name} [{lo}, {hi}]")
    with pytest.raises(ValueError, match="lo must not exceed hi"):
        L.derivative_range("tanh", 1.0, 0.0)


# --- The descent theorem --------------------------------------------------------------------------------


def test_descent_rate_by_hand():
    """Cases of the theorem recomputed from closed-form extremes of phi'."""
    # relu(0.9 x + 1) from 5: phi' = 1 on the visited interval, rho = 0.81, attained.
    r = D.scalar_recursion("relu", 0.9, 1.0, 5.0, STEPS)
    assert float(r.bregman_rate) == pytest.approx(0.81, rel=1e-14)
    ratios = np.asarray(r.bregman[1:11] / r.bregman[:10])
    np.testing.assert_allclose(ratios, 0.81, rtol=1e-9)
    # tanh(2 x + 1) from 0.5: side-preserving, no global contraction (L = 2).
    xs = optimize.brentq(lambda x: math.tanh(2 * x + 1) - x, 0.5, 1.0, xtol=1e-15)
    rho = _sech2(0.5) / _sech2(xs) * (2 * _sech2(2.0)) ** 2
    r = D.scalar_recursion("tanh", 2.0, 1.0, 0.5, STEPS)
    assert not bool(r.contracts)
    np.testing.assert_allclose(r.bregman_rate, rho, rtol=1e-12)
    # tanh(-0.9 x + 0.2) from 1: T flips sides. Side 0 = [x*, 1] (pre-images around
    # 0, L0 = 0.9); side 1 = [x* - 0.9 r, x*], r = 1 - x*.
    xs = optimize.brentq(lambda x: math.tanh(-0.9 * x + 0.2) - x, -1.0, 1.0, xtol=1e-15)
    r1 = 0.9 * (1 - xs)
    m0, M0 = _sech2(1.0), _sech2(xs)
    m1, M1 = _sech2(xs - r1), 1.0
    L1 = 0.9 * _sech2(-0.9 * xs + 0.2)
    rho = max(M1 / m0 * 0.81, M0 / m1 * L1**2)
    r = D.scalar_recursion("tanh", -0.9, 0.2, 1.0, STEPS)
    np.testing.assert_allclose(r.bregman_rate, rho, rtol=1e-12)
    assert rho > 1  # a true bound, but no descent proven


def test_descent_rate_is_inf_where_the_theorem_does_not_apply():
    # m = 0: the interval reaches ReLU's flat side.
    assert np.isinf(D.scalar_recursion("relu", 0.5, 1.0, -5.0, STEPS).bregman_rate)
    # No invariant interval: tanh(3 x) from 0.1 expands near 0 (L = 2.75 there).
    assert np.isinf(D.scalar_recursion("tanh", 3.0, 0.0, 0.1, STEPS).bregman_rate)
    # GELU is not monotone below -0.75: phi' < 0 on the visited interval, and
    # D really grows along the trajectory.
    r = D.scalar_recursion("gelu", -0.8, 0.1, -2.0, STEPS)
    assert np.isinf(r.bregman_rate)
    assert float(r.bregman[1] / r.bregman[0]) > 1
    # T constant (a = 0): x_1 = x*, rho = 0.
    assert float(D.scalar_recursion("tanh", 0.0, 0.5, 1.0, STEPS).bregman_rate) == 0.0


def _check_observed_ratios(name, n, seed, params=None):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-6.0, 6.0, n)
    b = rng.uniform(-2.0, 2.0, n)
    x0 = rng.uniform(-5.0, 5.0, n)
    run = jax.jit(jax.vmap(lambda u, v, w: D.scalar_recursion(name, u, v, w, STEPS, params=params)))
    r = jax.tree_util.tree_map(np.asarray, run(a, b, x0))
    rate, d, xs = r.bregman_rate, r.bregman, r.trajectory
    x_star = r.fixed_point[:, None]
    # Pairs whose next point is resolved: |x_{t+1} - x*| well above the rounding of the
    # iteration (~1e-16 |x|), so D(x_{t+1}) carries at least ~8 correct digits.
    resolved = np.abs(xs[:, 1:] - x_star) > 1e-6 * (1 + np.abs(x_star))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(resolved, d[:, 1:] / d[:, :-1], 0.0)
    assert np.all(ratio <= rate[:, None] * (1 + 1e-8)), name
    proven = np.isfinite(rate)
    # Where a bound is proven, D is nonnegative along the trajectory.
    assert np.all(d[proven] >= 0)
    worst = np.max(ratio, axis=1)
    return proven, worst, rate


@pytest.mark.parametrize(
    "name, params",
    [
        ("tanh", None),
        ("sigmoid", None),
        ("softplus_beta", {"beta": 2.0}),
        ("leaky_relu", {"negative_slope": 0.2}),
        ("relu", None),
        ("swish", None),
    ],
)
def test_proven_rate_bounds_every_observed_ratio(name, params):
    proven, worst, rate = _check_observed_ratios(name, 192, seed=zlib.crc32(name.encode()), params=params)
    # Both outcomes occur on the grid: proven bounds and cases without one.
    assert 0 < proven.sum() < proven.size, (name, proven.sum())
    # Some proven rates are descents (< 1) and some are nearly attained: the bound is not vacuous.
    assert np.any(rate[proven] < 1)
    tight = worst[proven & (rate > 0)] / rate[proven & (rate > 0)]
    assert tight.max() > 0.5, (name, tight.max())


def test_bregman_along_the_trajectory_gradients_vmap_and_no_retrace():
    traces = {"n": 0}

    def phi(x, p):
        if isinstance(x, jax.core.Tracer):
            traces["n"] += 1
        return jnp.tanh(p["s"] * x)

    def rec(a, b, x0, s=1.0):
        return D.scalar_recursion(phi, a, b, x0, STEPS, params={"s": s})

    r = rec(2.0, 1.0, 0.5)
    np.testing.assert_allclose(r.bregman, L.bregman_divergence("tanh", r.trajectory, r.fixed_point), rtol=1e-13)
    before = traces["n"]
    for args in ((1.5, 0.3, -1.0), (0.4, -0.2, 2.0, 1.2)):
        jax.block_until_ready(rec(*args))
    assert traces["n"] == before  # new values never retrace

    # Gradients of the proven rate and of D(x_3) in a, b, x0 and the parameter s (one
    # forward-mode pass for all four).
    def f(v):
        out = rec(*v)
        return jnp.stack([out.bregman_rate, out.bregman[3]])

    v = jnp.array([2.0, 1.0, 0.5, 1.1])
    jac = np.asarray(jax.jacfwd(f)(v))
    for i in range(4):
        e = 1e-6 * np.eye(4)[i]
        fd = (np.asarray(f(v + e)) - np.asarray(f(v - e))) / 2e-6
        np.testing.assert_allclose(jac[:, i], fd, rtol=GRAD_RTOL, atol=1e-12, err_msg=f"d/arg{i}")
    # vmap agrees with a loop.
    a = jnp.array([2.0, -0.9, 0.7])
    b = jnp.array([1.0, 0.2, 0.3])
    x0 = jnp.array([0.5, 1.0, 2.0])
    batched = jax.vmap(lambda u, v, w: D.scalar_recursion("tanh", u, v, w, STEPS))(a, b, x0)
    for i in range(3):
        one = D.scalar_recursion("tanh", a[i], b[i], x0[i], STEPS)
        np.testing.assert_allclose(batched.bregman_rate[i], one.bregman_rate, rtol=1e-14)
        np.testing.assert_allclose(batched.bregman[i], one.bregman, rtol=1e-14, atol=1e-300)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="x must be finite"):
        L.primitive("tanh", [0.0, np.nan])
    with pytest.raises(ValueError, match="x_star must be finite"):
        L.bregman_divergence("tanh", 1.0, np.inf)
    with pytest.raises(TypeError, match="x has dtype int"):
        L.primitive("tanh", np.arange(3))
    with pytest.raises(KeyError, match="Valid names"):
        L.primitive("tanhh", 1.0)

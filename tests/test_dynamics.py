"""Mean-field signal propagation, the edge of chaos and the scalar recursion.

Every number is checked against something independent of jaxsig's quadrature:
closed forms (ReLU; erf, whose m2 and E[erf'^2] are elementary; x^2), SciPy
(adaptive quadrature and root finding) for tanh, and sampled random networks
with tolerances derived from the sampling distributions.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.stats import norm as normal

import jaxsig
from jaxsig import dynamics as D

PI = math.pi


# --- Independent references ------------------------------------------------------------


def erf_m2(q):
    """E[erf(u)^2], u ~ N(0, q) (Williams)."""
    return 2 / PI * np.arcsin(2 * q / (1 + 2 * q))


def erf_g2sq(q):
    """E[erf'(u)^2] = (4/pi) E[exp(-2 u^2)] = (4/pi) / sqrt(1 + 4 q)."""
    return 4 / PI / np.sqrt(1 + 4 * q)


def erf_dm2_dq(q):
    return 4 / PI / ((1 + 2 * q) * np.sqrt(1 + 4 * q))


def erf_dual(c, q):
    return 2 / PI * np.arcsin(2 * c * q / (1 + 2 * q))


def arccos_kernel(c, q):
    t = np.arccos(np.clip(c, -1, 1))
    return q * (np.sin(t) + (PI - t) * np.cos(t)) / (2 * PI)


def scipy_expect(f, q):
    """E[f(sqrt(q) Z)] by adaptive quadrature (SciPy QUADPACK), split at 0."""
    s = math.sqrt(q)

    def g(z):
        return f(s * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * PI)

    return sum(integrate.quad(g, a, b, epsabs=1e-16, epsrel=1e-13, limit=100)[0] for a, b in ((-12, 0), (0, 12)))


def tanh_m2(q):
    return scipy_expect(lambda x: math.tanh(x) ** 2, q)


def tanh_g2sq(q):
    return scipy_expect(lambda x: math.cosh(x) ** -4, q)


# --- Variance map ------------------------------------------------------------------------------


def test_variance_map_slope_and_gain_closed_forms():
    q = jnp.asarray([1e-6, 0.05, 0.7, 3.0, 40.0])
    sw2, sb2 = 1.7, 0.2
    np.testing.assert_allclose(D.variance_map("relu", q, sw2, sb2), sw2 * q / 2 + sb2, rtol=1e-13)
    np.testing.assert_allclose(D.variance_map_slope("relu", q, sw2), sw2 / 2, rtol=1e-12)
    np.testing.assert_allclose(D.perturbation_gain("relu", q, sw2), sw2 / 2, rtol=1e-13)
    np.testing.assert_allclose(D.variance_map("erf", q, sw2, sb2), sw2 * erf_m2(q) + sb2, rtol=1e-13)
    np.testing.assert_allclose(D.variance_map_slope("erf", q, sw2), sw2 * erf_dm2_dq(q), rtol=1e-11)
    np.testing.assert_allclose(D.perturbation_gain("erf", q, sw2), sw2 * erf_g2sq(q), rtol=1e-13)
    np.testing.assert_allclose(
        D.variance_trajectory("relu", 1.0, 1.5, 0.1, 3), [1.0, 0.85, 0.7375, 0.653125], rtol=1e-13
    )


# --- Fixed points ---------------------------------------------------------------------------------


def test_fixed_point_relu_closed_forms():
    sw2 = jnp.asarray([0.5, 1.5, 1.9, 2.0, 2.5, 1.0])
    sb2 = jnp.asarray([0.1, 0.1, 0.1, 0.0, 0.1, 0.0])
    fp = D.fixed_point("relu", sw2, sb2, q0=1.3)
    # V(q) = sW^2 q / 2 + sb^2: q* = sb^2 / (1 - sW^2 / 2) below sW^2 = 2; every q
    # is fixed at (2, 0), so q* = q0; above, the variance diverges.
    want_q = [0.1 / 0.75, 0.1 / 0.25, 0.1 / 0.05, 1.3, np.inf, 0.0]
    np.testing.assert_allclose(fp.q_star, want_q, rtol=1e-12)
    np.testing.assert_allclose(fp.chi1, sw2 / 2, rtol=1e-12)
    np.testing.assert_allclose(fp.slope, sw2 / 2, rtol=1e-12)
    np.testing.assert_array_equal(fp.phase, [0, 0, 0, 1, 2, 0])
    np.testing.assert_allclose(fp.xi_q[:3], -1 / np.log(np.asarray(sw2[:3]) / 2), rtol=1e-11)
    assert np.isinf(fp.xi_q[3]) and bool(np.all(fp.converged))


@pytest.mark.parametrize("sw2, sb2", [(0.6, 0.05), (1.3, 0.0), (2.5, 0.3), (4.0, 1e-3)])
def test_fixed_point_erf_closed_form(sw2, sb2):
    # V(q) - q changes sign once on (0, inf) for these settings (or q* = 0).
    def f(q):
        return sw2 * erf_m2(q) + sb2 - q

    q_ref = optimize.brentq(f, 1e-300 if sb2 > 0 else 1e-9, 100.0, xtol=1e-300, rtol=1e-15) if f(1e-9) > 0 else 0.0
    fp = D.fixed_point("erf", sw2, sb2)
    np.testing.assert_allclose(fp.q_star, q_ref, rtol=1e-12)
    if q_ref > 0:
        np.testing.assert_allclose(fp.chi1, sw2 * erf_g2sq(q_ref), rtol=1e-11)
        np.testing.assert_allclose(fp.slope, sw2 * erf_dm2_dq(q_ref), rtol=1e-10)
    assert int(fp.phase) == (2 if fp.chi1 > 1 else 0)


def test_fixed_point_tanh_against_scipy():
    sw2 = jnp.asarray([1.5, 2.0, 0.8, 1.0, 3.0, 1.2])
    sb2 = jnp.asarray([0.0, 0.05, 0.0, 0.0, 0.2, 0.5])
    fp = D.fixed_point("tanh", sw2, sb2)
    refs = []
    for a, b in zip(np.asarray(sw2), np.asarray(sb2)):
        f = lambda q: a * tanh_m2(q) + b - q  # noqa: B023, E731
        refs.append(optimize.brentq(f, 1e-6, 50.0, xtol=1e-15, rtol=1e-14) if f(1e-6) > 0 else 0.0)
    np.testing.assert_allclose(fp.q_star, refs, rtol=1e-11, atol=0)
    chi_ref = [a * tanh_g2sq(q) if q > 0 else a for a, q in zip(np.asarray(sw2), refs)]
    np.testing.assert_allclose(fp.chi1, chi_ref, rtol=1e-10)
    # tanh, sb^2 = 0: ordered below sW^2 = 1 (q* = 0), critical at 1, chaotic above.
    np.testing.assert_array_equal(fp.phase[:5], [2, 2, 0, 1, 2])
    # At the critical q* = 0, V'(0) = chi1 = 1 to rounding: q_l -> 0 algebraically, xi_q = inf.
    np.testing.assert_allclose(fp.slope[2:4], [0.8, 1.0], rtol=1e-14)
    assert np.isinf(fp.xi_q[3])
    np.testing.assert_allclose(fp.xi_q[2], -1 / math.log(0.8), rtol=1e-13)


def test_fixed_point_superlinear_and_dependence_on_q0():
    # x^2: V(q) = 3 sW^2 q^2 + sb^2. Stable root (1 - sqrt(1 - 12 sW^2 sb^2)) / (6 sW^2),
    # unstable root with +; from above the unstable root the variance diverges.
    sw2, sb2 = 0.2, 0.3
    disc = math.sqrt(1 - 12 * sw2 * sb2)
    lo, hi = (1 - disc) / (6 * sw2), (1 + disc) / (6 * sw2)
    fp = D.fixed_point("x^2", sw2, sb2, q0=jnp.asarray([0.5 * hi, 1.5 * hi]))
    np.testing.assert_allclose(fp.q_star[0], lo, rtol=1e-12)
    np.testing.assert_allclose(fp.slope[0], 6 * sw2 * lo, rtol=1e-11)
    np.testing.assert_allclose(fp.chi1[0], sw2 * 4 * lo, rtol=1e-11)  # E[(2u)^2] = 4 q
    assert np.isinf(fp.q_star[1]) and np.isinf(fp.chi1[1]) and np.isinf(fp.slope[1])


def test_iterates_approach_q_star_at_rate_slope():
    fp = D.fixed_point("tanh", 1.5, 0.05)
    qs = np.asarray(D.variance_trajectory("tanh", 3.0, 1.5, 0.05, 40))
    ratio = (qs[31] - fp.q_star) / (qs[30] - fp.q_star)
    np.testing.assert_allclose(ratio, fp.slope, rtol=1e-6)
    np.testing.assert_allclose(qs[-1], fp.q_star, rtol=1e-6)


def test_fixed_point_gradients_by_implicit_differentiation():
    h = 1e-6

    # d(q*, chi1) / d(sW^2, sb^2, beta) for swish_beta, forward mode, against
    # central differences.
    def f(t):
        fp = D.fixed_point("swish_beta", t[0], t[1], params={"beta": t[2]})
        return jnp.stack([fp.q_star, fp.chi1])

    t0 = jnp.asarray([1.5, 0.2, 1.7])
    jac = jax.jacfwd(f)(t0)
    fd = jnp.stack([(f(t0 + h * e) - f(t0 - h * e)) / (2 * h) for e in jnp.eye(3)], axis=1)
    np.testing.assert_allclose(jac, fd, rtol=1e-6)

    # Reverse mode, ReLU: q* = sb^2 / (1 - sW^2 / 2), so dq*/dsW^2 = sb^2 / (2 (1 - sW^2 / 2)^2)
    # and dq*/dsb^2 = 1 / (1 - sW^2 / 2), exactly.
    def q_star(a, b):
        return D.fixed_point("relu", a, b).q_star

    np.testing.assert_allclose(jax.grad(q_star, argnums=(0, 1))(1.5, 0.1), [0.8, 4.0], rtol=1e-12)
    # At sW^2 = 2 any bias makes the variance diverge: the derivative is +inf.
    assert float(jax.grad(q_star, argnums=1)(2.0, 0.0)) == np.inf


def test_jit_vmap_and_broadcasting_agree():
    sw2 = jnp.asarray([1.2, 1.8, 2.4])
    batched = D.fixed_point("tanh", sw2[:, None], jnp.asarray([0.0, 0.1]))
    assert batched.q_star.shape == (3, 2)
    jitted = jax.jit(jax.vmap(lambda a: D.fixed_point("tanh", a, 0.1).q_star))(sw2)
    np.testing.assert_allclose(jitted, batched.q_star[:, 1], rtol=1e-15)
    single = D.fixed_point("tanh", 1.8, 0.1)
    np.testing.assert_allclose(single.q_star, batched.q_star[1, 1], rtol=1e-15)


def test_float32_and_the_critical_point_at_zero_variance():
    """Float32, including tanh with sb^2 = 0, where q* = 0 for sW^2 <= 1.

    There V'(0) = chi1 = sW^2 tanh'(0)^2 = sW^2. At sW^2 = 1, V(q) = q - 2 q^2 + ...:
    the variance dies out like 1/(2 l), algebraically, so xi_q is infinite (not
    ~1/eps), and the root must not stop where -2 q^2 sinks below float32 rounding
    (q ~ 64 eps ~ 1e-5).
    """
    sw2 = jnp.asarray([2.5, 1.0, 0.9], jnp.float32)
    fp = D.fixed_point("tanh", sw2, jnp.asarray([0.3, 0.0, 0.0], jnp.float32))
    assert fp.q_star.dtype == jnp.float32
    eps = float(jnp.finfo(jnp.float32).eps)
    q_ref = optimize.brentq(lambda q: 2.5 * tanh_m2(q) + 0.3 - q, 1e-3, 10.0, xtol=1e-15)
    np.testing.assert_allclose(fp.q_star, [q_ref, 0.0, 0.0], rtol=64 * eps)
    chi_ref = 2.5 * tanh_g2sq(q_ref)  # 0.9989: just ordered
    np.testing.assert_allclose(fp.chi1, [chi_ref, 1.0, 0.9], rtol=64 * eps)
    np.testing.assert_allclose(fp.slope[1:], [1.0, 0.9], rtol=64 * eps)
    np.testing.assert_array_equal(fp.phase, [0 if chi_ref < 1 else 2, 1, 0])
    assert np.isinf(fp.xi_q[1]) and bool(np.all(fp.converged))
    np.testing.assert_allclose(fp.xi_q[2], -1 / math.log(0.9), rtol=1e3 * eps)


# --- Edge of chaos and initialisation ------------------------------------------------------------------


def test_edge_of_chaos_known_results():
    # He initialisation: ReLU with sb^2 = 0 is critical at sW^2 = 2 (any q*); with
    # sb^2 > 0 chi1 = sW^2/2 still, but the fixed point is infinite.
    e = D.edge_of_chaos("relu", jnp.asarray([0.0, 0.1]))
    np.testing.assert_allclose(e.sigma_w2, 2.0, rtol=1e-12)
    assert float(e.q_star[0]) == 0.0 and np.isinf(e.q_star[1])
    # tanh with sb^2 = 0: sW^2 = 1 / tanh'(0)^2 = 1, at q* = 0.
    e = D.edge_of_chaos("tanh", 0.0)
    np.testing.assert_allclose(e.sigma_w2, 1.0, rtol=1e-9)
    assert float(e.q_star) == 0.0
    # GELU with a bias: the critical fixed point repels the variance (V' > 1):
    # from just below it the network settles at an ordered fixed point, from
    # just above its variance diverges.
    e = D.edge_of_chaos("gelu", 0.1)
    assert float(e.slope) > 1
    fp = D.fixed_point("gelu", e.sigma_w2, 0.1, q0=jnp.asarray([0.99, 1.01]) * e.q_star)
    assert float(fp.q_star[0]) < 0.5 * float(e.q_star) and int(fp.phase[0]) == 0
    assert np.isinf(fp.q_star[1])


def test_edge_of_chaos_tanh_against_scipy():
    sb2 = np.array([0.01, 0.05, 0.1, 0.2, 0.5, 1.0])
    e = D.edge_of_chaos("tanh", jnp.asarray(sb2))
    for b, w, q in zip(sb2, np.asarray(e.sigma_w2), np.asarray(e.q_star)):
        # chi1 = 1 and V(q) = q, solved by SciPy in (q, sW^2).
        q_ref = optimize.brentq(lambda t: t - tanh_m2(t) / tanh_g2sq(t) - b, 1e-4, 20.0, xtol=1e-15, rtol=1e-14)  # noqa: B023
        np.testing.assert_allclose(q, q_ref, rtol=1e-10)
        np.testing.assert_allclose(w, 1 / tanh_g2sq(q_ref), rtol=1e-10)
    # The round trip: at (sW^2, sb^2) on the line, the fixed point is q* and chi1 = 1.
    fp = D.fixed_point("tanh", e.sigma_w2, jnp.asarray(sb2))
    np.testing.assert_allclose(fp.q_star, e.q_star, rtol=1e-12)
    np.testing.assert_allclose(fp.chi1, 1.0, rtol=1e-12)
    assert np.all(fp.phase == 1)


def test_edge_of_chaos_erf_closed_form_and_gradient():
    b = 0.3
    q_ref = optimize.brentq(lambda t: t - erf_m2(t) / erf_g2sq(t) - b, 1e-6, 50.0, xtol=1e-15, rtol=1e-15)
    e = D.edge_of_chaos("erf", b)
    np.testing.assert_allclose(e.q_star, q_ref, rtol=1e-11)
    np.testing.assert_allclose(e.sigma_w2, 1 / erf_g2sq(q_ref), rtol=1e-11)
    np.testing.assert_allclose(e.slope, erf_dm2_dq(q_ref) / erf_g2sq(q_ref), rtol=1e-10)
    assert float(e.slope) < 1  # erf's critical fixed point attracts

    # d sW^2 / d sb^2 along the line, by implicit differentiation.
    def f(t):
        return D.edge_of_chaos("erf", t).sigma_w2

    np.testing.assert_allclose(jax.grad(f)(b), (f(b + 1e-6) - f(b - 1e-6)) / 2e-6, rtol=1e-7)


def test_initialisation_advice():
    he = D.init_for_fixed_q("relu", 1.0)
    np.testing.assert_allclose([he.sigma_w2, he.chi1], [2.0, 1.0], rtol=1e-13)
    init = D.init_for_fixed_q("tanh", 0.5, 0.1)
    np.testing.assert_allclose(init.sigma_w2, 0.4 / tanh_m2(0.5), rtol=1e-12)
    fp = D.fixed_point("tanh", init.sigma_w2, 0.1, q0=0.5)
    np.testing.assert_allclose(fp.q_star, 0.5, rtol=1e-12)
    np.testing.assert_allclose(init.chi1, fp.chi1, rtol=1e-12)
    crit = D.critical_init("tanh")
    np.testing.assert_allclose([crit.sigma_w2, crit.chi1], [1.0, 1.0], rtol=1e-9)
    crit = D.critical_init("erf", q=0.8)
    np.testing.assert_allclose(crit.sigma_w2, 1 / erf_g2sq(0.8), rtol=1e-12)
    np.testing.assert_allclose(crit.sigma_b2, 0.8 - erf_m2(0.8) / erf_g2sq(0.8), rtol=1e-11)
    with pytest.raises(ValueError, match="q must exceed sigma_b2"):
        D.init_for_fixed_q("tanh", 0.1, 0.2)


# --- Correlations ---------------------------------------------------------------------------------------


C = np.array([-1.0, -0.5, 0.0, 0.4, 0.9, 0.999, 1.0])


def test_correlation_map_closed_forms():
    # ReLU, sW^2 = 1.5, sb^2 = 0.1: q* = 0.4, C = (sW^2 k(c) + sb^2) / q* (Cho & Saul).
    got = D.correlation_map("relu", jnp.asarray(C), 1.5, 0.1)
    np.testing.assert_allclose(got, (1.5 * arccos_kernel(C, 0.4) + 0.1) / 0.4, rtol=1e-12)
    # erf (Williams), at its fixed point.
    q = float(D.fixed_point("erf", 2.5, 0.05).q_star)
    got = D.correlation_map("erf", jnp.asarray(C), 2.5, 0.05)
    np.testing.assert_allclose(got, (2.5 * erf_dual(C, q) + 0.05) / q, rtol=1e-12)


def test_correlation_slope_is_chi1_at_one_and_the_derivative():
    for name, sw2, sb2 in (("erf", 2.5, 0.05), ("relu", 1.5, 0.1)):
        fp = D.fixed_point(name, sw2, sb2)
        np.testing.assert_allclose(D.correlation_slope(name, 1.0, sw2, sb2), fp.chi1, rtol=1e-12)

    def cmap(c):
        return D.correlation_map("erf", c, 2.5, 0.05)

    for c in (0.3, 0.9, 1.0):
        np.testing.assert_allclose(jax.grad(cmap)(c), D.correlation_slope("erf", c, 2.5, 0.05), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(cmap)(0.3), (cmap(0.3 + 1e-6) - cmap(0.3 - 1e-6)) / 2e-6, rtol=1e-8)


def test_correlation_fixed_point_and_depth_scales():
    e = D.edge_of_chaos("erf", 0.05)
    # Chaotic, ordered, chaotic without bias, critical, critical at q* = 0
    # (erf'(0)^2 = 4 / pi).
    sw2 = jnp.asarray([2.5, 0.8, 2.0, float(e.sigma_w2), PI / 4])
    sb2 = jnp.asarray([0.05, 0.05, 0.0, 0.05, 0.0])
    cf = D.correlation_fixed_point("erf", sw2, sb2)
    fp = D.fixed_point("erf", sw2, sb2)
    # Chaotic with a bias: the root of the closed-form map in (0, 1).
    q = float(fp.q_star[0])

    def cmap(c):
        return (2.5 * erf_dual(c, q) + 0.05) / q - c

    c_ref = optimize.brentq(cmap, 0.0, 0.999, xtol=1e-15, rtol=1e-15)
    np.testing.assert_allclose(cf.c_star[0], c_ref, rtol=1e-11)
    slope_ref = 2.5 * (4 / PI) / np.sqrt((1 + 2 * q) ** 2 - (2 * c_ref * q) ** 2)
    np.testing.assert_allclose(cf.slope[0], slope_ref, rtol=1e-10)
    np.testing.assert_allclose(cf.xi_c[0], -1 / np.log(slope_ref), rtol=1e-9)
    # Ordered: c* = 1 and xi_c = -1 / log chi1 (Schoenholz et al.).
    np.testing.assert_allclose([cf.c_star[1], cf.slope[1]], [1.0, fp.chi1[1]], rtol=1e-12)
    np.testing.assert_allclose(cf.xi_c[1], -1 / np.log(fp.chi1[1]), rtol=1e-10)
    # Odd activation without bias in the chaotic phase: inputs decorrelate fully.
    assert float(cf.c_star[2]) == 0.0 and bool(np.all(cf.converged))
    # Depth scales: xi_q = -1 / log V'(q*) from the closed form; xi_c diverges at
    # the edge of chaos, and so does xi_q at the critical q* = 0 (algebraic decay).
    np.testing.assert_allclose(fp.xi_q[0], -1 / np.log(2.5 * erf_dm2_dq(q)), rtol=1e-10)
    assert float(fp.q_star[4]) == 0.0 and int(fp.phase[4]) == 1
    assert np.isinf(cf.xi_c[3]) and np.isinf(cf.xi_c[4]) and np.isinf(fp.xi_q[4])
    ds = D.depth_scales("erf", sw2, sb2)
    np.testing.assert_allclose(ds.xi_c, cf.xi_c, rtol=1e-12)
    np.testing.assert_allclose(ds.xi_q, fp.xi_q, rtol=1e-12)


# --- Scalar recursion ------------------------------------------------------------------------------------


def gelu_prime(x):
    return normal.cdf(x) + x * normal.pdf(x)


@pytest.mark.parametrize(
    "name, a, b, x0, sup",
    [
        ("tanh", 0.7, 0.3, 2.0, 1.0),
        ("relu", 0.9, 1.0, 5.0, 1.0),
        ("gelu", -0.8, 0.1, -2.0, None),  # sup from SciPy below
        ("x^2", 0.5, 0.1, 0.0, np.inf),
        ("signed_sqrt", 0.5, 0.1, 1.0, np.inf),
    ],
)
def test_scalar_recursion(name, a, b, x0, sup):
    if sup is None:
        res = optimize.minimize_scalar(
            lambda x: -gelu_prime(x), bounds=(0.5, 3.0), method="bounded", options={"xatol": 1e-12}
        )
        sup = -res.fun
    r = D.scalar_recursion(name, a, b, x0, 60)
    np.testing.assert_allclose(r.lipschitz, abs(a) * sup, rtol=1e-12)
    assert bool(r.contracts) == (abs(a) * sup < 1)
    np.testing.assert_allclose(r.descent, r.lipschitz**2, rtol=1e-15)
    phi = jaxsig.activations.get(name)
    x_star = float(r.fixed_point)
    assert bool(r.converged)
    np.testing.assert_allclose(float(phi(a * x_star + b)), x_star, rtol=1e-14, atol=1e-15)
    if bool(r.contracts):
        # Lyapunov descent along the trajectory: V(x_{t+1}) <= L^2 V(x_t).
        v = (np.asarray(r.trajectory) - x_star) ** 2
        assert np.all(v[1:] <= float(r.descent) * v[:-1] * (1 + 1e-9) + 1e-28)


def test_scalar_fixed_point_gradient():
    def f(b):
        return D.scalar_recursion("tanh", 0.7, b, 2.0, 10).fixed_point

    x = float(f(0.3))
    # x = tanh(0.7 x + b): dx/db = sech^2 / (1 - 0.7 sech^2).
    s = 1 - math.tanh(0.7 * x + 0.3) ** 2
    np.testing.assert_allclose(jax.grad(f)(0.3), s / (1 - 0.7 * s), rtol=1e-12)


# --- Simulation of wide random networks -------------------------------------------------------------------


def _square(phi):
    return lambda x: phi(x) ** 2


@pytest.mark.parametrize("name, sw2, sb2", [("relu", 2.0, 0.0), ("tanh", 1.5, 0.05)])
def test_simulated_networks_match_mean_field(name, sw2, sb2):
    """Per-layer variance and perturbation growth of sampled networks, width 512.

    Tolerances come from the sampling model. Given layer l (units ~ N(0, s_l^2)),
    s_{l+1}^2 = sW^2 mean_i phi(h_i)^2 + sb^2 deviates from V(s_l^2) by a term of
    variance sW^4 Var(phi(h)^2) / n, which the map propagates with slope V';
    the measured q is s^2 chi^2_n / n (relative variance 2/n on top). The gain
    |dh^{l+1}|^2 / |dh^l|^2 is sW^2 (sum phi'^2 dh^2 / |dh|^2) chi^2_n / n:
    mean chi1(q_l), relative variance (2 + 3 Var(phi'^2) / E[phi'^2]^2) / n.
    Means over seeds and layers are compared at 5 standard errors.
    """
    n, depth, batch = 512, 10, 4
    # An RBG key: its generator compiles several times faster than threefry on CPU.
    key = jax.random.key(0, impl="rbg")
    sim = D.simulate_mlp(name, sw2, sb2, width=n, depth=depth, key=key, batch=batch)
    q_pred = np.asarray(D.variance_trajectory(name, 1.0, sw2, sb2, depth))
    # One moments call for the predicted and the measured variances.
    q_all = np.concatenate([q_pred[:-1], np.asarray(sim.q[:, :-1]).ravel()])
    mom = jaxsig.moments(name, np.sqrt(q_all))
    m2, g2, g4 = (np.asarray(v)[:depth] for v in (mom.m2, mom.g2, mom.g4))
    phi = jaxsig.activations.get(name)
    # E[phi^4] as the m2 of phi^2, at the same sigmas (one compiled assembly serves both calls).
    m4 = np.asarray(
        jaxsig.moments(_square(phi.fn), np.sqrt(q_all), rule=jaxsig.quadrature.Composite(kinks=phi.kinks)).m2
    )[:depth]
    slope = sw2 * np.asarray(mom.dm2_dsigma)[:depth] / (2 * np.sqrt(q_pred[:-1]))
    var_s = [0.0]
    for k in range(depth):
        var_s.append(slope[k] ** 2 * var_s[-1] + sw2**2 * (m4[k] - m2[k] ** 2) / n)
    var_q = np.asarray(var_s) + 2 * q_pred**2 / n * (np.arange(depth + 1) > 0)
    err = np.abs(np.asarray(sim.q).mean(0) - q_pred)
    assert np.all(err <= 5 * np.sqrt(var_q / batch) + 1e-12), (err, np.sqrt(var_q / batch))
    # Gains against chi at the measured variance of each network and layer.
    gain_pred = sw2 * np.asarray(mom.g2)[depth:].reshape(batch, depth) ** 2
    ratio = np.asarray(sim.gain) / gain_pred
    kappa = g4**4 / g2**4 - 1
    se = np.sqrt(np.mean((2 + 3 * kappa) / n) / ratio.size)
    assert abs(ratio.mean() - 1) <= 5 * se, (ratio.mean(), se)
    # The prediction itself: chi at the variance-map iterates, -> chi1 at q*.
    np.testing.assert_allclose(D.perturbation_gain(name, q_pred[:-1], sw2), sw2 * g2**2, rtol=1e-13)


# --- Errors ----------------------------------------------------------------------------------------------------


def test_errors_are_clear():
    with pytest.raises(ValueError, match="sigma_w2 must be non-negative"):
        D.fixed_point("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="q0 must be positive"):
        D.fixed_point("tanh", 1.0, 0.0, q0=0.0)
    with pytest.raises(ValueError, match="sigma_b2 must be non-negative"):
        D.edge_of_chaos("tanh", -0.1)
    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        D.scalar_recursion("tanh", 0.5, 0.0, 0.0, 2.5)
    with pytest.raises(ValueError, match="a must be a scalar"):
        D.scalar_recursion("tanh", jnp.ones(2), 0.0, 0.0, 3)
    with pytest.raises(ValueError, match="width must be a positive int"):
        D.simulate_mlp("tanh", 1.0, 0.0, width=0, depth=3, key=jax.random.key(0))
    with pytest.raises(KeyError, match="Valid names"):
        D.fixed_point("tanhh", 1.0, 0.0)


# --- The `jaxsig phase` command ----------------------------------------------------------------------------------


def test_phase_command(capsys, tmp_path, monkeypatch):
    import json

    from jaxsig import cli

    monkeypatch.setenv("JAXSIG_CACHE_DIR", "none")  # no disk cache from an in-process run
    out = tmp_path / "phase-{name}.png"
    # 16 rows: the same batch size as the figure's critical line (4 x resolution),
    # so one compiled program serves both.
    code = cli.main(["phase", "-a", "relu", "--rows", "16", "--resolution", "4", "--out", str(out), "--format", "json"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    rows = json.loads(stdout)
    np.testing.assert_allclose([r["sigma_b2"] for r in rows], np.linspace(0, 0.5, 16), rtol=1e-15)
    # ReLU: critical at sW^2 = 2 for every sb^2; finite fixed point only without bias.
    assert all(abs(r["sigma_w2_critical"] - 2.0) < 1e-12 for r in rows)
    assert [r["q_star"] for r in rows] == [0.0] + ["inf"] * 15
    assert all(abs(r["variance_slope"] - 1.0) < 1e-9 for r in rows)  # V' = sW^2 / 2
    png = tmp_path / "phase-relu.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < png.stat().st_size < 1_000_000
    from matplotlib import image

    pixels = image.imread(png)  # decodes: a valid PNG
    assert pixels.shape[:2] == (528, 704)  # 6.4 x 4.8 inches at 110 dpi
    assert pixels[..., :3].std() > 0.05  # not blank
    # Usage errors are one line with exit status 2.
    assert cli.main(["phase", "-a", "relu", "--rows", "16", "--no-figure", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| activation | sb^2 | critical sW^2 | q* | V'(q*) |")
    assert cli.main(["phase", "-a", "relu,tanh", "--out", str(tmp_path / "x.png")]) == 2
    assert "must contain '{name}'" in capsys.readouterr().err
    assert cli.main(["phase", "--sigma-b2", "0.5,0.1"]) == 2
    assert "MIN < MAX" in capsys.readouterr().err
    assert cli.main(["phase", "-a", "tanhh", "--no-figure"]) == 2
    assert "tanhh" in capsys.readouterr().err
    assert cli.main(["phase", "--rows", "0", "--no-figure"]) == 2

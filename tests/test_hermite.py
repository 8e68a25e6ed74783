"""Hermite coefficients: against mpmath, closed forms, the signature, and under transforms.

References are independent of jaxsig's quadrature: a table of adaptive mpmath
integrals at 30 digits (``tests/make_hermite_reference.py``, partly recomputed
live below), ReLU's closed form from Gaussian integration by parts, and exact
polynomial expansions.
"""

import json
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest

import jaxsig
from jaxsig.theory import hermite as H

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import make_hermite_reference as R

TABLE = json.loads((pathlib.Path(__file__).parent / "data" / "hermite_reference.json").read_text())
SQRT_FACT = np.exp(0.5 * np.array([math.lgamma(k + 1.0) for k in range(160)]))  # sqrt(k!)

TOL = 1e-13  # |h_k - ref| sqrt(k!) vs mpmath (measured: 4.4e-16)
CLOSED_TOL = 1e-14  # ReLU closed form up to k = 127 (measured: 1.8e-16)
IDENTITY_TOL = 1e-14  # identities with the signature (absolute; values are O(1))
F32_TOL = 1e-6  # float32 vs float64, absolute on sqrt(k!) h_k (measured: 1.2e-7)
FD_TOL = 1e-8  # central differences, step 1e-5 (measured: 1.6e-11)


def _ref(row):
    return np.array([float(mp.mpf(v)) for v in row["h"]])


def _normalised(out):
    """``a_k = sqrt(k!) h_k``, the coefficients in the orthonormal basis."""
    return np.asarray(out.coeffs) * SQRT_FACT[: out.coeffs.shape[-1]]


# --- Independent references -----------------------------------------------------------


@pytest.mark.parametrize("row", TABLE["rows"], ids=lambda r: f"{r['activation']}-s{r['sigma']}-mu{r['mu']}")
def test_coefficients_match_mpmath(row):
    out = H.hermite_coefficients(row["activation"], TABLE["k"], row["sigma"], mu=row["mu"])
    ref = _ref(row)
    err = np.abs(_normalised(out) - ref * SQRT_FACT[: ref.size])
    assert err.max() <= TOL, (err.max(), int(err.argmax()))
    np.testing.assert_allclose(out.m2, float(mp.mpf(row["m2"])), rtol=TOL, atol=0)


def test_reference_table_is_genuine():
    # A few entries recomputed live from the generator (mpmath only), so the
    # table cannot drift from its source.
    for name, sigma, mu, n in (("relu", 2.0, 0.7, 5), ("tanh", 1.0, 0.7, 4), ("softplus", 0.5, 0.0, 3)):
        (row,) = [r for r in TABLE["rows"] if (r["activation"], r["sigma"], r["mu"]) == (name, sigma, mu)]
        live, _ = R.coefficients(name, sigma, mu, n=n)
        for a, b in zip(live, row["h"][:n]):
            assert abs(mp.mpf(a) - mp.mpf(b)) <= mp.mpf(10) ** -25 * max(1, abs(mp.mpf(b)))


def relu_closed_form(n, sigma, mu):
    """``sqrt(k!) h_k`` of ReLU at 40 digits.

    ``E[relu(mu + sigma Z) He_k(Z)] = E[f^(k)(Z)]`` (Gaussian integration by
    parts), and ``f'' = sigma delta(z + mu/sigma)``, so for ``k >= 2`` it is
    ``sigma (-1)^k phi_N^(k-2)(-mu/sigma) = sigma He_{k-2}(-mu/sigma) phi_N(mu/sigma)``.
    """
    with mp.workdps(40):
        s, m = mp.mpf(sigma), mp.mpf(mu)
        t = m / s
        out = [s * mp.npdf(t) + m * mp.ncdf(t), s * mp.ncdf(t)]
        out += [s * R.hermite_e(k - 2, -t) * mp.npdf(t) / mp.sqrt(mp.factorial(k)) for k in range(2, n)]
        return np.array([float(v) for v in out])


@pytest.mark.parametrize("sigma, mu", [(0.5, 0.0), (1.0, 0.7), (2.0, -1.3)])
def test_relu_matches_its_closed_form_to_high_degree(sigma, mu):
    n = 128
    out = H.hermite_coefficients("relu", n, sigma, mu=mu)
    err = np.abs(_normalised(out) - relu_closed_form(n, sigma, mu))
    assert err.max() <= CLOSED_TOL, (err.max(), int(err.argmax()))


@pytest.mark.parametrize("sigma, mu", [(1.0, 0.0), (0.7, 0.4), (2.5, -1.1)])
@pytest.mark.parametrize("rule", ["composite", "gauss_hermite"])
def test_a_cubic_has_exactly_four_coefficients(sigma, mu, rule):
    # (mu + sigma z)^3 with z^2 = He_2 + 1, z^3 = He_3 + 3 He_1.
    out = H.hermite_coefficients("x^3", 8, sigma, mu=mu, rule=rule)
    want = [mu**3 + 3 * mu * sigma**2, 3 * mu**2 * sigma + 3 * sigma**3, 3 * mu * sigma**2, sigma**3, 0, 0, 0, 0]
    np.testing.assert_allclose(out.coeffs, want, rtol=0, atol=1e-13 * max(1.0, sigma**3))
    assert float(out.tail) <= 1e-13 * float(out.m2)


def test_odd_activation_has_no_even_coefficients_at_mu_zero():
    out = H.hermite_coefficients("tanh", 16, 1.3)
    np.testing.assert_array_less(np.abs(np.asarray(out.coeffs)[0::2]), 1e-16)
    # ...and an off-centre mean breaks the symmetry.
    off = H.hermite_coefficients("tanh", 16, 1.3, mu=0.5)
    assert np.all(np.abs(np.asarray(off.coeffs)[0:8:2]) > 1e-3)


# --- Identities with the signature -----------------------------------------------------------


# (activation, sigma, mu, n): n large enough that the energy beyond it is < 1e-16.
SMOOTH = [
    ("gelu", 0.5, 0.0, 40),
    ("gelu", 1.0, 0.7, 64),
    ("softplus", 1.0, -0.4, 48),
    ("tanh", 0.5, 0.3, 48),
    ("erf", 1.0, 0.0, 96),
    ("swish", 0.8, 0.2, 64),
]


@pytest.mark.parametrize("name, sigma, mu, n", SMOOTH)
def test_energies_sum_to_the_signature(name, sigma, mu, n):
    out = H.hermite_coefficients(name, n, sigma, mu=mu)
    s = jaxsig.signature(name, sigma, mu=mu)
    e = np.asarray(out.energy)
    assert float(out.tail) <= 1e-15
    np.testing.assert_allclose(out.coeffs[0], s.m1, rtol=0, atol=IDENTITY_TOL)  # h_0 = m1
    np.testing.assert_allclose(out.coeffs[1], sigma * s.g1, rtol=0, atol=IDENTITY_TOL)  # h_1 = sigma g1 (Stein)
    np.testing.assert_allclose(e[2:].sum(), s.eta, rtol=0, atol=IDENTITY_TOL)  # eta = sum_{k>=2} k! h_k^2
    np.testing.assert_allclose(e.sum(), s.m2, rtol=0, atol=IDENTITY_TOL)  # Parseval
    np.testing.assert_allclose(out.m2, s.m2, rtol=0, atol=IDENTITY_TOL)
    np.testing.assert_allclose(out.var, s.m2 - s.m1**2, rtol=0, atol=IDENTITY_TOL)
    np.testing.assert_allclose(np.sum(out.share_m2), 1.0, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.sum(out.share_var), 1.0, rtol=0, atol=1e-13)
    assert float(out.share_var[0]) == 0.0


def test_kinked_activation_energy_converges_to_eta():
    # ReLU's energies decay like k^(-5/2): eta minus the partial sums is the
    # tail, which shrinks with n, and the tail is what the closed form leaves.
    s = jaxsig.signature("relu", 1.0)
    tails = []
    for n in (8, 32, 128):
        out = H.hermite_coefficients("relu", n, 1.0)
        partial = float(np.sum(out.energy[2:]))
        np.testing.assert_allclose(partial + float(out.tail), s.eta, rtol=0, atol=IDENTITY_TOL)
        exact_tail = 0.5 - float(np.sum(relu_closed_form(n, 1.0, 0.0) ** 2))
        np.testing.assert_allclose(out.tail, exact_tail, rtol=0, atol=1e-14)
        tails.append(float(out.tail))
    assert tails[0] > tails[1] > tails[2] > 0


def test_gauss_hermite_rule_agrees_on_a_smooth_activation():
    a = H.hermite_coefficients("gelu", 12, 1.2, mu=0.3)
    b = H.hermite_coefficients("gelu", 12, 1.2, mu=0.3, rule=jaxsig.quadrature.GaussHermite(order=128))
    np.testing.assert_allclose(b.coeffs, a.coeffs, rtol=0, atol=1e-13)


# --- dtypes, jit, vmap, batches ----------------------------------------------------------


def test_float32():
    sig = jnp.asarray([0.5, 1.0, 2.0], jnp.float32)
    for name in ("tanh", "gelu", "relu", "softplus"):
        lo = H.hermite_coefficients(name, 16, sig, mu=jnp.float32(0.7))
        hi = H.hermite_coefficients(name, 16, np.asarray(sig, np.float64), mu=0.7)
        assert lo.coeffs.dtype == jnp.float32 and lo.m2.dtype == jnp.float32
        assert bool(jnp.all(lo.finite))
        err = np.abs(_normalised(lo) - _normalised(hi))
        assert err.max() <= F32_TOL * max(1.0, float(jnp.max(hi.m2))) ** 0.5, (name, err.max())


def test_batched_broadcasting_and_shapes():
    sigma = jnp.array([[0.5], [1.0], [2.0]])
    mu = jnp.array([0.0, 0.7])
    out = H.hermite_coefficients("softplus", 6, sigma, mu=mu)
    assert out.coeffs.shape == (3, 2, 6) and out.m2.shape == (3, 2) and out.finite.shape == (3, 2)
    one = H.hermite_coefficients("softplus", 6, 2.0, mu=0.7)
    np.testing.assert_allclose(out.coeffs[2, 1], one.coeffs, rtol=0, atol=1e-15)


def test_jit_and_vmap_agree_with_eager():
    sigmas = jnp.array([0.5, 1.0, 2.0])
    mus = jnp.array([0.0, 0.7, -0.4])
    eager = H.hermite_coefficients("gelu", 10, sigmas, mu=mus)
    f = lambda s, m: H.hermite_coefficients("gelu", 10, s, mu=m)  # noqa: E731
    jitted = jax.jit(f)(sigmas, mus)
    mapped = jax.vmap(f)(sigmas, mus)
    assert isinstance(mapped, H.HermiteCoefficients)
    for a, b, c in zip(eager, jitted, mapped):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-15)
        np.testing.assert_allclose(c, a, rtol=0, atol=1e-15)


def test_new_values_do_not_retrace():
    traces = {"n": 0}

    def phi(x, p):
        if isinstance(x, jax.core.Tracer):
            traces["n"] += 1
        return p["a"] * jnp.tanh(p["b"] * x)

    call = lambda s, m, a, b: H.hermite_coefficients(phi, 8, s, mu=m, params={"a": a, "b": b})  # noqa: E731
    call(1.0, 0.0, 1.0, 1.0)
    before = traces["n"]
    assert before > 0
    for v in [(0.7, 0.3, 2.0, 0.5), (1.9, -1.0, 0.3, 3.0)]:
        out = call(*v)
    assert traces["n"] == before
    # ...and the values did change: h_0 of a tanh(b x) at (1.9, -1.0) is negative.
    assert float(out.coeffs[0]) < 0


# --- Gradients ------------------------------------------------------------------------------


def _central(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize(
    "name, params",
    [("softplus_beta", {"beta": 1.7}), ("leaky_relu", {"negative_slope": 0.2}), ("swish_beta", {"beta": 0.6})],
)
def test_gradient_in_params_matches_finite_differences(name, params):
    key = next(iter(params))
    v0 = params[key]

    def coeffs(v):
        return H.hermite_coefficients(name, 8, 1.3, mu=0.4, params={key: v}).coeffs

    jac = jax.jacfwd(coeffs)(jnp.asarray(v0))
    rev = jax.jacrev(coeffs)(jnp.asarray(v0))
    fd = _central(lambda v: np.asarray(coeffs(v)), v0)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=FD_TOL)
    np.testing.assert_allclose(rev, jac, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu"])
def test_gradient_in_sigma_and_mu_matches_finite_differences(name):
    def energy_and_coeffs(s, m):
        out = H.hermite_coefficients(name, 8, s, mu=m)
        return jnp.concatenate([out.coeffs, out.energy, out.share_var, out.tail[None]])

    s0, m0 = 1.2, 0.35
    ds, dm = jax.jacfwd(energy_and_coeffs, argnums=(0, 1))(s0, m0)
    fd_s = _central(lambda s: np.asarray(energy_and_coeffs(s, m0)), s0)
    fd_m = _central(lambda m: np.asarray(energy_and_coeffs(s0, m)), m0)
    np.testing.assert_allclose(ds, fd_s, rtol=0, atol=FD_TOL)
    np.testing.assert_allclose(dm, fd_m, rtol=0, atol=FD_TOL)
    g = jax.grad(lambda s: jnp.sum(H.hermite_coefficients(name, 8, s, mu=m0).energy[2:]))(s0)
    assert np.isfinite(float(g))


def test_gradient_of_a_cubic_is_exact():
    # h_3 = sigma^3 and h_1 = 3 mu^2 sigma + 3 sigma^3, so d/dsigma is 3 sigma^2 and 3 mu^2 + 9 sigma^2.
    s, m = 0.8, -0.6
    d = jax.jacfwd(lambda t: H.hermite_coefficients("x^3", 4, t, mu=m).coeffs)(s)
    np.testing.assert_allclose(d[3], 3 * s**2, rtol=1e-13)
    np.testing.assert_allclose(d[1], 3 * m**2 + 9 * s**2, rtol=1e-13)


# --- Errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3])
def test_n_must_be_positive(n):
    with pytest.raises(ValueError, match="n must be a positive"):
        H.hermite_coefficients("tanh", n)


@pytest.mark.parametrize("n", [2.0, True, "8", jnp.asarray(4)])
def test_n_must_be_a_python_int(n):
    with pytest.raises(TypeError, match="n must be a Python int"):
        H.hermite_coefficients("tanh", n)


@pytest.mark.parametrize("sigma", [0.0, -1.0, np.nan, np.inf, [1.0, -0.5]])
def test_sigma_must_be_positive(sigma):
    with pytest.raises(ValueError, match="sigma must be positive and finite"):
        H.hermite_coefficients("tanh", 4, sigma)


def test_other_bad_inputs():
    with pytest.raises(KeyError, match="Valid names:.*tanh"):
        H.hermite_coefficients("tahn", 4)
    with pytest.raises(ValueError, match="mu must be finite"):
        H.hermite_coefficients("tanh", 4, mu=np.nan)
    with pytest.raises(TypeError, match="sigma has dtype int"):
        H.hermite_coefficients("tanh", 4, jnp.asarray(2))
    with pytest.raises(ValueError, match="must be elementwise"):
        H.hermite_coefficients(lambda x: jnp.sum(x), 4)
    with pytest.raises(ValueError, match="non-finite"):
        H.hermite_coefficients(lambda x: jnp.exp(x * x), 4)
    with pytest.warns(UserWarning, match="beyond the grid"):
        H.hermite_coefficients("tanh", 4, 60.0)


def test_non_finite_under_jit_is_flagged_not_raised():
    out = jax.jit(lambda s: H.hermite_coefficients(lambda x: jnp.exp(x * x), 4, s))(1.0)
    assert not bool(out.finite)
    assert bool(jnp.all(jnp.isnan(out.coeffs))) and bool(jnp.isnan(out.m2))


def test_constant_activation_has_zero_variance_shares():
    out = H.hermite_coefficients(lambda x: jnp.ones_like(x), 4, 1.0)
    np.testing.assert_allclose(out.coeffs, [1.0, 0, 0, 0], atol=1e-15)
    np.testing.assert_array_equal(out.share_var, 0.0)
    g = jax.grad(lambda s: jnp.sum(H.hermite_coefficients(lambda x: 0 * x + 1.0, 4, s).share_var))(1.0)
    assert np.isfinite(float(g))
    # A small but real variance (1e-12, far above the rounding floor) keeps its shares.
    small = H.hermite_coefficients(lambda x: 1.0 + 1e-6 * jnp.tanh(x), 48, 0.5)
    np.testing.assert_allclose(np.sum(small.share_var), 1.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        small.share_var[1], 1e-12 * 0.5**2 * float(jaxsig.signature("tanh", 0.5).g1) ** 2 / float(small.var), rtol=1e-9
    )

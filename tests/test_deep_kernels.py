"""Deep NNGP / NTK recursions: closed forms, wide random networks, gradients, errors.

The references are independent of jaxsig's dual-activation quadrature: the
closed-form recursions of Cho & Saul (ReLU) and Williams (erf) written here in
NumPy, and Monte Carlo over explicitly built wide networks, whose tangent
kernel comes from autodiff of the network itself.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsig.theory import deep_kernels as DK

PI = math.pi
TOL = 1e-12  # recursion vs closed forms, relative to max |K| (measured: 5.5e-15)
FD_TOL = 1e-8  # central differences, step 1e-5, relative
MC_SIGMAS = 5.0  # Monte Carlo: |mean - kernel| <= 5 standard errors


def _inputs():
    """Four inputs and three others, one parallel and one anti-parallel to an input (c = +-1)."""
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(4, 6))
    x2 = np.concatenate([rng.normal(size=(1, 6)), 1.5 * x1[1:2], -0.7 * x1[2:3]])
    return x1, x2


# --- Closed-form recursions -------------------------------------------------------------


def relu_recursion(x1, x2, depth, sw2, sb2):
    """Arc-cosine recursion (Cho & Saul 2009) with the NTK (Jacot et al. 2018)."""
    d = x1.shape[1]
    k = sw2 * x1 @ x2.T / d + sb2
    q1 = sw2 * np.sum(x1**2, 1) / d + sb2
    q2 = sw2 * np.sum(x2**2, 1) / d + sb2
    t = k.copy()
    out = [(k.copy(), t.copy())]
    for _ in range(depth - 1):
        s = np.sqrt(np.outer(q1, q2))
        theta = np.arccos(np.clip(k / s, -1, 1))
        e = s * (np.sin(theta) + (PI - theta) * np.cos(theta)) / (2 * PI)
        de = (PI - theta) / (2 * PI)
        k = sw2 * e + sb2
        t = k + sw2 * de * t
        q1, q2 = sw2 * q1 / 2 + sb2, sw2 * q2 / 2 + sb2
        out.append((k.copy(), t.copy()))
    return out


def erf_recursion(x1, x2, depth, sw2, sb2):
    """Arcsine recursion (Williams 1996): E[erf u erf v] = (2/pi) arcsin(2 cov / sqrt((1 + 2 q1)(1 + 2 q2)))."""
    d = x1.shape[1]
    k = sw2 * x1 @ x2.T / d + sb2
    q1 = sw2 * np.sum(x1**2, 1) / d + sb2
    q2 = sw2 * np.sum(x2**2, 1) / d + sb2
    t = k.copy()
    out = [(k.copy(), t.copy())]
    for _ in range(depth - 1):
        p = np.outer(1 + 2 * q1, 1 + 2 * q2)
        e = 2 / PI * np.arcsin(2 * k / np.sqrt(p))
        de = 4 / PI / np.sqrt(p - 4 * k**2)  # d/dcov of the above (Price)
        k = sw2 * e + sb2
        t = k + sw2 * de * t
        q1 = sw2 * 2 / PI * np.arcsin(2 * q1 / (1 + 2 * q1)) + sb2
        q2 = sw2 * 2 / PI * np.arcsin(2 * q2 / (1 + 2 * q2)) + sb2
        out.append((k.copy(), t.copy()))
    return out


@pytest.mark.parametrize(
    "name, reference, sw2, sb2",
    [
        ("relu", relu_recursion, 2.0, 0.1),
        ("relu", relu_recursion, 1.3, 0.4),
        ("erf", erf_recursion, 1.7, 0.05),
    ],
)
def test_matches_closed_form_recursions_depth_1_to_10(name, reference, sw2, sb2):
    x1, x2 = _inputs()
    if name == "erf":
        # the anti-parallel pair would make p - 4 cov^2 = 0 in the reference's
        # derivative; keep the closed form finite
        x2 = x2[:2]
    got = DK.mlp_kernels_by_depth(name, x1, x2, 10, sw2, sb2)
    assert got.nngp.shape == (10, 4, x2.shape[0])
    for depth, (k, t) in enumerate(reference(x1, x2, 10, sw2, sb2), start=1):
        scale = max(np.abs(k).max(), np.abs(t).max())
        np.testing.assert_allclose(got.nngp[depth - 1], k, rtol=0, atol=TOL * scale, err_msg=f"nngp {depth=}")
        np.testing.assert_allclose(got.ntk[depth - 1], t, rtol=0, atol=TOL * scale, err_msg=f"ntk {depth=}")


def test_last_layer_function_agrees_with_the_sequence():
    x1, x2 = _inputs()
    seq = DK.mlp_kernels_by_depth("relu", x1, x2, 4, 2.0, 0.1)
    for depth in (1, 4):
        one = DK.mlp_kernels("relu", x1, x2, depth, 2.0, 0.1)
        assert isinstance(one, DK.MLPKernels) and one.ntk.shape == (4, 3)
        np.testing.assert_allclose(one.nngp, seq.nngp[depth - 1], rtol=1e-15, atol=0)
        np.testing.assert_allclose(one.ntk, seq.ntk[depth - 1], rtol=1e-15, atol=0)


def test_symmetric_when_x2_is_omitted():
    x1, _ = _inputs()
    k = DK.mlp_kernels("gelu", x1, None, 3, 1.6, 0.2)
    # K(x, y) and K(y, x) take the two variances in opposite order: equal to rounding.
    np.testing.assert_allclose(k.nngp, k.nngp.T, rtol=1e-14, atol=0)
    np.testing.assert_allclose(k.ntk, k.ntk.T, rtol=1e-14, atol=0)
    assert np.all(np.linalg.eigvalsh(np.asarray(k.ntk)) > 0)


# --- Wide random networks ---------------------------------------------------------------


WIDTH = 2048
SW2, SB2 = 1.5, 0.1


def _dense(key, n_in, n_out, dtype=jnp.float64):
    kw, kb = jax.random.split(key)
    return jax.random.normal(kw, (n_out, n_in), dtype), jax.random.normal(kb, (n_out,), dtype)


def _forward(layers, x, phi):
    """NTK parameterisation: h = sqrt(sW2 / n_in) W phi(h_prev) + sqrt(sB2) b (no phi before layer 1)."""
    h = x.T
    for i, (w, b) in enumerate(layers):
        a = h if i == 0 else phi(h)
        h = math.sqrt(SW2 / a.shape[0]) * (w @ a) + math.sqrt(SB2) * b[:, None]
    return h  # (n_out, n_inputs)


@jax.jit
def _one_network_nngp(key, x):
    """``sW2 mean_i tanh(h2_i(x)) tanh(h2_i(y)) + sB2`` for one network of 3 Dense layers.

    Layer 1 is drawn explicitly (``W1`` of shape ``(WIDTH, d)``). Given its
    activations ``a1`` (``WIDTH x m`` for the ``m`` inputs), the rows of layer 2,
    ``h2_i = sqrt(sW2 / WIDTH) W2_i a1 + sqrt(sB2) b2_i``, are i.i.d.
    ``N(0, S)`` with ``S = sW2 a1^T a1 / WIDTH + sB2``: drawing them as
    ``L z`` (``S = L L^T``) has the law of the explicit layer without drawing
    its ``WIDTH^2`` weights. The output layer is integrated out exactly:
    ``E[f(x) f(y) | h2] = sW2 mean_i tanh(h2_i(x)) tanh(h2_i(y)) + sB2``, an
    unbiased estimator of the finite-width NNGP with a far smaller variance.
    """
    k1, k2 = jax.random.split(key)
    a1 = jnp.tanh(_forward([_dense(k1, x.shape[1], WIDTH)], x, jnp.tanh)).T  # (m, WIDTH)
    s = SW2 * a1 @ a1.T / WIDTH + SB2
    h2 = jnp.linalg.cholesky(s) @ jax.random.normal(k2, (x.shape[0], WIDTH))
    a2 = jnp.tanh(h2)
    return SW2 * a2 @ a2.T / WIDTH + SB2


def test_nngp_matches_wide_random_tanh_networks():
    # 3 Dense layers (2 hidden of width 2048), 500 networks. The finite-width
    # bias is O(1/width) ~ 5e-4 relative, below one standard error (~1e-3).
    x1, _ = _inputs()
    x = jnp.asarray(x1[:3])
    n_nets = 500
    samples = jax.vmap(_one_network_nngp, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(1), n_nets), x)
    mean = np.asarray(samples.mean(0))
    se = np.asarray(samples.std(0, ddof=1)) / math.sqrt(n_nets)
    want = np.asarray(DK.mlp_kernels("tanh", x, None, 3, SW2, SB2).nngp)
    z = np.abs(mean - want) / se
    assert np.all(z <= MC_SIGMAS), (z.max(), mean, want)
    # ...and the test has power: a 5% wrong weight variance is rejected.
    wrong = np.asarray(DK.mlp_kernels("tanh", x, None, 3, 1.05 * SW2, SB2).nngp)
    assert np.any(np.abs(mean - wrong) / se > MC_SIGMAS)


@functools.partial(jax.jit, static_argnums=(2,))
def _empirical_ntk(key, x, depth):
    """``sum_theta df(x)/dtheta df(y)/dtheta`` of one explicit network with a scalar output, by autodiff.

    The network is float32: its Monte Carlo error (~1e-2) dwarfs float32 rounding.
    """
    keys = jax.random.split(key, depth)
    f32 = jnp.float32
    layers = [_dense(keys[0], x.shape[1], WIDTH, f32)]
    layers += [_dense(k, WIDTH, WIDTH, f32) for k in keys[1:-1]]
    layers += [_dense(keys[-1], WIDTH, 1, f32)]
    jac = jax.jacrev(lambda ls: _forward(ls, x.astype(f32), jnp.tanh)[0])(layers)
    flat = [j.reshape(x.shape[0], -1).astype(jnp.float64) for j in jax.tree_util.tree_leaves(jac)]
    return sum(j @ j.T for j in flat)


def test_ntk_matches_the_empirical_ntk_of_wide_tanh_networks():
    # The empirical NTK of one width-2048 network fluctuates by O(1/sqrt(width))
    # around its limit; 24 networks, tolerance 5 standard errors of their mean.
    x1, _ = _inputs()
    x = jnp.asarray(x1[:3])
    depth, n_nets = 3, 24
    samples = np.stack(
        [np.asarray(_empirical_ntk(k, x, depth)) for k in jax.random.split(jax.random.PRNGKey(2), n_nets)]
    )
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / math.sqrt(n_nets)
    want = np.asarray(DK.mlp_kernels("tanh", x, None, depth, SW2, SB2).ntk)
    z = np.abs(mean - want) / se
    assert np.all(z <= MC_SIGMAS), (z.max(), mean, want)
    # For the record: the mean is within 1% of the limit's scale.
    np.testing.assert_allclose(mean, want, rtol=0, atol=1e-2 * np.abs(want).max())


# --- Gradients, transforms ---------------------------------------------------------------


def _central(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize(
    "name, key, value",
    [("softplus_beta", "beta", 1.7), ("leaky_relu", "negative_slope", 0.2), ("elu", "alpha", 0.5)],
)
def test_gradient_in_params_matches_finite_differences(name, key, value):
    # leaky ReLU and ELU(0.5) have a jump in phi' at 0: the NTK's derivative
    # through the correlation needs its Dirac term (measured error without it:
    # 12% on leaky ReLU; with it: 5e-11).
    x1, x2 = _inputs()

    def kernels(v):
        k = DK.mlp_kernels(name, x1[:2], x2[:2], 3, 1.4, 0.3, params={key: v})
        return jnp.concatenate([k.nngp.ravel(), k.ntk.ravel()])

    jac = jax.jacfwd(kernels)(jnp.asarray(value))
    fd = _central(lambda v: np.asarray(kernels(v)), value)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=FD_TOL * np.abs(fd).max())
    if name == "leaky_relu":  # reverse mode through the custom JVP (once: it compiles anew)
        rev = jax.jacrev(kernels)(jnp.asarray(value))
        np.testing.assert_allclose(rev, jac, rtol=0, atol=1e-13 * np.abs(jac).max())


def relu_recursion_jnp(x1, x2, depth, sw2, sb2):
    """:func:`relu_recursion` in jax.numpy, to differentiate the closed form itself."""
    d = x1.shape[1]
    k = sw2 * x1 @ x2.T / d + sb2
    q1 = sw2 * jnp.sum(x1**2, 1) / d + sb2
    q2 = sw2 * jnp.sum(x2**2, 1) / d + sb2
    t = k
    for _ in range(depth - 1):
        s = jnp.sqrt(jnp.outer(q1, q2))
        theta = jnp.arccos(k / s)
        k_next = sw2 * s * (jnp.sin(theta) + (PI - theta) * jnp.cos(theta)) / (2 * PI) + sb2
        t = k_next + sw2 * (PI - theta) / (2 * PI) * t
        k, q1, q2 = k_next, sw2 * q1 / 2 + sb2, sw2 * q2 / 2 + sb2
    return k, t


def test_relu_ntk_gradient_equals_the_closed_forms_gradient():
    # Inputs, weight and bias variances all move the correlations; the closed
    # form's autodiff is exact away from c = +-1 (generic inputs).
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=(2, 5)), rng.normal(size=(3, 5))

    def ours(x, sw2, sb2):
        return jnp.sum(DK.mlp_kernels("relu", x, x2, 4, sw2, sb2).ntk * jnp.arange(6.0).reshape(2, 3))

    def closed(x, sw2, sb2):
        return jnp.sum(relu_recursion_jnp(x, x2, 4, sw2, sb2)[1] * jnp.arange(6.0).reshape(2, 3))

    args = (jnp.asarray(x1), 1.7, 0.2)
    np.testing.assert_allclose(ours(*args), closed(*args), rtol=1e-13)
    for a, b in zip(jax.grad(ours, argnums=(0, 1, 2))(*args), jax.grad(closed, argnums=(0, 1, 2))(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gradient_in_the_variances_matches_finite_differences():
    x1, x2 = _inputs()
    for name in ("tanh", "selu"):  # smooth; a jump in phi' at 0 and curvature beside it

        def ntk(sw2, sb2, name=name):
            return DK.mlp_kernels(name, x1[:2], x2[:2], 3, sw2, sb2).ntk.ravel()

        dw, db = jax.jacfwd(ntk, argnums=(0, 1))(1.4, 0.3)
        np.testing.assert_allclose(dw, _central(lambda s: np.asarray(ntk(s, 0.3)), 1.4), rtol=FD_TOL, atol=0)
        np.testing.assert_allclose(db, _central(lambda s: np.asarray(ntk(1.4, s)), 0.3), rtol=FD_TOL, atol=0)


def _box_probability_derivative(c, qa, qb, a=1.0):
    """d/dc P(|u| < a, |v| < a) = sqrt(qa qb) [p(a, a) - p(-a, a) - p(a, -a) + p(-a, -a)] (Plackett)."""
    cov = c * math.sqrt(qa * qb)
    det = qa * qb - cov * cov

    def p(x, y):
        return math.exp(-(qb * x * x - 2 * cov * x * y + qa * y * y) / (2 * det)) / (2 * PI * math.sqrt(det))

    return math.sqrt(qa * qb) * (p(a, a) - p(-a, a) - p(a, -a) + p(-a, -a))


@pytest.mark.parametrize("c", [-0.8, 0.0, 0.3, 0.95])
def test_correlation_derivative_of_the_derivative_dual_includes_the_kinks(c):
    # E[phi'(u) phi'(v)] for hard tanh is P(|u| < 1, |v| < 1); for ReLU it is
    # (pi - arccos c) / (2 pi). Their c-derivatives are pure Dirac terms (phi'' = 0
    # between the kinks), which autodiff of phi' alone would miss entirely.
    from jaxsig.core import activations as A

    qa, qb = 1.2, 0.8
    for name, want in (
        ("hard_tanh", _box_probability_derivative(c, qa, qb)),
        ("relu", 1 / (2 * PI * math.sqrt(1 - c * c))),
    ):
        act = A.get(name)
        _, dc = jax.jvp(
            lambda t, act=act: DK._dual_prime(act, t, jnp.asarray(qa), jnp.asarray(qb), None), (jnp.asarray(c),), (1.0,)
        )
        np.testing.assert_allclose(dc, want, rtol=1e-12, err_msg=name)


def test_jit_and_vmap_over_the_weight_variance():
    x1, x2 = _inputs()
    f = lambda sw2: DK.mlp_kernels("tanh", x1[:2], x2[:2], 3, sw2, 0.3)  # noqa: E731
    sws = jnp.array([0.8, 1.4])
    mapped = jax.jit(jax.vmap(f))(sws)
    assert mapped.ntk.shape == (2, 2, 2)
    for i, s in enumerate(np.asarray(sws)):
        np.testing.assert_allclose(mapped.ntk[i], f(float(s)).ntk, rtol=1e-14, atol=0)


# --- Errors -----------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    x1, x2 = _inputs()
    with pytest.raises(ValueError, match="depth must be at least 1"):
        DK.mlp_kernels("relu", x1, x2, 0, 2.0, 0.0)
    with pytest.raises(TypeError, match="depth must be a Python int"):
        DK.mlp_kernels("relu", x1, x2, 2.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="same number of features"):
        DK.mlp_kernels("relu", x1, x2[:, :5], 2, 2.0, 0.0)
    with pytest.raises(ValueError, match=r"2-D arrays.*x\[None, :\]"):
        DK.mlp_kernels("relu", x1[0], x2, 2, 2.0, 0.0)
    with pytest.raises(ValueError, match="sigma_w2 must be a non-negative"):
        DK.mlp_kernels("relu", x1, x2, 2, -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b2 must be a non-negative"):
        DK.mlp_kernels("relu", x1, x2, 2, 1.0, np.nan)
    with pytest.raises(ValueError, match="sigma_w2 must be a scalar"):
        DK.mlp_kernels("relu", x1, x2, 2, np.array([1.0, 2.0]), 0.0)
    with pytest.raises(TypeError, match="x1 has dtype int"):
        DK.mlp_kernels("relu", np.ones((2, 3), int), None, 2, 1.0, 0.0)
    with pytest.raises(KeyError, match="Valid names"):
        DK.mlp_kernels("rleu", x1, x2, 2, 1.0, 0.0)

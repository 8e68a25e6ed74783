"""New values of sigma, mu and params must never retrace (only shapes are static).

``phi`` counts how often it is *traced* (called with a JAX tracer); eager
calls with concrete arrays, such as the one-off elementwise probe, are not
traces and are not counted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsig
from jaxsig.batch import moments_batch, signature_batch

TRACES = {"n": 0}


def counted(x, p):
    """``a x sigmoid(b x)``, counting traces."""
    if isinstance(x, jax.core.Tracer):
        TRACES["n"] += 1
    return p["a"] * x * jax.nn.sigmoid(p["b"] * x)


def _traces_for(call, values):
    """Traces caused by each call after the first (which may compile)."""
    call(*values[0])
    before = TRACES["n"]
    assert before > 0, "the counter must see the first trace"
    for v in values[1:]:
        jax.block_until_ready(call(*v))
    return TRACES["n"] - before


VALUES = [
    (0.7, 0.0, 1.0, 1.0),
    (1.9, 0.4, 2.0, 0.5),
    (0.05, -1.3, 0.3, 3.0),
]


def _params(a, b):
    return {"a": a, "b": b}


def test_signature_new_values_do_not_retrace():
    def call(sigma, mu, a, b):
        s = jaxsig.signature(counted, sigma, params=_params(a, b), mu=mu)
        # The values do change: a sanity check that the call really ran.
        np.testing.assert_allclose(float(s.alpha_plus), a if b > 0 else 0.0)
        return s

    assert _traces_for(call, VALUES) == 0


def test_moments_new_values_do_not_retrace():
    def call(sigma, mu, a, b):
        return jaxsig.moments(counted, jnp.asarray([sigma, 2 * sigma]), params=_params(a, b), mu=mu)

    assert _traces_for(call, VALUES) == 0


def test_user_jit_new_values_do_not_retrace():
    @jax.jit
    def loss(sigma, mu, a, b):
        m = jaxsig.moments(counted, sigma, params=_params(a, b), mu=mu)
        return m.g2**2 + m.m1**2

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
    assert _traces_for(loss, [tuple(map(jnp.float64, v)) for v in VALUES]) == 0
    assert _traces_for(grad, [tuple(map(jnp.float64, v)) for v in VALUES]) == 0


def test_batch_new_values_do_not_retrace():
    def call(sigma, mu, a, b):
        p = {"a": np.full(3, a), "b": np.array([b, 2 * b, 3 * b])}
        return moments_batch(counted, p, sigma, mu=mu, chunk_size=2)

    assert _traces_for(call, VALUES) == 0


def test_signature_batch_new_values_do_not_retrace():
    def call(sigma, mu, a, b):
        p = {"a": np.full(2, a), "b": np.array([b, 2 * b])}
        return signature_batch(counted, p, sigma, mu=mu)

    assert _traces_for(call, VALUES[:2]) == 0


@pytest.mark.parametrize("new_shape", [(5,), (3, 1)])
def test_new_shapes_do_retrace(new_shape):
    # The counter is not blind: a new shape is a new program.
    jaxsig.moments(counted, 1.0, params=_params(1.0, 1.0))
    before = TRACES["n"]
    jaxsig.moments(counted, jnp.full(new_shape, 1.1), params=_params(1.0, 1.0))
    assert TRACES["n"] > before


def _shifted_relu(x):
    if isinstance(x, jax.core.Tracer):
        TRACES["n"] += 1
    return jnp.maximum(x - 0.3, 0.0) + jnp.maximum(x - 1.7, 0.0)


def test_moments_new_kink_sets_do_not_retrace():
    # Kinks are data (padded slots): the same function with other kink positions,
    # or a new Activation object around it, reuses the compiled program.
    def call(k1, k2):
        act = jaxsig.Activation("two_kinks", _shifted_relu, None, (k1, k2))
        return jaxsig.moments(act, jnp.asarray([0.5, 1.0]))

    assert _traces_for(call, [(0.3, 1.7), (0.31, 1.69), (-0.5, 2.5)]) == 0
    # The declared kinks do cut the grid: only at the true kinks is it exact.
    exact = call(0.3, 1.7)
    off = call(0.31, 1.69)
    assert float(jnp.max(jnp.abs(exact.g1 - off.g1))) > 1e-6


def test_moments_new_sigma_values_and_mu_do_not_retrace():
    def call(s, m):
        return jaxsig.moments("gelu", jnp.asarray([s, 2 * s, 3 * s]), mu=m)

    assert _traces_for(lambda s, m: call(s, m), [(0.5, 0.0), (0.7, 0.3), (1.9, -1.0)]) == 0


def test_new_sigma_shapes_in_one_bucket_do_not_retrace():
    # Eager calls pad sigma to a power-of-two size: 5, 6, 7 and 8 values share a program.
    def call(n):
        out = jaxsig.moments(counted, jnp.linspace(0.5, 2.0, n), params=_params(1.0, 1.0))
        assert out.m2.shape == (n,)
        return out

    assert _traces_for(call, [(5,), (6,), (7,), (8,)]) == 0
    s = jaxsig.signature(counted, jnp.linspace(0.5, 2.0, 6).reshape(2, 3), params=_params(1.0, 1.0))
    ref = jaxsig.signature(counted, 2.0, params=_params(1.0, 1.0))
    assert s.m2.shape == (2, 3)
    # The same sums, blocked differently by the matrix product: equal to a few ulps.
    np.testing.assert_allclose(float(s.m2[1, 2]), float(ref.m2), rtol=4 * np.finfo(np.float64).eps)


def _kinked(x, p):
    """A piecewise-linear activation whose kinks the tests declare, counting traces."""
    if isinstance(x, jax.core.Tracer):
        TRACES["n"] += 1
    return p["a"] * jnp.maximum(x - 0.3, 0.0) + jnp.minimum(x + 0.8, 0.0)


def test_signature_new_kink_sets_share_the_compiled_line():
    # Kinks are data (two slots at least): a new kink set of the same function, or
    # another activation with up to two kinks, reuses both compiled stages; only
    # a new function is traced again (its own sampling stage).
    from jaxsig.core import signature as S

    def act(kinks):
        return jaxsig.Activation("kinked", _kinked, {"a": 1.0}, kinks=kinks)

    def call(kinks):
        return jaxsig.signature(act(kinks), jnp.asarray([0.7, 1.4]), params={"a": 2.0}, mu=0.1)

    s = call((0.3, -0.8))
    np.testing.assert_allclose(np.asarray(s.tv), 3.0, atol=1e-14)  # jumps of 2 and 1 in phi'
    before = S._line_functionals._cache_size()
    assert _traces_for(call, [((0.3, -0.8),), ((0.31, -0.8),), ((-0.8,),), ((0.3,),)]) == 0
    for name in ("relu6", "hard_tanh", "relu"):
        jaxsig.signature(name, jnp.asarray([0.7, 1.4]), mu=0.1)
    assert S._line_functionals._cache_size() == before


def test_signature_compiles_per_activation_only_its_sampling_stage():
    # A new function is traced and compiled in _sample alone; the Gaussian and
    # line stages are shared. A new sigma shape recompiles those, but phi is
    # not traced again (composite rule: its nodes do not depend on sigma).
    from jaxsig.core import signature as S

    sigma = jnp.asarray([0.5, 1.0, 2.0])
    jaxsig.signature("tanh", sigma)
    shared = (S._grid, S._gaussian, S._line_functionals, S._combine)
    sizes = [stage._cache_size() for stage in shared]
    sampled = S._sample._cache_size()
    s = jaxsig.signature(lambda x: x * jnp.tanh(x), sigma)
    assert [stage._cache_size() for stage in shared] == sizes
    assert S._sample._cache_size() == sampled + 1
    np.testing.assert_allclose(np.asarray(s.alpha_plus), 1.0, atol=1e-15)

    jaxsig.signature(counted, sigma, params=_params(1.0, 1.0))
    before = TRACES["n"]
    assert before > 0
    for shape in [(16,), (2, 8), ()]:
        out = jaxsig.signature(counted, jnp.full(shape, 1.3), params=_params(1.0, 1.0))
        assert out.m2.shape == shape
    assert TRACES["n"] == before
    assert S._grid._cache_size() > sizes[0]

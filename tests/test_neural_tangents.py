"""The Neural Tangents adapter: jaxsig's kernels inside ``stax`` against its built-in layers.

Neural Tangents 0.6.5 imports only with ``jax<=0.4.23`` (see the module
docstring), so everything but the error message is skipped where it is absent or
broken. Checked by hand in a separate environment (jax 0.4.23, neural-tangents
0.6.5): all tests here pass there.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsig.integrations import neural_tangents as jnt
from jaxsig.theory import deep_kernels as DK

TOL = 1e-13  # vs stax's closed-form layers, relative to max |K| (measured: 2.7e-15)


def _stax():
    try:
        return pytest.importorskip("neural_tangents").stax
    except ImportError as e:  # installed but broken with this JAX (it raises ImportError, not a skip)
        pytest.skip(f"neural_tangents does not import here: {e}")


def _inputs():
    x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 5))
    return x1, x2


def _net(stax, layer, w_std=1.4, b_std=0.3):
    return stax.serial(
        stax.Dense(512, W_std=w_std, b_std=b_std),
        layer,
        stax.Dense(512, W_std=w_std, b_std=b_std),
        layer,
        stax.Dense(1, W_std=w_std, b_std=b_std),
    )


@pytest.mark.parametrize(
    "name, builtin",
    [
        ("relu", lambda s: s.Relu()),
        ("erf", lambda s: s.Erf()),
        ("gelu", lambda s: s.Gelu(approximate=False)),
        ("leaky_relu", lambda s: s.LeakyRelu(0.01)),
    ],
)
def test_matches_the_builtin_layers(name, builtin):
    stax = _stax()
    x1, x2 = _inputs()
    ours = _net(stax, jnt.elementwise(name))[2](x1, x2, ("nngp", "ntk"))
    ref = _net(stax, builtin(stax))[2](x1, x2, ("nngp", "ntk"))
    scale = float(jnp.max(jnp.abs(ref.ntk)))
    np.testing.assert_allclose(ours.nngp, ref.nngp, rtol=0, atol=TOL * scale)
    np.testing.assert_allclose(ours.ntk, ref.ntk, rtol=0, atol=TOL * scale)


def test_agrees_with_mlp_kernels_and_applies_phi():
    # The same recursion without Neural Tangents: 3 Dense layers, W_std^2 and b_std^2.
    stax = _stax()
    x1, x2 = _inputs()
    layer = jnt.elementwise("softplus_beta", params={"beta": 2.0})
    ours = _net(stax, layer)[2](x1, x2, ("nngp", "ntk"))
    mine = DK.mlp_kernels("softplus_beta", x1, x2, 3, 1.4**2, 0.3**2, params={"beta": 2.0})
    np.testing.assert_allclose(ours.nngp, mine.nngp, rtol=1e-13)
    np.testing.assert_allclose(ours.ntk, mine.ntk, rtol=1e-13)
    _, apply_fn, _ = layer
    x = jnp.linspace(-3.0, 3.0, 7)
    np.testing.assert_allclose(apply_fn((), x), jax.nn.softplus(2.0 * x) / 2.0, rtol=1e-14)


def test_gradient_in_params_through_kernel_fn():
    stax = _stax()
    x1, x2 = _inputs()

    def ntk(a):
        return _net(stax, jnt.elementwise("leaky_relu", params={"negative_slope": a}))[2](x1, x2, "ntk")

    g = jax.jacfwd(ntk)(0.2)
    h = 1e-5
    fd = (ntk(0.2 + h) - ntk(0.2 - h)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-8 * float(jnp.max(jnp.abs(fd))))


def test_a_clear_error_without_neural_tangents(monkeypatch):
    monkeypatch.setitem(sys.modules, "neural_tangents", None)  # import -> ImportError
    with pytest.raises(ImportError, match=r"pip install neural-tangents.*jax<=0\.4\.23"):
        jnt.elementwise("relu")
    with pytest.raises(KeyError, match="Valid names"):
        jnt.elementwise("no_such_activation")

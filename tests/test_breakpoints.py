"""Breakpoints that move with the parameters: the Gaussian statistics are cut at
them and differentiable in them (checked against closed forms and finite differences)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

import jaxsig

# phi(x) = max(x - b, 0): for X = sigma Z, with t = b / sigma and Q = 1 - Phi(t),
#   E[phi] = sigma pdf(t) - b Q,  E[phi'] = Q,  E[phi^2] = (sigma^2 + b^2) Q - b sigma pdf(t),
#   d E[phi] / d b = -Q.
SHIFTED = jaxsig.Activation("shifted_relu", lambda x, p: jnp.maximum(x - p["b"], 0.0), {"b": 0.37}, lambda p: p["b"])


def _closed(b, sigma):
    t = b / sigma
    pdf = jnp.exp(-0.5 * t * t) / jnp.sqrt(2 * jnp.pi)
    q = 1.0 - ndtr(t)
    return sigma * pdf - b * q, q, (sigma**2 + b**2) * q - b * sigma * pdf


def test_moving_breakpoint_is_exact():
    sig = jnp.asarray([0.2, 1.0, 4.0])
    for b in (0.37, -1.21, 2.9):
        m = jaxsig.moments(SHIFTED, sig, params={"b": b})
        m1, g1, m2 = _closed(b, sig)
        np.testing.assert_allclose(m.m1, m1, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(m.g1, g1, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(m.m2, m2, rtol=1e-13, atol=1e-15)


def test_moving_breakpoint_under_jit_and_vmap():
    sig = jnp.asarray([0.5, 2.0])
    bs = jnp.asarray([-0.8, 0.1, 0.37, 1.5])
    out = jax.jit(jax.vmap(lambda b: jaxsig.moments(SHIFTED, sig, params={"b": b}).g1))(bs)
    np.testing.assert_allclose(out, _closed(bs[:, None], sig)[1], rtol=1e-13, atol=1e-15)


def test_gradient_in_the_breakpoint():
    sig = 0.8

    def m1(b):
        return jaxsig.moments(SHIFTED, sig, params={"b": b}).m1

    for b in (0.37, -0.6):
        g = float(jax.jit(jax.grad(m1))(b))
        q = 1.0 - float(ndtr(b / sig))
        np.testing.assert_allclose(g, -q, rtol=1e-12)
        h = 1e-5
        fd = (float(m1(b + h)) - float(m1(b - h))) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-8)


def test_signature_with_concrete_breakpoints_cuts_the_line():
    s = jaxsig.signature(SHIFTED, 1.0, params={"b": 0.37})
    np.testing.assert_allclose(float(s.tv), 1.0, rtol=1e-13)
    np.testing.assert_allclose(float(s.g1), float(_closed(0.37, 1.0)[1]), rtol=1e-13)

"""families.fit: least squares under the Gaussian weight, E[(phi(X; theta) - target(X))^2].

A target inside the family must be recovered to 1e-10 (function values on a grid, and the
parameters where the parametrisation is identifiable); a target outside it must give a local
minimum of the error as SciPy's adaptive quadrature measures it.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from jaxsig import families

X = np.linspace(-5.0, 5.0, 401)
TOL = 1e-10


def member(name, seed):
    fam = families.get(name)
    p = jax.tree_util.tree_map(lambda v: np.asarray(v[0]), fam.random_init(jax.random.key(seed), 1))
    return fam, fam.activation(p)


@pytest.mark.parametrize("name", families.names())
def test_recovers_a_member_of_every_family(name):
    fam, target = member(name, 11)
    f = families.fit(fam, target, 1.0)
    assert f.converged and f.mse <= 1e-24, f
    fitted = jax.jit(fam.fn)(jnp.asarray(X), f.params)
    np.testing.assert_allclose(fitted, jax.jit(fam.fn)(jnp.asarray(X), target.params), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("name", ["scaled_elu", "swish_beta", "blend"])
def test_recovers_the_parameters_off_centre(name):
    fam, target = member(name, 4)
    f = families.fit(fam, target, 1.7, mu=0.4)
    for a, b in zip(jax.tree_util.tree_leaves(f.params), jax.tree_util.tree_leaves(target.params)):
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


def test_elu_is_the_scaled_elu_with_unit_constants():
    f = families.fit("scaled_elu", "elu", sigma=1.0)
    np.testing.assert_allclose([f.params[k] for k in ("lam", "alpha", "shift")], [1.0, 1.0, 0.0], atol=TOL)


def scipy_mse(fn, params, target, sigma=1.0):
    def integrand(x):
        d = float(fn(x, params)) - float(target(x))
        return d * d * math.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    pts = [-14 * sigma, 0.0, 14 * sigma]
    return sum(integrate.quad(integrand, a, b, epsabs=1e-15, epsrel=1e-12, limit=200)[0] for a, b in zip(pts, pts[1:]))


def test_fixed_parameters_stay_and_the_fit_is_a_local_minimum():
    fam = families.get("scaled_elu")
    target = jax.jit(jnp.tanh)
    f = families.fit(fam, "tanh", 1.0, fixed={"shift": 0.0})
    assert float(f.params["shift"]) == 0.0 and f.converged
    fn = jax.jit(fam.fn)
    best = scipy_mse(fn, f.params, target)
    np.testing.assert_allclose(best, f.mse, rtol=1e-8)
    for k in ("lam", "alpha"):
        for h in (-1e-3, 1e-3):
            moved = {**f.params, k: f.params[k] + h}
            assert scipy_mse(fn, moved, target) > best


def test_bad_arguments():
    with pytest.raises(ValueError, match="sigma must be positive"):
        families.fit("scaled_elu", "elu", 0.0)
    with pytest.raises(TypeError, match="Family or an Activation with params"):
        families.fit(jax.numpy.tanh, "elu", 1.0)
    with pytest.raises(ValueError, match="unknown parameter 'gain'"):
        families.fit("scaled_elu", "elu", 1.0, fixed={"gain": 1.0})

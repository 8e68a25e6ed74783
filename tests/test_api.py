"""The public calling conventions: one return type per function, statuses with
reasons, one name resolver, and same-named functions that agree."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsig
from jaxsig import limits


def test_signature_with_aux_is_always_a_pair_and_the_flag_is_deprecated():
    sig, aux = jaxsig.signature_with_aux("tanh", 1.0)
    assert isinstance(sig, jaxsig.Signature) and isinstance(aux, jaxsig.Auxiliary)
    with pytest.warns(DeprecationWarning, match="signature_with_aux"):
        old = jaxsig.signature("tanh", 1.0, with_aux=True)
    assert float(old[0].c) == float(sig.c) and float(old[1].beta_plus) == float(aux.beta_plus)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(jaxsig.signature("tanh", 1.0), jaxsig.Signature)


@pytest.mark.parametrize(
    "phi, field, status",
    [
        ("x^2", "alpha_plus", limits.DIVERGENT),  # slope +inf
        ("x^2", "c", limits.DIVERGENT),  # c needs that slope
        ("tanh", "alpha_plus", limits.CONVERGED),
        ("relu", "tv", limits.CONVERGED),
        ("tanh", "m2", limits.CONVERGED),
    ],
)
def test_every_component_carries_how_it_was_decided(phi, field, status):
    sig, aux = jaxsig.signature_with_aux(phi, 1.0)
    code = int(getattr(aux.status, field))
    assert code == status, (phi, field, limits.Status(code).message)
    if status == limits.DIVERGENT:
        assert np.isinf(float(getattr(sig, field)))
        assert "infinite" in limits.Status(code).message


def test_oscillating_slope_reports_no_limit_and_c_inherits_it():
    def x_sin(x):
        return x * jnp.sin(x)

    sig, aux = jaxsig.signature_with_aux(x_sin, 1.0)
    assert np.isnan(float(sig.alpha_plus)) and int(aux.status.alpha_plus) == limits.NO_LIMIT
    assert float(sig.c) == np.inf and int(aux.status.c) == limits.NO_LIMIT
    assert limits.describe(aux.status.c) == [limits.Status.NO_LIMIT.message]


def test_statuses_batch_under_vmap_and_jit():
    f = jax.jit(jax.vmap(lambda s: jaxsig.signature_with_aux("gelu", s)[1].status.tv))
    assert np.all(np.asarray(f(jnp.array([0.5, 1.0, 2.0]))) <= limits.GEOMETRIC)


def test_one_name_resolver():
    # Activations first everywhere but design, which needs parameters to search.
    assert jaxsig.activations.resolve("selu").params is None
    assert jaxsig.activations.resolve("selu", prefer="family").name == "scaled_elu"
    assert jaxsig.activations.resolve("rational").name == "rational"  # only a family
    s = jaxsig.signature("rational", 1.0)  # a family name works wherever an activation does
    assert np.isfinite(float(s.m2))
    with pytest.raises(KeyError, match="Valid names: .*Valid families: swish_beta"):
        jaxsig.activations.resolve("nope")


def test_report_card_takes_what_signature_takes():
    direct = jaxsig.report_card("gelu", sigma=1.5)
    via = jaxsig.report_card(*jaxsig.signature_with_aux("gelu", 1.5), 1.5)
    assert float(direct.contraction.value) == float(via.contraction.value)
    with pytest.raises(TypeError, match="needs its Auxiliary"):
        jaxsig.report_card(jaxsig.signature("gelu", 1.5))


def test_flax_initialisers_are_callable_and_unpack():
    pytest.importorskip("flax")
    from jaxsig import flax as jflax

    init = jflax.variance_preserving_init("relu")
    w = init(jax.random.key(0), (256, 256))
    assert w.shape == (256, 256) and float(w.var() * 256) == pytest.approx(2.0, rel=0.05)
    kernel_init, bias_init = init
    assert float(jnp.sum(bias_init(jax.random.key(1), (4,)))) == 0.0
    with pytest.raises(TypeError):
        jflax.critical_init("tanh", 0.05)  # q is keyword-only, as in dynamics.critical_init's q=

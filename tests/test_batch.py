"""signature_batch / moments_batch: sharding, chunking, padding, errors.

The multi-device tests run in a subprocess with four forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``): the flag must be set
before JAX initialises its backend, which the parent process already did.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsig
from jaxsig.batch import moments_batch

EPS = float(np.finfo(np.float64).eps)
BETAS = np.array([0.5, 0.8, 1.0, 1.7, 2.9])
SIGMAS = np.array([0.3, 1.0, 2.5])
MU = 0.3


#: Rows of a batch against single calls, or chunks of different shapes: the
#: Gaussian sums are matrix products whose summation order XLA picks per shape,
#: so they agree to a few ulps (bitwise for equal shapes: 4 devices vs 1 below).
ULPS = 16 * EPS


def _max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same_inf = np.isinf(a) & (a == b)
    d = np.where(same_inf, 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1.0))
    return float(np.max(d))


def test_g1_is_one_half_at_mu_zero():
    m = moments_batch("swish_beta", {"beta": BETAS}, SIGMAS)
    np.testing.assert_allclose(np.asarray(m.g1), 0.5, atol=1e-14)
    # m1 scales: E[swish(beta X) / beta] = m1_swish(beta sigma) / beta.
    want = np.stack([np.asarray(jaxsig.moments("swish", b * SIGMAS).m1) / b for b in BETAS])
    np.testing.assert_allclose(np.asarray(m.m1), want, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_odd_rows_sum_to_exactly_zero_at_mu_zero(dtype):
    # The mirrored pairs rearrange the weights, never the values
    # (jaxsig.core.gaussian._weighted): under vmap too, E[tanh(a X)] is exactly 0,
    # not a few ulps of E|phi|; and g1 = a E[tanh'(a X)] matches single calls of tanh.
    act = jaxsig.Activation("tanh_a", lambda x, p: jnp.tanh(p["a"] * x), {"a": 1.0})
    m = moments_batch(act, {"a": BETAS.astype(dtype)}, SIGMAS.astype(dtype))
    assert np.asarray(m.m1).dtype == dtype
    np.testing.assert_array_equal(np.asarray(m.m1), 0.0)
    for i, a in enumerate(BETAS):
        one = jaxsig.moments("tanh", (a * SIGMAS).astype(dtype))
        np.testing.assert_allclose(np.asarray(m.g1)[i], a * np.asarray(one.g1), rtol=64 * np.finfo(dtype).eps)


def test_rows_match_single_calls():
    m = moments_batch("swish_beta", {"beta": BETAS}, SIGMAS, mu=MU, chunk_size=2)
    for i, b in enumerate(BETAS):
        one = jaxsig.moments("swish_beta", SIGMAS, params={"beta": b}, mu=MU)
        for name in jaxsig.Moments._fields:
            assert _max_rel(getattr(m, name)[i], getattr(one, name)) <= ULPS, name


@pytest.mark.parametrize("chunk_size", [1, 3, None])
def test_chunk_size_does_not_change_results(chunk_size):
    # XLA may pick a different summation order for another chunk shape: equal
    # to a few ulps, bitwise for the same chunk shape (tested with 4 devices).
    base = moments_batch("swish_beta", {"beta": BETAS}, SIGMAS, mu=MU, chunk_size=2)
    other = moments_batch("swish_beta", {"beta": BETAS}, SIGMAS, mu=MU, chunk_size=chunk_size)
    for name in jaxsig.Moments._fields:
        assert _max_rel(getattr(other, name), getattr(base, name)) <= ULPS, name


def test_steps_within_a_chunk():
    # Within a chunk, rows go in vmapped steps of step_rows (temporaries ~12 MB),
    # the last step padded: 37 rows in chunks of 20 with steps of 8 (a step that
    # divides neither) equal the rows of one plain vmap to a few ulps.
    from jaxsig.core import batch

    rule = jaxsig.quadrature.Composite()
    assert batch.step_rows("signature", rule, 8, 8) == 32 and batch.step_rows("moments", rule, 8, 8) == 128
    assert batch.step_rows("signature", rule, 8, 4) == 64 and batch.step_rows("moments", rule, 256, 8) == 4
    betas = np.linspace(0.5, 5.0, 37)
    plain = jax.jit(jax.vmap(lambda b: jaxsig.moments("swish_beta", SIGMAS, params={"beta": b}, mu=MU)))(betas)
    original = batch.STEP_BYTES
    try:
        batch.STEP_BYTES = 9 * 8 * 2 * rule.mirrored * (1 + SIGMAS.size) - 1  # 8 rows of moments with 3 sigmas
        assert batch.step_rows("moments", rule, SIGMAS.size, 8) == 8
        stepped = moments_batch("swish_beta", {"beta": betas}, SIGMAS, mu=MU, chunk_size=20)
    finally:
        batch.STEP_BYTES = original
    for name in jaxsig.Moments._fields:
        assert _max_rel(getattr(stepped, name), getattr(plain, name)) <= ULPS, name


def test_under_jit_and_grad_matches_vmap():
    def loss_batch(b):
        m = moments_batch("swish_beta", {"beta": b}, SIGMAS, mu=MU, chunk_size=2)
        return jnp.sum((m.g2 - 0.8) ** 2 + m.m1**2)

    def loss_vmap(b):
        m = jax.vmap(lambda bb: jaxsig.moments("swish_beta", SIGMAS, params={"beta": bb}, mu=MU))(b)
        return jnp.sum((m.g2 - 0.8) ** 2 + m.m1**2)

    b = jnp.asarray(BETAS)
    v1, g1 = jax.jit(jax.value_and_grad(loss_batch))(b)
    v2, g2 = jax.value_and_grad(loss_vmap)(b)
    assert abs(float(v1 - v2)) <= 8 * EPS * abs(float(v2))
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-13, atol=1e-16)
    # ... and against central finite differences of the loss.
    h = 1e-6
    fd = (loss_vmap(b.at[1].add(h)) - loss_vmap(b.at[1].add(-h))) / (2 * h)
    np.testing.assert_allclose(float(g1[1]), float(fd), rtol=1e-6)


def test_callable_with_pytree_params_and_float32():
    def rational(x, p):
        # A smooth, bounded family: a x / (1 + |b| x^2)^(1/2) + c
        return p["ab"][0] * x / jnp.sqrt(1.0 + p["ab"][1] ** 2 * x * x) + p["c"]

    params = {"ab": np.array([[1.0, 0.5], [2.0, 1.0]], np.float32), "c": np.array([0.0, 0.25], np.float32)}
    m = moments_batch(rational, params, np.float32(1.0))
    assert m.m1.dtype == jnp.float32 and m.m1.shape == (2,)
    # Odd part has zero mean at mu = 0: m1 is the offset c.
    np.testing.assert_allclose(np.asarray(m.m1), [0.0, 0.25], atol=1e-6)


def test_python_lists_and_broadcasting():
    m = moments_batch("swish_beta", {"beta": BETAS}, [[0.5], [1.0]], mu=[0.0, 0.2, -0.4])
    assert m.m2.shape == (BETAS.size, 2, 3)
    one = jaxsig.moments(
        "swish_beta", np.array([[0.5], [1.0]]), params={"beta": BETAS[1]}, mu=np.array([0.0, 0.2, -0.4])
    )
    assert _max_rel(m.m2[1], one.m2) <= ULPS


def test_progress_off_prints_nothing(capsys):
    moments_batch("swish_beta", {"beta": BETAS}, 1.0, chunk_size=2)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_progress_on_reports(capsys):
    m = moments_batch("swish_beta", {"beta": BETAS}, 1.0, chunk_size=2, progress=True)
    out = capsys.readouterr()
    assert "moments_batch" in out.out + out.err
    assert m.m1.shape == (BETAS.size,)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(phi="gelu", params={"beta": BETAS}), TypeError, "takes no parameters"),
        (dict(params={"beta": 1.0}), ValueError, "leading batch axis"),
        (dict(params={"beta": np.ones(3), "x": np.ones(2)}), ValueError, "different batch sizes"),
        (dict(params={"beta": np.ones(0)}), ValueError, "empty batch"),
        (dict(params={}), TypeError, "pytree of arrays"),
        (dict(params={"b": BETAS}), TypeError, r"structure of its defaults .*missing \['beta'\]"),
        (dict(params={"beta": np.ones((3, 2))}), ValueError, r"params\['beta'\] .* shape \(\).*got shape \(2,\)"),
        (dict(params={"beta": np.array(["1", "2"])}), TypeError, r"params\['beta'\] .* real number"),
        (dict(chunk_size=0), ValueError, "chunk_size must be a positive integer"),
        (dict(sigma=-1.0), ValueError, "sigma must be positive"),
        (dict(mu=np.inf), ValueError, "mu must be finite"),
        (dict(sigma=np.array([1, 2])), TypeError, "sigma has dtype int"),
        (dict(mesh="cpu"), TypeError, "mesh must be"),
    ],
)
def test_bad_input_errors(kwargs, error, match):
    args = dict(phi="swish_beta", params={"beta": BETAS}, sigma=1.0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        moments_batch(args.pop("phi"), args.pop("params"), **args)


def _exp_family(x, p):
    return jnp.exp(p * x)


def test_non_finite_rows_raise_or_are_flagged():
    # exp(p x) overflows where the Gaussian weight is still positive (|x| < 38 at
    # sigma = 1, where the density underflows to 0) once p > 709 / 38 / 4 (phi'^4).
    params = np.array([0.5, 30.0, 0.2])
    with pytest.raises(ValueError, match="first at row 1"):
        moments_batch(_exp_family, params, 1.0)
    m = moments_batch(_exp_family, params, 1.0, check_finite=False)
    assert list(np.asarray(m.finite)) == [True, False, True]
    assert np.isnan(np.asarray(m.m1)[1])
    # Lognormal mean for the finite rows: E[exp(p Z)] = exp(p^2 / 2).
    np.testing.assert_allclose(np.asarray(m.m1)[[0, 2]], np.exp(params[[0, 2]] ** 2 / 2), rtol=1e-13)
    # Overflow only where the density is exactly 0 does not count: E[exp(3 Z)] = e^4.5.
    np.testing.assert_allclose(np.asarray(moments_batch(_exp_family, np.array([3.0]), 1.0).m1), np.exp(4.5), rtol=1e-12)


_MULTI_DEVICE = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import jaxsig
    from jaxsig.batch import batch_mesh, moments_batch, signature_batch

    assert jax.device_count() == 4, jax.devices()
    betas = np.array([0.5, 0.8, 1.0, 1.3, 1.7, 2.2, 2.9, 3.5, 4.0, 5.0])  # 10 rows: padded to 12
    sigmas, mu = np.array([0.3, 1.0, 2.5]), 0.3

    one = lambda b: jaxsig.signature_with_aux("swish_beta", sigmas, params={"beta": b}, mu=mu)
    on_one = jax.device_put(jnp.asarray(betas), jax.devices()[0])
    ref_sig, ref_aux = jax.jit(jax.vmap(one))(on_one)
    sig, aux = signature_batch("swish_beta", {"beta": betas}, sigmas, mu=mu, chunk_size=2, with_aux=True)

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        d = np.where(np.isinf(a) & (a == b), 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1.0))
        return float(d.max())

    out = {f: rel(getattr(sig, f), getattr(ref_sig, f)) for f in jaxsig.FIELDS}
    out["bitwise"] = all(
        np.array_equal(np.asarray(getattr(sig, f)), np.asarray(getattr(ref_sig, f)))
        for f in jaxsig.FIELDS
    )
    out["finite"] = bool(np.all(np.asarray(aux.finite)))

    # Same chunk shape on one device and on four: bitwise equal.
    m4 = moments_batch("swish_beta", {"beta": betas}, sigmas, mu=mu, chunk_size=2)
    m1 = moments_batch("swish_beta", {"beta": betas}, sigmas, mu=mu, chunk_size=2, mesh=jax.devices()[:1])
    out["moments_bitwise"] = all(
        np.array_equal(np.asarray(getattr(m4, f)), np.asarray(getattr(m1, f))) for f in jaxsig.Moments._fields
    )

    # Traced path (inside jit): one sharded program, result spread over 4 devices.
    mesh = batch_mesh()
    jitted = jax.jit(lambda b: moments_batch("swish_beta", {"beta": b}, sigmas, mu=mu, mesh=mesh, chunk_size=2))
    traced = jitted(jnp.asarray(betas))
    out["traced_devices"] = len(traced.m1.sharding.device_set)
    out["traced"] = max(rel(getattr(traced, f), getattr(m1, f)) for f in jaxsig.Moments._fields)
    out["shape"] = list(sig.m1.shape)
    out["c_values"] = np.asarray(sig.c)[:, 0].tolist()
    out["tv_values"] = np.asarray(sig.tv)[:, 0].tolist()
    out["alpha"] = [np.asarray(sig.alpha_plus).ravel().tolist(), np.asarray(sig.alpha_minus).ravel().tolist()]
    out["betas"] = betas.tolist()
    print(json.dumps(out))
    """
)


def test_sharded_over_four_host_devices_matches_one_device():
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip(),
        JAX_ENABLE_X64="1",
        JAX_PLATFORMS="cpu",
    )
    proc = subprocess.run([sys.executable, "-c", _MULTI_DEVICE], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [10, 3]
    assert out["finite"]
    for name in jaxsig.FIELDS:
        # One vmap over 10 rows against chunks of 2 rows per device: XLA blocks the
        # batched products of the Gaussian sums (two half-line products, so that odd
        # integrands cancel exactly) differently. Measured up to 10 ulps; equal chunk
        # shapes stay bitwise equal (moments_bitwise below).
        assert out[name] <= 16 * EPS, (name, out[name])
    assert out["moments_bitwise"]
    assert out["traced"] <= 4 * EPS and out["traced_devices"] == 4
    # Independent of jaxsig: x sigmoid(beta x) = swish(beta x) / beta, so with
    # u = beta x, c = c(swish) / beta^2 = pi^2 / (6 beta^2), tv = TV(swish') for
    # every beta, and the slopes are (1, 0).
    betas = np.asarray(out["betas"])
    np.testing.assert_allclose(out["c_values"], math.pi**2 / (6 * betas**2), rtol=1e-9)
    np.testing.assert_allclose(out["tv_values"], out["tv_values"][0], rtol=1e-8)  # the tv contract: 1e-8
    np.testing.assert_allclose(out["alpha"][0], 1.0, rtol=4 * EPS)
    np.testing.assert_array_equal(out["alpha"][1], 0.0)

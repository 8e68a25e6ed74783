"""Finite-width simulation of random MLPs, to check the mean-field predictions."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxsig.theory.meanfield._common import (
    check_nonneg,
    check_pos,
    resolve_activation,
)


class MLPSimulation(NamedTuple):
    """Measurements on sampled random networks (one network per batch entry).

    Attributes:
      q: ``(batch, depth + 1)``: mean squared pre-activation ``|h^l|^2 / n`` of
        layer ``l`` (``l = 0`` is the input pre-activation, set to ``q0``).
      gain: ``(batch, depth)``: ``|dh^{l+1}|^2 / |dh^l|^2`` for an
        infinitesimal perturbation ``dh`` of the input pre-activation,
        propagated exactly by the Jacobian (no finite-difference round-off).
    """

    q: jax.Array
    gain: jax.Array


# --- Simulation ----------------------------------------------------------------------------


def simulate_mlp(
    phi,
    sigma_w2,
    sigma_b2,
    *,
    width: int,
    depth: int,
    key,
    q0=1.0,
    batch: int = 1,
    params: Any = None,
    dtype=None,
) -> MLPSimulation:
    """Sample wide random MLPs and measure what mean-field theory predicts.

    For each of ``batch`` independent networks of ``depth`` layers of
    ``width`` units, ``h^{l+1} = W^l phi(h^l) + b^l`` with
    ``W_ij ~ N(0, sW^2 / width)`` and ``b_i ~ N(0, sb^2)``, starting from a
    random pre-activation ``h^0`` scaled so that ``|h^0|^2 / width = q0``
    exactly, and a random tangent ``dh^0``. Records

    * ``q[l] = |h^l|^2 / width`` (prediction: the iterates of
      :func:`variance_map`, with relative fluctuations ``~ sqrt(2 / width)``
      per layer);
    * ``gain[l] = |dh^{l+1}|^2 / |dh^l|^2`` where ``dh^{l+1} = W^l (phi'(h^l) dh^l)``
      (prediction: :func:`perturbation_gain` at ``q[l]``, ``-> chi1``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma_w2, sigma_b2: scalars.
      width, depth, batch: sizes (static).
      key: a ``jax.random`` key.
      q0: input pre-activation variance.
      params: parameters of ``phi``.
      dtype: floating dtype of the simulation (default: that of the inputs).

    Returns:
      :class:`MLPSimulation` with ``q`` of shape ``(batch, depth + 1)`` and
      ``gain`` of shape ``(batch, depth)``.
    """
    for name, v in (("width", width), ("depth", depth), ("batch", batch)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name} must be a positive int, got {name}={v!r}")
    check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    check_pos(q0=q0)
    act, dtype = resolve_activation(phi, params, dtype=dtype, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)
    sw2, sb2, q0 = (jnp.asarray(v, dtype) for v in (sigma_w2, sigma_b2, q0))
    # One compiled network, run once per key: vmapping the per-layer random
    # weights would double the (threefry) compile time for no saving on CPU.
    runs = [_simulate(act, width, depth, dtype.name, k, sw2, sb2, q0) for k in jax.random.split(key, batch)]
    return MLPSimulation(*(jnp.stack(v) for v in zip(*runs)))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _simulate(act, width, depth, dtype_name, key, sw2, sb2, q0):
    dtype = jnp.dtype(dtype_name)
    n = width

    def one(key):
        k0, k1, k2 = jax.random.split(key, 3)
        z = jax.random.normal(k0, (n,), dtype)
        h = z * jnp.sqrt(q0 * n / jnp.sum(z * z))
        dh = jax.random.normal(k1, (n,), dtype)
        dh = dh / jnp.sqrt(jnp.sum(dh * dh))

        def layer(carry, k):
            h, dh = carry
            kw, kb = jax.random.split(k)
            w = jax.random.normal(kw, (n, n), dtype) * jnp.sqrt(sw2 / n)
            b = jax.random.normal(kb, (n,), dtype) * jnp.sqrt(sb2)
            y, dy = jax.jvp(act, (h,), (dh,))
            h_new = w @ y + b
            dh_new = w @ dy
            norm2 = jnp.sum(dh_new * dh_new)
            # Renormalise the tangent: only its growth is recorded, and 30 layers
            # of growth by chi1 could leave the float range.
            dh_new = dh_new / jnp.sqrt(norm2)
            return (h_new, dh_new), (jnp.mean(h_new * h_new), norm2)

        _, (qs, gains) = jax.lax.scan(layer, (h, dh), jax.random.split(k2, depth))
        return jnp.concatenate([jnp.mean(h * h)[None], qs]), gains

    return MLPSimulation(*one(key))

"""Neural Tangents adapter: any jaxsig activation as a ``stax`` layer with exact kernels.

:func:`elementwise` returns the ``(init_fn, apply_fn, kernel_fn)`` triple of
``neural_tangents.stax.Elementwise`` for any activation jaxsig knows (or any
elementwise callable), with the infinite-width kernels it needs supplied by
jaxsig's dual activations:

* ``fn = phi``, applied by ``apply_fn`` to finite networks;
* ``nngp_fn(cov12, var1, var2) = E[phi(u) phi(v)]`` (:func:`jaxsig.kernels.dual`);
* ``d_nngp_fn(cov12, var1, var2) = E[phi'(u) phi'(v)]``
  (:func:`jaxsig.theory.deep_kernels.dual_prime`, whose derivative in the
  correlation includes the Dirac masses at kinks), from which Neural Tangents
  builds the NTK as ``Theta <- nngp_fn + d_nngp_fn * Theta``;

``(u, v)`` centred Gaussian with variances ``var1``, ``var2`` and covariance
``cov12``. So a network such as
``stax.serial(stax.Dense(512), elementwise("gelu"), stax.Dense(1))`` gets its
NNGP and NTK to ~1e-15 with no closed form, also for parametrised activations
(whose parameters stay differentiable), without Neural Tangents' numerical
fallback (``ElementwiseNumerical``, Gauss–Hermite, poor for kinks) or its
autodiff of ``nngp_fn`` (``d_nngp_fn=None``, which it warns about).

Neural Tangents is optional and imported only when :func:`elementwise` is
called. Compatibility, as checked for this module: the latest release,
``neural-tangents 0.6.5`` (requires ``jax>=0.4.16``, ``tensorflow>=2.15``,
``tf2jax>=0.3.5``), installs next to ``jax 0.10.2`` but does not import:
``from jax.core import Jaxpr`` in ``neural_tangents/_src/empirical.py`` raises
``ImportError: cannot import name 'Jaxpr' from 'jax.core'``, and with
``jax 0.4.24`` to ``0.5`` it fails on ``jax.random.KeyArray`` (removed). It
works with ``jax==0.4.23`` (``jaxlib 0.4.23``, ``numpy 1.26.4``,
``scipy 1.11.4``, ``ml_dtypes 0.5.1``, ``tf2jax 0.3.5``, ``tensorflow 2.21``),
where this adapter matches ``stax.Relu`` and ``stax.Erf`` to ~1e-15 (see
``tests/test_neural_tangents.py``). For kernels of fully connected networks
on current JAX, :func:`jaxsig.theory.deep_kernels.mlp_kernels` computes the same
NNGP/NTK recursion without Neural Tangents.

Examples:
  >>> from neural_tangents import stax                   # doctest: +SKIP
  >>> from jaxsig.integrations.neural_tangents import elementwise
  >>> _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=1.5), elementwise("gelu"),
  ...                               stax.Dense(1, W_std=1.5))   # doctest: +SKIP
  >>> kernel_fn(x1, x2, ("nngp", "ntk"))                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxsig.core import activations as _activations
from jaxsig.theory import deep_kernels as _deep
from jaxsig.theory import kernels as _kernels

__all__ = ["elementwise"]

_INSTALL_HINT = (
    "jaxsig.integrations.neural_tangents.elementwise needs Neural Tangents, an optional "
    "dependency: pip install neural-tangents. Note that its latest release (0.6.5) imports "
    "only with jax<=0.4.23 (newer JAX removed jax.core.Jaxpr and jax.random.KeyArray, which "
    "it uses); on current JAX use jaxsig.theory.deep_kernels.mlp_kernels for the NNGP and "
    "NTK of fully connected networks."
)


def _import_stax():
    try:
        from neural_tangents import stax
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} (the import failed with: {e})") from e
    return stax


def elementwise(phi, *, params: Any = None):
    """A ``neural_tangents.stax.Elementwise`` layer for ``phi``, with kernels from jaxsig.

    .. math::
       \\text{nngp\\_fn}(\\Sigma_{12}, \\Sigma_{11}, \\Sigma_{22}) = E[\\phi(u)\\phi(v)], \\qquad
       \\text{d\\_nngp\\_fn}(\\Sigma_{12}, \\Sigma_{11}, \\Sigma_{22}) = E[\\phi'(u)\\phi'(v)],

    with ``(u, v) ~ N(0, [[S11, S12], [S12, S22]])``, computed by
    :func:`jaxsig.kernels.dual` at ``q = S11``, ``q2 = S22`` and
    ``c = S12 / sqrt(S11 S22)`` (:func:`jaxsig.theory.deep_kernels.correlation`).

    Args:
      phi: a registered name (``"gelu"``), an :class:`~jaxsig.Activation`, or an
        elementwise callable ``phi(x)`` / ``phi(x, params)``.
      params: parameters of ``phi`` (pytree), overriding an Activation's defaults.
        They are closed over by the layer; under ``jax.grad`` of a loss built
        from ``kernel_fn``, traced values here are differentiated through.

    Returns:
      ``(init_fn, apply_fn, kernel_fn)``, as every ``stax`` layer; combine it
      with ``stax.serial``, ``stax.Dense`` and the rest.

    Raises:
      ImportError: Neural Tangents is not installed or does not import with the
        installed JAX (the message says which versions work).
      KeyError: ``phi`` names no registered activation (the message lists them).
    """
    act = _activations.as_activation(phi, params)
    stax = _import_stax()
    p = act.params

    def fn(x):
        return act(x, p)

    def nngp_fn(cov12, var1, var2):
        c = _deep.correlation(cov12, var1, var2)
        return _kernels.dual(act, c, q=jnp.maximum(var1, 0.0), q2=jnp.maximum(var2, 0.0), params=p)

    def d_nngp_fn(cov12, var1, var2):
        c = _deep.correlation(cov12, var1, var2)
        return _deep.dual_prime(act, c, q=jnp.maximum(var1, 0.0), q2=jnp.maximum(var2, 0.0), params=p)

    # stax names the layer after fn.
    fn.__name__ = nngp_fn.__name__ = f"jaxsig_{act.name}".replace("^", "pow")
    return stax.Elementwise(fn=fn, nngp_fn=nngp_fn, d_nngp_fn=d_nngp_fn)

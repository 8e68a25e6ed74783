"""Signatures of large parameter batches: chunked, and sharded over every device.

:func:`signature_batch` computes, for ``B`` parameter sets ``p_1..p_B`` of one
activation family,

.. math:: S_\\sigma(\\phi(\\cdot; p_b)), \\quad b = 1..B,

each exactly as :func:`jaxsig.signature` would (same rule, same numbers), with a
leading batch axis on every field. :func:`moments_batch` does the same for
:func:`jaxsig.moments`.

How the work is laid out:

* **Devices.** The batch axis is split over a 1-D :class:`jax.sharding.Mesh`
  (default: all of ``jax.devices()``, axis ``"batch"``) with
  ``NamedSharding(mesh, P("batch"))``; ``sigma`` and ``mu`` are replicated. Each
  device runs ``jax.vmap(signature)`` on its own rows inside
  :func:`jax.shard_map`, so there is no communication and every row is
  computed by the same program as on one device.
* **Memory.** Rows go through in chunks of ``chunk_size`` per device (default
  at most 1024), so memory stays bounded however large ``B`` is. On CPU, within
  a chunk, :func:`jax.lax.map` vmaps over steps of a few dozen rows
  (:func:`step_rows`), so that XLA's temporaries stay small (about
  :data:`STEP_BYTES`): a program that touches hundreds of MB of fresh pages
  on every call spends more time in page faults than in arithmetic.
  Accelerators, whose allocators keep their memory pooled, take a chunk's rows
  in one vmapped step. The batch
  is padded with copies of its last row to a multiple of
  ``devices * chunk_size``; the padding is computed and discarded.
* **Progress.** Called eagerly (concrete inputs), chunks are dispatched from a
  Python loop, each result is copied to the host as it arrives, and
  ``progress=True`` shows a bar (tqdm if installed, else rich, else plain
  lines on stderr). Inside ``jax.jit`` or ``jax.grad`` the same sharded program
  runs as one traced computation, with chunks looped by :func:`jax.lax.map`.

Multi-host use: start every process with :func:`jax.distributed.initialize`
*before* any other JAX call, then run the same script on every process::

    import jax, numpy as np, jaxsig
    jax.distributed.initialize()  # coordinator/process ids from the cluster env
    betas = np.linspace(0.5, 5.0, 1_000_000)           # identical on every process
    sig = jaxsig.signature_batch("swish_beta", {"beta": betas}, [0.5, 1.0, 2.0],
                                 chunk_size=4096)

Every process passes the *full* host batch (same values, e.g. built from the
same seed); the default mesh spans ``jax.devices()``, which after
``initialize`` lists the devices of all hosts, and each process only copies to
its own devices the rows those devices own. Each chunk's result is gathered
to every process (:func:`jax.experimental.multihost_utils.process_allgather`),
so every process returns the full result. Inside ``jit``/``grad`` the result
is instead a global array sharded over the mesh.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsig.core import _progress, quadrature
from jaxsig.core import activations as _activations
from jaxsig.core._compile import stage
from jaxsig.core._numerics import is_concrete
from jaxsig.core._validate import check_params, check_range, working_dtype
from jaxsig.core.signature import Moments, moments, signature_with_aux

__all__ = ["signature_batch", "moments_batch", "batch_mesh", "step_rows", "AXIS", "DEFAULT_CHUNK", "STEP_BYTES"]

AXIS = "batch"
"""Name of the mesh axis the parameter batch is sharded over."""

DEFAULT_CHUNK = 1024
"""Largest number of rows a device computes at once when ``chunk_size=None``."""

STEP_BYTES = 12 * 2**20
"""About the temporary memory of one vmapped step of a chunk (:func:`step_rows`).

Small enough that the allocator serves it from memory it already holds on every
call. Measured on 2 CPU cores, 2,000 Swish-beta sets x 8 sigmas, float64: a
``signature`` step of all 2,000 rows touches about 460 MB of fresh pages per
call (117,000 page faults) and takes 382 ms, steps of 32 rows take 253 ms with
none; ``moments`` 86 ms -> 36 ms."""


def step_rows(kind: str, rule, n_sigma: int, itemsize: int) -> int:
    """Rows per vmapped step: the largest power of two whose estimated
    temporaries fit :data:`STEP_BYTES`.

    Per row, ``itemsize * (n_gauss * (1 + n_sigma) + 8 * n_line)`` bytes: the
    Gaussian nodes' values and one weighted row per ``sigma``, and (``kind ==
    "signature"``) about eight arrays on the line of :meth:`Composite.line`. With
    the default rule and 8 sigmas in float64: 32 rows for ``signature``, 128 for
    ``moments``.
    """
    base = rule if isinstance(rule, quadrature.Composite) else quadrature.Composite()
    n_gauss = 2 * base.mirrored
    n_line = base.line(np.float64).x.size if kind == "signature" else 0
    per_row = itemsize * (n_gauss * (1 + n_sigma) + 8 * n_line)
    return 1 << max(0, (STEP_BYTES // per_row).bit_length() - 1)


def batch_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D mesh with axis ``"batch"`` over ``devices`` (default: ``jax.devices()``).

    After :func:`jax.distributed.initialize`, ``jax.devices()`` lists the
    devices of every process, so the default mesh spans all hosts.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must be a non-empty sequence of jax.Device")
    return Mesh(np.asarray(devices), (AXIS,))


def signature_batch(
    phi,
    params: Any,
    sigma=1.0,
    *,
    mu=0.0,
    rule: Optional[Union[quadrature.Rule, str]] = None,
    with_aux: bool = False,
    chunk_size: Optional[int] = None,
    mesh: Optional[Union[Mesh, Sequence[jax.Device]]] = None,
    progress: bool = False,
    check_finite: bool = True,
):
    """Signatures ``S_sigma(phi(.; p_b))`` of a batch of parameter sets ``p_b``.

    Row ``b`` of every field equals
    ``jaxsig.signature(phi, sigma, params=p_b, mu=mu, rule=rule)``: ``m1 =
    E[phi(X; p_b)]``, ``g1 = E[phi'(X; p_b)]``, ``g2 = sqrt(E[phi'(X; p_b)^2])``,
    ``m2 = E[phi(X; p_b)^2]``, ``eta = m2 - m1^2 - sigma^2 g1^2`` at
    ``X = mu + sigma Z``, the asymptotic slopes ``lim phi(x; p_b)/x``, ``tv =
    TV(phi'(.; p_b))`` and the tail-compensated integral ``c``. The batch is
    sharded over ``mesh`` and computed ``chunk_size`` rows per device at a time.

    Args:
      phi: a parametrised activation: a registered name (``"swish_beta"``), an
        :class:`~jaxsig.activations.Activation` with parameters, or a callable
        ``phi(x, params)``. Define it once: compiled code is cached per function.
      params: a pytree of arrays with a common leading batch axis of size ``B``
        (``{"beta": betas}`` with ``betas.shape == (B,)``).
      sigma: input scale(s) ``> 0``, shared by every row; any shape,
        broadcast with ``mu``.
      mu: input mean(s), shared by every row.
      rule: quadrature rule, as in :func:`jaxsig.signature`.
      with_aux: also return the :class:`~jaxsig.Auxiliary` quantities.
      chunk_size: rows each device computes per call (its inputs and outputs;
        on CPU, within it rows go in vmapped steps of :func:`step_rows`, the last
        one padded). Default: ``min(rows per device, 1024)``, balanced over chunks.
      mesh: a :class:`jax.sharding.Mesh` (the batch is split over all its axes)
        or a sequence of devices; default :func:`batch_mesh` over all devices.
      progress: show a progress bar over chunks (eager calls only).
      check_finite: raise if ``phi`` or ``phi'`` is non-finite at a quadrature
        node for some row (eager calls only). With ``False`` those rows hold
        ``NaN`` Gaussian statistics and ``Auxiliary.finite = False``.

    Returns:
      A :class:`~jaxsig.Signature` (and :class:`~jaxsig.Auxiliary` if
      ``with_aux``) whose fields have shape ``(B,) + broadcast(sigma, mu).shape``.

    Raises:
      TypeError: ``phi`` takes no parameters, or ``params`` is not a pytree of arrays.
      ValueError: inconsistent batch sizes, ``chunk_size < 1``, ``sigma`` not
        positive and finite, ``mu`` not finite, or non-finite ``phi`` values
        (with ``check_finite``).

    Examples:
      >>> import numpy as np, jaxsig
      >>> s = jaxsig.signature_batch("swish_beta", {"beta": np.array([1.0, 2.0])}, [0.5, 1.0])
      >>> s.g1.shape
      (2, 2)
    """
    out = _batch("signature", phi, params, sigma, mu, rule, chunk_size, mesh, progress, check_finite)
    if with_aux:
        return out
    return out[0]


def moments_batch(
    phi,
    params: Any,
    sigma=1.0,
    *,
    mu=0.0,
    rule: Optional[Union[quadrature.Rule, str]] = None,
    chunk_size: Optional[int] = None,
    mesh: Optional[Union[Mesh, Sequence[jax.Device]]] = None,
    progress: bool = False,
    check_finite: bool = True,
) -> Moments:
    """:func:`jaxsig.moments` for a batch of parameter sets, chunked and sharded.

    Row ``b`` equals ``jaxsig.moments(phi, sigma, params=p_b, mu=mu, rule=rule)``:
    ``m1 = E[phi(X; p_b)]``, ``g1 = E[phi'(X; p_b)]``, ``g2``, ``m2``, ``eta``,
    ``g4 = E[phi'^4]^(1/4)`` and ``dm2/dsigma`` at ``X = mu + sigma Z``. Arguments
    are those of :func:`signature_batch`; fields have shape
    ``(B,) + broadcast(sigma, mu).shape``.
    """
    return _batch("moments", phi, params, sigma, mu, rule, chunk_size, mesh, progress, check_finite)


# --- Input checks ---------------------------------------------------------------


def _resolve_activation(phi):
    act = _activations.as_activation(phi)
    if isinstance(phi, (str, _activations.Activation)) and act.params is None:
        raise TypeError(
            f"activation {act.name!r} takes no parameters, so there is no parameter batch "
            f"to sweep; for many sigma values call jaxsig.signature({act.name!r}, sigmas)"
        )
    return act


def _batch_size(params) -> int:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise TypeError(
            "params must be a pytree of arrays with a leading batch axis, e.g. "
            "{'beta': np.linspace(0.5, 5.0, 1000)}; got no array leaves"
        )
    sizes = set()
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                "every leaf of params needs a leading batch axis; got a scalar leaf. "
                "Stack the parameter sets along axis 0 (np.stack or np.asarray of a list)."
            )
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(
            f"the leaves of params have different batch sizes {sorted(sizes)}; every leaf "
            "must have the same leading axis (one row per parameter set)"
        )
    (size,) = sizes
    if size == 0:
        raise ValueError("params has an empty batch axis (size 0); pass at least one row")
    return int(size)


def _resolve_mesh(mesh) -> Mesh:
    if mesh is None:
        return batch_mesh()
    if isinstance(mesh, Mesh):
        return mesh
    devices = list(mesh) if isinstance(mesh, (list, tuple, np.ndarray)) else None
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(
            "mesh must be a jax.sharding.Mesh or a non-empty sequence of jax.Device "
            f"(e.g. jax.devices()[:2]), got {mesh!r}"
        )
    return batch_mesh(devices)


def _chunk_rows(rows_per_device: int, chunk_size: Optional[int]) -> int:
    if chunk_size is None:
        # Balanced chunks of at most DEFAULT_CHUNK rows: padding stays small.
        n_chunks = math.ceil(rows_per_device / DEFAULT_CHUNK)
        return math.ceil(rows_per_device / n_chunks)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size=}")
    return int(min(chunk_size, rows_per_device))


# --- The sharded program ----------------------------------------------------------


def _one(kind, act, rule, sigma, mu, p):
    act = act.replace(params=p)
    if kind == "signature":
        return signature_with_aux(act, sigma, mu=mu, rule=rule)
    return moments(act, sigma, mu=mu, rule=rule)


@stage(static_argnames=("kind", "act", "rule", "mesh", "step"))
def _sharded(params, sigma, mu, *, kind, act, rule, mesh, step):
    """Rows of ``params`` split over ``mesh``; each device maps over its rows in
    vmapped steps of ``step`` rows.

    ``act`` is static here only through its function, name and kinks: its own
    parameters are replaced by each row's."""
    spec = P(mesh.axis_names)

    def local(p, s, m):
        # Padded to whole steps (copies of the last row): lax.map then compiles
        # no separate remainder.
        rows = jax.tree_util.tree_leaves(p)[0].shape[0]
        p = _pad(p, step * math.ceil(rows / step), jnp)
        out = jax.lax.map(functools.partial(_one, kind, act.value, rule, s, m), p, batch_size=step)
        return jax.tree_util.tree_map(lambda a: a[:rows], out)

    return jax.shard_map(local, mesh=mesh, in_specs=(spec, P(), P()), out_specs=spec)(params, sigma, mu)


def _pad(tree, total, xp):
    def pad(a):
        extra = total - a.shape[0]
        if extra == 0:
            return a
        return xp.concatenate([a, xp.repeat(a[-1:], extra, axis=0)], axis=0)

    return jax.tree_util.tree_map(pad, tree)


def _put(host, sharding):
    """A global array from a host array: each process copies only its devices' rows."""
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _fetch(tree):
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def _batch(kind, phi, params, sigma, mu, rule, chunk_size, mesh, progress, check_finite):
    act = _resolve_activation(phi)
    rule = quadrature.get_rule(rule).with_kinks(act.kinks)
    size = _batch_size(params)
    # Each row must be a parameter set of the activation: its defaults' structure and shapes.
    check_params(act.name, params, act.params, batched=True)
    mesh = _resolve_mesh(mesh)
    n_dev = mesh.size
    dtype = working_dtype({"sigma": sigma, "mu": mu}, params)
    n_sigma = math.prod(np.broadcast_shapes(np.shape(sigma), np.shape(mu)))
    chunk = _chunk_rows(math.ceil(size / n_dev), chunk_size)
    # Small steps are for the host's allocator: accelerators keep their memory
    # pooled, and want every row of a chunk at once.
    on_cpu = all(d.platform == "cpu" for d in mesh.devices.flat)
    rows = min(chunk, step_rows(kind, rule, n_sigma, np.dtype(dtype).itemsize)) if on_cpu else chunk
    step = n_dev * chunk
    n_steps = math.ceil(size / step)
    # The static key: the activation without its default parameters (the rows
    # replace them), so that jit hashes only the function, name and kinks.
    static = dict(kind=kind, act=_Static(act.replace(params=None)), rule=rule, mesh=mesh, step=rows)

    if not is_concrete(params, sigma, mu):
        # Inside jit/grad/vmap: one traced program; lax.map bounds the memory.
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
        sigma, mu = jnp.asarray(sigma, dtype), jnp.asarray(mu, dtype)
        shape = jnp.broadcast_shapes(sigma.shape, mu.shape)
        sigma, mu = jnp.broadcast_to(sigma, shape), jnp.broadcast_to(mu, shape)
        out = _sharded(_pad(params, n_steps * step, jnp), sigma, mu, **static)
        return jax.tree_util.tree_map(lambda a: a[:size], out)

    sigma, mu = np.asarray(sigma, dtype), np.asarray(mu, dtype)
    check_range("sigma", sigma, low=0.0, strict=True, hint="the input scale: pre-activations are mu + sigma * Z")
    check_range("mu", mu)
    shape = np.broadcast_shapes(sigma.shape, mu.shape)
    replicated = NamedSharding(mesh, P())
    sigma_d = _put(np.broadcast_to(sigma, shape).copy(), replicated)
    mu_d = _put(np.broadcast_to(mu, shape).copy(), replicated)
    host = _pad(jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), params), n_steps * step, np)
    rows = NamedSharding(mesh, P(mesh.axis_names))

    pieces, pending = [], None
    with _progress.progress(size, progress, f"jaxsig.{kind}_batch") as advance:
        for j in range(n_steps):
            part = jax.tree_util.tree_map(lambda a, j=j: _put(a[j * step : (j + 1) * step], rows), host)
            out = _sharded(part, sigma_d, mu_d, **static)
            # Fetch the previous chunk while this one computes.
            if pending is not None:
                pieces.append(_fetch(pending))
                advance(n=min(step, size - (j - 1) * step))
            pending = out
        pieces.append(_fetch(pending))
        advance(n=size - (n_steps - 1) * step)

    out = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0)[:size], *pieces)
    finite = out[1].finite if kind == "signature" else out.finite
    if check_finite and not np.all(finite):
        bad = np.flatnonzero(~np.all(np.reshape(finite, (size, -1)), axis=1))
        raise ValueError(
            f"phi {act.name!r} returned non-finite values (or derivatives) at quadrature nodes "
            f"for {bad.size} of {size} parameter sets, first at row {bad[0]}. Make phi "
            "overflow-safe, narrow the grid with rule=jaxsig.quadrature.Composite(x_max=...), "
            "or pass check_finite=False to get NaN in those rows."
        )
    out = jax.tree_util.tree_map(jnp.asarray, out)
    return out


class _Static:
    """Wraps an activation for ``jit``'s static arguments, hashed by its function,
    name and kinks (Activation objects compare by identity, and the CLI or a user
    may build a new one for the same function on every call)."""

    def __init__(self, value):
        self.value = value
        self._key = (value.fn, value.name, tuple(value.kinks))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Static) and self._key == other._key

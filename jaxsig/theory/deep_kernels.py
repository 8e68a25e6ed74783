"""Infinite-width kernels of deep fully connected networks, from the dual activation.

A network of ``depth`` Dense layers with the activation ``phi`` between them,

.. math:: h^1(x) = \\frac{\\sigma_w}{\\sqrt d} W^1 x + \\sigma_b b^1, \\qquad
          h^{l+1}(x) = \\frac{\\sigma_w}{\\sqrt n} W^{l+1} \\phi(h^l(x)) + \\sigma_b b^{l+1},

with all entries of ``W^l`` and ``b^l`` i.i.d. ``N(0, 1)`` (the "NTK
parameterisation" of neural-tangents' ``stax.Dense(n, W_std, b_std)``,
``sigma_w2 = W_std^2``, ``sigma_b2 = b_std^2``), has, as the widths ``n -> inf``,
Gaussian last pre-activations ``h^L`` with covariance the NNGP kernel ``K_L``,
and a gradient-descent tangent kernel ``Theta_L = sum_theta dh^L/dtheta dh^L/dtheta``
that converges to the NTK. Both follow one recursion (Neal 1996; Lee et al.
2018; Jacot et al. 2018):

.. math::
   K_1(x, y) = \\sigma_w^2 \\frac{x \\cdot y}{d} + \\sigma_b^2, \\qquad \\Theta_1 = K_1,

   K_{l+1}(x, y) = \\sigma_w^2\\, E[\\phi(u)\\phi(v)] + \\sigma_b^2, \\qquad
   \\Theta_{l+1}(x, y) = K_{l+1}(x, y) + \\sigma_w^2\\, E[\\phi'(u)\\phi'(v)]\\, \\Theta_l(x, y),

where ``(u, v)`` is the centred Gaussian pair with ``Var u = K_l(x, x)``,
``Var v = K_l(y, y)``, ``Cov(u, v) = K_l(x, y)``. The two expectations are the
dual activation and its derivative, :func:`jaxsig.kernels.dual` with
``derivative=False`` and ``True``, so no closed form is needed: ReLU gives Cho &
Saul's arc-cosine recursion and erf Williams' arcsine one (to ``6e-15``
relative over ten layers in the tests).

Gradients. Everything is differentiable: in the inputs, ``sigma_w2``,
``sigma_b2`` and the activation's parameters. The NTK needs, besides, the
derivative of ``E[phi'(u) phi'(v)]`` in the correlation, which by Price's
theorem is ``sqrt(q1 q2) E[phi''(u) phi''(v)]`` with ``phi''`` a distribution.
For activations whose ``phi'`` jumps (ReLU, leaky ReLU, SELU, hard tanh, ...)
this module adds the Dirac masses of ``phi''`` at the kinks that autodiff of
``phi'`` cannot see, so NTK gradients are exact for those too (ReLU: equal to
autodiff of the closed-form recursion to ``1e-10``).

References:
  Neal, "Bayesian Learning for Neural Networks", 1996.
  Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein, "Deep neural
  networks as Gaussian processes", ICLR 2018.
  Jacot, Gabriel & Hongler, "Neural tangent kernel", NeurIPS 2018.
  Novak et al., "Neural Tangents: fast and easy infinite neural networks in
  Python", ICLR 2020 (the parameterisation and ``stax`` conventions).
"""

from __future__ import annotations

import functools
import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core._numerics import is_concrete
from jaxsig.theory import kernels as _kernels

__all__ = ["MLPKernels", "mlp_kernels", "mlp_kernels_by_depth", "dual_prime", "correlation"]


class MLPKernels(NamedTuple):
    """NNGP and NTK of the last pre-activations of a deep fully connected network.

    Attributes:
      nngp: ``K_L(x1_i, x2_j)``, the covariance of the infinite-width network's
        outputs, shape ``(n1, n2)``.
      ntk: ``Theta_L(x1_i, x2_j)``, the neural tangent kernel, shape ``(n1, n2)``.
    """

    nngp: jax.Array
    ntk: jax.Array


def mlp_kernels(
    phi,
    x1,
    x2=None,
    depth: int = 2,
    sigma_w2=1.0,
    sigma_b2=0.0,
    *,
    params: Any = None,
) -> MLPKernels:
    """NNGP and NTK of ``depth`` Dense layers with ``phi`` between them (NTK parameterisation).

    .. math::
       K_1 = \\sigma_w^2\\, x_1 \\cdot x_2 / d + \\sigma_b^2, \\quad \\Theta_1 = K_1, \\quad
       K_{l+1} = \\sigma_w^2 E[\\phi(u)\\phi(v)] + \\sigma_b^2, \\quad
       \\Theta_{l+1} = K_{l+1} + \\sigma_w^2 E[\\phi'(u)\\phi'(v)]\\, \\Theta_l,

    with ``(u, v)`` centred Gaussian of covariance
    ``[[K_l(x, x), K_l(x, y)], [K_l(x, y), K_l(y, y)]]``. The network is
    ``stax.serial(Dense(., W_std, b_std), phi, ..., Dense(., W_std, b_std))`` in
    neural-tangents' terms, ``depth`` Dense layers and ``depth - 1``
    activations, with ``sigma_w2 = W_std^2`` and ``sigma_b2 = b_std^2``; the
    kernels are those of its outputs (neural-tangents'
    ``kernel_fn(x1, x2, ("nngp", "ntk"))``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable
        ``phi(x)`` / ``phi(x, params)``.
      x1: inputs, shape ``(n1, d)``.
      x2: inputs, shape ``(n2, d)``; ``None`` means ``x1``.
      depth: number of Dense layers, a Python ``int >= 1`` (``depth = 1`` is
        the linear kernel ``K_1``).
      sigma_w2: weight variance ``W_std^2 >= 0`` (a scalar, may be traced).
      sigma_b2: bias variance ``b_std^2 >= 0`` (a scalar, may be traced).
      params: parameters of ``phi`` (pytree), overriding an Activation's defaults.

    Returns:
      :class:`MLPKernels` with ``nngp`` and ``ntk`` of shape ``(n1, n2)``, in the
      working dtype (that of the inputs, variances and ``params``). Differentiable
      in ``x1``, ``x2``, ``sigma_w2``, ``sigma_b2`` and ``params``; the
      derivative in the correlation uses Price's theorem (exact at ``c = +-1``).

    Raises:
      TypeError: ``depth`` is not an ``int``, or an input has an integer dtype.
      ValueError: ``depth < 1``; ``x1``/``x2`` are not 2-D or their feature
        dimensions differ; ``sigma_w2`` or ``sigma_b2`` is negative, not finite
        or not a scalar (checked when concrete).
      KeyError: ``phi`` names no registered activation (the message lists them).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxsig.theory.deep_kernels import mlp_kernels
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> k = mlp_kernels("relu", x, depth=2, sigma_w2=2.0)
      >>> round(float(k.nngp[0, 1]), 6), round(float(k.ntk[0, 0]), 6)   # 2/(2 pi), 1 + 1
      (0.31831, 2.0)
    """
    depth = _check_depth(depth)
    out = _by_depth(*_prepare(phi, x1, x2, sigma_w2, sigma_b2, params, depth))
    return MLPKernels(nngp=out.nngp[-1], ntk=out.ntk[-1])


def mlp_kernels_by_depth(
    phi,
    x1,
    x2=None,
    depth: int = 2,
    sigma_w2=1.0,
    sigma_b2=0.0,
    *,
    params: Any = None,
) -> MLPKernels:
    """The NNGP and NTK of :func:`mlp_kernels` for every depth ``1, ..., depth`` at once.

    One pass of the recursion (and one compilation) gives all the layers:
    entry ``l - 1`` is ``(K_l, Theta_l)``, the kernels of a network of ``l``
    Dense layers. Use it to watch the kernels converge (or not) with depth.

    Args and errors are those of :func:`mlp_kernels`.

    Returns:
      :class:`MLPKernels` with ``nngp`` and ``ntk`` of shape ``(depth, n1, n2)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxsig.theory.deep_kernels import mlp_kernels_by_depth
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> k = mlp_kernels_by_depth("relu", x, depth=3, sigma_w2=2.0)
      >>> [round(float(t), 4) for t in k.ntk[:, 0, 0]]   # Theta_l(x, x) = l q for ReLU at sigma_w2 = 2
      [1.0, 2.0, 3.0]
    """
    depth = _check_depth(depth)
    return _by_depth(*_prepare(phi, x1, x2, sigma_w2, sigma_b2, params, depth))


def _prepare(phi, x1, x2, sigma_w2, sigma_b2, params, depth):
    """Check the inputs; return the arguments of :func:`_by_depth`."""
    act = _activations.as_activation(phi, params)
    params = act.params
    for name, v in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
        _check_variance(name, v)
    x2 = x1 if x2 is None else x2
    for name, v in (("x1", x1), ("x2", x2)):
        dt = getattr(v, "dtype", None)
        if dt is not None and not jnp.issubdtype(dt, jnp.floating):
            raise TypeError(f"{name} has dtype {dt}; pass floating-point inputs, e.g. jnp.asarray({name}, float)")
    dtype = jnp.result_type(*jax.tree_util.tree_leaves((x1, x2, sigma_w2, sigma_b2, params)), 0.0)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(0.0)
    x1, x2 = jnp.asarray(x1, dtype), jnp.asarray(x2, dtype)
    if x1.ndim != 2 or x2.ndim != 2:
        raise ValueError(
            f"x1 and x2 must be 2-D arrays (batch, features), got shapes {x1.shape} and "
            f"{x2.shape}; for a single input use x[None, :]"
        )
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(
            f"x1 and x2 must have the same number of features, got x1.shape={x1.shape} and x2.shape={x2.shape}"
        )
    if x1.shape[1] == 0:
        raise ValueError("the inputs have no features (d = 0); K_1 = sigma_w2 x1.x2 / d is undefined")
    if params is not None:
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)
    sw2, sb2 = jnp.asarray(sigma_w2, dtype), jnp.asarray(sigma_b2, dtype)
    return act.fn, act.params is not None, tuple(act.kinks), depth, x1, x2, sw2, sb2, params


# --- Checks -----------------------------------------------------------------------------


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
        raise TypeError(
            f"depth must be a Python int (the number of Dense layers), got {type(depth).__name__}: {depth!r}"
        )
    depth = operator.index(depth)
    if depth < 1:
        raise ValueError(f"depth must be at least 1 (the number of Dense layers), got {depth=}")
    return depth


def _check_variance(name, v):
    if not is_concrete(v):
        if jnp.ndim(v) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(v)}")
        return
    a = np.asarray(v)
    if a.ndim != 0:
        raise ValueError(f"{name} must be a scalar variance, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or not (np.isfinite(a) and a >= 0):
        raise ValueError(f"{name} must be a non-negative, finite variance (W_std**2 or b_std**2), got {name}={v!r}")


# --- The recursion ------------------------------------------------------------------------


_HIGHEST = jax.lax.Precision.HIGHEST


_SNAP = 16.0  # |c| within 16 eps of 1 is taken as exactly +-1 (see correlation)


def correlation(cov, q1, q2):
    """``c = cov / sqrt(q1 q2)``, clipped to ``[-1, 1]`` and snapped to ``+-1`` within ``16 eps``.

    The correlation to hand to :func:`jaxsig.kernels.dual` and :func:`dual_prime`
    from a covariance and two variances (broadcast together). Where a variance is 0 the pair
    is degenerate and ``c`` does not enter the expectation (one factor is constant): ``c = 0`` there, with a finite
    gradient (double where). The snap matters for kinked activations:
    ``E[phi'(u) phi'(v)]`` has a square-root singularity at ``c = +-1`` (ReLU's
    ``(pi - arccos c) / (2 pi)``), so the rounding error of ``c`` for ``x = y``
    (``~eps``, as ``K(x, x)`` is computed along two paths) would cost
    ``sqrt(eps) ~ 1e-8`` per layer; within ``16 eps`` of ``+-1`` the value of
    ``c`` is not resolved anyway.

    Args:
      cov: covariance(s) ``Cov(u, v)``.
      q1, q2: variances ``Var u``, ``Var v`` (``>= 0``).

    Returns:
      Array of the broadcast shape, in ``[-1, 1]``.
    """
    den = q1 * q2
    ok = den > 0
    c = jnp.where(ok, cov / jnp.sqrt(jnp.where(ok, den, 1.0)), 0.0)
    c = jnp.clip(c, -1.0, 1.0)
    near = 1.0 - jnp.abs(c) <= _SNAP * jnp.finfo(c.dtype).eps
    # The snapped value does not depend on c: its gradient there is zero,
    # which is what rounding noise deserves.
    return jnp.where(near, jnp.sign(c), c)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _by_depth(fn, has_params, kinks, depth, x1, x2, sw2, sb2, params) -> MLPKernels:
    """``(K_l, Theta_l)`` for ``l = 1, ..., depth``, stacked on a leading axis."""
    act = _activations.Activation(getattr(fn, "__name__", "phi"), fn, None, kinks)
    p = params if has_params else None
    d = x1.shape[1]
    n1, n2 = x1.shape[0], x2.shape[0]
    k12 = sw2 * jnp.matmul(x1, x2.T, precision=_HIGHEST) / d + sb2
    q1 = sw2 * jnp.sum(x1 * x1, axis=1) / d + sb2
    q2 = sw2 * jnp.sum(x2 * x2, axis=1) / d + sb2
    t12 = k12
    if depth == 1:
        return MLPKernels(nngp=k12[None], ntk=t12[None])

    def layer(carry, _):
        k12, t12, q1, q2 = carry
        # One dual call for the cross entries and both diagonals (c = 1 there):
        # (n1 n2 + n1 + n2) pairs per layer.
        c = jnp.concatenate([correlation(k12, q1[:, None], q2[None, :]).ravel(), jnp.ones(n1 + n2, k12.dtype)])
        qa = jnp.concatenate([jnp.broadcast_to(q1[:, None], (n1, n2)).ravel(), q1, q2])
        qb = jnp.concatenate([jnp.broadcast_to(q2[None, :], (n1, n2)).ravel(), q1, q2])
        qa, qb = jnp.maximum(qa, 0.0), jnp.maximum(qb, 0.0)
        e = _kernels.dual(act, c, q=qa, q2=qb, params=p)
        de = _derivative_dual(act, c[: n1 * n2], qa[: n1 * n2], qb[: n1 * n2], p)
        k12_next = sw2 * e[: n1 * n2].reshape(n1, n2) + sb2
        q1_next = sw2 * e[n1 * n2 : n1 * n2 + n1] + sb2
        q2_next = sw2 * e[n1 * n2 + n1 :] + sb2
        t12_next = k12_next + sw2 * de.reshape(n1, n2) * t12
        return (k12_next, t12_next, q1_next, q2_next), (k12_next, t12_next)

    _, (ks, ts) = jax.lax.scan(layer, (k12, t12, q1, q2), None, length=depth - 1)
    return MLPKernels(nngp=jnp.concatenate([k12[None], ks]), ntk=jnp.concatenate([t12[None], ts]))


# --- The derivative dual and its correlation derivative -------------------------------------
#
# The NTK recursion uses D(c) = E[phi'(u) phi'(v)]. Its derivative in c is, by
# Price's theorem, sqrt(q1 q2) E[phi''(u) phi''(v)] with phi'' taken as a
# distribution. :func:`jaxsig.kernels.dual` differentiates D with the smooth part
# of phi'' (autodiff), which for an activation whose phi' jumps (ReLU, leaky
# ReLU, SELU, hard tanh, ...) misses the Dirac masses J_k delta(x - b_k) at its
# kinks b_k: the NTK's gradient in anything that moves c (the variances, the
# inputs, the activation's parameters) would be wrong. For such activations
# D gets its own JVP that adds them:
#
#   E[phi'' phi''] = E[psi(u) psi(v)]
#                  + sum_k J_k [p_u(b_k) E[psi(v) | u = b_k] + p_v(b_k) E[psi(u) | v = b_k]]
#                  + sum_{k,l} J_k J_l p_uv(b_k, b_l),
#
# psi the smooth part of phi'', J_k = phi'(b_k+) - phi'(b_k-), p the Gaussian
# densities. At c = +-1 it is infinite for a jump at 0 (ReLU's
# 1 / (2 pi sqrt(1 - c^2))); there the correlation is snapped (see
# correlation) and carries no tangent, and the term is set to 0.


@functools.lru_cache(maxsize=None)
def _derivatives_of(fn, has_params: bool):
    """``(phi', phi'')`` as functions with ``fn``'s signature (cached: stable for jit caches)."""

    def d(f):
        return lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),))[1]

    if has_params:
        d1 = lambda x, p: d(lambda t: fn(t, p))(x)  # noqa: E731
        d2 = lambda x, p: d(lambda t: d1(t, p))(x)  # noqa: E731
    else:
        d1 = d(fn)
        d2 = d(d1)
    return d1, d2


def _bound(f, params):
    return f if params is None else (lambda x: f(x, params))


_Z_PANELS = np.linspace(-10.0, 10.0, 21)  # conditional expectations: |z| <= 10 (mass 2e-23 beyond)
_GL = np.polynomial.legendre.leggauss(16)


def _conditional_expectation(f, mean, sd, kinks):
    """``E[f(mean + sd Z)]`` with Gauss–Legendre panels in ``z`` split at every kink."""
    dtype = mean.dtype
    zk = (jnp.asarray(kinks, dtype) - mean[..., None]) / sd[..., None]
    edges = jnp.broadcast_to(jnp.asarray(_Z_PANELS, dtype), mean.shape + _Z_PANELS.shape)
    edges = jnp.sort(jnp.concatenate([edges, jnp.clip(zk, -10.0, 10.0)], axis=-1), axis=-1)
    t, w = (jnp.asarray(a, dtype) for a in _GL)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    z = (0.5 * (a + b) + 0.5 * (b - a) * t).reshape(*mean.shape, -1)
    wz = (0.5 * (b - a) * w).reshape(*mean.shape, -1)
    dens = jnp.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    return jnp.sum(wz * dens * f(mean[..., None] + sd[..., None] * z), axis=-1)


def _second_dual(act, c, qa, qb, params):
    """``E[phi''(u) phi''(v)]`` with the kinks' Dirac masses; 0 where ``|c| = 1`` or a variance is 0."""
    d1, d2 = _derivatives_of(act.fn, params is not None)
    kinks = tuple(act.kinks)
    dtype = c.dtype
    ok = (qa > 0) & (qb > 0) & (jnp.abs(c) < 1)
    # Safe stand-ins where the term is discarded (double where: no NaN tangents).
    qa = jnp.where(ok, qa, 1.0)
    qb = jnp.where(ok, qb, 1.0)
    c = jnp.where(ok, c, 0.0)
    smooth = _kernels.dual(
        _activations.Activation("phi''", d1, None, kinks), c, q=qa, q2=qb, params=params, derivative=True
    )
    f1, f2 = _bound(d1, params), _bound(d2, params)
    b = jnp.asarray(kinks, dtype)
    # One-sided values of phi' at b +- h; the error is O(h psi), ~1e-12 in float64.
    h = jnp.maximum(jnp.abs(b), 1.0) * jnp.finfo(dtype).eps ** 0.75
    jump = f1(b + h) - f1(b - h)
    sa, sb, s = jnp.sqrt(qa), jnp.sqrt(qb), jnp.sqrt((1.0 - c) * (1.0 + c))
    total = smooth
    for k in range(len(kinks)):
        pu = jnp.exp(-0.5 * b[k] ** 2 / qa) / (sa * np.sqrt(2.0 * np.pi))
        pv = jnp.exp(-0.5 * b[k] ** 2 / qb) / (sb * np.sqrt(2.0 * np.pi))
        ev = _conditional_expectation(f2, c * sb / sa * b[k], sb * s, kinks)  # E[psi(v) | u = b_k]
        eu = _conditional_expectation(f2, c * sa / sb * b[k], sa * s, kinks)  # E[psi(u) | v = b_k]
        total = total + jump[k] * (pu * ev + pv * eu)
        for m in range(len(kinks)):
            x, y = b[k] / sa, b[m] / sb
            quad = (x * x - 2.0 * c * x * y + y * y) / (s * s)
            total = total + jump[k] * jump[m] * jnp.exp(-0.5 * quad) / (2.0 * np.pi * sa * sb * s)
    return jnp.where(ok, total, 0.0)


def dual_prime(phi, c, *, q=1.0, q2=None, params: Any = None):
    """``E[phi'(u) phi'(v)]`` for a centred Gaussian pair, with an exact derivative in ``c``.

    The value is :func:`jaxsig.kernels.dual` with ``derivative=True``
    (``Var u = q``, ``Var v = q2``, correlation ``c``). Its derivative in ``c``
    is Price's theorem, ``d/dc = sqrt(q q2) E[phi''(u) phi''(v)]``, with
    ``phi''`` including the Dirac masses ``J_k delta(x - b_k)`` at the kinks
    ``b_k`` where ``phi'`` jumps by ``J_k`` (ReLU: ``1 / (2 pi sqrt(1 - c^2))``),
    which :func:`jaxsig.kernels.dual` omits. Use it wherever the NTK is
    differentiated (see the module notes); at ``|c| = 1`` the c-derivative is
    reported as ``0`` (it is infinite for a jump at ``0``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      c: correlation(s) in ``[-1, 1]``, broadcast with ``q`` and ``q2``.
      q: variance of ``u`` (``>= 0``).
      q2: variance of ``v``; ``None`` means ``q``.
      params: parameters of ``phi`` (pytree), differentiable.

    Returns:
      Array of shape ``broadcast(c, q, q2).shape``.

    Examples:
      >>> import jax
      >>> from jaxsig.theory.deep_kernels import dual_prime
      >>> round(float(dual_prime("relu", 0.0)), 6)              # (pi - arccos c) / (2 pi)
      0.25
      >>> round(float(jax.grad(lambda c: dual_prime("relu", c))(0.0)), 6)   # 1 / (2 pi)
      0.159155
    """
    act = _activations.as_activation(phi, params)
    params = act.params
    dtype = jnp.result_type(*jax.tree_util.tree_leaves((c, q, q2, params)), 0.0)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(0.0)
    c, q = jnp.asarray(c, dtype), jnp.asarray(q, dtype)
    q2 = q if q2 is None else jnp.asarray(q2, dtype)
    shape = jnp.broadcast_shapes(c.shape, q.shape, q2.shape)
    c, q, q2 = (jnp.broadcast_to(a, shape) for a in (c, q, q2))
    if params is not None:
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)
    bare = _activations.Activation(act.name, act.fn, None, tuple(act.kinks))
    return _derivative_dual(bare, jnp.clip(c, -1.0, 1.0), q, q2, params)


def _derivative_dual(act, c, qa, qb, params):
    """``E[phi'(u) phi'(v)]``; where ``phi'`` may jump, with the exact c-derivative."""
    if act.kinks:
        return _dual_prime(act, c, qa, qb, params)
    # phi' is continuous: the dual's own Price derivative (phi'' by autodiff) is exact.
    return _kernels.dual(act, c, q=qa, q2=qb, params=params, derivative=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _dual_prime(act, c, qa, qb, params):
    """``E[phi'(u) phi'(v)]`` (:func:`jaxsig.kernels.dual`, ``derivative=True``), exact c-derivative."""
    return _kernels.dual(act, c, q=qa, q2=qb, params=params, derivative=True)


@_dual_prime.defjvp
def _dual_prime_jvp(act, primals, tangents):
    c, qa, qb, params = primals
    dc, dqa, dqb, dparams = tangents
    # Variances and parameters: the dual's own derivative (its rule follows the
    # kinks as they move); the correlation: Price's theorem with the Dirac terms.
    out, t_rest = jax.jvp(
        lambda a, b, p: _kernels.dual(act, c, q=a, q2=b, params=p, derivative=True),
        (qa, qb, params),
        (dqa, dqb, dparams),
    )
    return out, t_rest + jnp.sqrt(qa * qb) * _second_dual(act, c, qa, qb, params) * dc

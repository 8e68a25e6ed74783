"""Gaussian kernels of an activation: dual activations, ``K(x, y)`` and its curvature.

For ``w ~ N(0, I_d)`` the random-feature kernel of ``phi`` is

.. math:: K(x, y) = E_w[\\phi(w \\cdot x)\\, \\phi(w \\cdot y)],

which depends on ``x, y`` only through ``|x|``, ``|y|`` and the cosine
``c = x.y / (|x| |y|)``: ``(u, v) = (w.x, w.y)`` is a centred Gaussian pair with
``Var u = |x|^2``, ``Var v = |y|^2``, ``Cov(u, v) = x.y``. The function of
``(q1, q2, c)`` is the *dual activation* (Daniely, Frostig & Singer 2016),
:func:`dual`; the correlation map of mean-field theory
(:mod:`jaxsig.dynamics`) is built on it.

The mixed Hessian ``grad_x grad_y K = E[phi'(w.x) phi'(w.y) w w^T]`` obeys the
dimension-free bound of the specification (docs/spec.md) (Hölder with exponents ``(4, 4, 2)`` and
``E[(a.w)^2 (b.w)^2] = 1 + 2 (a.b)^2 <= 3`` for unit ``a, b``):

.. math:: \\|\\nabla_x \\nabla_y K\\|_2 \\le \\sqrt 3\\, g_4(|x|)\\, g_4(|y|),
          \\qquad g_4(\\sigma) = E[\\phi'(\\sigma Z)^4]^{1/4}.

A sharp form of this bound (:func:`sharp_hessian_bound`), attained at ``x = y``, is

.. math:: \\|\\nabla_x \\nabla_y K\\|_2 \\le \\sqrt{Q(|x|)\\, Q(|y|)}, \\qquad
          Q(\\sigma) = \\max\\big(E[\\phi'(\\sigma Z)^2 Z^2],\\; E[\\phi'(\\sigma Z)^2]\\big)
          \\le \\sqrt 3\\, g_4(\\sigma)^2.

*Proof.* ``a^T H b = E[phi'(u) phi'(v) (a.w)(b.w)]`` for unit ``a, b``; Cauchy–Schwarz
splits it into ``E[phi'(u)^2 (a.w)^2]`` and its twin. Write
``a.w = alpha Z + beta Z'`` with ``Z = w.x / |x|``, ``Z'`` a standard normal
independent of ``Z``, ``alpha^2 + beta^2 = 1``: then
``E[phi'(u)^2 (a.w)^2] = alpha^2 E[phi'^2 Z^2] + beta^2 E[phi'^2] <= Q(|x|)``. At
``x = y`` (``d >= 2``), ``H = E[phi'(u)^2 w w^T]`` has the eigenvalues
``E[phi'^2 Z^2]`` (along ``x``) and ``E[phi'^2] = g2^2`` (across), so
``||H||_2 = Q(|x|)``. Hölder gives ``Q <= sqrt(3) g4^2``.

The paper's kernel bound, checked
---------------------------------
jaxsig checks the paper's claims rather than repeating them. arXiv:2510.08456
states ``||grad_x grad_y K(x, y)||_op <= C g2(||x||) g2(||y||) ||x|| ||y||`` with
``C = 4`` (:func:`paper_hessian_bound` evaluates the right-hand side). **As
stated, it is false.** At ``x = y`` with ``d >= 2`` the left side is at least
``g2(|x|)^2`` (the eigenvalue across ``x``, above), the right side is
``C g2(|x|)^2 |x|^2``: the inequality fails for *every* activation with
``g2(|x|) > 0`` once ``|x| < 1/sqrt(C) = 1/2``. ReLU: the left side is ``1/2`` at
every scale (``H = E[1{w.x > 0} w w^T] = I/2``), the right side ``2 |x|^2``.

Exactly where it holds: let ``C*(sigma) = max(1, E[phi'^2 Z^2] / E[phi'^2]) / sigma^2 =
Q(sigma) / (sigma^2 g2(sigma)^2)`` (:func:`paper_hessian_constant`). By the sharp
bound, the paper's inequality holds at ``(x, y)`` whenever
``C >= sqrt(C*(|x|) C*(|y|))``, and at ``x = y`` (``d >= 2``) it holds *if and only
if* ``C >= C*(|x|)``. ReLU and leaky ReLU: ``C* = 1/sigma^2`` (holds at ``x = y``
iff ``|x| >= 1/2``); ``x^k``: ``C* = (2k - 1)/sigma^2``.

Normalisations, each settled by the same formulas:

* *Unit-norm inputs* (``|x| = |y| = 1``): the inequality holds for all such pairs
  iff ``E[phi'(Z)^2 Z^2] <= C E[phi'(Z)^2]``. True for every built-in activation
  except ``x^3`` (ratio 5) and ``x^4`` (ratio 7), which fail at ``x = y``.
* *Kernel normalised by* ``|x| |y|``: worse, not better. For ReLU,
  ``K / (|x||y|)`` depends on the cosine alone and its mixed Hessian at ``x = y`` is
  ``(I - x x^T / |x|^2) / (2 |x|^2)``, of norm ``1 / (2|x|^2)``: the inequality
  fails for ``|x| < 2^{-1/2}``.
* *Where* ``g2`` *is evaluated*: ReLU's ``g2 = 2^{-1/2}`` at every scale, so no
  choice of the argument of ``g2`` repairs the ReLU counterexample; the factor
  ``|x| |y|`` is the problem. Without it, ``||H|| <= C g2(|x|) g2(|y|)`` holds for
  all ``x, y`` iff ``C >= sup_sigma max(1, E[phi'^2 Z^2] / E[phi'^2])``: with
  ``C = 4`` for every built-in activation except ``x^3`` and ``x^4``. The factor
  ``|x| |y| g2 g2`` does bound the derivative in the cosine,
  ``|dK/dc| = |x| |y| |E[phi'(u) phi'(v)]| <= |x| |y| g2(|x|) g2(|y|)`` (Price and
  Cauchy–Schwarz), which may be what the paper meant.

How the 2-D Gaussian expectations are computed
----------------------------------------------
Write ``u = s1 z1`` and ``v = s2 (c z1 + sqrt(1 - c^2) z2) = s2 r cos(theta - beta)``
with ``(z1, z2) = r (cos theta, sin theta)`` standard normal and
``beta = arccos c``. In these polar coordinates every kink of ``phi`` at ``0``
(ReLU, leaky ReLU, ELU, SELU) lies on one of the four rays ``u = 0``,
``v = 0``, so a product rule that splits the angle there integrates piecewise
smooth integrands exactly, for every ``c`` up to ``+-1``, where the two rays
merge. Kinks away from ``0`` (hard tanh, ReLU6) cross each ray once, at
``r = k / (s1 cos theta)``; the radial rule is split there, node by node. The
angular panels are graded geometrically toward the rays and the radial panels
toward ``r = 0``, so the rule resolves ``phi(s r cos theta)`` for any scale
``s`` (the features of ``tanh(s r cos theta)`` sit at ``r ~ 1/s`` and within
``1/(s r)`` of a ray). Accuracy: ~1e-14 against the closed forms of Cho & Saul
(ReLU) and Williams (erf) over ``q`` from ``1e-4`` to ``1e3``, all ``c``.

Derivatives with respect to ``c`` use Price's theorem,
``d/dc E[f(u) g(v)] = s1 s2 E[f'(u) g'(v)]`` (a custom JVP), exact at
``c = +-1`` where ``d arccos(c)/dc`` is infinite. Second and higher derivatives
in ``c`` therefore use ``phi''`` from autodiff: exact for twice-differentiable
activations; for kinked ones they omit the Dirac contributions of the kinks.
Use :func:`kernel_mixed_hessian`, not ``jax.hessian(kernel)``, for the mixed
Hessian: it is computed from ``phi'`` alone and is exact for every activation.

References:
  Cho & Saul, "Kernel methods for deep learning", NeurIPS 2009 (arc-cosine kernels).
  Williams, "Computing with infinite networks", NeurIPS 1996 (arcsine kernel).
  Daniely, Frostig & Singer, "Toward deeper understanding of neural networks:
  the power of initialization and a dual view on expressivity", NeurIPS 2016.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxsig.core import activations as _activations
from jaxsig.core import quadrature
from jaxsig.core._numerics import derivative, safe_sqrt
from jaxsig.core._validate import check_range, working_dtype
from jaxsig.core.gaussian import expectations
from jaxsig.core.polar import DEFAULT_RULE, PolarRule, polar_nodes, symmetric_products

__all__ = [
    "DEFAULT_RULE",
    "PolarRule",
    "dual",
    "kernel",
    "kernel_mixed_hessian",
    "curvature_bound",
    "sharp_hessian_bound",
    "paper_hessian_bound",
    "paper_hessian_constant",
]


def _split_kinks(kinks):
    # Kinks at 0 lie on the rays the angular rule is split at; the others need
    # radial splits.
    return tuple(sorted({float(k) for k in kinks if float(k) != 0.0}))


def _dual_impl(order, rule, act, s1, s2, c):
    """``E[f(u) f(v)]``, ``f = phi^(order)``, ``u = s1 z1``, ``v = s2 (c z1 + s z2)``."""
    kinks = _split_kinks(act.kinks)
    z1, z2, w, sn = polar_nodes(s1, s2, c, kinks, kinks, rule)
    u = s1 * z1
    v = s2 * (c * z1 + sn * z2)
    return jnp.sum(w * symmetric_products(derivative(act, order), u, v))


_dual = jax.custom_jvp(_dual_impl, nondiff_argnums=(0, 1))


@_dual.defjvp
def _dual_jvp(order, rule, primals, tangents):
    act, s1, s2, c = primals
    dact, ds1, ds2, dc = tangents
    # Scales and parameters: differentiate the rule (the nodes move smoothly).
    out, t_sp = jax.jvp(
        lambda a, b, p: _dual_impl(order, rule, p, a, b, c),
        (s1, s2, act),
        (ds1, ds2, dact),
    )
    # Correlation: Price's theorem, dE/dCov = E[f'(u) f'(v)], Cov = s1 s2 c.
    price = _dual(order + 1, rule, act, s1, s2, c)
    return out, t_sp + s1 * s2 * price * dc


def prepare(phi, params, **arrays):
    """The prepared activation and the working dtype of a kernel computation;
    ``arrays`` are its numeric arguments by name (for dtype checks and messages)."""
    dtype = working_dtype(arrays, _activations.as_activation(phi, params).params)
    return _activations.prepare(phi, params, dtype=dtype), dtype


def dual(phi, c, *, q=1.0, q2=None, params: Any = None, derivative: bool = False, rule: PolarRule = DEFAULT_RULE):
    """Dual activation: ``E[phi(u) phi(v)]`` for a centred Gaussian pair.

    ``(u, v)`` has ``Var u = q``, ``Var v = q2`` (default ``q``) and correlation
    ``c``. With ``derivative=True`` it is ``E[phi'(u) phi'(v)]``, which by
    Price's theorem is ``d/dCov E[phi(u) phi(v)]``.

    Closed forms it reproduces (``q2 = q``, ``theta = arccos c``):
    ReLU, ``q (sin theta + (pi - theta) cos theta) / (2 pi)`` (Cho & Saul);
    erf, ``(2/pi) arcsin(2 c q / (1 + 2 q))`` (Williams).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      c: correlation(s) in ``[-1, 1]`` (values outside are clipped); any shape,
        broadcast with ``q`` and ``q2``.
      q: variance of ``u`` (``>= 0``).
      q2: variance of ``v``; ``None`` means ``q``.
      params: parameters of ``phi`` (pytree), differentiable.
      derivative: use ``phi'`` instead of ``phi``.
      rule: sizes of the polar quadrature (:class:`PolarRule`).

    Returns:
      Array of shape ``broadcast(c, q, q2).shape``. Differentiable in ``c``
      (Price's theorem, exact at ``c = +-1``), ``q``, ``q2`` and ``params``.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.kernels.dual("relu", 0.0, q=2.0)), 6)  # q / (2 pi)
      0.31831
    """
    arrays = {"c": c, "q": q} if q2 is None else {"c": c, "q": q, "q2": q2}
    act, dtype = prepare(phi, params, **arrays)
    c = jnp.asarray(c, dtype)
    q = jnp.asarray(q, dtype)
    q2 = q if q2 is None else jnp.asarray(q2, dtype)
    check_range("q", q, low=0.0, what="a non-negative, finite variance")
    check_range("q2", q2, low=0.0, what="a non-negative, finite variance")
    jnp.broadcast_shapes(c.shape, q.shape, q2.shape)  # a clear error for incompatible shapes
    return _dual_batched(1 if derivative else 0, rule, act, c, q, q2)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _dual_batched(order, rule, act, c, q, q2):
    shape = jnp.broadcast_shapes(c.shape, q.shape, q2.shape)
    flat = [jnp.broadcast_to(a, shape).ravel() for a in (safe_sqrt(q), safe_sqrt(q2), c)]
    return jax.vmap(lambda a, b, cc: _dual(order, rule, act, a, b, cc))(*flat).reshape(shape)


def _norm(x):
    return safe_sqrt(jnp.sum(x * x, axis=-1))


def _prepare_vectors(phi, params, x, y):
    """The prepared activation and the vectors ``x``, ``y`` in the working dtype, checked."""
    act, dtype = prepare(phi, params, x=x, y=y)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    _check_vectors(x, y)
    return act, x, y


def _check_vectors(x, y):
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"x and y must be vectors of the same length, got shapes {x.shape} and {y.shape}; use jax.vmap for batches"
        )


def kernel(phi, x, y, *, params: Any = None, rule: PolarRule = DEFAULT_RULE):
    """Random-feature kernel ``K(x, y) = E_w[phi(w.x) phi(w.y)]``, ``w ~ N(0, I_d)``.

    Computed as the dual activation at ``q = |x|^2``, ``q2 = |y|^2``,
    ``c = x.y / (|x| |y|)`` (see :func:`dual`).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      x, y: vectors of shape ``(d,)``. Use ``jax.vmap`` for batches.
      params: parameters of ``phi``.
      rule: sizes of the polar quadrature.

    Returns:
      Scalar array. Differentiable in ``x``, ``y`` and ``params`` (first
      derivatives exact everywhere, also at ``x`` parallel to ``y``).

    Examples:
      >>> import jax.numpy as jnp, jaxsig
      >>> x = jnp.array([1.0, 0.0]); y = jnp.array([0.0, 1.0])
      >>> round(float(jaxsig.kernels.kernel("relu", x, y)), 6)  # 1 / (2 pi)
      0.159155
    """
    act, x, y = _prepare_vectors(phi, params, x, y)
    return _kernel(rule, act, x, y)


@functools.partial(jax.jit, static_argnums=(0,))
def _kernel(rule, act, x, y):
    nx, ny = _norm(x), _norm(y)
    return _dual(0, rule, act, nx, ny, _cosine(x, y, nx, ny))


def _cosine(x, y, nx, ny):
    den = nx * ny
    ok = den > 0
    return jnp.where(ok, jnp.dot(x, y) / jnp.where(ok, den, 1.0), 1.0)


def kernel_mixed_hessian(phi, x, y, *, params: Any = None, rule: PolarRule = DEFAULT_RULE):
    """Mixed Hessian ``grad_x grad_y K(x, y) = E_w[phi'(w.x) phi'(w.y) w w^T]``.

    With ``e1, e2`` an orthonormal basis of ``span(x, y)`` (``e2`` any unit
    vector orthogonal to ``e1`` when ``y`` is parallel to ``x``), ``z_i = w.e_i``
    and ``P = e1 e1^T + e2 e2^T``, the components of ``w`` orthogonal to the span
    are independent of ``(w.x, w.y)``, so

    .. math:: H = E[\\phi'\\phi'] (I - P) + \\sum_{ij} E[\\phi'(u)\\phi'(v) z_i z_j]\\, e_i e_j^T,

    four 2-D Gaussian expectations. Only ``phi'`` enters, so the result is exact
    for kinked activations too (``jax.hessian`` of :func:`kernel` is not; see the
    module notes), and it is equal to ``jax.jacfwd(jax.grad(kernel, 1), 0)``
    for twice-differentiable ones.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      x, y: vectors of shape ``(d,)``.
      params: parameters of ``phi``.
      rule: sizes of the polar quadrature.

    Returns:
      Array ``(d, d)`` with entries ``d^2 K / dx_i dy_j``.
    """
    act, x, y = _prepare_vectors(phi, params, x, y)
    return _mixed_hessian(rule, act, x, y)


@functools.partial(jax.jit, static_argnums=(0,))
def _mixed_hessian(rule, act, x, y):
    d = x.shape[0]
    dtype = x.dtype
    nx, ny = _norm(x), _norm(y)
    e1 = jnp.where(nx > 0, x / jnp.where(nx > 0, nx, 1.0), jnp.eye(d, dtype=dtype)[0])
    y_perp = y - jnp.dot(y, e1) * e1
    n_perp = _norm(y_perp)
    # Fallback for y parallel to x: the standard basis vector least aligned with
    # e1, orthogonalised. Either choice gives the same H (the integrand does not
    # depend on z2 then).
    j = jnp.argmin(jnp.abs(e1))
    alt = jnp.eye(d, dtype=dtype)[j] - e1[j] * e1
    alt = alt / jnp.maximum(_norm(alt), jnp.finfo(dtype).tiny)
    tiny = 64 * jnp.finfo(dtype).eps * jnp.maximum(ny, jnp.finfo(dtype).tiny)
    use_perp = n_perp > tiny
    e2 = jnp.where(use_perp, y_perp / jnp.where(use_perp, n_perp, 1.0), alt)
    # In the basis (e1, e2): u = nx z1, v = ny (c z1 + s z2), s >= 0.
    a1 = jnp.dot(y, e1)
    a2 = jnp.dot(y, e2)
    c = jnp.where(ny > 0, a1 / jnp.where(ny > 0, ny, 1.0), 1.0)
    c = jnp.clip(c, -1.0, 1.0)
    kinks = _split_kinks(act.kinks)
    z1, z2, w, sn = polar_nodes(nx, ny, c, kinks, kinks, rule)
    u = nx * z1
    v = a1 * z1 + jnp.abs(a2) * z2
    sign2 = jnp.where(a2 < 0, -1.0, 1.0)  # z2 -> -z2 if e2 points against y
    pp = symmetric_products(derivative(act, 1), u, v)  # even in z: the weights z_i z_j are too
    e00 = jnp.sum(w * pp)
    m11 = jnp.sum(w * pp * z1 * z1)
    m12 = jnp.sum(w * pp * z1 * z2) * sign2
    m22 = jnp.sum(w * pp * z2 * z2)
    if d == 1:
        return (m11 * e1[:, None] * e1[None, :]).astype(dtype)

    def outer(a, b):
        return a[:, None] * b[None, :]

    proj = outer(e1, e1) + outer(e2, e2)
    return (
        e00 * (jnp.eye(d, dtype=dtype) - proj)
        + m11 * outer(e1, e1)
        + m12 * (outer(e1, e2) + outer(e2, e1))
        + m22 * outer(e2, e2)
    )


def curvature_bound(phi, x, y, *, params: Any = None, rule=None):
    """Dimension-free bound ``sqrt(3) g4(|x|) g4(|y|)`` on ``||grad_x grad_y K||_2``.

    ``g4(sigma) = E[phi'(sigma Z)^4]^(1/4)`` (:func:`jaxsig.moments`); at
    ``sigma = 0`` it is ``|phi'(0)|``. Infinite when ``phi'`` has no fourth
    moment.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      x, y: vectors of shape ``(d,)``.
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature rule for ``g4`` (see :func:`jaxsig.moments`).

    Returns:
      Scalar array.
    """
    act, x, y = _prepare_vectors(phi, params, x, y)
    # 0 is always a panel edge of the 1-D rule; declaring it as a kink as well
    # would only remove the grid's refinement toward 0 (small |x|).
    rule = quadrature.get_rule(rule).with_kinks(_split_kinks(act.kinks))
    return _curvature_bound(rule, act, x, y)


@functools.partial(jax.jit, static_argnums=(0,))
def _curvature_bound(rule, act, x, y):
    s = jnp.stack([_norm(x), _norm(y)])
    pos = s > 0
    sigma = jnp.where(pos, s, 1.0)
    g4 = expectations(act, rule, sigma, jnp.zeros_like(sigma)).g4
    g4 = jnp.where(pos, g4, jnp.abs(derivative(act, 1)(jnp.zeros((), x.dtype))))
    return math.sqrt(3.0) * g4[0] * g4[1]


# --- The sharp bound, and the paper's bound as stated -------------------------------------------


def _gain_sums(act, rule, sigma):
    """``(E[phi'(sigma Z)^2 Z^2], E[phi'(sigma Z)^2])`` for ``sigma >= 0`` (any shape).

    ``sigma = 0``: both are ``phi'(0)^2``. ``NaN`` where ``phi'`` is not finite at a node.
    """
    pos = sigma > 0
    s = jnp.where(pos, sigma, 1.0)
    x, w = rule.gaussian(s, jnp.zeros_like(s), s.dtype)
    f1 = derivative(act, 1)(x)
    finite = jnp.all(jnp.isfinite(f1), axis=-1)
    f2 = jnp.where(jnp.isfinite(f1), f1 * f1, 0.0)
    z = x / s[..., None]
    a = jnp.sum(w * f2 * z * z, axis=-1)
    b = jnp.sum(w * f2, axis=-1)
    at0 = derivative(act, 1)(jnp.zeros((), sigma.dtype)) ** 2
    a, b = jnp.where(pos, a, at0), jnp.where(pos, b, at0)
    nan = jnp.asarray(jnp.nan, sigma.dtype)
    return jnp.where(finite | ~pos, a, nan), jnp.where(finite | ~pos, b, nan)


def _line_rule(act, rule):
    # 0 is always a panel edge of the 1-D rule (see curvature_bound).
    return quadrature.get_rule(rule).with_kinks(_split_kinks(act.kinks))


def sharp_hessian_bound(phi, x, y, *, params: Any = None, rule=None):
    """The sharp dimension-free bound ``sqrt(Q(|x|) Q(|y|))`` on ``||grad_x grad_y K||_2``.

    ``Q(sigma) = max(E[phi'(sigma Z)^2 Z^2], E[phi'(sigma Z)^2])``; proved in the
    module notes, attained at ``x = y`` in dimension ``d >= 2``, and never above
    :func:`curvature_bound` (``Q <= sqrt(3) g4^2``). At ``sigma = 0``,
    ``Q = phi'(0)^2``.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      x, y: vectors of shape ``(d,)``.
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature rule (see :func:`jaxsig.moments`).

    Returns:
      Scalar array; differentiable in ``x``, ``y`` and ``params``.

    Examples:
      >>> import jax.numpy as jnp, jaxsig
      >>> x = jnp.array([0.3, 0.0, 0.0])
      >>> round(float(jaxsig.kernels.sharp_hessian_bound("relu", x, x)), 6)  # = ||H|| = 1/2
      0.5
    """
    act, x, y = _prepare_vectors(phi, params, x, y)
    return _sharp_bound(_line_rule(act, rule), act, x, y)


@functools.partial(jax.jit, static_argnums=(0,))
def _sharp_bound(rule, act, x, y):
    a, b = _gain_sums(act, rule, jnp.stack([_norm(x), _norm(y)]))
    q = jnp.maximum(a, b)
    return safe_sqrt(q[0] * q[1])


def paper_hessian_bound(phi, x, y, *, C=4.0, params: Any = None, rule=None):
    """The paper's kernel-curvature bound as stated: ``C g2(|x|) g2(|y|) |x| |y|``.

    arXiv:2510.08456 claims ``||grad_x grad_y K(x, y)||_op <= C g2(|x|) g2(|y|) |x| |y|``
    (``C = 4``). jaxsig evaluates the claim rather than relying on it: it is
    false near the origin for every activation (module notes; ReLU at ``x = y``,
    ``|x| < 1/2``: ``||H|| = 1/2 > 2 |x|^2``). It holds at ``(x, y)`` when
    ``C >= sqrt(C*(|x|) C*(|y|))`` (:func:`paper_hessian_constant`). For a bound
    that always holds use :func:`sharp_hessian_bound` or :func:`curvature_bound`.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      x, y: vectors of shape ``(d,)``.
      C: the constant (``> 0``; the paper's is 4).
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature rule for ``g2`` (see :func:`jaxsig.moments`).

    Returns:
      Scalar array; differentiable in ``x``, ``y``, ``C`` and ``params``.

    Examples:
      >>> import jax.numpy as jnp, jaxsig
      >>> x = jnp.array([0.3, 0.0, 0.0])
      >>> round(float(jaxsig.kernels.paper_hessian_bound("relu", x, x)), 6)  # 4 (1/2) 0.3^2 < 1/2
      0.18
    """
    act, dtype = prepare(phi, params, x=x, y=y, C=C)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    _check_vectors(x, y)
    check_range("C", C, low=0.0, strict=True, hint="the paper's constant is 4")
    return _paper_bound(_line_rule(act, rule), act, x, y, jnp.asarray(C, dtype))


@functools.partial(jax.jit, static_argnums=(0,))
def _paper_bound(rule, act, x, y, C):
    n = jnp.stack([_norm(x), _norm(y)])
    _, b = _gain_sums(act, rule, n)
    g2 = safe_sqrt(b)
    return C * g2[0] * g2[1] * n[0] * n[1]


def paper_hessian_constant(phi, sigma, *, params: Any = None, rule=None):
    """The smallest ``C`` for which the paper's bound holds on the sphere ``|x| = |y| = sigma``.

    .. math:: C^*(\\sigma) = \\frac{Q(\\sigma)}{\\sigma^2 g_2(\\sigma)^2}
              = \\frac{\\max(1,\\; E[\\phi'(\\sigma Z)^2 Z^2] / E[\\phi'(\\sigma Z)^2])}{\\sigma^2}.

    In dimension ``d >= 2`` the paper's inequality with constant ``C`` holds at
    ``x = y``, ``|x| = sigma``, if and only if ``C >= C*(sigma)``, and at any ``(x, y)``
    with ``C >= sqrt(C*(|x|) C*(|y|))`` (module notes). ReLU: ``1 / sigma^2``;
    ``x^k``: ``(2k - 1) / sigma^2``. ``inf`` at ``sigma = 0`` unless ``phi'(0) = 0``;
    ``0`` where ``phi' = 0`` almost surely (both sides vanish).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma: radius (radii) ``>= 0``, any shape.
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature rule (see :func:`jaxsig.moments`).

    Returns:
      Array of ``sigma``'s shape; differentiable in ``sigma`` and ``params``.

    Examples:
      >>> import jaxsig
      >>> [round(float(c), 6) for c in jaxsig.kernels.paper_hessian_constant("x^3", [1.0, 2.0])]  # 5 / sigma^2
      [5.0, 1.25]
    """
    act, dtype = prepare(phi, params, sigma=sigma)
    check_range("sigma", sigma, low=0.0, what="a non-negative, finite radius")
    sigma = jnp.asarray(sigma, dtype)
    return _paper_constant(_line_rule(act, rule), act, sigma)


@functools.partial(jax.jit, static_argnums=(0,))
def _paper_constant(rule, act, sigma):
    a, b = _gain_sums(act, rule, sigma)
    ratio = jnp.maximum(1.0, a / jnp.where(b > 0, b, 1.0))
    s2 = sigma * sigma
    c = ratio / jnp.where(s2 > 0, s2, 1.0)
    return jnp.where(b > 0, jnp.where(s2 > 0, c, jnp.inf), jnp.where(jnp.isnan(b), jnp.nan, 0.0))

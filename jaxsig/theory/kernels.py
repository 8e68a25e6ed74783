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
dimension-free bound of SPEC (Hölder with exponents ``(4, 4, 2)`` and
``E[(a.w)^2 (b.w)^2] = 1 + 2 (a.b)^2 <= 3`` for unit ``a, b``):

.. math:: \\|\\nabla_x \\nabla_y K\\|_2 \\le \\sqrt 3\\, g_4(|x|)\\, g_4(|y|),
          \\qquad g_4(\\sigma) = E[\\phi'(\\sigma Z)^4]^{1/4}.

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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import quadrature
from jaxsig.core.signature import moments as _moments

__all__ = [
    "PolarRule",
    "dual",
    "kernel",
    "kernel_mixed_hessian",
    "curvature_bound",
]


class PolarRule(NamedTuple):
    """Sizes of the polar product rule for 2-D Gaussian expectations.

    All entries are static Python numbers (they fix the shapes).

    Attributes:
      angular_levels: geometric levels (ratio 2) toward each end of each
        angular sector; the smallest angular panel is ``2**-levels`` of its
        sector.
      angular_order: Gauss–Legendre nodes per angular panel.
      radial_levels: geometric levels toward ``r = 0`` (smallest panel
        ``[0, 2**-radial_levels]``).
      radial_step: width of the uniform radial panels on ``[1, r_max]``.
      radial_order: Gauss–Legendre nodes per radial panel.
      r_max: radial cut-off; the Gaussian mass beyond is ``exp(-r_max^2 / 2)``.
    """

    angular_levels: int = 10
    angular_order: int = 10
    radial_levels: int = 20
    radial_step: float = 0.75
    radial_order: int = 12
    r_max: float = 10.0


DEFAULT_RULE = PolarRule()


@functools.lru_cache(maxsize=None)
def _legendre01(order: int):
    t, w = np.polynomial.legendre.leggauss(order)
    return 0.5 * (t + 1.0), 0.5 * w


@functools.lru_cache(maxsize=None)
def _angular_reference(levels: int, order: int):
    """Nodes and weights on ``[0, 1]``, panels graded toward both ends."""
    half = 2.0 ** -np.arange(levels, 0, -1)  # 2^-L, ..., 1/2
    edges = np.unique(np.concatenate([[0.0], half, 1.0 - half, [1.0]]))
    t, w = _legendre01(order)
    a, b = edges[:-1, None], edges[1:, None]
    return (a + (b - a) * t).ravel(), ((b - a) * w).ravel()


@functools.lru_cache(maxsize=None)
def _radial_edges(rule: PolarRule) -> np.ndarray:
    inner = 2.0 ** -np.arange(rule.radial_levels, -1, -1)  # 2^-L, ..., 1
    n = max(1, int(math.ceil((rule.r_max - 1.0) / rule.radial_step)))
    outer = np.linspace(1.0, rule.r_max, n + 1)
    return np.unique(np.concatenate([[0.0], inner, outer]))


def _panel_nodes(edges, t, w):
    """Gauss–Legendre nodes/weights on the panels ``edges[..., :-1] -> edges[..., 1:]``."""
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    x = a + (b - a) * t
    return x.reshape(*x.shape[:-2], -1), ((b - a) * w).reshape(*x.shape[:-2], -1)


def _safe_div(num, den):
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), jnp.inf)


def _polar_nodes(s1, s2, c, kinks_u, kinks_v, rule: PolarRule):
    """Nodes ``(z1, z2)`` and weights of a half-plane rule for ``E[F(z)]``.

    ``E[F(z)] ~ sum w (F(z) + F(-z))``: the angle runs over
    ``[-pi/2, pi/2]`` and the reflection ``z -> -z`` covers the other half.
    The angle is split at ``theta_s = arccos(c) - pi/2`` (the ray ``v = 0``),
    and the radius at every nonzero kink of either factor, for both signs.
    Shapes: ``(n_theta, n_r)``.
    """
    dtype = jnp.result_type(s1, s2, c)
    cc = jnp.clip(c, -1.0, 1.0)
    # sqrt(1 - c^2) has an infinite derivative at c = +-1; the c-derivatives of
    # the expectations come from Price's theorem instead (see _dual_jvp), so a
    # zero gradient here (double-where) only keeps NaN out of tangents that are
    # multiplied by a vanishing dc.
    sn = _safe_sqrt((1.0 - cc) * (1.0 + cc))
    # beta = arccos(c), written with atan2 so that c = +-1 is exact.
    beta = jnp.arctan2(sn, cc)
    theta_s = beta - 0.5 * jnp.pi
    t_ref, w_ref = (jnp.asarray(a, dtype) for a in _angular_reference(rule.angular_levels, rule.angular_order))
    lo = -0.5 * jnp.pi
    hi = 0.5 * jnp.pi
    theta = jnp.concatenate([lo + (theta_s - lo) * t_ref, theta_s + (hi - theta_s) * t_ref])
    w_theta = jnp.concatenate([(theta_s - lo) * w_ref, (hi - theta_s) * w_ref])
    cos_t, sin_t = jnp.cos(theta), jnp.sin(theta)
    # Radial breakpoints: u = +-k at r = +-k / (s1 cos theta), and likewise for v.
    a_u = s1 * cos_t
    a_v = s2 * (cc * cos_t + sn * sin_t)
    breaks = []
    for k in kinks_u:
        breaks += [_safe_div(jnp.asarray(k, dtype), a_u), _safe_div(jnp.asarray(-k, dtype), a_u)]
    for k in kinks_v:
        breaks += [_safe_div(jnp.asarray(k, dtype), a_v), _safe_div(jnp.asarray(-k, dtype), a_v)]
    edges = jnp.asarray(_radial_edges(rule), dtype)
    edges = jnp.broadcast_to(edges, theta.shape + edges.shape)
    if breaks:
        # Breakpoints that are not in (0, r_max) collapse onto r_max and add empty
        # panels there (zero weight, and nodes where phi is finite: at r = 0 a
        # singular phi' would make 0 * inf = NaN).
        b = jnp.stack(breaks, axis=-1)
        b = jnp.where(b > 0, jnp.minimum(b, rule.r_max), rule.r_max)
        edges = jnp.sort(jnp.concatenate([edges, b], axis=-1), axis=-1)
    tr, wr = (jnp.asarray(a, dtype) for a in _legendre01(rule.radial_order))
    r, w_r = _panel_nodes(edges, tr, wr)
    w = w_theta[:, None] * w_r * r * jnp.exp(-0.5 * r * r) / (2.0 * jnp.pi)
    return r * cos_t[:, None], r * sin_t[:, None], w, sn


def _symmetric_products(f, u, v):
    """``f(u) f(v) + f(-u) f(-v)``: the integrand over the half-plane and its reflection.

    ``f`` is evaluated once, on the four arrays stacked: one fused kernel
    instead of four, which compiles several times faster for activations
    built from special functions.
    """
    y = f(jnp.stack([u, v, -u, -v]))
    return y[0] * y[1] + y[2] * y[3]


def _nth_derivative(f, n: int):
    for _ in range(n):
        f = (lambda g: lambda x: jax.jvp(g, (x,), (jnp.ones_like(x),))[1])(f)
    return f


def _bind(fn, has_params, params):
    return (lambda x: fn(x, params)) if has_params else fn


def _split_kinks(kinks):
    # Kinks at 0 lie on the rays the angular rule is split at; the others need
    # radial splits.
    return tuple(sorted({float(k) for k in kinks if float(k) != 0.0}))


def _dual_impl(fn, has_params, kinks, order, rule, s1, s2, c, params):
    """``E[f(u) f(v)]``, ``f = phi^(order)``, ``u = s1 z1``, ``v = s2 (c z1 + s z2)``."""
    f = _nth_derivative(_bind(fn, has_params, params), order)
    z1, z2, w, sn = _polar_nodes(s1, s2, c, kinks, kinks, rule)
    u = s1 * z1
    v = s2 * (c * z1 + sn * z2)
    return jnp.sum(w * _symmetric_products(f, u, v))


_dual = jax.custom_jvp(_dual_impl, nondiff_argnums=(0, 1, 2, 3, 4))


@_dual.defjvp
def _dual_jvp(fn, has_params, kinks, order, rule, primals, tangents):
    s1, s2, c, params = primals
    ds1, ds2, dc, dparams = tangents
    # Scales and parameters: differentiate the rule (the nodes move smoothly).
    out, t_sp = jax.jvp(
        lambda a, b, p: _dual_impl(fn, has_params, kinks, order, rule, a, b, c, p),
        (s1, s2, params),
        (ds1, ds2, dparams),
    )
    # Correlation: Price's theorem, dE/dCov = E[f'(u) f'(v)], Cov = s1 s2 c.
    price = _dual(fn, has_params, kinks, order + 1, rule, s1, s2, c, params)
    return out, t_sp + s1 * s2 * price * dc


def _prepare(phi, params, *arrays):
    act = _activations.as_activation(phi, params)
    params = act.params
    leaves = [a for a in arrays if a is not None] + jax.tree_util.tree_leaves(params)
    for name, a in zip(("first", "second", "third"), arrays):
        dt = getattr(a, "dtype", None)
        if dt is not None and not jnp.issubdtype(dt, jnp.floating):
            raise TypeError(
                f"the {name} numeric argument has dtype {dt}; pass floating-point values"
            )
    dtype = jnp.result_type(*leaves, 0.0)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(0.0)
    if params is not None:
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)
    return act, params, dtype


def _safe_sqrt(v):
    # sqrt with a finite (zero) gradient at v = 0 (double-where).
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


def _is_concrete(x):
    return not isinstance(x, jax.core.Tracer)


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
    act, params, dtype = _prepare(phi, params, c, q, q2)
    c = jnp.asarray(c, dtype)
    q = jnp.asarray(q, dtype)
    q2 = q if q2 is None else jnp.asarray(q2, dtype)
    for name, v in (("q", q), ("q2", q2)):
        if _is_concrete(v) and not np.all(np.isfinite(np.asarray(v)) & (np.asarray(v) >= 0)):
            raise ValueError(f"{name} must be a non-negative, finite variance, got {name}={np.asarray(v)}")
    jnp.broadcast_shapes(c.shape, q.shape, q2.shape)  # a clear error for incompatible shapes
    order = 1 if derivative else 0
    return _dual_batched(act.fn, act.params is not None, _split_kinks(act.kinks), order, rule, c, q, q2, params)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _dual_batched(fn, has_params, kinks, order, rule, c, q, q2, params):
    shape = jnp.broadcast_shapes(c.shape, q.shape, q2.shape)
    flat = [jnp.broadcast_to(a, shape).ravel() for a in (_safe_sqrt(q), _safe_sqrt(q2), c)]
    one = lambda a, b, cc: _dual(fn, has_params, kinks, order, rule, a, b, cc, params)  # noqa: E731
    return jax.vmap(one)(*flat).reshape(shape)


def _norm(x):
    return _safe_sqrt(jnp.sum(x * x, axis=-1))


def _check_vectors(x, y):
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"x and y must be vectors of the same length, got shapes {x.shape} and {y.shape}; "
            "use jax.vmap for batches"
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
    act, params, dtype = _prepare(phi, params, x, y)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    _check_vectors(x, y)
    return _kernel(act.fn, act.params is not None, _split_kinks(act.kinks), rule, x, y, params)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _kernel(fn, has_params, kinks, rule, x, y, params):
    nx, ny = _norm(x), _norm(y)
    return _dual(fn, has_params, kinks, 0, rule, nx, ny, _cosine(x, y, nx, ny), params)


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
    act, params, dtype = _prepare(phi, params, x, y)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    _check_vectors(x, y)
    kinks = _split_kinks(act.kinks)
    return _mixed_hessian(act.fn, act.params is not None, kinks, rule, x, y, params)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _mixed_hessian(fn, has_params, kinks, rule, x, y, params):
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
    f1 = _nth_derivative(_bind(fn, has_params, params), 1)
    z1, z2, w, sn = _polar_nodes(nx, ny, c, kinks, kinks, rule)
    u = nx * z1
    v = a1 * z1 + jnp.abs(a2) * z2
    sign2 = jnp.where(a2 < 0, -1.0, 1.0)  # z2 -> -z2 if e2 points against y
    pp = _symmetric_products(f1, u, v)  # even in z: the weights z_i z_j are too
    e00 = jnp.sum(w * pp)
    m11 = jnp.sum(w * pp * z1 * z1)
    m12 = jnp.sum(w * pp * z1 * z2) * sign2
    m22 = jnp.sum(w * pp * z2 * z2)
    if d == 1:
        return (m11 * e1[:, None] * e1[None, :]).astype(dtype)
    outer = lambda a, b: a[:, None] * b[None, :]  # noqa: E731
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
    act, params, dtype = _prepare(phi, params, x, y)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    _check_vectors(x, y)
    # 0 is always a panel edge of the 1-D rule; declaring it as a kink as well
    # would only remove the grid's refinement toward 0 (small |x|).
    rule = quadrature.get_rule(rule).with_kinks(_split_kinks(act.kinks))
    return _curvature_bound(act.fn, act.params is not None, rule, x, y, params)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _curvature_bound(fn, has_params, rule, x, y, params):
    s = jnp.stack([_norm(x), _norm(y)])
    pos = s > 0
    g4 = _moments(fn, jnp.where(pos, s, 1.0), params=params if has_params else None, rule=rule).g4
    f1 = _nth_derivative(_bind(fn, has_params, params), 1)
    g4 = jnp.where(pos, g4, jnp.abs(f1(jnp.zeros((), x.dtype))))
    return math.sqrt(3.0) * g4[0] * g4[1]

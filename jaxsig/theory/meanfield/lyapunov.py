"""Primitive-based Lyapunov functions of the scalar recursion ``x_{t+1} = T(x_t) = phi(a x_t + b)``.

The primitive of the activation and its Bregman divergence about the fixed point
``x* = T(x*)``,

.. math:: F(x) = \\int_0^x \\phi(t)\\, dt, \\qquad
          D(x) = F(x) - F(x^*) - \\phi(x^*)(x - x^*) = \\int_{x^*}^{x} (x - t)\\, \\phi'(t)\\, dt,

(the second form is Taylor's theorem with integral remainder; it holds for every
absolutely continuous ``phi``, kinks included). For nondecreasing ``phi``,
``D >= 0`` with ``D(x*) = 0``. The library proves, for each recursion, a constant
``rho`` with ``D(x_{t+1}) <= rho D(x_t)`` for every ``t``, or reports ``inf``.

The descent theorem
-------------------
Notation: ``r = |x_0 - x*|``, ``s_0 = sign(x_0 - x*)``; for a side ``s`` and a
radius ``r_s`` the state interval ``I_s = [x*, x* + s r_s]`` (ordered), its
pre-activation image ``J_s = a I_s + b``, and

* ``m_s = ess inf_{I_s} phi'``, ``M_s = ess sup_{I_s} phi'``;
* ``L_s = |a| ess sup_{J_s} |phi'|``, a Lipschitz constant of ``T`` between
  points of ``I_s`` (``|T x - x*| = |phi(a x + b) - phi(a x* + b)| <= L_s |x - x*|``);
* ``T`` *preserves* the side when ``a > 0`` and ``phi' >= 0`` on ``J_s``
  (then ``sign(T x - x*) = sign(x - x*)``), *flips* it when ``a < 0`` and
  ``phi' >= 0`` on ``J_s``; otherwise ``T x`` may land on either side.

**Lemma.** If ``m <= phi' <= M`` on the interval between ``x*`` and ``x``, then
``(m/2)(x - x*)^2 <= D(x) <= (M/2)(x - x*)^2``.
*Proof.* ``D(x) = int_{x*}^x (x - t) phi'(t) dt`` and ``(x - t)`` has one sign on
the interval with ``|int_{x*}^x (x - t) dt| = (x - x*)^2 / 2``.

**Theorem.** Take side ``s_0`` with radius ``r`` and the other side ``s_1 = -s_0``
with radius ``r_1 = L_{s_0} r``; let ``U = I_{s_0} \\cup I_{s_1}``.

1. If ``T`` preserves side ``s_0``, only ``I_{s_0}`` is visited. When ``L_{s_0} <= 1``,
   ``I_{s_0}`` is invariant and ``rho = (M_{s_0} / m_{s_0}) L_{s_0}^2``.
2. Otherwise, ``U`` is invariant when ``L_{s_0} <= 1`` unless ``T`` flips side
   ``s_0`` (a point of ``I_{s_0}`` lands within ``r_1`` of ``x*``, on side ``s_1``
   by construction, on side ``s_0`` only if ``T`` does not flip), ``L_{s_1} <= 1``
   unless ``T`` flips side ``s_1``, and ``L_{s_1} r_1 <= r`` unless ``T`` preserves
   side ``s_1``. Then ``rho = max_s (M'_s / m_s) L_s^2`` over both sides, where
   ``M'_s`` is the largest ``M`` of the sides ``T`` can map ``I_s`` to.

In both cases ``m_s > 0`` is required on every visited side with ``L_s > 0``
(a side with ``L_s = 0`` is mapped onto ``x*``, so its term is ``0``).
*Proof.* Invariance of ``U`` follows from the side rules and
``|T x - x*| <= L_s |x - x*| <= L_s r_s``, so every iterate lies in ``U``. For
``x`` in ``I_s`` with ``T x`` in ``I_sigma``, the Lemma twice and the Lipschitz bound give

.. math:: D(Tx) \\le \\tfrac{M_\\sigma}{2} (Tx - x^*)^2 \\le \\tfrac{M_\\sigma}{2} L_s^2 (x - x^*)^2
          \\le \\frac{M_\\sigma}{m_s} L_s^2\\, D(x).

Where a condition fails no bound is proven and ``rho = inf``. ``rho`` may be
``>= 1`` (a true bound without descent); ``D`` is a strict Lyapunov function when
``rho < 1``. Compared with ``V(x) = (x - x*)^2`` and the global ``L = |a| sup_R |phi'|``
(``V(T x) <= L^2 V(x)``), the Bregman bound uses ``phi'`` only where the
trajectory goes: with ``phi = tanh``, ``a = 2``, ``b = 1``, ``x_0 = 0.5``, ``L = 2``
proves nothing while ``rho = 0.037``.

Numerics
--------
Integrals are composite Gauss–Legendre sums (16 nodes per panel) on fixed panels
with edges at ``0``, ``+-2^j`` (``j = -6..20``) and every kink, clipped to the
interval of integration: the panels follow the features of ``phi``, which sit
near ``0`` and at kinks, at any ``x``. ``D`` is integrated in its ``phi'`` form,
whose integrand has one sign, so it keeps full relative precision as
``x -> x*`` (the difference form would cancel). Error ~1e-15 relative for
activations analytic on each panel. Ranges of ``phi'`` are taken over the
composite grid of :mod:`jaxsig.quadrature` (with its ladders toward kinks), 64
uniform points and the ends of the interval, polished by Newton steps on
``phi'' = 0``: exact for the built-in activations (whose ``phi'`` has finitely
many smooth extrema), otherwise an inner approximation.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import limits, quadrature
from jaxsig.core._numerics import derivative, is_concrete
from jaxsig.core._validate import check_range, working_dtype

__all__ = [
    "primitive",
    "bregman_divergence",
    "derivative_range",
    "integrate_panels",
    "bregman_values",
    "derivative_bounds",
    "descent_rate",
]

_ORDER = 16
_DYADIC = 2.0 ** np.arange(-6, 21)
_UNIFORM = 64
_NEWTON_STEPS = 8


@functools.lru_cache(maxsize=None)
def _edges(kinks: tuple) -> np.ndarray:
    finite = np.concatenate([-_DYADIC[::-1], [0.0], _DYADIC, np.asarray(kinks, float)])
    return np.concatenate([[-np.inf], np.unique(finite), [np.inf]])


def integrate_panels(g, p, q, kinks):
    """Oriented integral ``int_p^q g(t) dt`` on the fixed panels clipped to ``[p, q]``.

    ``g`` maps an array of nodes to values; ``p``, ``q`` are scalars (traced).
    Differentiable in ``p``, ``q`` and whatever ``g`` closes over (the nodes move
    with the ends, which gives the Leibniz terms).
    """
    dtype = jnp.result_type(p, q)
    fwd = q >= p
    lo, hi = jnp.where(fwd, p, q), jnp.where(fwd, q, p)
    e = jnp.asarray(_edges(tuple(kinks)), dtype)
    # where, not clip: an edge equal to an end is the end with derivative 0 or 1,
    # never the 1/2 that a tie in min/max would give.
    c = jnp.where(e <= lo, lo, jnp.where(e >= hi, hi, e))
    left, width = c[:-1, None], (c[1:] - c[:-1])[:, None]
    t, w = quadrature.legendre01(_ORDER)
    nodes = left + width * jnp.asarray(t, dtype)
    total = jnp.sum(width * jnp.asarray(w, dtype) * g(nodes))
    return jnp.where(fwd, total, -total)


def bregman_values(act, x, x_star):
    """``D(x) = int_{x*}^x (x - t) phi'(t) dt`` for scalars (see the module notes)."""
    d1 = derivative(act, 1)
    return integrate_panels(lambda t: (x - t) * d1(t), x_star, x, act.kinks)


def _at_kink(v, kinks):
    if not kinks:
        return jnp.zeros(jnp.shape(v), bool)
    k = jnp.asarray(kinks, v.dtype)
    tol = 4 * jnp.finfo(v.dtype).eps * jnp.maximum(1.0, jnp.abs(k))
    return jnp.any(jnp.abs(v - k) <= tol)


def _polish(d1, d2, d3, t0, lo, hi, sign):
    """Newton steps on ``phi'' = 0`` from ``t0`` that stay in ``(lo, hi)`` and raise ``sign * phi'``."""

    def step(t, _):
        s3 = d3(t)
        t_new = t - d2(t) / jnp.where(s3 == 0, 1.0, s3)
        ok = (s3 != 0) & jnp.isfinite(t_new) & (t_new > lo) & (t_new < hi)
        ok = ok & (sign * d1(jnp.where(ok, t_new, t)) > sign * d1(t))
        return jnp.where(ok, t_new, t), None

    t, _ = jax.lax.scan(step, t0, None, length=_NEWTON_STEPS)
    return t


def derivative_bounds(act, lo, hi):
    """``(ess inf, ess sup)`` of ``phi'`` over ``[lo, hi]`` (scalars, ``lo <= hi``).

    Candidates: the composite grid of :mod:`jaxsig.quadrature` inside the interval
    (with its ladders toward every kink, to ``2**-40``), 64 uniform interior
    points, and the ends unless they sit on a kink (where ``phi'`` is not
    defined; the ladder gives the one-sided limit); the best candidates are
    polished by Newton steps on ``phi'' = 0``. A ladder toward a kink inside
    the interval on which ``phi'`` diverges (``sign(x) sqrt|x|`` at ``0``) makes the
    bound ``+-inf``. Non-finite ``phi'`` at a candidate widens the range to
    ``+-inf``. Gradients follow the envelope theorem: interior candidates are
    held fixed, the ends move.
    """
    dtype = jnp.result_type(lo, hi)
    kinks = tuple(act.kinks)
    line = quadrature.Composite(kinks=kinks).line(dtype)
    d1, d2, d3 = (derivative(act, n) for n in (1, 2, 3))
    grid = jnp.asarray(line.x, dtype)
    frac = jnp.arange(1, _UNIFORM + 1, dtype=dtype) / (_UNIFORM + 1)
    uniform = jax.lax.stop_gradient(lo + (hi - lo) * frac)
    degenerate = hi - lo <= 4 * jnp.finfo(dtype).eps * jnp.maximum(1.0, jnp.abs(lo))
    ends = jnp.stack([lo, hi])
    end_ok = jnp.stack([~_at_kink(lo, kinks), ~_at_kink(hi, kinks)]) | degenerate
    pts = jnp.concatenate([grid, uniform, ends])
    mask = jnp.concatenate([(grid > lo) & (grid < hi), jnp.full(uniform.shape, True), end_ok])
    v = d1(pts)
    finite = jnp.isfinite(v)
    v_hi = jnp.where(mask, jnp.where(finite, v, jnp.inf), -jnp.inf)
    v_lo = jnp.where(mask, jnp.where(finite, v, -jnp.inf), jnp.inf)
    t_hi = jax.lax.stop_gradient(_polish(d1, d2, d3, pts[jnp.argmax(v_hi)], lo, hi, 1.0))
    t_lo = jax.lax.stop_gradient(_polish(d1, d2, d3, pts[jnp.argmin(v_lo)], lo, hi, -1.0))
    p_hi, p_lo = d1(t_hi), d1(t_lo)
    # Strict comparisons: a polished point that did not move (an end) must not
    # take half of the end's gradient, as a tie in maximum would.
    sup, inf = jnp.max(v_hi), jnp.min(v_lo)
    sup = jnp.where(jnp.isfinite(p_hi) & (p_hi > sup), p_hi, sup)
    inf = jnp.where(jnp.isfinite(p_lo) & (p_lo < inf), p_lo, inf)
    # Divergence toward a kink inside the interval (line.inner: kinks and 0).
    eps = jnp.finfo(dtype).eps
    centres = sorted({0.0, *kinks})
    for k, (left, right) in zip(centres, line.inner):
        for idx, inside in ((left, (lo < k) & (k <= hi)), (right, (lo <= k) & (k < hi))):
            seq = v[jnp.asarray(idx)]
            lim = limits.ladder_limit(seq, eps * jnp.abs(seq), rtol=1e3 * eps)
            div = inside & (lim.status == limits.DIVERGENT)
            sup = jnp.where(div & (lim.value > 0), jnp.inf, sup)
            inf = jnp.where(div & (lim.value < 0), -jnp.inf, inf)
    return inf, sup


def _side(act, a, b, x_star, end):
    """``(m, M, L, monotone on J)`` for the state interval between ``x*`` and ``end``."""
    lo, hi = jnp.minimum(x_star, end), jnp.maximum(x_star, end)
    m, M = derivative_bounds(act, lo, hi)
    u, w = a * x_star + b, a * end + b
    n, N = derivative_bounds(act, jnp.minimum(u, w), jnp.maximum(u, w))
    lip = jnp.abs(a) * jnp.maximum(jnp.abs(n), jnp.abs(N))
    return m, M, lip, n >= 0


def _term(m, M_target, lip):
    """``(M_target / m) L^2``; ``0`` when ``L = 0`` (the side maps onto ``x*``); ``inf`` when ``m <= 0``."""
    ok = m > 0
    ratio = M_target / jnp.where(ok, m, 1.0) * lip * lip
    return jnp.where(lip == 0, 0.0, jnp.where(ok, ratio, jnp.inf))


def descent_rate(act, a, b, x_star, x0):
    """The proven constant ``rho`` of the descent theorem (module notes), or ``inf``.

    ``D(x_{t+1}) <= rho D(x_t)`` for every ``t`` of the recursion started at ``x0``.
    Scalars in, a scalar out.
    """
    r = jnp.abs(x0 - x_star)
    s0 = jnp.where(x0 >= x_star, 1.0, -1.0)
    m0, M0, L0, mono0 = _side(act, a, b, x_star, x_star + s0 * r)
    r1 = L0 * r
    m1, M1, L1, mono1 = _side(act, a, b, x_star, x_star - s0 * r1)
    keep0, flip0 = (a > 0) & mono0, (a < 0) & mono0
    keep1, flip1 = (a > 0) & mono1, (a < 0) & mono1
    one_sided = jnp.where(L0 <= 1, _term(m0, M0, L0), jnp.inf)
    M_from0 = jnp.where(flip0, M1, jnp.maximum(M0, M1))
    M_from1 = jnp.where(keep1, M1, jnp.where(flip1, M0, jnp.maximum(M0, M1)))
    invariant = (flip0 | (L0 <= 1)) & (flip1 | (L1 <= 1)) & (keep1 | (L1 * r1 <= r))
    two_sided = jnp.maximum(_term(m0, M_from0, L0), _term(m1, M_from1, L1))
    rate = jnp.where(keep0, one_sided, jnp.where(invariant, two_sided, jnp.inf))
    return jnp.where(jnp.isnan(rate), jnp.inf, rate)


# --- Public functions of arrays ------------------------------------------------------------------


def _resolve(phi, params, **arrays):
    dtype = working_dtype(arrays, _activations.as_activation(phi, params).params)
    return _activations.prepare(phi, params, dtype=dtype), dtype


@jax.jit
def _primitive_batched(act, x):
    def one(v):
        return integrate_panels(act, jnp.zeros_like(v), v, act.kinks)

    return jax.vmap(one)(x.ravel()).reshape(x.shape)


def primitive(phi, x, *, params: Any = None):
    """The primitive ``F(x) = int_0^x phi(t) dt``.

    Composite Gauss–Legendre on panels split at ``0``, ``+-2^j`` and the kinks
    (module notes): ~1e-15 relative for activations analytic on each panel
    (``tanh``: ``log cosh x``; ReLU: ``max(x, 0)^2 / 2``; softplus:
    ``-Li2(-e^x) - pi^2/12``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      x: array of any shape (finite).
      params: parameters of ``phi``.

    Returns:
      Array of ``x``'s shape. Differentiable: ``dF/dx = phi(x)`` (to quadrature
      accuracy), and in ``params``.

    Examples:
      >>> from jaxsig.theory.meanfield import lyapunov
      >>> round(float(lyapunov.primitive("relu", 3.0)), 5)  # 3^2 / 2
      4.5
    """
    act, dtype = _resolve(phi, params, x=x)
    check_range("x", x)
    return _primitive_batched(act, jnp.asarray(x, dtype))


@jax.jit
def _bregman_batched(act, x, x_star):
    shape = jnp.broadcast_shapes(x.shape, x_star.shape)
    flat = [jnp.broadcast_to(v, shape).ravel() for v in (x, x_star)]
    return jax.vmap(lambda u, v: bregman_values(act, u, v))(*flat).reshape(shape)


def bregman_divergence(phi, x, x_star, *, params: Any = None):
    """Bregman divergence of the primitive: ``D(x) = F(x) - F(x*) - phi(x*) (x - x*)``.

    Computed as ``int_{x*}^x (x - t) phi'(t) dt`` (no cancellation as
    ``x -> x*``; relative accuracy ~1e-15). ``D >= 0`` for nondecreasing ``phi``,
    and ``(m/2)(x - x*)^2 <= D(x) <= (M/2)(x - x*)^2`` when ``m <= phi' <= M``
    between ``x*`` and ``x`` (module notes).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      x: point(s), any shape, broadcast with ``x_star``.
      x_star: the base point (usually the fixed point of ``T(x) = phi(a x + b)``).
      params: parameters of ``phi``.

    Returns:
      Array of the broadcast shape. Differentiable: ``dD/dx = phi(x) - phi(x*)``,
      ``dD/dx* = -phi'(x*) (x - x*)``.

    Examples:
      >>> from jaxsig.theory.meanfield import lyapunov
      >>> round(float(lyapunov.bregman_divergence("relu", 3.0, 1.0)), 5)  # (3 - 1)^2 / 2
      2.0
    """
    act, dtype = _resolve(phi, params, x=x, x_star=x_star)
    check_range("x", x)
    check_range("x_star", x_star)
    x, x_star = jnp.asarray(x, dtype), jnp.asarray(x_star, dtype)
    jnp.broadcast_shapes(x.shape, x_star.shape)
    return _bregman_batched(act, x, x_star)


@jax.jit
def _range_batched(act, lo, hi):
    shape = jnp.broadcast_shapes(lo.shape, hi.shape)
    flat = [jnp.broadcast_to(v, shape).ravel() for v in (lo, hi)]
    m, M = jax.vmap(lambda u, v: derivative_bounds(act, u, v))(*flat)
    return m.reshape(shape), M.reshape(shape)


def derivative_range(phi, lo, hi, *, params: Any = None):
    """``(ess inf, ess sup)`` of ``phi'`` over ``[lo, hi]``: the ``m`` and ``M`` of the descent theorem.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      lo, hi: interval ends, broadcast together; ``lo <= hi``.
      params: parameters of ``phi``.

    Returns:
      ``(m, M)``, arrays of the broadcast shape; ``+-inf`` where ``phi'`` is
      unbounded on the interval (``sign(x) sqrt|x|`` around ``0``).

    Examples:
      >>> from jaxsig.theory.meanfield import lyapunov
      >>> m, M = lyapunov.derivative_range("tanh", 0.0, 1.0)  # sech^2 decreases on [0, 1]
      >>> round(float(m), 6), float(M)
      (0.419974, 1.0)
    """
    act, dtype = _resolve(phi, params, lo=lo, hi=hi)
    check_range("lo", lo)
    check_range("hi", hi)
    lo, hi = jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)
    if is_concrete(lo, hi) and np.any(np.asarray(lo) > np.asarray(hi)):
        raise ValueError(f"lo must not exceed hi, got {lo=} and {hi=}; swap them")
    return _range_batched(act, lo, hi)

"""Shared pieces of the mean-field theory: result types, setup, Gaussian sums on the
variance map, and the bracketed Newton solver."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import quadrature


PHASES = ("ordered", "critical", "chaotic")
"""Names of the phases, indexed by :attr:`FixedPoint.phase` (ordered by ``chi1``)."""

Q_MIN = 2.0**-40
"""Smallest variance resolved (``sigma ~ 1e-6``, where the default rule is still
exact). A fixed point below it is reported as ``0``; the maps evaluated "at
``q < Q_MIN``" are read at ``Q_MIN``, an error of ``O(Q_MIN)``, while
:func:`fixed_point` and :func:`edge_of_chaos` report the limits ``q -> 0``
(extrapolated from ``Q_MIN`` and ``2 Q_MIN``)."""

_Q_MAX_DEFAULT_LOG2 = 11  # q_max = 2048: sigma = 45, inside the default grid (x_max = 512)


# --- Result types -------------------------------------------------------------


class FixedPoint(NamedTuple):
    """The variance fixed point ``q* = V(q*)`` and what it implies.

    Attributes:
      q_star: the fixed point reached by iterating ``V`` from ``q0`` (``0`` when
        the variance dies out, ``inf`` when it grows without bound).
      slope: ``V'(q*)``, the rate at which ``q_l -> q*``; ``< 1`` for a stable
        fixed point.
      chi1: ``sW^2 g2(sqrt q*)^2``, the per-layer growth of squared
        perturbations.
      phase: index into :data:`PHASES`: ``0`` ordered (``chi1 < 1 - tol``),
        ``1`` critical (``|chi1 - 1| <= tol``), ``2`` chaotic.
      xi_q: depth scale of the variance, ``-1 / log V'(q*)`` (``inf`` when
        ``V'(q*) >= 1``).
      converged: the solver met its tolerance (always ``True`` for the exact
        answers ``0``, ``inf`` and ``q0``).
    """

    q_star: jax.Array
    slope: jax.Array
    chi1: jax.Array
    phase: jax.Array
    xi_q: jax.Array
    converged: jax.Array


class CorrelationFixedPoint(NamedTuple):
    """The stable fixed point of the correlation map and its rate.

    Attributes:
      c_star: ``1`` in the ordered and critical phases; in the chaotic phase
        the root of ``C(c) = c`` in ``[0, 1)`` (``0`` for odd activations with
        ``sb^2 = 0``).
      slope: ``C'(c*) = sW^2 E[phi'(u) phi'(v)]`` (``= chi1`` when ``c* = 1``).
      xi_c: depth scale of correlations, ``-1 / log C'(c*)``.
      converged: the solver met its tolerance.
    """

    c_star: jax.Array
    slope: jax.Array
    xi_c: jax.Array
    converged: jax.Array


class DepthScales(NamedTuple):
    """Depth scales (in layers) over which signals are forgotten.

    Attributes:
      xi_q: ``-1 / log V'(q*)``: the variance approaches ``q*``.
      xi_c: ``-1 / log C'(c*)``: correlations approach ``c*``; infinite at the
        edge of chaos.
    """

    xi_q: jax.Array
    xi_c: jax.Array


class EdgeOfChaos(NamedTuple):
    """A point of the critical line ``chi1 = 1``.

    Attributes:
      sigma_w2: the critical ``sW^2`` for the requested ``sb^2``.
      q_star: the fixed point there (``0`` at the small-``q`` end of the line,
        e.g. tanh with ``sb^2 = 0``; ``inf`` when no finite fixed point is
        critical, e.g. ReLU with ``sb^2 > 0``).
      slope: ``V'(q*)`` there. Below 1 the critical fixed point attracts the
        variance; above 1 it repels it (GELU and Swish with ``sb^2 > 0``: a
        network settles at an ordered fixed point below ``q*`` or its variance
        diverges above), so the network is never at the edge of chaos.
    """

    sigma_w2: jax.Array
    q_star: jax.Array
    slope: jax.Array


class Init(NamedTuple):
    """Initialisation advice: weight and bias variances and what they give.

    Attributes:
      sigma_w2: weight variance ``sW^2`` (weights ``N(0, sW^2 / fan_in)``).
      sigma_b2: bias variance ``sb^2``.
      q_star: the pre-activation variance kept fixed.
      chi1: ``sW^2 g2(sqrt q*)^2`` there.
    """

    sigma_w2: jax.Array
    sigma_b2: jax.Array
    q_star: jax.Array
    chi1: jax.Array


class ScalarRecursion(NamedTuple):
    """The scalar recursion ``x_{t+1} = T(x_t) = phi(a x_t + b)``.

    Attributes:
      fixed_point: ``x* = T(x*)`` (unique when ``contracts``).
      lipschitz: ``L = |a| sup_x |phi'(x)|``.
      contracts: ``L < 1``.
      descent: ``L^2``: ``V(T x) <= L^2 V(x)`` for ``V(x) = (x - x*)^2``.
      trajectory: ``x_0, ..., x_steps``.
      converged: ``|T(x*) - x*|`` is at rounding level.
    """

    fixed_point: jax.Array
    lipschitz: jax.Array
    contracts: jax.Array
    descent: jax.Array
    trajectory: jax.Array
    converged: jax.Array


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


# --- Helpers --------------------------------------------------------------------


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _dtype(*trees):
    leaves = [leaf for tree in trees for leaf in jax.tree_util.tree_leaves(tree)]
    for leaf in leaves:
        dt = getattr(leaf, "dtype", None)
        if dt is not None and not (jnp.issubdtype(dt, jnp.floating) or dt == bool):
            raise TypeError(f"expected floating-point inputs, got dtype {dt}; pass e.g. jnp.float32 values")
    dtype = jnp.result_type(*leaves, 0.0) if leaves else jnp.result_type(0.0)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(0.0)
    return jnp.dtype(dtype)


class _Setup(NamedTuple):
    fn: Any
    has_params: bool
    rule: Any
    kinks: tuple
    params: Any
    dtype: Any


def _resolve(phi, params, *arrays, dtype=None):
    """The activation, its parameters cast to the working dtype, and that dtype."""
    act = _activations.as_activation(phi, params)
    params = act.params
    dtype = _dtype(*arrays, params) if dtype is None else jnp.dtype(dtype)
    if params is not None:
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)
    return act, params, dtype


def _setup(phi, params, rule, *arrays) -> _Setup:
    act, params, dtype = _resolve(phi, params, *arrays)
    # 0 is always a panel edge; declaring it again as a kink would only drop the
    # grid's refinement toward 0, which small variances need.
    kinks = tuple(k for k in act.kinks if float(k) != 0.0)
    rule = quadrature.get_rule(rule).with_kinks(kinks)
    return _Setup(act.fn, act.params is not None, rule, tuple(act.kinks), params, dtype)


def _q_max_log2(rule) -> int:
    if isinstance(rule, quadrature.Composite):
        return int(math.floor(math.log2((rule.x_max / 10.0) ** 2)))
    return _Q_MAX_DEFAULT_LOG2


class _Stats(NamedTuple):
    m2: jax.Array  # E[phi(u)^2], u ~ N(0, q)
    g2sq: jax.Array  # E[phi'(u)^2]
    dm2_dq: jax.Array  # d m2 / dq = E[phi(u)^2 (u^2/q - 1)] / (2 q)


def _stats(fn, has_params, rule, q, params):
    """The Gaussian statistics the maps need, at ``sigma = sqrt(max(q, Q_MIN))``.

    The same weighted sums as :func:`jaxsig.moments` on the same rule (so the
    numbers agree to rounding), written against the public nodes and weights of
    :mod:`jaxsig.quadrature` and restricted to what the maps use: inside the
    solvers this traces and compiles about three times faster than a full
    ``moments`` call. Non-finite ``phi`` or ``phi'`` at a node makes the result
    NaN, as in ``moments``.
    """
    f = (lambda x: fn(x, params)) if has_params else fn
    sigma = jnp.sqrt(jnp.maximum(q, Q_MIN))
    x, w = rule.gaussian(sigma, jnp.zeros_like(sigma), sigma.dtype)
    f0, f1 = jax.jvp(f, (x,), (jnp.ones_like(x),))
    finite = jnp.all(jnp.isfinite(f0) & jnp.isfinite(f1), axis=-1)
    f0 = jnp.where(jnp.isfinite(f0), f0, 0.0)
    f1 = jnp.where(jnp.isfinite(f1), f1, 0.0)
    z2 = (x / sigma[..., None]) ** 2
    expect = lambda v: jnp.sum(w * v, axis=-1)  # noqa: E731
    sq = f0 * f0
    out = _Stats(expect(sq), expect(f1 * f1), expect(sq * (z2 - 1.0)) / (2.0 * sigma * sigma))
    return jax.tree_util.tree_map(lambda v: jnp.where(finite, v, jnp.nan), out)


def _V(fn, has_params, rule, q, sw2, sb2, params):
    return sw2 * _stats(fn, has_params, rule, q, params).m2 + sb2


def _V_and_slope(fn, has_params, rule, q, sw2, sb2, params):
    s = _stats(fn, has_params, rule, q, params)
    return sw2 * s.m2 + sb2, sw2 * s.dm2_dq, s


_V_jit = jax.jit(_V, static_argnums=(0, 1, 2))
_stats_jit = jax.jit(_stats, static_argnums=(0, 1, 2))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _slope_jit(fn, has_params, rule, q, sw2, params):
    return _V_and_slope(fn, has_params, rule, q, sw2, 0.0, params)[1]


def _depth_scale(rate):
    """``-1 / log|rate|``: ``inf`` for ``|rate| >= 1``, ``0`` for ``rate = 0``."""
    r = jnp.abs(rate)
    # A rate within rounding of 1 (the maps are accurate to a few ulps of their
    # terms, see _noise) is 1: the depth scale is infinite, never ~1/eps.
    inside = (r > 0) & (r < 1 - 64 * jnp.finfo(r.dtype).eps)
    xi = -1.0 / jnp.log(jnp.where(inside, r, 0.5))
    return jnp.where(inside, xi, jnp.where(r > 0, jnp.inf, 0.0))


def _inverse(den):
    """``1 / den`` with ``1 / 0 = inf`` (double-where).

    Tangent rules multiply by it: a linear rule may not branch on the tangent,
    so at a degenerate fixed point (``den = 0``) a tangent is ``+-inf``, or NaN
    along directions in which the fixed point does not move.
    """
    ok = den != 0
    return jnp.where(ok, 1.0 / jnp.where(ok, den, 1.0), jnp.inf)


def _bracketed_newton(fun, lo, hi, f_lo, x0, *, max_iter, xtol):
    """Safeguarded Newton for a root of ``fun`` in ``[lo, hi]``.

    ``fun(x) -> (f, df)``; ``f(lo)`` has sign ``sign(f_lo) != 0`` and ``f(hi)``
    the other sign (or zero). A Newton step that leaves the bracket (or is not
    finite) is replaced by bisection, so the iteration always converges; the
    bracket shrinks on every evaluation. Returns ``(x, converged, df(x))``.
    """
    s_lo = jnp.sign(f_lo)

    def cond(state):
        it, _, _, _, _, _, done = state
        return (it < max_iter) & ~done

    def body(state):
        it, x, f, df, lo, hi, _ = state
        step = f / jnp.where(df == 0, 1.0, df)
        x_n = x - step
        ok = (df != 0) & jnp.isfinite(x_n) & (x_n > lo) & (x_n < hi)
        x_new = jnp.where(ok, x_n, 0.5 * (lo + hi))
        f_new, df_new = fun(x_new)
        same = jnp.sign(f_new) == s_lo
        lo_new = jnp.where(same, x_new, lo)
        hi_new = jnp.where(same, hi, x_new)
        tol = xtol * jnp.maximum(1.0, jnp.abs(x_new))
        # Converged: a vanishing Newton step (a bisection step is never small),
        # an exact zero, or a collapsed bracket.
        done = (f_new == 0) | (ok & (jnp.abs(x_new - x) <= tol)) | (hi_new - lo_new <= tol)
        return it + 1, x_new, f_new, df_new, lo_new, hi_new, done

    f0, df0 = fun(x0)
    state = (jnp.zeros((), jnp.int32), x0, f0, df0, lo, hi, f0 == 0)
    _, x, _, df, _, _, done = jax.lax.while_loop(cond, body, state)
    return x, done, df


def _flat_vmap(f, *args):
    """Broadcast ``args``, apply the scalar function ``f`` elementwise, reshape."""
    shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
    flat = [jnp.broadcast_to(a, shape).ravel() for a in args]
    out = jax.vmap(f)(*flat)
    return jax.tree_util.tree_map(lambda o: o.reshape(shape + o.shape[1:]), out)


def _bucketed(solver, *args):
    """``solver(*flat)`` on the broadcast ``args``, flattened and padded to a power of two.

    The solvers compile once per input shape; padding (with copies of the last
    entry) lets one program serve every batch of up to ``2**k`` entries, at
    most doubling the work. The result is cut back and reshaped.
    """
    shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
    size = math.prod(shape)
    n = 1 << (size - 1).bit_length() if size > 0 else 0
    flat = [jnp.broadcast_to(a, shape).ravel() for a in args]
    flat = [jnp.concatenate([a, jnp.broadcast_to(a[-1:], (n - size,))]) for a in flat]
    out = solver(*flat)
    return jax.tree_util.tree_map(lambda o: o[:size].reshape(shape + o.shape[1:]), out)


def _check_nonneg(**kw):
    for name, v in kw.items():
        if _is_concrete(v):
            a = np.asarray(v)
            if not np.all(np.isfinite(a) & (a >= 0)):
                raise ValueError(f"{name} must be non-negative and finite, got {name}={a}")


def _check_pos(**kw):
    for name, v in kw.items():
        if _is_concrete(v):
            a = np.asarray(v)
            if not np.all(np.isfinite(a) & (a > 0)):
                raise ValueError(f"{name} must be positive and finite, got {name}={a}")


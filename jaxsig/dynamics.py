"""Signal propagation in wide random networks: mean-field theory from the signature.

A fully connected network with ``h^{l+1} = W^l phi(h^l) + b^l``,
``W_ij ~ N(0, sW^2 / n)``, ``b_i ~ N(0, sb^2)``, has, as the width ``n -> inf``,
Gaussian pre-activations whose variance ``q_l`` follows the *variance map*

.. math:: q_{l+1} = V(q_l) = \\sigma_w^2\\, m_2(\\sqrt{q_l}) + \\sigma_b^2,
          \\qquad m_2(\\sigma) = E[\\phi(\\sigma Z)^2],

and whose correlation ``c_l`` between two inputs follows the *correlation map*
``c -> (sW^2 E[phi(u) phi(v)] + sb^2) / q*`` at the fixed point ``q* = V(q*)``
(Poole et al. 2016; Schoenholz et al. 2017). Small perturbations grow by

.. math:: \\chi_1 = \\sigma_w^2\\, g_2(\\sqrt{q^*})^2 = \\sigma_w^2 E[\\phi'(u)^2]

per layer (in squared norm), the slope of the correlation map at ``c = 1``:
*ordered* when ``chi1 < 1`` (inputs collapse), *chaotic* when ``chi1 > 1``
(they decorrelate), and the *edge of chaos* ``chi1 = 1`` in between. Fixed
points are approached geometrically, with depth scales
``xi = -1 / log(rate)``: ``xi_q`` at rate ``V'(q*)``, ``xi_c`` at rate
``C'(c*)``.

Everything here is built on the Gaussian statistics of the signature
(``m2``, ``g2``: the sums of :func:`jaxsig.moments` on the same quadrature
rules) and on :func:`jaxsig.kernels.dual` (2-D), so it is accurate to near
machine precision, works under ``jit`` and ``vmap``, and is differentiable: fixed points
by implicit differentiation, ``dq*/dtheta = (dV/dtheta) / (1 - V'(q*))``, never by
unrolling the solver.

The scalar recursion ``T(x) = phi(a x + b)`` (:func:`scalar_recursion`) is the
one-neuron version: a contraction when ``L = |a| sup |phi'| < 1``, with the
Lyapunov function ``V(x) = (x - x*)^2`` descending, ``V(T x) <= L^2 V(x)``.

References:
  Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli, "Exponential expressivity in
  deep neural networks through transient chaos", NeurIPS 2016.
  Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation",
  ICLR 2017.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig import activations as _activations
from jaxsig import kernels as _kernels
from jaxsig import limits, quadrature

__all__ = [
    "PHASES",
    "Q_MIN",
    "FixedPoint",
    "CorrelationFixedPoint",
    "DepthScales",
    "EdgeOfChaos",
    "Init",
    "ScalarRecursion",
    "MLPSimulation",
    "variance_map",
    "variance_map_slope",
    "perturbation_gain",
    "variance_trajectory",
    "fixed_point",
    "correlation_map",
    "correlation_slope",
    "correlation_fixed_point",
    "depth_scales",
    "edge_of_chaos",
    "init_for_fixed_q",
    "critical_init",
    "scalar_recursion",
    "simulate_mlp",
]

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


# --- Variance map -----------------------------------------------------------------


def variance_map(phi, q, sigma_w2, sigma_b2, *, params: Any = None, rule=None):
    """The variance map ``V(q) = sW^2 m2(sqrt q) + sb^2``.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      q: pre-activation variance(s) ``>= 0`` (values below :data:`Q_MIN` are
        evaluated at ``Q_MIN``).
      sigma_w2: weight variance ``sW^2``.
      sigma_b2: bias variance ``sb^2``.
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature (see :func:`jaxsig.moments`).

    Returns:
      ``V(q)``, shape ``broadcast(q, sigma_w2, sigma_b2).shape``.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.variance_map("relu", 3.0, 2.0, 0.5)), 6)  # 2 * 3/2 + 0.5
      3.5
    """
    st = _setup(phi, params, rule, q, sigma_w2, sigma_b2)
    _check_nonneg(q=q, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    q, sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_w2, sigma_b2))
    shape = jnp.broadcast_shapes(q.shape, sw2.shape, sb2.shape)
    return _V_jit(st.fn, st.has_params, st.rule, jnp.broadcast_to(q, shape), sw2, sb2, st.params)


def variance_map_slope(phi, q, sigma_w2, *, params: Any = None, rule=None):
    """Slope of the variance map, ``V'(q) = sW^2 d m2(sqrt q)/dq = sW^2 (dm2/dsigma) / (2 sqrt q)``.

    By Gaussian integration by parts this is ``sW^2 E[phi'(u)^2 + phi(u) phi''(u)]``,
    ``u ~ N(0, q)``; it is computed from ``dm2/dsigma`` (no second derivatives).
    Arguments as in :func:`variance_map`.
    """
    st = _setup(phi, params, rule, q, sigma_w2)
    _check_nonneg(q=q, sigma_w2=sigma_w2)
    q, sw2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_w2))
    q = jnp.broadcast_to(q, jnp.broadcast_shapes(q.shape, sw2.shape))
    return _slope_jit(st.fn, st.has_params, st.rule, q, sw2, st.params)


def perturbation_gain(phi, q, sigma_w2, *, params: Any = None, rule=None):
    """Per-layer growth of squared perturbations at variance ``q``: ``sW^2 g2(sqrt q)^2``.

    At the fixed point this is ``chi1``. For an infinitesimal perturbation ``dh``
    of pre-activations with variance ``q``, ``E|dh^{l+1}|^2 = sW^2 E[phi'(u)^2] |dh^l|^2``.
    Arguments as in :func:`variance_map`.
    """
    st = _setup(phi, params, rule, q, sigma_w2)
    _check_nonneg(q=q, sigma_w2=sigma_w2)
    q, sw2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_w2))
    q = jnp.broadcast_to(q, jnp.broadcast_shapes(q.shape, sw2.shape))
    return sw2 * _stats_jit(st.fn, st.has_params, st.rule, q, st.params).g2sq


def variance_trajectory(phi, q0, sigma_w2, sigma_b2, depth: int, *, params: Any = None, rule=None):
    """Iterates of the variance map: ``q_0 = q0``, ``q_{l+1} = V(q_l)``, ``l < depth``.

    Args:
      phi, params, rule: as in :func:`variance_map`.
      q0: initial variance (scalar).
      sigma_w2, sigma_b2: scalars.
      depth: number of layers (static).

    Returns:
      Array ``(depth + 1,)``.
    """
    if not (isinstance(depth, int) and depth >= 0):
        raise ValueError(f"depth must be a non-negative int, got {depth=}")
    st = _setup(phi, params, rule, q0, sigma_w2, sigma_b2)
    _check_nonneg(q0=q0, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    q0, sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (q0, sigma_w2, sigma_b2))
    return _trajectory(st.fn, st.has_params, st.rule, depth, q0, sw2, sb2, st.params)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _trajectory(fn, has_params, rule, depth, q0, sw2, sb2, params):
    def step(q, _):
        q_next = _V(fn, has_params, rule, q, sw2, sb2, params)
        return q_next, q_next

    _, qs = jax.lax.scan(step, q0, None, length=depth)
    return jnp.concatenate([q0[None], qs])


# --- Variance fixed point -----------------------------------------------------------


def _grid(q_max_log2, per_octave):
    n = (q_max_log2 + 40) * per_octave + 1
    return 2.0 ** np.linspace(-40.0, float(q_max_log2), n)


def _noise(dtype, *vals):
    # The variance map is accurate to a few ulps of its terms; differences
    # below this are indistinguishable from zero.
    eps = jnp.finfo(dtype).eps
    return 64 * eps * sum(jnp.abs(v) for v in vals)


def _solve_q_star(fn, has_params, rule, q_max_log2, sw2, sb2, q0, params):
    """The fixed point of ``V`` reached from ``q0``, and a convergence flag.

    ``V`` is nondecreasing for every activation whose ``m2(sigma)`` is (all the
    built-in ones), so iterating from ``q0`` converges monotonically to the
    first root of ``F(q) = V(q) - q`` in the direction of ``sign F(q0)``. That
    root is bracketed on a geometric grid (two points per octave, from
    ``Q_MIN`` to ``2**q_max_log2``) and polished by safeguarded Newton in
    ``log q``. No root upward means divergence (``inf``), none downward means
    the variance dies out (``0``).
    """
    dtype = sw2.dtype
    grid = jnp.asarray(_grid(q_max_log2, 2), dtype)
    v = _V(fn, has_params, rule, jnp.concatenate([grid, q0[None]]), sw2, sb2, params)
    f_grid, v0 = v[:-1] - grid, v[-1]
    f0 = v0 - q0
    tol0 = _noise(dtype, v0, q0)
    tol_g = _noise(dtype, f_grid + grid, grid)
    up, down = f0 > tol0, f0 < -tol0
    n = grid.shape[0]
    # Upward: first grid point above q0 where F <= 0.
    cand_up = (grid > q0) & (f_grid <= tol_g)
    has_up = jnp.any(cand_up)
    j_up = jnp.argmax(cand_up)
    hi_up = grid[j_up]
    lo_up = jnp.where(j_up > 0, jnp.maximum(q0, grid[jnp.maximum(j_up - 1, 0)]), q0)
    # Downward: last grid point below q0 where F >= 0 (to rounding). When F is
    # rounding noise at that point and at every grid point below it, the root
    # cannot be told from 0 at this precision (tanh at sW^2 = 1, sb^2 = 0, in
    # float32: F = -2 q^2 is noise below q ~ 64 eps): the variance dies out.
    cand_dn = (grid < q0) & (f_grid >= -tol_g)
    j_dn = n - 1 - jnp.argmax(cand_dn[::-1])
    noise_floor = jnp.all(jnp.where(jnp.arange(n) <= j_dn, jnp.abs(f_grid) <= tol_g, True))
    has_dn = jnp.any(cand_dn) & ~noise_floor
    lo_dn = grid[j_dn]
    hi_dn = jnp.where(j_dn < n - 1, jnp.minimum(q0, grid[jnp.minimum(j_dn + 1, n - 1)]), q0)
    lo = jnp.log(jnp.where(up, lo_up, lo_dn))
    hi = jnp.log(jnp.where(up, hi_up, hi_dn))
    lo = jnp.minimum(lo, hi)

    def fun(x):
        q = jnp.exp(x)
        v, dv, _ = _V_and_slope(fn, has_params, rule, q, sw2, sb2, params)
        return v - q, (dv - 1.0) * q

    # In the up case F(lo) > 0 > F(hi); in the down case F(lo) >= 0 > F(hi).
    f_lo_sign = jnp.ones((), dtype)
    x, ok, _ = _bracketed_newton(
        fun, lo, hi, f_lo_sign, 0.5 * (lo + hi), max_iter=100, xtol=8 * jnp.finfo(dtype).eps
    )
    q_newton = jnp.exp(x)
    q_star = jnp.where(
        up,
        jnp.where(has_up, q_newton, jnp.inf),
        jnp.where(down, jnp.where(has_dn, q_newton, 0.0), q0),
    )
    converged = jnp.where((up & has_up) | (down & has_dn), ok, True)
    # The flag travels as a float: custom_jvp outputs need float tangents.
    return q_star, converged.astype(dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _q_star(fn, has_params, rule, q_max_log2, sw2, sb2, q0, params):
    return _solve_q_star(fn, has_params, rule, q_max_log2, sw2, sb2, q0, params)


@_q_star.defjvp
def _q_star_jvp(fn, has_params, rule, q_max_log2, primals, tangents):
    sw2, sb2, q0, params = primals
    dsw2, dsb2, _, dparams = tangents
    q, converged = _q_star(fn, has_params, rule, q_max_log2, sw2, sb2, q0, params)
    q_eval = jnp.clip(q, Q_MIN, 2.0**q_max_log2)
    # Implicit function theorem on q = V(q; theta):
    # dq = (dV/dtheta . dtheta) / (1 - V'(q)).
    _, dv = jax.jvp(
        lambda a, b, p: _V(fn, has_params, rule, q_eval, a, b, p), (sw2, sb2, params), (dsw2, dsb2, dparams)
    )
    slope = _at(q, _V_and_slope(fn, has_params, rule, _probes(q, q_max_log2), sw2, sb2, params)[1])
    # V'(q*) = 1 to rounding (a critical q* = 0): the derivative is infinite.
    den = 1.0 - slope
    den = jnp.where(jnp.abs(den) <= 64 * jnp.finfo(den.dtype).eps, 0.0, den)
    dq = jnp.where(jnp.isfinite(q), dv * _inverse(den), 0.0)
    return (q, converged), (dq, jnp.zeros_like(converged))


def _limit_at_infinity(top, quarter):
    """Limit as ``q -> inf`` of a statistic read at ``q_max`` and ``q_max / 4``.

    For activations of linear growth (A1) the statistics approach their limit
    with an ``O(1/sigma)`` correction, removed by one Richardson step
    (``sigma`` halves): ``2 top - quarter``; exact for positively homogeneous
    ones (ReLU). Growth by more than half over the quadrupling means a
    superlinear activation: the limit is ``inf``.
    """
    growing = jnp.abs(top) > 1.5 * jnp.abs(quarter)
    return jnp.where(growing, jnp.inf, 2.0 * top - quarter)


def _probes(q, q_max_log2):
    """Variances at which a statistic "at ``q``" is read: ``(5,) + q.shape``.

    ``q`` clipped to ``[Q_MIN, q_max]``, then ``Q_MIN, 2 Q_MIN`` (for the limit
    ``q -> 0``) and ``q_max, q_max / 4`` (for ``q -> inf``); see :func:`_at`.
    """
    q_max = 2.0**q_max_log2
    full = lambda v: jnp.full_like(q, v)  # noqa: E731
    return jnp.stack([jnp.clip(q, Q_MIN, q_max), full(Q_MIN), full(2 * Q_MIN), full(q_max), full(q_max / 4)])


def _at(q, values):
    """A statistic at ``q`` from its ``values`` at :func:`_probes`, limits included.

    ``q = 0``: one Richardson step, ``2 v(Q_MIN) - v(2 Q_MIN)``, removes the
    ``O(q)`` term of smooth statistics (tanh at its critical point: ``V'`` and
    ``chi1`` are ``1`` to rounding, not ``1 - 4 Q_MIN``, so ``xi_q = inf``);
    exact for statistics constant near 0 (ReLU). A difference at rounding level
    (float32, where ``Q_MIN << eps``) is noise, not an ``O(q)`` term, and is
    not extrapolated. ``q = inf``: :func:`_limit_at_infinity`.
    """
    v1, v2 = values[1], values[2]
    resolved = jnp.abs(v1 - v2) > 64 * jnp.finfo(v1.dtype).eps * jnp.abs(v1)
    zero = jnp.where(resolved, 2.0 * v1 - v2, v1)
    return jnp.where(q == 0, zero, jnp.where(jnp.isinf(q), _limit_at_infinity(values[3], values[4]), values[0]))


def _fixed_point_scalar(fn, has_params, rule, q_max_log2, sw2, sb2, q0, phase_tol, params):
    q_star, converged = _q_star(fn, has_params, rule, q_max_log2, sw2, sb2, q0, params)
    converged = jax.lax.stop_gradient(converged) > 0
    # q* = 0 or inf: chi1 and V' are their limits (see _at).
    _, slopes, st = _V_and_slope(fn, has_params, rule, _probes(q_star, q_max_log2), sw2, sb2, params)
    chi1, slope = _at(q_star, sw2 * st.g2sq), _at(q_star, slopes)
    phase = jnp.where(chi1 < 1 - phase_tol, 0, jnp.where(chi1 > 1 + phase_tol, 2, 1)).astype(jnp.int32)
    return FixedPoint(q_star, slope, chi1, phase, _depth_scale(slope), converged)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _fixed_point_batched(fn, has_params, rule, q_max_log2, sw2, sb2, q0, phase_tol, params):
    f = lambda a, b, c: _fixed_point_scalar(fn, has_params, rule, q_max_log2, a, b, c, phase_tol, params)  # noqa: E731
    return _flat_vmap(f, sw2, sb2, q0)


def fixed_point(
    phi,
    sigma_w2,
    sigma_b2,
    *,
    params: Any = None,
    q0=1.0,
    rule=None,
    q_max_log2: Optional[int] = None,
    phase_tol=None,
) -> FixedPoint:
    """Fixed point ``q* = V(q*)`` of the variance map, its stability, ``chi1`` and phase.

    ``q*`` is the limit of ``q_{l+1} = V(q_l)`` from ``q_0 = q0``: the first
    root of ``V(q) = q`` from ``q0`` in the direction of ``V(q0) - q0`` (the
    iteration is monotone since ``m2`` increases with ``sigma``). Then

    * ``slope = V'(q*)``, ``xi_q = -1 / log V'(q*)``;
    * ``chi1 = sW^2 g2(sqrt q*)^2``; phase ordered / critical / chaotic by
      ``chi1 < 1 - phase_tol``, ``|chi1 - 1| <= phase_tol``, ``chi1 > 1 + phase_tol``.

    Special cases, exact rather than approximate:

    * ``q* = 0`` when the variance dies out (odd bounded-derivative activations
      with ``sb^2 = 0`` and ``sW^2 phi'(0)^2 <= 1``, e.g. tanh with
      ``sW^2 <= 1``). Roots below :data:`Q_MIN`, or so small that ``V(q) - q``
      is rounding noise from them down to ``Q_MIN`` (tanh at ``sW^2 = 1`` in
      float32), are reported as ``0``; ``chi1`` and ``slope`` are then their
      limits ``q -> 0`` (equal there: ``V'(0) = sW^2 phi'(0)^2``).
    * ``q* = inf`` when ``V(q) > q`` up to ``q_max = 2**q_max_log2``: superlinear
      activations, or ReLU-like ones with ``sW^2 (alpha_+^2 + alpha_-^2)/2 > 1``.
      ``chi1`` and ``slope`` are then their limits ``q -> inf`` (read at
      ``q_max``), or ``inf`` where they still grow there.
    * ``q* = q0`` when ``V(q0) = q0`` to rounding (ReLU at ``sW^2 = 2``,
      ``sb^2 = 0``, where every ``q`` is fixed).

    Differentiable with respect to ``sigma_w2``, ``sigma_b2`` and ``params`` by
    implicit differentiation, ``dq* = (dV/dtheta . dtheta) / (1 - V'(q*))``
    (zero tangent where ``q*`` is infinite; ``+-inf`` where ``V'(q*) = 1`` to
    rounding, e.g. ``dq*/dsb^2`` for ReLU at ``sW^2 = 2``, ``sb^2 = 0``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma_w2: weight variance(s) ``sW^2 >= 0``; any shape, broadcast with
        ``sigma_b2`` and ``q0``.
      sigma_b2: bias variance(s) ``sb^2 >= 0``.
      params: parameters of ``phi`` (shared by all entries; ``jax.vmap`` over
        them for a batch).
      q0: the input variance the iteration starts from (``> 0``).
      rule: 1-D Gaussian quadrature (see :func:`jaxsig.moments`).
      q_max_log2: ``log2`` of the largest finite ``q*`` (static); default from the
        rule's grid (``11`` for the default rule, ``q_max = 2048``).
      phase_tol: tolerance on ``|chi1 - 1|`` for the critical phase; default
        ``max(1e-6, 64 eps)`` of the working dtype (``1e-6`` in float64,
        ``7.6e-6`` in float32, the rounding level of ``chi1`` there).

    Returns:
      A :class:`FixedPoint` whose fields have the broadcast shape.

    Examples:
      >>> import jaxsig
      >>> fp = jaxsig.dynamics.fixed_point("relu", 1.5, 0.1)  # q* = 0.1 / (1 - 0.75)
      >>> round(float(fp.q_star), 6), round(float(fp.chi1), 6), jaxsig.dynamics.PHASES[int(fp.phase)]
      (0.4, 0.75, 'ordered')
    """
    st = _setup(phi, params, rule, sigma_w2, sigma_b2, q0)
    _check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    _check_pos(q0=q0)
    qml = _q_max_log2(st.rule) if q_max_log2 is None else int(q_max_log2)
    if not -39 <= qml <= 100:
        raise ValueError(f"q_max_log2 must be an int in [-39, 100], got {q_max_log2=}")
    if _is_concrete(q0) and np.any(np.asarray(q0) > 2.0**qml):
        raise ValueError(
            f"q0 must be at most q_max = 2**{qml} = {2.0**qml:g} (the largest variance the rule "
            f"resolves), got {q0=}; pass a larger q_max_log2 with a wider rule, e.g. "
            "rule=jaxsig.quadrature.Composite(x_max=4096)"
        )
    if phase_tol is None:
        phase_tol = max(1e-6, 64 * float(jnp.finfo(st.dtype).eps))
    sw2, sb2, q0, tol = (jnp.asarray(a, st.dtype) for a in (sigma_w2, sigma_b2, q0, phase_tol))
    solve = lambda a, b, c: _fixed_point_batched(st.fn, st.has_params, st.rule, qml, a, b, c, tol, st.params)  # noqa: E731
    return _bucketed(solve, sw2, sb2, q0)


# --- Correlation map ----------------------------------------------------------------


def _resolve_q_star(st, sw2, sb2, q_star):
    """The variance the correlation map is read at: ``q_star`` or the fixed point from ``q0 = 1``.

    Clipped to ``[Q_MIN, q_max]`` inside the compiled maps.
    """
    if q_star is None:
        one = jnp.ones((), st.dtype)
        solve = lambda a, b, c: _fixed_point_batched(  # noqa: E731
            st.fn, st.has_params, st.rule, _q_max_log2(st.rule), a, b, c, 1e-6 * one, st.params
        )
        q_star = _bucketed(solve, sw2, sb2, one).q_star
    return jnp.asarray(q_star, st.dtype)


def _dual(fn, has_params, kinks, polar, c, q, params, derivative):
    act = _activations.Activation("phi", fn, None, kinks)
    return _kernels.dual(act, c, q=q, params=params if has_params else None, derivative=derivative, rule=polar)


def _corr_and_slope(fn, has_params, kinks, polar, c, q, sw2, sb2, params):
    """``C(c)`` and ``C'(c)`` at variance ``q``.

    Normalised by ``V(q) = sW^2 E[phi(u)^2] + sb^2`` (the variance of the next
    layer), which is ``q`` at a fixed point, so that ``C(1) = 1`` also in the
    limits ``q* = 0`` and ``q* = inf``. The slope is Price's theorem,
    ``C'(c) = sW^2 q E[phi'(u) phi'(v)] / V(q)``.
    """
    e = _dual(fn, has_params, kinks, polar, jnp.stack([c, jnp.ones_like(c)]), q, params, False)
    d = _dual(fn, has_params, kinks, polar, c, q, params, True)
    v = sw2 * e[1] + sb2
    return (sw2 * e[0] + sb2) / v, sw2 * q * d / v


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _corr_batched(fn, has_params, kinks, polar, q_max_log2, slope, c, q, sw2, sb2, params):
    shape = jnp.broadcast_shapes(c.shape, q.shape, sw2.shape, sb2.shape)
    c, q = jnp.broadcast_to(c, shape), jnp.broadcast_to(jnp.clip(q, Q_MIN, 2.0**q_max_log2), shape)
    return _corr_and_slope(fn, has_params, kinks, polar, c, q, sw2, sb2, params)[int(slope)]


def correlation_map(
    phi, c, sigma_w2, sigma_b2, *, params: Any = None, q_star=None, rule=None, polar: _kernels.PolarRule = _kernels.DEFAULT_RULE
):
    """The correlation map ``C(c) = (sW^2 E[phi(u) phi(v)] + sb^2) / q*``.

    ``(u, v)`` is a centred Gaussian pair with variances ``q*`` and correlation
    ``c`` (:func:`jaxsig.kernels.dual`). ``C(1) = 1`` and ``C'(1) = chi1``.

    The denominator is computed as ``V(q*) = sW^2 E[phi(u)^2] + sb^2``, the
    variance of the next layer: equal to ``q*`` at a fixed point, and the right
    normalisation (``C(1) = 1``) where ``q*`` is ``0`` or ``inf`` and the map is
    read at ``Q_MIN`` or ``q_max``, or at a ``q_star`` that is not a fixed point.
    In the limit ``q* -> 0`` a network is linear and ``C`` tends to the identity
    (tanh, ``sb^2 = 0``, ``sW^2 < 1``: correlations are kept while the variance
    dies out); for ReLU with ``sb^2 = 0`` it is the normalised arc-cosine map
    whatever ``sW^2``.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      c: correlation(s) in ``[-1, 1]``.
      sigma_w2, sigma_b2: variances (broadcast with ``c``).
      params: parameters of ``phi``.
      q_star: the variance to use; default the fixed point from
        :func:`fixed_point` (``q0 = 1``), clipped to ``[Q_MIN, q_max]`` (so a
        divergent ``q*`` uses the ``q -> inf`` limit, read at ``q_max``).
      rule: 1-D rule for the fixed point.
      polar: 2-D rule (:class:`jaxsig.kernels.PolarRule`).

    Returns:
      ``C(c)``, broadcast shape.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.correlation_map("relu", 0.0, 2.0, 0.0, q_star=1.0)), 6)  # 1/pi
      0.31831
    """
    return _correlation(phi, c, sigma_w2, sigma_b2, params, q_star, rule, polar, slope=False)


def correlation_slope(
    phi, c, sigma_w2, sigma_b2, *, params: Any = None, q_star=None, rule=None, polar: _kernels.PolarRule = _kernels.DEFAULT_RULE
):
    """Slope of the correlation map, ``C'(c) = sW^2 E[phi'(u) phi'(v)]`` (Price's theorem).

    Computed as ``sW^2 q* E[phi'(u) phi'(v)] / V(q*)`` (see
    :func:`correlation_map`). At a fixed point and ``c = 1`` it is
    ``chi1 = sW^2 g2(sqrt q*)^2``. Arguments as in :func:`correlation_map`.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.correlation_slope("relu", 1.0, 1.5, 0.1)), 6)  # chi1 = 1.5 / 2
      0.75
    """
    return _correlation(phi, c, sigma_w2, sigma_b2, params, q_star, rule, polar, slope=True)


def _correlation(phi, c, sigma_w2, sigma_b2, params, q_star, rule, polar, slope):
    st = _setup(phi, params, rule, c, sigma_w2, sigma_b2)
    _check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    c, sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (c, sigma_w2, sigma_b2))
    q = _resolve_q_star(st, sw2, sb2, q_star)
    qml = _q_max_log2(st.rule)
    return _corr_batched(st.fn, st.has_params, st.kinks, polar, qml, slope, c, q, sw2, sb2, st.params)


def _corr_fixed_point_scalar(fn, has_params, kinks, polar, q, sw2, sb2, params):
    dtype = q.dtype
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    ends, slopes = _corr_and_slope(fn, has_params, kinks, polar, jnp.stack([one, zero]), q, sw2, sb2, params)
    chi1, g0 = slopes[0], ends[1]

    def fun(c):
        cc, slope = _corr_and_slope(fn, has_params, kinks, polar, c, q, sw2, sb2, params)
        return cc - c, slope - 1.0

    # C is convex on [0, 1] (its Mehler series has non-negative coefficients),
    # C(0) >= 0 and C(1) = 1: for chi1 <= 1, c* = 1; otherwise the only other
    # root in [0, 1) is attracting, with G = C - c > 0 below it and < 0 above.
    # C'(c*) is the last Newton derivative plus 1: already computed at the root.
    c_root, ok, dg = _bracketed_newton(fun, zero, one, one, 0.5 * one, max_iter=100, xtol=8 * jnp.finfo(dtype).eps)
    ordered = chi1 <= 1
    at_zero = g0 <= _noise(dtype, one)
    c_star = jnp.where(ordered, 1.0, jnp.where(at_zero, 0.0, c_root))
    slope = jnp.where(ordered, chi1, jnp.where(at_zero, slopes[1], dg + 1.0))
    return CorrelationFixedPoint(c_star, slope, _depth_scale(slope), ordered | at_zero | ok)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _corr_fixed_point_batched(fn, has_params, kinks, polar, q_max_log2, q, sw2, sb2, params):
    f = lambda qq, a, b: _corr_fixed_point_scalar(fn, has_params, kinks, polar, qq, a, b, params)  # noqa: E731
    return _flat_vmap(f, jnp.clip(q, Q_MIN, 2.0**q_max_log2), sw2, sb2)


def correlation_fixed_point(
    phi, sigma_w2, sigma_b2, *, params: Any = None, q_star=None, rule=None, polar: _kernels.PolarRule = _kernels.DEFAULT_RULE
) -> CorrelationFixedPoint:
    """Stable fixed point ``c*`` of the correlation map and the depth scale ``xi_c``.

    ``c* = 1`` when ``C'(1) <= 1`` (ordered and critical); otherwise the root of
    ``C(c) = c`` in ``[0, 1)``, found by safeguarded Newton with
    ``C'(c) = sW^2 E[phi'(u) phi'(v)]``. ``xi_c = -1 / log C'(c*)``, so in the
    ordered phase ``xi_c = -1 / log chi1`` and at the edge of chaos
    ``xi_c = inf`` (Schoenholz et al. 2017). ``C'(1) = chi1`` at a positive,
    finite fixed point; where ``q* = 0`` or ``inf`` see :func:`correlation_map`.

    Examples:
      >>> import jaxsig
      >>> cf = jaxsig.dynamics.correlation_fixed_point("tanh", 1.5, 0.0)
      >>> float(cf.c_star)  # odd activation, no bias: chaotic inputs decorrelate fully
      0.0

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma_w2, sigma_b2: variances, any broadcastable shapes.
      params, q_star, rule, polar: as in :func:`correlation_map`.

    Returns:
      A :class:`CorrelationFixedPoint`.
    """
    st = _setup(phi, params, rule, sigma_w2, sigma_b2)
    _check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    sw2, sb2 = (jnp.asarray(a, st.dtype) for a in (sigma_w2, sigma_b2))
    q = _resolve_q_star(st, sw2, sb2, q_star)
    qml = _q_max_log2(st.rule)
    solve = lambda qq, a, b: _corr_fixed_point_batched(st.fn, st.has_params, st.kinks, polar, qml, qq, a, b, st.params)  # noqa: E731
    return _bucketed(solve, q, sw2, sb2)


def depth_scales(phi, sigma_w2, sigma_b2, *, params: Any = None, rule=None, polar=_kernels.DEFAULT_RULE) -> DepthScales:
    """Depth scales ``xi_q = -1 / log V'(q*)`` and ``xi_c = -1 / log C'(c*)``.

    Combines :func:`fixed_point` and :func:`correlation_fixed_point`
    (Schoenholz et al. 2017, eqs. 5 and 9). Both are ``inf`` where the rate is
    ``>= 1``; ``xi_c`` diverges at the edge of chaos.
    """
    fp = fixed_point(phi, sigma_w2, sigma_b2, params=params, rule=rule)
    cfp = correlation_fixed_point(phi, sigma_w2, sigma_b2, params=params, q_star=fp.q_star, rule=rule, polar=polar)
    return DepthScales(fp.xi_q, cfp.xi_c)


# --- Edge of chaos -------------------------------------------------------------------


def _critical_curve(fn, has_params, rule, q, params):
    """``(sW^2(q), sb^2(q))`` on the critical line, parametrised by ``q*``.

    ``chi1 = 1`` gives ``sW^2 = 1 / g2(sqrt q)^2``; ``V(q) = q`` then gives
    ``sb^2 = q - sW^2 m2(sqrt q)``.
    """
    s = _stats(fn, has_params, rule, q, params)
    sw2 = 1.0 / s.g2sq
    return sw2, q - sw2 * s.m2


def _solve_edge(fn, has_params, rule, q_max_log2, target, params):
    """``log q`` on the critical line with ``sb^2(q) = target`` (first crossing)."""
    dtype = target.dtype
    grid = jnp.asarray(_grid(q_max_log2, 4), dtype)
    sw2_g, sb2_g = _critical_curve(fn, has_params, rule, grid, params)
    tol = _noise(dtype, grid, sb2_g)
    above = sb2_g >= target - tol
    has = jnp.any(above)
    j = jnp.argmax(above)
    lo = jnp.log(grid[jnp.maximum(j - 1, 0)])
    hi = jnp.log(grid[j])

    def fun(x):
        h, dh = jax.jvp(lambda t: _critical_curve(fn, has_params, rule, jnp.exp(t), params)[1], (x,), (jnp.ones_like(x),))
        return h - target, dh

    x, ok, _ = _bracketed_newton(fun, lo, hi, -jnp.ones((), dtype), 0.5 * (lo + hi), max_iter=100, xtol=8 * jnp.finfo(dtype).eps)
    # Below the whole curve (target <= sb^2 at Q_MIN): the q* -> 0 end of the line.
    q = jnp.where(~has, jnp.inf, jnp.where(j == 0, 0.0, jnp.exp(x)))
    return q, (j == 0) | ~has | ok


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _edge_q(fn, has_params, rule, q_max_log2, target, params):
    return _solve_edge(fn, has_params, rule, q_max_log2, target, params)[0]


@_edge_q.defjvp
def _edge_q_jvp(fn, has_params, rule, q_max_log2, primals, tangents):
    target, params = primals
    dtarget, dparams = tangents
    q = _edge_q(fn, has_params, rule, q_max_log2, target, params)
    q_eval = jnp.clip(q, Q_MIN, 2.0**q_max_log2)
    # sb^2(q; params) = target: dq = (dtarget - d_params sb^2 . dparams) / (d sb^2 / dq).
    curve = lambda qq, p: _critical_curve(fn, has_params, rule, qq, p)[1]  # noqa: E731
    _, d_q = jax.jvp(lambda qq: curve(qq, params), (q_eval,), (jnp.ones_like(q_eval),))
    _, d_p = jax.jvp(lambda p: curve(q_eval, p), (params,), (dparams,))
    dq = (dtarget - d_p) * _inverse(d_q)
    inside = (q > 0) & jnp.isfinite(q)
    return q, jnp.where(inside, dq, 0.0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _edge_batched(fn, has_params, rule, q_max_log2, targets, params):
    def one(t):
        q = _edge_q(fn, has_params, rule, q_max_log2, t, params)
        qs = _probes(q, q_max_log2)
        sw2s = _critical_curve(fn, has_params, rule, qs, params)[0]
        slopes = _V_and_slope(fn, has_params, rule, qs, sw2s, t, params)[1]
        return EdgeOfChaos(_at(q, sw2s), q, _at(q, slopes))

    return _flat_vmap(one, targets)


def edge_of_chaos(phi, sigma_b2, *, params: Any = None, rule=None, q_max_log2: Optional[int] = None) -> EdgeOfChaos:
    """The critical line ``chi1 = 1`` (edge of chaos): critical ``sW^2`` for each ``sb^2``.

    Parametrised by the fixed point ``q``: ``chi1 = 1`` and ``V(q) = q`` give

    .. math:: \\sigma_w^2(q) = 1 / g_2(\\sqrt q)^2, \\qquad
              \\sigma_b^2(q) = q - \\sigma_w^2(q)\\, m_2(\\sqrt q).

    The curve is sampled on a geometric grid of ``q`` (four points per octave,
    ``Q_MIN`` to ``q_max``), the first grid interval where ``sb^2(q)`` reaches
    the requested value is located, and Newton steps in ``log q`` (bisection
    safeguarded) make it exact. ``sb^2(q)`` is increasing for the standard
    activations; where it is not, the smallest such ``q`` is returned.

    The critical point is a fixed point with ``chi1 = 1``; whether a network
    reaches it is another matter, reported as ``slope = V'(q*)`` (``< 1``:
    attracting). For tanh and erf it attracts; for GELU and Swish with
    ``sb^2 > 0`` it repels (``V'(q*) > 1``).

    Limits: when the requested ``sb^2`` is at or below ``sb^2(Q_MIN)`` the
    answer is the ``q -> 0`` end of the line, ``q* = 0``,
    ``sW^2 = 1 / phi'(0)^2`` (tanh, ``sb^2 = 0``: ``sW^2 = 1``); when it is above
    the whole curve, ``q* = inf`` and ``sW^2`` is the ``q -> inf`` limit (ReLU:
    ``sb^2(q) = 0`` for all ``q``, so every ``sb^2 > 0`` gives ``sW^2 = 2``,
    ``q* = inf``).

    Differentiable with respect to ``sigma_b2`` and ``params`` (implicit
    differentiation of ``sb^2(q) = sigma_b2``).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      sigma_b2: bias variance(s) ``>= 0``, any shape.
      params: parameters of ``phi``.
      rule: 1-D Gaussian quadrature.
      q_max_log2: ``log2`` of the largest ``q*`` considered (static).

    Returns:
      :class:`EdgeOfChaos` ``(sigma_w2, q_star, slope)``, each of ``sigma_b2``'s shape.

    Examples:
      >>> import jaxsig
      >>> e = jaxsig.dynamics.edge_of_chaos("relu", 0.0)
      >>> round(float(e.sigma_w2), 6)  # He initialisation
      2.0
    """
    st = _setup(phi, params, rule, sigma_b2)
    _check_nonneg(sigma_b2=sigma_b2)
    qml = _q_max_log2(st.rule) if q_max_log2 is None else int(q_max_log2)
    sb2 = jnp.asarray(sigma_b2, st.dtype)
    return _bucketed(lambda t: _edge_batched(st.fn, st.has_params, st.rule, qml, t, st.params), sb2)


# --- Initialisation advice --------------------------------------------------------------


def init_for_fixed_q(phi, q, sigma_b2=0.0, *, params: Any = None, rule=None) -> Init:
    """Weight variance that keeps the pre-activation variance at ``q``.

    ``V(q) = q`` gives ``sW^2 = (q - sb^2) / m2(sqrt q)`` (design principle 2 of
    SPEC). Requires ``q > sb^2``; under ``jit`` a negative ``sigma_w2`` flags
    ``q <= sb^2``.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      q: the variance to keep (``> 0``).
      sigma_b2: the bias variance (``0 <= sb^2 < q``).
      params, rule: as in :func:`variance_map`.

    Returns:
      :class:`Init` with ``sigma_w2``, ``sigma_b2``, ``q_star = q`` and the
      resulting ``chi1``.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.init_for_fixed_q("relu", 1.0).sigma_w2), 6)
      2.0
    """
    st = _setup(phi, params, rule, q, sigma_b2)
    _check_pos(q=q)
    _check_nonneg(sigma_b2=sigma_b2)
    if _is_concrete(q) and _is_concrete(sigma_b2) and np.any(np.asarray(q) <= np.asarray(sigma_b2)):
        raise ValueError(
            f"q must exceed sigma_b2 (the bias alone contributes sigma_b2 to the variance), got {q=}, {sigma_b2=}"
        )
    q, sb2 = (jnp.asarray(a, st.dtype) for a in (q, sigma_b2))
    shape = jnp.broadcast_shapes(q.shape, sb2.shape)
    q, sb2 = jnp.broadcast_to(q, shape), jnp.broadcast_to(sb2, shape)
    s = _stats_jit(st.fn, st.has_params, st.rule, q, st.params)
    sw2 = (q - sb2) / s.m2
    return Init(sw2, sb2, q, sw2 * s.g2sq)


def critical_init(phi, sigma_b2=0.0, *, q=None, params: Any = None, rule=None) -> Init:
    """Critical initialisation: ``(sW^2, sb^2)`` on the edge of chaos.

    With ``q`` given: the critical point whose fixed point is ``q``,
    ``sW^2 = 1 / g2(sqrt q)^2``, ``sb^2 = q - sW^2 m2(sqrt q)`` (``sigma_b2`` is
    then ignored, and a negative ``sb^2`` means no critical point has that ``q``).
    Otherwise the critical ``sW^2`` for the given ``sb^2``, from
    :func:`edge_of_chaos`.

    Returns:
      :class:`Init` with ``chi1`` recomputed at ``q*`` (``1`` up to rounding;
      its limit when ``q*`` is ``0`` or ``inf``).

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.dynamics.critical_init("tanh").sigma_w2), 6)
      1.0
    """
    if q is not None:
        st = _setup(phi, params, rule, q)
        _check_pos(q=q)
        q = jnp.asarray(q, st.dtype)
        s = _stats_jit(st.fn, st.has_params, st.rule, q, st.params)
        sw2 = 1.0 / s.g2sq
        return Init(sw2, q - sw2 * s.m2, q, sw2 * s.g2sq)
    st = _setup(phi, params, rule, sigma_b2)
    e = edge_of_chaos(phi, sigma_b2, params=params, rule=rule)
    s = _stats_jit(st.fn, st.has_params, st.rule, _probes(e.q_star, _q_max_log2(st.rule)), st.params)
    sb2 = jnp.broadcast_to(jnp.asarray(sigma_b2, st.dtype), e.sigma_w2.shape)
    return Init(e.sigma_w2, sb2, e.q_star, e.sigma_w2 * _at(e.q_star, s.g2sq))


# --- Scalar recursion -------------------------------------------------------------------


def _sup_abs_derivative(f, kinks, dtype):
    """``sup |phi'|`` over R.

    ``|phi'|`` is evaluated on the partition of R used for ``tv`` (the composite
    grid, ~2,000 points, plus geometric ladders toward every kink and out to
    ``2**48``). The best point is polished by Newton steps on ``phi'' = 0`` kept
    between its neighbours, which makes smooth interior maxima exact (GELU:
    ``1.1289`` at ``x = 1.4``); kinked maxima are reached along the ladders to
    within ``2**-40``. A ladder on which ``|phi'|`` diverges (``x^2`` outward,
    ``sign(x) sqrt|x|`` toward ``0``) makes the supremum ``inf``
    (:func:`jaxsig.limits.ladder_limit`). Otherwise the value is a lower bound,
    exact for every built-in activation.
    """
    line = quadrature.Composite(kinks=tuple(kinks)).line(dtype)
    x = jnp.asarray(line.x, dtype)
    d1 = lambda t: jax.jvp(f, (t,), (jnp.ones_like(t),))[1]  # noqa: E731
    d2 = lambda t: jax.jvp(d1, (t,), (jnp.ones_like(t),))[1]  # noqa: E731
    d3 = lambda t: jax.jvp(d2, (t,), (jnp.ones_like(t),))[1]  # noqa: E731
    g = jnp.abs(d1(x))
    g = jnp.where(jnp.isfinite(g), g, jnp.inf)
    eps = jnp.finfo(dtype).eps
    ladders = [line.pos, line.neg] + [side for kink in line.inner for side in kink]
    diverges = jnp.zeros((), bool)
    for idx in ladders:
        seq = g[jnp.asarray(idx)]
        lim = limits.ladder_limit(seq, eps * seq, rtol=1e3 * eps)
        diverges = diverges | (lim.status == limits.DIVERGENT) & (lim.value > 0)
    i = jnp.argmax(g)
    n = x.shape[0]
    left, right = x[jnp.maximum(i - 1, 0)], x[jnp.minimum(i + 1, n - 1)]

    def newton(t, _):
        s2, s3 = d2(t), d3(t)
        t_new = t - s2 / jnp.where(s3 == 0, 1.0, s3)
        ok = (s3 != 0) & jnp.isfinite(t_new) & (t_new > left) & (t_new < right)
        return jnp.where(ok, t_new, t), None

    t, _ = jax.lax.scan(newton, x[i], None, length=8)
    polished = jnp.abs(d1(t))
    sup = jnp.maximum(g[i], jnp.where(jnp.isfinite(polished), polished, 0.0))
    return jnp.where(diverges, jnp.inf, sup)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _scalar_fixed_point(f, a, b, x_init, radius, params):
    return _solve_scalar_fixed_point(f, a, b, x_init, radius, params)


def _solve_scalar_fixed_point(f, a, b, x_init, radius, params):
    dtype = x_init.dtype
    T = lambda x: f(a * x + b, params)  # noqa: E731

    def fun(x):
        y, dy = jax.jvp(T, (x,), (jnp.ones_like(x),))
        return y - x, dy - 1.0

    # Contraction: h(x) = T(x) - x is strictly decreasing and its root lies within
    # |T(x) - x| / (1 - L) of any x, a valid bracket. Otherwise Newton from the
    # end of the trajectory inside a wide bracket (see _scalar_recursion);
    # `converged` reports whether it found a fixed point.
    lo, hi = x_init - radius, x_init + radius
    x, _, _ = _bracketed_newton(fun, lo, hi, jnp.ones((), dtype), x_init, max_iter=100, xtol=4 * jnp.finfo(dtype).eps)
    h = fun(x)[0]
    ok = jnp.abs(h) <= 64 * jnp.finfo(dtype).eps * jnp.maximum(1.0, jnp.abs(x))
    return x, ok.astype(dtype)  # a float: custom_jvp outputs need float tangents


@_scalar_fixed_point.defjvp
def _scalar_fixed_point_jvp(f, primals, tangents):
    a, b, x_init, radius, params = primals
    da, db, _, _, dparams = tangents
    x, ok = _scalar_fixed_point(f, a, b, x_init, radius, params)
    # x = T(x; a, b, params): dx = (dT/dtheta . dtheta) / (1 - T'(x)).
    _, dt = jax.jvp(lambda aa, bb, p: f(aa * x + bb, p), (a, b, params), (da, db, dparams))
    _, slope = jax.jvp(lambda xx: f(a * xx + b, params), (x,), (jnp.ones_like(x),))
    return (x, ok), (dt * _inverse(1.0 - slope), jnp.zeros_like(ok))


def scalar_recursion(phi, a, b, x0, steps: int, *, params: Any = None) -> ScalarRecursion:
    """The recursion ``x_{t+1} = T(x_t) = phi(a x_t + b)``: fixed point, contraction, Lyapunov descent.

    * ``L = |a| sup_x |phi'(x)|`` is a Lipschitz constant of ``T``; ``sup`` is
      taken over a fine partition of R with ladders toward kinks and out to
      ``2**48``, polished by Newton steps at smooth maxima (a lower bound that is
      exact for the built-in activations).
    * When ``L < 1``, ``T`` is a contraction (Banach): a unique fixed point
      ``x*``, and ``V(x) = (x - x*)^2`` is a Lyapunov function,
      ``V(T x) = (T x - T x*)^2 <= L^2 V(x)``: ``descent = L^2``.
    * ``x*`` is found by safeguarded Newton on ``T(x) - x`` from the last iterate
      (bracketed by ``|T(x) - x| / (1 - L)`` when contracting), and is
      differentiable in ``a``, ``b`` and ``params`` (implicit differentiation).

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      a, b: scalars (gain and offset).
      x0: starting point.
      steps: number of iterations recorded in ``trajectory`` (static).
      params: parameters of ``phi``.

    Returns:
      :class:`ScalarRecursion`.

    Examples:
      >>> import jaxsig
      >>> r = jaxsig.dynamics.scalar_recursion("tanh", 0.5, 0.2, 3.0, 50)
      >>> float(r.lipschitz), bool(r.contracts)
      (0.5, True)
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps=}")
    act, params, dtype = _resolve(phi, params, a, b, x0)
    for name, v in (("a", a), ("b", b), ("x0", x0)):
        if jnp.ndim(v) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(v)}; use jax.vmap for batches")
        if _is_concrete(v) and not np.isfinite(np.asarray(v)):
            raise ValueError(f"{name} must be finite, got {name}={v}")
    f = act.fn if act.params is not None else _ignore_params(act.fn)
    return _scalar_recursion(f, tuple(act.kinks), steps, *(jnp.asarray(v, dtype) for v in (a, b, x0)), params)


@functools.lru_cache(maxsize=None)
def _ignore_params(fn):
    return lambda x, params: fn(x)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _scalar_recursion(f, kinks, steps, a, b, x0, params):
    dtype = x0.dtype
    T = lambda x: f(a * x + b, params)  # noqa: E731
    sup = _sup_abs_derivative(lambda x: f(x, params), kinks, dtype)
    lip = jnp.abs(a) * sup
    contracts = lip < 1

    def step(x, _):
        y = T(x)
        return y, y

    x_end, xs = jax.lax.scan(step, x0, None, length=steps)
    traj = jnp.concatenate([x0[None], xs])
    h_end = T(x_end) - x_end
    wide = 1e3 * (1.0 + jnp.abs(x_end))  # no bound on |x - x*| without a contraction
    radius = jnp.where(contracts, jnp.abs(h_end) / jnp.where(contracts, 1.0 - lip, 1.0), wide)
    radius = jax.lax.stop_gradient(radius * (1.0 + 1e-6) + jnp.finfo(dtype).tiny)
    x_init = jax.lax.stop_gradient(x_end)
    x_star, ok = _scalar_fixed_point(f, a, b, x_init, radius, params)
    ok = jax.lax.stop_gradient(ok) > 0
    return ScalarRecursion(x_star, lip, contracts, lip * lip, traj, ok)


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
    _check_nonneg(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    _check_pos(q0=q0)
    act, params, dtype = _resolve(phi, params, sigma_w2, sigma_b2, q0, dtype=dtype)
    f = act.fn if act.params is not None else _ignore_params(act.fn)
    sw2, sb2, q0 = (jnp.asarray(v, dtype) for v in (sigma_w2, sigma_b2, q0))
    # One compiled network, run once per key: vmapping the per-layer random
    # weights would double the (threefry) compile time for no saving on CPU.
    runs = [_simulate(f, width, depth, dtype.name, k, sw2, sb2, q0, params) for k in jax.random.split(key, batch)]
    return MLPSimulation(*(jnp.stack(v) for v in zip(*runs)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _simulate(f, width, depth, dtype_name, key, sw2, sb2, q0, params):
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
            y, dy = jax.jvp(lambda t: f(t, params), (h,), (dh,))
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

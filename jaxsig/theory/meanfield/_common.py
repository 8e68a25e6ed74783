"""Shared pieces of the mean-field theory: setup, Gaussian sums on the
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
from jaxsig.core._validate import check_range, working_dtype
from jaxsig.core.gaussian import expectations

PHASES = ("ordered", "critical", "chaotic")
"""Names of the phases, indexed by :attr:`FixedPoint.phase` (ordered by ``chi1``)."""

Q_MIN = 2.0**-40
"""Smallest variance resolved (``sigma ~ 1e-6``, where the default rule is still
exact). A fixed point below it is reported as ``0``; the maps evaluated "at
``q < Q_MIN``" are read at ``Q_MIN``, an error of ``O(Q_MIN)``, while
:func:`fixed_point` and :func:`edge_of_chaos` report the limits ``q -> 0``
(extrapolated from ``Q_MIN``, ``2 Q_MIN`` and ``4 Q_MIN``)."""

Q_MAX_DEFAULT_LOG2 = 11  # q_max = 2048: sigma = 45, inside the default grid (x_max = 512)


# --- Helpers --------------------------------------------------------------------


class Setup(NamedTuple):
    act: Any  # the prepared activation (a pytree: its leaves are the parameters)
    rule: Any
    dtype: Any


def resolve_activation(phi, params, dtype=None, **arrays):
    """The prepared activation and the working dtype of ``arrays`` (by name)."""
    if dtype is None:
        dtype = working_dtype(arrays, _activations.as_activation(phi, params).params)
    dtype = jnp.dtype(dtype)
    return _activations.prepare(phi, params, dtype=dtype), dtype


def setup(phi, params, rule, **arrays) -> Setup:
    act, dtype = resolve_activation(phi, params, **arrays)
    # 0 is always a panel edge; declaring it again as a kink would only drop the
    # grid's refinement toward 0, which small variances need.
    kinks = tuple(k for k in act.kinks if float(k) != 0.0)
    return Setup(act, quadrature.get_rule(rule).with_kinks(kinks), dtype)


def default_q_max_log2(rule) -> int:
    if isinstance(rule, quadrature.Composite):
        return int(math.floor(math.log2((rule.x_max / 10.0) ** 2)))
    return Q_MAX_DEFAULT_LOG2


class Stats(NamedTuple):
    m2: jax.Array  # E[phi(u)^2], u ~ N(0, q)
    g2sq: jax.Array  # E[phi'(u)^2]
    dm2_dq: jax.Array  # d m2 / dq = E[phi(u)^2 (u^2/q - 1)] / (2 q)


def gaussian_stats(act, rule, q):
    """The Gaussian statistics the maps need, at ``sigma = sqrt(max(q, Q_MIN))``:
    :func:`jaxsig.core.gaussian.expectations`, the kernel of :func:`jaxsig.moments`
    (so the numbers agree to the last bit), read as ``m2``,
    ``E[phi'^2]`` and ``dm2/dq = (dm2/dsigma) / (2 sigma)``. Non-finite ``phi`` or ``phi'`` at a node
    makes the result NaN, as in ``moments``."""
    sigma = jnp.sqrt(jnp.maximum(q, Q_MIN))
    r = expectations(act, rule, sigma, jnp.zeros_like(sigma), raw=True)
    out = Stats(r.m2, r.d2, r.dm2_dsigma / (2.0 * sigma))
    return jax.tree_util.tree_map(lambda v: jnp.where(r.finite, v, jnp.nan), out)


def V(act, rule, q, sw2, sb2):
    return sw2 * gaussian_stats(act, rule, q).m2 + sb2


def V_and_slope(act, rule, q, sw2, sb2):
    s = gaussian_stats(act, rule, q)
    return sw2 * s.m2 + sb2, sw2 * s.dm2_dq, s


V_jit = jax.jit(V, static_argnums=(1,))
stats_jit = jax.jit(gaussian_stats, static_argnums=(1,))


@functools.partial(jax.jit, static_argnums=(1,))
def slope_jit(act, rule, q, sw2):
    return V_and_slope(act, rule, q, sw2, 0.0)[1]


def depth_scale(rate):
    """``-1 / log|rate|``: ``inf`` for ``|rate| >= 1``, ``0`` for ``rate = 0``."""
    r = jnp.abs(rate)
    # A rate within rounding of 1 (the maps are accurate to a few ulps of their
    # terms, see noise) is 1: the depth scale is infinite, never ~1/eps.
    inside = (r > 0) & (r < 1 - 64 * jnp.finfo(r.dtype).eps)
    xi = -1.0 / jnp.log(jnp.where(inside, r, 0.5))
    return jnp.where(inside, xi, jnp.where(r > 0, jnp.inf, 0.0))


def bracketed_newton(fun, lo, hi, f_lo, x0, *, max_iter, xtol):
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


def flat_vmap(f, *args):
    """Broadcast ``args``, apply the scalar function ``f`` elementwise, reshape."""
    shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
    flat = [jnp.broadcast_to(a, shape).ravel() for a in args]
    out = jax.vmap(f)(*flat)
    return jax.tree_util.tree_map(lambda o: o.reshape(shape + o.shape[1:]), out)


def bucketed(solver, *args):
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


def check_nonneg(**kw):
    for name, v in kw.items():
        check_range(name, v, low=0.0)


def check_pos(**kw):
    for name, v in kw.items():
        check_range(name, v, low=0.0, strict=True)


def log_grid(q_max_log2, per_octave):
    n = (q_max_log2 + 40) * per_octave + 1
    return 2.0 ** np.linspace(-40.0, float(q_max_log2), n)


def rounding_noise(dtype, *vals):
    # The variance map is accurate to a few ulps of its terms; differences
    # below this are indistinguishable from zero.
    eps = jnp.finfo(dtype).eps
    return 64 * eps * sum(jnp.abs(v) for v in vals)


def probe_points(q, q_max_log2):
    """Variances at which a statistic "at ``q``" is read: ``(6,) + q.shape``.

    ``q`` clipped to ``[Q_MIN, q_max]``, then ``Q_MIN, 2 Q_MIN, 4 Q_MIN`` (for the
    limit ``q -> 0``) and ``q_max, q_max / 4`` (for ``q -> inf``); see :func:`read_at`.
    """
    q_max = 2.0**q_max_log2

    def full(v):
        return jnp.full_like(q, v)

    return jnp.stack(
        [jnp.clip(q, Q_MIN, q_max), full(Q_MIN), full(2 * Q_MIN), full(4 * Q_MIN), full(q_max), full(q_max / 4)]
    )


def limit_at_infinity(top, quarter):
    """Limit as ``q -> inf`` of a statistic read at ``q_max`` and ``q_max / 4``.

    For activations of linear growth (A1) the statistics approach their limit
    with an ``O(1/sigma)`` correction, removed by one Richardson step
    (``sigma`` halves): ``2 top - quarter``; exact for positively homogeneous
    ones (ReLU). Growth by more than half over the quadrupling means a
    superlinear activation: the limit is ``inf``.
    """
    growing = jnp.abs(top) > 1.5 * jnp.abs(quarter)
    return jnp.where(growing, jnp.inf, 2.0 * top - quarter)


def _limit_at_zero(v1, v2, v4):
    """``v0`` of ``v(sigma) = v0 + a sigma + b sigma^2`` through ``sigma = s, sqrt(2) s, 2 s``."""
    r = 2.0**0.5
    w3 = (r - 2.0) / (4.0 - 3.0 * r)
    w2 = -1.0 - 3.0 * w3
    w1 = 1.0 - w2 - w3
    return w1 * v1 + w2 * v2 + w3 * v4


def read_at(q, values):
    """A statistic at ``q`` from its ``values`` at :func:`probe_points`, limits included.

    ``q = 0``: the quadratic extrapolation in ``sigma = sqrt(q)`` through
    ``Q_MIN, 2 Q_MIN, 4 Q_MIN``, which removes the ``O(sqrt q)`` term of
    statistics whose ``phi''`` jumps at 0 (ELU: ``chi1 -> 0.9`` exactly at the
    edge, not ``0.9 - 4e-7``) and the ``O(q)`` term of smooth ones (tanh at its
    critical point: ``V'`` and ``chi1`` are ``1`` to rounding, so ``xi_q = inf``);
    exact for statistics constant near 0 (ReLU). A spread at rounding level
    (float32, where ``Q_MIN << eps``) is noise, not a correction, and is not
    extrapolated. ``q = inf``: :func:`limit_at_infinity`.
    """
    v1, v2, v4 = values[1], values[2], values[3]
    resolved = jnp.abs(v1 - v4) > 64 * jnp.finfo(v1.dtype).eps * jnp.abs(v1)
    zero = jnp.where(resolved, _limit_at_zero(v1, v2, v4), v1)
    return jnp.where(q == 0, zero, jnp.where(jnp.isinf(q), limit_at_infinity(values[4], values[5]), values[0]))

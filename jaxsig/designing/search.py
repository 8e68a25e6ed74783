"""Designing activations by gradient descent: :func:`design`.

Describe the signature you want as targets (:mod:`jaxsig.targets`), pick a
parametrised family (:mod:`jaxsig.families`), and :func:`design` searches the
family for parameters that meet every constraint, optimising the objectives if
any:

>>> import jaxsig                                              # doctest: +SKIP
>>> res = jaxsig.design("rational", ["g2 <= 0.8", "tv < 5", "c < inf", "m2 == 1"])
>>> res.feasible, res.activation                               # doctest: +SKIP
>>> selu = jaxsig.design("scaled_elu", ["m1 == 0", "m2 == 1"], fixed={"shift": 0.0})  # doctest: +SKIP
>>> edge = jaxsig.design("swish_beta", ["m1 == 0", "chi1 == 1"], q=1.0, sigma_b2=0.1)  # doctest: +SKIP

The method, in six steps:

1. **Starts.** Restart 0 is the family's default ``init_params``; the others
   are ``family.random_init(key, restarts - 1)`` with ``key = jax.random.key(seed)``,
   so a result is reproducible from its seed. Every start is projected onto the
   parameter constraints (step 2).
2. **Parameter constraints.** ``fixed={"shift": 0.0}`` holds a parameter at a
   value, exactly; ``bounds={"alpha": (0, 3)}`` keeps it in ``[0, 3]``, exactly.
   Both by projection (:mod:`jaxsig.designing.constraints`): the optimizer
   minimises ``L(P(theta))`` and every iterate is projected, ``theta <- P(theta)``.
3. **Augmented Lagrangian** (Powell–Hestenes–Rockafellar). With weighted
   residuals ``r_i`` (``v - b`` for ``<=`` and ``==``, ``b - v`` for ``>=``),
   each round minimises

   ``L = f + sum_eq (lam_i r_i + rho/2 r_i^2)
   + sum_ineq (max(0, lam_i + rho r_i)^2 - lam_i^2) / (2 rho)``

   (``f`` the weighted objectives) by ``steps // rounds`` optax steps (adam by
   default; any ``optax.GradientTransformation``: each step calls
   ``update(grads, state, params, value=L, grad=grads, value_fn=L)``, the
   keyword arguments of ``optax.GradientTransformationExtraArgs``, so
   ``optax.lbfgs()`` and ``optax.contrib.reduce_on_plateau`` work as written;
   plain transformations are wrapped by ``optax.with_extra_args_support``), then
   updates ``lam_i <- lam_i + rho r_i`` (equalities),
   ``lam_i <- max(0, lam_i + rho r_i)`` (inequalities) and multiplies ``rho``
   by 10 when the constraint violation did not fall below a quarter of the last
   round's. A round is one ``jit``-compiled ``lax.scan``, all restarts at once
   under ``vmap``; bounds, weights, sigmas, the operating point ``(q, sigma_b2)``
   and the parameter constraints are traced, so new values never recompile.
4. **Lazy non-Gaussian targets.** ``tv``, ``c``, slopes and intercepts need the
   full :func:`jaxsig.signature` (second derivatives, ladders), Gaussian and
   mean-field ones only :func:`jaxsig.moments` (about 4x cheaper to run and over
   10x cheaper to compile; ``xi_c`` adds a 2-D quadrature and a root solve).
   Inequalities on non-Gaussian components join the inner loop only once some
   restart comes within ``10 %`` of ``1 + |bound|`` of violating them (checked
   after every round); until then the inner loop uses moments alone.
   Equalities and objectives on them are in from the start.
5. **Polish.** Adam leaves residuals of ~1e-4. A few Gauss–Newton projection
   steps ``theta <- P(theta - J^+ r)`` on the active set (equalities, and
   inequalities within ``1e-3 (1 + |b|)`` of their bound, which are aimed
   ``0.1 sqrt(eps) (1 + |b|)`` inside it) bring equalities to ~1e-15 in
   float64. ``J`` is the forward-mode Jacobian of the targeted values with the
   columns of fixed parameters, and of bounded ones that the step would push
   through their bound, removed; ``J^+`` is its pseudo-inverse (the
   minimum-norm step, which stays close to the Lagrangian's optimum); the best
   iterate by violation is kept.
6. **Selection.** Every polished restart is re-evaluated outside ``jit``.
   Feasible means every target holds (equalities to
   ``eq_tol``: ``1e-8`` in float64, ``1e-4`` in float32; inequalities with
   margin ``>= 0``, strictly for ``<``, ``>``; finiteness checks). The best
   feasible restart (lowest objective, then lowest index) is returned; if none
   is feasible, the one with the least weighted violation, with
   ``feasible=False``.

Mean-field targets (``chi1 q_star dV xi_q xi_c``) are read at the
variance-preserving initialisation for ``q`` and ``sigma_b2``
(:mod:`jaxsig.designing.network`). At ``sigma_b2 = 0`` a mean-zero activation
has ``chi1 >= 1`` by the Gaussian Poincaré inequality, with equality only for
linear ``phi``: asking for ``"m1 == 0"`` with ``chi1 < 1`` there is
infeasible, and :func:`design` warns and records the reason in
``DesignResult.notes`` (:func:`jaxsig.targets.poincare_note`).

Gradients of the non-smooth components. ``tv`` is a partition sum
``sum |phi'(x_{i+1}) - phi'(x_i)|`` in which the interior extrema of ``phi'``
are located (Hermite interpolant, then Newton on ``phi'' = 0``) without
gradient: at an extremum ``phi''`` vanishes, so by the envelope theorem the
location contributes nothing, and the gradient is the exact derivative of the
sum wherever no difference changes sign (away from parameter values where an
extremum of ``phi'`` appears, vanishes or crosses a kink). ``c`` is a quadrature
of ``|phi - alpha x - beta|``, ``|.|`` differentiated as ``sign(.)``, with the
panels where the integrand changes sign integrated piecewise exactly (the
roots carry no gradient, as ``|.|`` vanishes there); the slopes ``alpha`` and
intercepts ``beta`` come from converged ladder terms, differentiated through.
Tail extrapolations treat their ratio as a constant: exact for exponential
tails and pure power laws; for a remainder ``C/x^2 + D/x^4`` (the rational
family) ``c`` is accurate to ~1e-4 and its gradient to ~1e-3 relative. Both are tested
against central finite differences. Where a gradient is not finite (e.g. a
parameter value that makes ``phi`` overflow) it is replaced by ``0`` for that
step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import warnings
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxsig._version import __version__
from jaxsig.core import _progress
from jaxsig.core import activations as _activations
from jaxsig.core.signature import FIELDS, Signature, signature
from jaxsig.designing import constraints as _constraints
from jaxsig.designing import families as _families
from jaxsig.designing import targets as _targets
from jaxsig.designing.evaluation import Evaluation, evaluate_restarts, near_lazy
from jaxsig.designing.result import DesignResult, History

__all__ = ["design", "DesignResult", "History", "default_optimizer"]

_RHO0, _RHO_GROWTH, _RHO_MAX = 10.0, 10.0, 1e8
_ACTIVE = 1e-3  # the polish treats inequalities within 1e-3 (1 + |b|) as active


@functools.lru_cache(maxsize=None)
def default_optimizer(learning_rate: float = 0.02, steps: int = 500) -> optax.GradientTransformation:
    """``optax.adam`` with a cosine decay from ``learning_rate`` to 5 % of it over ``steps``.

    Cached, so equal arguments give the same object and the compiled search is
    reused. (Pass your own optimizer once and reuse it for the same effect.)
    """
    schedule = optax.cosine_decay_schedule(learning_rate, max(int(steps), 1), alpha=0.05)
    return optax.adam(schedule)


@functools.lru_cache(maxsize=64)
def _with_extra_args(optimizer) -> optax.GradientTransformationExtraArgs:
    """``optax.with_extra_args_support``, cached so that the compiled search is reused per optimizer."""
    return optax.with_extra_args_support(optimizer)


@dataclasses.dataclass(frozen=True)
class _Problem:
    """The static part of a search: what a change of recompiles."""

    fn: Callable
    kinks: tuple
    rule: Any
    full: bool
    optimizer: Any
    inner: int

    def act(self, params):
        return _activations.Activation("design", self.fn, params, self.kinks)


class _State(NamedTuple):
    params: Any
    opt_state: Any
    lam: jax.Array
    rho: jax.Array
    viol: jax.Array


# --- The compiled pieces --------------------------------------------------------------------


def _values(problem: _Problem, params, arrays):
    return _targets.evaluate(arrays, problem.act(params), params, rule=problem.rule, full=problem.full)


def _rows(problem: _Problem, arrays, dtype):
    """Masks of the rows the compiled search uses: ``(eq, ineq, sign, b)``."""
    op = jnp.asarray(arrays.op)
    b = jnp.asarray(arrays.value, dtype)
    usable = jnp.ones(op.shape, bool) if problem.full else jnp.asarray(arrays.cheap)
    finite_b = jnp.isfinite(b)
    upper = ((op == _targets.LE) | (op == _targets.LT)) & finite_b & usable
    lower = ((op == _targets.GE) | (op == _targets.GT)) & finite_b & usable
    eq = (op == _targets.EQ) & usable
    sign = jnp.where(lower, -1.0, 1.0).astype(dtype)
    return eq, upper | lower, sign, jnp.where(finite_b, b, 0.0)


def _lagrangian(problem, arrays, v, lam, rho):
    eq, ineq, sign, b = _rows(problem, arrays, v.dtype)
    w = jnp.asarray(arrays.weight, v.dtype)
    ok = jnp.isfinite(v)
    # Double where: a non-finite value contributes nothing, and no NaN gradient.
    v = jnp.where(ok, v, 0.0)
    r = jnp.where(ok, w * sign * (v - b), 0.0)
    obj_rows = (jnp.asarray(arrays.op) == _targets.MIN) | (jnp.asarray(arrays.op) == _targets.MAX)
    f = _targets.objective(arrays, jnp.where(obj_rows, v, 0.0))
    l_eq = jnp.where(eq, lam * r + 0.5 * rho * r * r, 0.0)
    l_in = jnp.where(ineq, (jnp.maximum(0.0, lam + rho * r) ** 2 - lam * lam) / (2.0 * rho), 0.0)
    return f + jnp.sum(l_eq) + jnp.sum(l_in), (r, eq, ineq)


def _finite(tree):
    return jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0), tree)


@functools.partial(jax.jit, static_argnums=0)
def _round(problem: _Problem, state: _State, arrays, box):
    """One augmented-Lagrangian round for every restart: ``problem.inner`` steps, then the multipliers."""

    def one(params, opt_state, lam, rho, prev):
        def loss(p):
            v = _values(problem, _constraints.project(box, p), arrays)
            L, _ = _lagrangian(problem, arrays, v, lam, rho)
            return L, v

        def value_fn(p):
            return loss(p)[0]

        def step(carry, _):
            p, s, _ = carry
            (L, v), g = jax.value_and_grad(loss, has_aux=True)(p)
            g = _finite(g)
            updates, s = problem.optimizer.update(g, s, p, value=L, grad=g, value_fn=value_fn)
            p = _constraints.project(box, optax.apply_updates(p, _finite(updates)))
            return (p, s, v), None

        v0 = jnp.zeros(jnp.shape(arrays.op), lam.dtype)
        (p, s, v), _ = jax.lax.scan(step, (params, opt_state, v0), None, length=problem.inner)
        # Multipliers from the values of the last step (one optimizer step stale).
        _, (r, eq, ineq) = _lagrangian(problem, arrays, v, lam, rho)
        lam_new = jnp.where(eq, lam + rho * r, jnp.where(ineq, jnp.maximum(0.0, lam + rho * r), 0.0))
        # PHR measure of infeasibility: |h| for equalities, max(g, -lam/rho) for inequalities.
        meas = jnp.where(eq, r, jnp.where(ineq, jnp.maximum(r, -lam / rho), 0.0))
        viol = jnp.sqrt(jnp.sum(meas * meas))
        rho_new = jnp.where(viol > 0.25 * prev, jnp.minimum(rho * _RHO_GROWTH, _RHO_MAX), rho)
        return _State(p, s, lam_new, rho_new, viol)

    return jax.vmap(one)(state.params, state.opt_state, state.lam, state.rho, state.viol)


def _gauss_newton_step(A, rhs, x, free, lo, hi):
    """``x - dx``, ``dx = A^+ rhs`` over the free columns, projected onto ``[lo, hi]``.

    A second solve drops the columns of entries on a bound that the first step
    pushes through it (they stay on the bound).
    """

    def solve(cols):
        dx = jnp.linalg.pinv(jnp.where(cols[None, :], A, 0.0)) @ rhs
        # A trust region of one unit: far steps mean a singular or wrong model.
        norm = jnp.sqrt(jnp.sum(dx * dx))
        dx = dx * jnp.minimum(1.0, 1.0 / jnp.where(norm > 0, norm, 1.0))
        return jnp.where(jnp.all(jnp.isfinite(dx)), jnp.where(cols, dx, 0.0), 0.0)

    dx = solve(free)
    blocked = ((x <= lo) & (x - dx < lo)) | ((x >= hi) & (x - dx > hi))
    dx = jnp.where(jnp.any(blocked), solve(free & ~blocked), dx)
    return jnp.clip(x - dx, lo, hi)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _polish(problem: _Problem, params, arrays, box, iterations: int):
    """Gauss–Newton projection onto the active constraints, for every restart."""

    def one(params):
        x0, unravel = ravel_pytree(params)
        dtype = x0.dtype
        free = ravel_pytree(box.free)[0].astype(bool)
        lo, hi = (ravel_pytree(t)[0].astype(dtype) for t in (box.lo, box.hi))
        eq, ineq, sign, b = _rows(problem, arrays, dtype)
        delta = 0.1 * math.sqrt(float(jnp.finfo(dtype).eps)) * (1.0 + jnp.abs(b))
        scale = 1.0 + jnp.abs(b)

        def f(x):
            v = _values(problem, unravel(x), arrays)
            return v, v

        def score(v):
            r = sign * (v - b)
            bad = ~jnp.isfinite(v) & (eq | ineq)
            s = jnp.where(eq, jnp.abs(r), jnp.where(ineq, jnp.maximum(r, 0.0), 0.0)) / scale
            return jnp.where(jnp.any(bad), jnp.inf, jnp.sum(jnp.where(bad, 0.0, s)))

        def body(carry, _):
            x, best_x, best = carry
            J, v = jax.jacfwd(f, has_aux=True)(x)
            sc = score(v)
            better = sc <= best
            best_x = jnp.where(better, x, best_x)
            best = jnp.where(better, sc, best)
            r = sign * (v - b)
            active = (eq | (ineq & (r > -_ACTIVE * scale))) & jnp.isfinite(v) & jnp.all(jnp.isfinite(J), axis=1)
            rhs = jnp.where(active, jnp.where(eq, r, r + delta), 0.0)
            A = jnp.where(active[:, None], sign[:, None] * J, 0.0)
            return (_gauss_newton_step(A, rhs, x, free, lo, hi), best_x, best), sc

        init = (x0, x0, jnp.asarray(jnp.inf, dtype))
        (x, best_x, best), _ = jax.lax.scan(body, init, None, length=iterations)
        sc = score(f(x)[0])
        best_x = jnp.where(sc <= best, x, best_x)
        return unravel(best_x)

    return jax.vmap(one)(params)


# --- design -------------------------------------------------------------------------------------


def _as_family(family):
    """A family or a parametrised activation to design, resolved by the one name
    resolver (:func:`jaxsig.activations.resolve`, families first)."""
    name = family if isinstance(family, str) else None
    if name is not None:
        family = _activations.resolve(name, prefer="family")
    if isinstance(family, _activations.Activation):
        if family.params is None:
            raise ValueError(
                f"activation {family.name!r} has no parameters to design. Pick a family from "
                f"jaxsig.families.names(): {', '.join(_families.names())}"
            )
        return family
    raise TypeError(
        f"family must be a name ({', '.join(_families.names())}), a jaxsig.families.Family or an "
        f"Activation with params, got {type(family).__name__}"
    )


def _starts(fam, init_params, restarts, key, dtype):
    base = fam.params if init_params is None else init_params
    base = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), base)
    if restarts == 1:
        return jax.tree_util.tree_map(lambda x: x[None], base)
    if isinstance(fam, _families.Family) and fam.random_init is not None and init_params is None:
        rand = fam.random_init(key, restarts - 1)
    else:
        # Generic restarts: 10 % relative noise (plus 0.1 absolute) around the start.
        leaves, treedef = jax.tree_util.tree_flatten(base)
        keys = jax.random.split(key, len(leaves))
        rand = jax.tree_util.tree_unflatten(
            treedef,
            [
                x + (0.1 + 0.1 * jnp.abs(x)) * jax.random.normal(k, (restarts - 1,) + x.shape, dtype)
                for k, x in zip(keys, leaves)
            ],
        )
    rand = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), rand)
    return jax.tree_util.tree_map(lambda a, r: jnp.concatenate([a[None], r]), base, rand)


def _check_settings(steps, restarts, rounds, polish_steps, seed, optimizer):
    for name, v, lo in (
        ("steps", steps, 1),
        ("restarts", restarts, 1),
        ("rounds", rounds, 1),
        ("polish_steps", polish_steps, 0),
    ):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {name}={v!r}")
    if rounds > steps:
        raise ValueError(f"rounds ({rounds}) must not exceed steps ({steps}): each round takes steps // rounds steps")
    if not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")


@dataclasses.dataclass(frozen=True)
class _Search:
    """What one :func:`design` call works with (Python level; not a pytree)."""

    fam: Any
    targets: Any
    arrays: Any  # TargetArrays in the working dtype
    box: Any  # constraints.Box in the working dtype
    rule: Any
    eq_tol: float
    optimizer: Any  # with extra-args support
    inner: int
    rounds: int

    def problem(self, full, optimizer=True):
        # The polish does not depend on the optimizer: leave it out of its compilation key.
        opt, inner = (self.optimizer, self.inner) if optimizer else (None, 0)
        return _Problem(self.fam.fn, tuple(self.fam.kinks), self.rule, full, opt, inner)

    def judge(self, params, full=None) -> Evaluation:
        full = self.targets.needs_signature if full is None else full
        return evaluate_restarts(self.fam, params, self.targets, self.rule, self.eq_tol, full)


def _run_rounds(job: _Search, state: _State, progress: bool):
    """The augmented-Lagrangian rounds (steps 3-4); returns ``(state, evaluation, history, full)``."""
    tg = job.targets
    cheap = tg.arrays.cheap
    # Which rows the inner loop differentiates: see step 4 of the module docstring.
    full = any(not cheap[i] and s.op in ("==", "minimize", "maximize") for i, s in enumerate(tg))
    if tg.needs_signature and not full:
        full = near_lazy(tg, job.judge(state.params).values)
    history = []
    with _progress.progress(job.rounds + 1, progress, "jaxsig design") as advance:
        for k in range(job.rounds):
            state = _round(job.problem(full), state, job.arrays, job.box)
            ev = job.judge(state.params)
            history.append(((k + 1) * job.inner, ev, state.rho))
            full = full or (tg.needs_signature and near_lazy(tg, ev.values))
            advance(f"round {k + 1}/{job.rounds}, min violation {np.min(ev.violation):.2e}")
    return state, ev, history, full


def _run_polish(job: _Search, state: _State, ev: Evaluation, full: bool, steps: int):
    """The Gauss–Newton polish (step 5), kept per restart only where it does not make things worse."""
    params = _polish(job.problem(full, False), state.params, job.arrays, job.box, steps)
    polished = job.judge(params)
    if job.targets.needs_signature and not full and not polished.feasible.any():
        # A lazily handled constraint became active in the polish: redo it with all rows.
        params = _polish(job.problem(True, False), state.params, job.arrays, job.box, steps)
        polished = job.judge(params)
    worse = polished.worse_than(ev)
    params = jax.tree_util.tree_map(
        lambda a, b: jnp.where(worse.reshape((-1,) + (1,) * (a.ndim - 1)), b, a), params, state.params
    )
    return params, polished.where(worse, ev)


def _winner_signature(fam, params, sigma, rule) -> Signature:
    try:
        sig = signature(fam, np.asarray(sigma, jax.tree_util.tree_leaves(params)[0].dtype), params=params, rule=rule)
        return Signature(*(float(x) for x in sig))
    except (ValueError, FloatingPointError):
        return Signature(*([math.nan] * len(FIELDS)))


def _history(history) -> History:
    return History(
        step=np.array([h[0] for h in history]),
        violation=np.stack([np.where(h[1].failed_checks > 0, np.inf, h[1].violation) for h in history]),
        objective=np.stack([h[1].objective for h in history]),
        rho=np.stack([np.asarray(h[2]) for h in history]),
    )


def design(
    family,
    targets,
    *,
    sigma: float = 1.0,
    q: float = 1.0,
    sigma_b2: float = 0.0,
    fixed: Optional[dict] = None,
    bounds: Optional[dict] = None,
    steps: int = 500,
    restarts: int = 8,
    rounds: int = 10,
    seed: int = 0,
    optimizer: Optional[optax.GradientTransformation] = None,
    rule=None,
    eq_tol: Optional[float] = None,
    init_params=None,
    polish_steps: int = 8,
    progress: Optional[bool] = None,
) -> DesignResult:
    """Search a parametrised family for an activation whose signature meets ``targets``.

    (Long by design: the search's steps in order, each a call to a helper below.)

    Args:
      family: a family name (:func:`jaxsig.families.names`), a
        :class:`~jaxsig.families.Family`, or any
        :class:`~jaxsig.Activation` with ``params``.
      targets: target text(s) or :class:`~jaxsig.targets.Targets`, e.g.
        ``["g2 <= 0.8", "tv < 5", "c < inf", "m2 == 1"]``, ``["m1 == 0",
        "chi1 == 1"]`` or ``"g2^2 / m2 == 1"`` (grammar: :data:`jaxsig.targets.GRAMMAR`).
      sigma: input scale of Gaussian components given without ``@``.
      q: pre-activation variance of the operating point of the mean-field
        targets (``chi1 q_star dV xi_q xi_c``): the variance-preserving
        initialisation ``sW^2 = (q - sigma_b2) / m2(sqrt q)``.
      sigma_b2: bias variance of that operating point (``0 <= sigma_b2 < q``).
        At ``0``, ``m1 == 0`` forces ``chi1 >= 1`` (Gaussian Poincaré
        inequality; equality only for linear ``phi``): a warning says so.
      fixed: ``{name: value}``: parameters held at a value (not optimised);
        a name is a parameter (``"shift"``), an entry (``"numerator[1]"``) or a
        nested path (:func:`jaxsig.designing.constraints.names`).
      bounds: ``{name: (lo, hi)}``: parameters kept in ``[lo, hi]`` (exactly,
        by projection; ``-inf``/``inf`` for one-sided bounds).
      steps: optimizer steps per restart, split evenly over ``rounds``.
      restarts: number of starting points optimised together (``vmap``);
        restart 0 is the family's default start.
      rounds: augmented-Lagrangian rounds (multiplier updates).
      seed: seed of the random restarts.
      optimizer: any optax transformation (default :func:`default_optimizer`,
        adam with cosine decay), including those whose update needs ``value``,
        ``grad`` and ``value_fn`` (``optax.lbfgs()``,
        ``optax.contrib.reduce_on_plateau``). The compiled search is cached per
        optimizer object: create it once and reuse it.
      rule: quadrature rule for every evaluation (default: the composite rule).
      eq_tol: tolerance of equality targets (default ``1e-8`` in float64,
        ``1e-4`` in float32).
      init_params: a different starting point for restart 0 (random restarts
        are then drawn around it).
      polish_steps: Gauss–Newton projection steps after the search.
      progress: show a progress bar (rich, if installed) over the rounds;
        default: when stderr is a terminal.

    Returns:
      :class:`DesignResult`; check ``result.feasible`` (and ``result.notes``).

    Raises:
      TargetError: a target does not parse.
      ValueError, TypeError: bad settings or parameter constraints, named in the message.

    Examples:
      >>> import jaxsig
      >>> res = jaxsig.design("scaled_elu", ["m1 == 0", "m2 == 1"], fixed={"shift": 0.0})  # doctest: +SKIP
      >>> round(float(res.params["lam"]), 10), round(float(res.params["alpha"]), 10)  # doctest: +SKIP
      (1.0507009874, 1.6732632424)
    """
    fam = _as_family(family)
    tg = _targets.parse_targets(targets, sigma=sigma, q=q, sigma_b2=sigma_b2)
    _check_settings(steps, restarts, rounds, polish_steps, seed, optimizer)
    box, fixed, bounds = _constraints.build(fam.params if init_params is None else init_params, fixed, bounds)
    notes = tuple(n for n in (_targets.poincare_note(tg),) if n)
    for note in notes:
        warnings.warn(f"jaxsig.design: {note}", UserWarning, stacklevel=2)
    progress = sys.stderr.isatty() if progress is None else progress

    dtype = jnp.result_type(float)  # float64 when x64 is enabled, else float32
    inner = steps // rounds
    opt = default_optimizer(0.02, inner * rounds) if optimizer is None else optimizer
    job = _Search(
        fam=fam,
        targets=tg,
        arrays=tg.arrays.astype(dtype),
        box=_constraints.Box(
            jax.tree_util.tree_map(jnp.asarray, box.free), *(_cast(t, dtype) for t in (box.value, box.lo, box.hi))
        ),
        rule=rule,
        eq_tol=_targets.default_eq_tol(dtype) if eq_tol is None else float(eq_tol),
        optimizer=_with_extra_args(opt),
        inner=inner,
        rounds=rounds,
    )
    params = _constraints.project(job.box, _starts(fam, init_params, restarts, jax.random.key(seed), dtype))
    state = _State(
        params=params,
        opt_state=jax.vmap(job.optimizer.init)(params),
        lam=jnp.zeros((restarts, len(tg)), dtype),
        rho=jnp.full((restarts,), _RHO0, dtype),
        viol=jnp.full((restarts,), jnp.inf, dtype),
    )
    state, ev, history, full = _run_rounds(job, state, progress)
    params = state.params
    if polish_steps:
        params, ev = _run_polish(job, state, ev, full, polish_steps)
        history.append((rounds * inner, ev, state.rho))

    best = ev.best()
    p_best = jax.tree_util.tree_map(lambda x: np.asarray(x[best]), params)
    return DesignResult(
        family=fam,
        params=p_best,
        targets=tg,
        feasible=bool(ev.feasible[best]),
        values=ev.values[best],
        margins=ev.margins[best],
        satisfied=ev.satisfied[best],
        signature=_winner_signature(fam, p_best, tg.sigma, rule),
        objective=float(ev.objective[best]),
        violation=float(ev.violation[best]),
        restart=best,
        history=_history(history),
        seed=int(seed),
        steps=inner * rounds,
        restarts=restarts,
        rounds=rounds,
        eq_tol=job.eq_tol,
        dtype=jnp.dtype(dtype).name,
        optimizer="adam(0.02, cosine decay to 5 %)" if optimizer is None else repr(optimizer)[:80],
        version=__version__,
        fixed=fixed,
        bounds=bounds,
        notes=notes,
    )


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), tree)

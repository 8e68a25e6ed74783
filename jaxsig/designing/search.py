"""Designing activations by gradient descent: :func:`design`.

Describe the signature you want as targets (:mod:`jaxsig.targets`), pick a
parametrised family (:mod:`jaxsig.families`), and :func:`design` searches the
family for parameters that meet every constraint, optimising the objectives if
any:

>>> import jaxsig                                              # doctest: +SKIP
>>> res = jaxsig.design("rational", ["g2 <= 0.8", "tv < 5", "c < inf", "m2 == 1"])
>>> res.feasible, res.activation                               # doctest: +SKIP

The method, in five steps:

1. **Starts.** Restart 0 is the family's default ``init_params``; the others
   are ``family.random_init(key, restarts - 1)`` with ``key = jax.random.key(seed)``,
   so a result is reproducible from its seed.
2. **Augmented Lagrangian** (Powell–Hestenes–Rockafellar). With weighted
   residuals ``r_i`` (``v - b`` for ``<=`` and ``==``, ``b - v`` for ``>=``),
   each round minimises

   ``L = f + sum_eq (lam_i r_i + rho/2 r_i^2)
   + sum_ineq (max(0, lam_i + rho r_i)^2 - lam_i^2) / (2 rho)``

   (``f`` the weighted objectives) by ``steps // rounds`` optax steps (adam by
   default), then updates ``lam_i <- lam_i + rho r_i`` (equalities),
   ``lam_i <- max(0, lam_i + rho r_i)`` (inequalities) and multiplies ``rho``
   by 10 when the constraint violation did not fall below a quarter of the last
   round's. A round is one ``jit``-compiled ``lax.scan``, all restarts at once
   under ``vmap``; bounds, weights and sigmas are traced, so new target values
   never recompile.
3. **Lazy non-Gaussian targets.** ``tv``, ``c``, slopes and intercepts need the
   full :func:`jaxsig.signature` (second derivatives, ladders), Gaussian ones
   only :func:`jaxsig.moments` (about 4x cheaper to run and over 10x cheaper to
   compile).
   Inequalities on non-Gaussian components join the inner loop only once some
   restart comes within ``10 %`` of ``1 + |bound|`` of violating them (checked
   after every round); until then the inner loop uses moments alone.
   Equalities and objectives on them are in from the start.
4. **Polish.** Adam leaves residuals of ~1e-4. A few Gauss–Newton projection
   steps ``theta <- theta - J^+ r`` on the active set (equalities, and
   inequalities within ``1e-3 (1 + |b|)`` of their bound, which are aimed
   ``0.1 sqrt(eps) (1 + |b|)`` inside it) bring equalities to ~1e-15 in
   float64. ``J`` is the forward-mode Jacobian of the targeted components and
   ``J^+`` its pseudo-inverse (the minimum-norm step, which stays close to the
   Lagrangian's optimum); the best iterate by violation is kept.
5. **Selection.** Every polished restart is re-evaluated with
   :func:`jaxsig.signature`. Feasible means every target holds (equalities to
   ``eq_tol``: ``1e-8`` in float64, ``1e-4`` in float32; inequalities with
   margin ``>= 0``, strictly for ``<``, ``>``; finiteness checks). The best
   feasible restart (lowest objective, then lowest index) is returned; if none
   is feasible, the one with the least weighted violation, with
   ``feasible=False``.

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
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxsig._version import __version__
from jaxsig.core import _progress
from jaxsig.core import activations as _activations
from jaxsig.core.signature import FIELDS, Signature, moments, signature_with_aux
from jaxsig.designing import families as _families
from jaxsig.designing import targets as _targets
from jaxsig.designing.result import DesignResult, History

__all__ = ["design", "DesignResult", "History", "default_optimizer"]

_FORMAT = "jaxsig.DesignResult/1"
_GAUSSIAN_INDEX = np.array([_targets.COMPONENTS.index(c) for c in _targets.GAUSSIAN], np.int32)
_RHO0, _RHO_GROWTH, _RHO_MAX = 10.0, 10.0, 1e8
_NEAR = 0.1  # lazy targets join the inner loop within 10 % of (1 + |bound|)
_ACTIVE = 1e-3  # the polish treats inequalities within 1e-3 (1 + |b|) as active


@functools.lru_cache(maxsize=None)
def default_optimizer(learning_rate: float = 0.02, steps: int = 500) -> optax.GradientTransformation:
    """``optax.adam`` with a cosine decay from ``learning_rate`` to 5 % of it over ``steps``.

    Cached, so equal arguments give the same object and the compiled search is
    reused. (Pass your own optimizer once and reuse it for the same effect.)
    """
    schedule = optax.cosine_decay_schedule(learning_rate, max(int(steps), 1), alpha=0.05)
    return optax.adam(schedule)


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
    usable = jnp.ones(op.shape, bool) if problem.full else jnp.isin(jnp.asarray(arrays.index), _GAUSSIAN_INDEX)
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


@functools.partial(jax.jit, static_argnums=0)
def _round(problem: _Problem, state: _State, arrays):
    """One augmented-Lagrangian round for every restart: ``problem.inner`` steps, then the multipliers."""

    def one(params, opt_state, lam, rho, prev):
        def loss(p):
            v = _values(problem, p, arrays)
            L, _ = _lagrangian(problem, arrays, v, lam, rho)
            return L, v

        def step(carry, _):
            p, s, _ = carry
            (_, v), g = jax.value_and_grad(loss, has_aux=True)(p)
            g = jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0), g)
            updates, s = problem.optimizer.update(g, s, p)
            return (optax.apply_updates(p, updates), s, v), None

        v0 = jnp.zeros(jnp.shape(arrays.index), lam.dtype)
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


@functools.partial(jax.jit, static_argnums=(0, 3))
def _polish(problem: _Problem, params, arrays, iterations: int):
    """Gauss–Newton projection onto the active constraints, for every restart."""

    def one(params):
        x0, unravel = ravel_pytree(params)
        dtype = x0.dtype
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
            dx = jnp.linalg.pinv(A) @ rhs
            # A trust region of one unit: far steps mean a singular or wrong model.
            norm = jnp.sqrt(jnp.sum(dx * dx))
            dx = dx * jnp.minimum(1.0, 1.0 / jnp.where(norm > 0, norm, 1.0))
            dx = jnp.where(jnp.all(jnp.isfinite(dx)), dx, 0.0)
            return (x - dx, best_x, best), sc

        init = (x0, x0, jnp.asarray(jnp.inf, dtype))
        (x, best_x, best), _ = jax.lax.scan(body, init, None, length=iterations)
        sc = score(f(x)[0])
        best_x = jnp.where(sc <= best, x, best_x)
        return unravel(best_x)

    return jax.vmap(one)(params)


# --- Evaluation outside jit -------------------------------------------------------------


class _Evaluation(NamedTuple):
    """Every restart judged against the targets (NumPy, leading axis: restarts)."""

    values: np.ndarray  # (R, T) component values
    signatures: list  # (9,) signature at the default sigma per restart, or None
    feasible: np.ndarray  # (R,)
    violation: np.ndarray  # (R,) weighted finite violations
    failed_checks: np.ndarray  # (R,) number of infinite violations
    objective: np.ndarray  # (R,)
    satisfied: np.ndarray  # (R, T)
    margins: np.ndarray  # (R, T)

    def worse_than(self, other: "_Evaluation") -> np.ndarray:
        """Restarts where ``self`` is worse: infeasible where ``other`` is feasible, or
        infeasible in both with more failed checks or a larger violation."""
        more = (self.failed_checks > other.failed_checks) | (
            (self.failed_checks == other.failed_checks) & (self.violation > other.violation)
        )
        return ~self.feasible & (other.feasible | more)

    def where(self, mask: np.ndarray, other: "_Evaluation") -> "_Evaluation":
        """``other`` on the restarts in ``mask``, ``self`` elsewhere."""

        def pick(a, b):
            return np.where(mask.reshape((-1,) + (1,) * (np.ndim(a) - 1)), b, a)

        fields = [pick(a, b) for a, b in zip(self, other)]
        fields[1] = [b if m else a for a, b, m in zip(self.signatures, other.signatures, mask)]
        return _Evaluation(*fields)

    def best(self) -> int:
        """The best feasible restart (lowest objective, then lowest index), else the
        closest: fewest failed checks, then least weighted violation."""
        if self.feasible.any():
            return int(np.argmin(np.where(self.feasible, self.objective, np.inf)))
        n = self.feasible.size
        return int(np.lexsort((np.arange(n), self.violation, self.failed_checks))[0])


@jax.jit
def _summaries(arrays, values, eq_tol):
    def one(v):
        return (
            _targets.satisfied(arrays, v, eq_tol=eq_tol),
            _targets.violations_of(arrays, v),
            _targets.objective(arrays, v),
            _targets.margins(arrays, v),
        )

    return jax.vmap(one)(values)


def _evaluate(act, params, targets, rule, eq_tol, full) -> _Evaluation:
    """Values (and, with ``full``, signatures) of each restart, outside ``jit``.

    Gaussian components come from :func:`jaxsig.moments` at the targets' input
    scales; with ``full``, the sigma-independent ones (and the signature) from
    one :func:`jaxsig.signature` call at the scalar default sigma, the shape
    every other caller uses, so its compilation is shared.
    """
    params = jax.tree_util.tree_map(np.asarray, params)
    n = jax.tree_util.tree_leaves(params)[0].shape[0]
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    sig_t = np.asarray(targets.arrays.sigma, dtype)
    values, sigs = [], []
    for i in range(n):
        p = jax.tree_util.tree_map(lambda x, i=i: x[i], params)
        try:
            tables = [moments(act, sig_t, params=p, rule=rule)]
            sig = None
            if full:
                s, aux = signature_with_aux(act, np.asarray(targets.sigma, dtype), params=p, rule=rule)
                sig = np.array(s)

                # The sigma-independent components from the signature, broadcast over the
                # targets; the Gaussian ones from the moments (later tables win in pick).
                def wide(t):
                    return jax.tree_util.tree_map(lambda f: np.broadcast_to(np.asarray(f), sig_t.shape), t)

                tables = [wide(s), wide(aux), *tables]
            values.append(np.asarray(_targets.pick(targets.arrays, *tables)))
            sigs.append(sig)
        except (ValueError, FloatingPointError):
            # phi overflowed at these parameters (the core refuses them): an infeasible point.
            values.append(np.full(len(targets), np.nan))
            sigs.append(np.full(len(FIELDS), np.nan) if full else None)
    values = np.stack(values)
    arr = targets.arrays
    dev = _targets.TargetArrays(*(jnp.asarray(a) for a in arr))
    sat, viol, obj, marg = (np.asarray(x) for x in _summaries(dev, jnp.asarray(values), eq_tol))
    return _Evaluation(
        values=values,
        signatures=sigs,
        feasible=np.all(sat, axis=1),
        violation=np.sum(arr.weight * np.where(np.isfinite(viol), viol, 0.0), axis=1),
        failed_checks=np.sum(~np.isfinite(viol), axis=1),
        objective=obj,
        satisfied=sat,
        margins=marg,
    )


def _near_lazy(targets, values):
    """Whether a lazily handled (non-Gaussian, finite-bound) inequality is near or over its bound."""
    for i, spec in enumerate(targets.specs):
        if spec.component in _targets.GAUSSIAN or spec.is_check or spec.op in ("minimize", "maximize", "=="):
            continue
        v = values[:, i]
        r = (v - spec.value) if spec.op in ("<", "<=") else (spec.value - v)
        # NaN (a restart whose phi overflowed) says nothing about this target.
        if np.any(np.isinf(r) | (r > -_NEAR * (1.0 + abs(spec.value)))):
            return True
    return False


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


def design(
    family,
    targets,
    *,
    sigma: float = 1.0,
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

    Args:
      family: a family name (:func:`jaxsig.families.names`), a
        :class:`~jaxsig.families.Family`, or any
        :class:`~jaxsig.Activation` with ``params``.
      targets: target text(s) or :class:`~jaxsig.targets.Targets`, e.g.
        ``["g2 <= 0.8", "tv < 5", "c < inf", "m2 == 1"]`` (grammar:
        :data:`jaxsig.targets.GRAMMAR`).
      sigma: input scale of Gaussian components given without ``@``.
      steps: optimizer steps per restart, split evenly over ``rounds``.
      restarts: number of starting points optimised together (``vmap``);
        restart 0 is the family's default start.
      rounds: augmented-Lagrangian rounds (multiplier updates).
      seed: seed of the random restarts.
      optimizer: an optax transformation (default :func:`default_optimizer`,
        adam with cosine decay). The compiled search is cached per optimizer
        object: create it once and reuse it.
      rule: quadrature rule for every evaluation (default: the composite rule).
      eq_tol: tolerance of equality targets (default ``1e-8`` in float64,
        ``1e-4`` in float32).
      init_params: a different starting point for restart 0 (random restarts
        are then drawn around it).
      polish_steps: Gauss–Newton projection steps after the search.
      progress: show a progress bar (rich, if installed) over the rounds;
        default: when stderr is a terminal.

    Returns:
      :class:`DesignResult`; check ``result.feasible``.

    Raises:
      TargetError: a target does not parse.
      ValueError, TypeError: bad settings, named in the message.
    """
    fam = _as_family(family)
    tg = _targets.parse_targets(targets, sigma=sigma)
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
    if progress is None:
        progress = sys.stderr.isatty()

    dtype = jnp.result_type(float)  # float64 when x64 is enabled, else float32
    eq_tol = _targets.default_eq_tol(dtype) if eq_tol is None else float(eq_tol)
    inner = steps // rounds
    opt = default_optimizer(0.02, inner * rounds) if optimizer is None else optimizer
    problem = functools.partial(_Problem, fn=fam.fn, kinks=tuple(fam.kinks), rule=rule, optimizer=opt, inner=inner)
    # The polish does not depend on the optimizer: leave it out of its compilation key.
    projection = functools.partial(_Problem, fn=fam.fn, kinks=tuple(fam.kinks), rule=rule, optimizer=None, inner=0)
    arrays = _targets.TargetArrays(*(jnp.asarray(a, dtype if a.dtype.kind == "f" else None) for a in tg.arrays))

    def evaluate(p, full=tg.needs_signature):
        return _evaluate(fam, p, tg, rule, eq_tol, full)

    params = _starts(fam, init_params, restarts, jax.random.key(seed), dtype)
    state = _State(
        params=params,
        opt_state=jax.vmap(opt.init)(params),
        lam=jnp.zeros((restarts, len(tg)), dtype),
        rho=jnp.full((restarts,), _RHO0, dtype),
        viol=jnp.full((restarts,), jnp.inf, dtype),
    )
    # Which rows the inner loop differentiates: see step 3 of the module docstring.
    full = any(s.component not in _targets.GAUSSIAN and s.op in ("==", "minimize", "maximize") for s in tg)
    if tg.needs_signature and not full:
        full = _near_lazy(tg, evaluate(params).values)

    history = []
    with _progress.progress(rounds + 1, progress, "jaxsig design") as advance:
        for k in range(rounds):
            state = _round(problem(full=full), state, arrays)
            ev = evaluate(state.params)
            history.append(((k + 1) * inner, ev, state.rho))
            full = full or (tg.needs_signature and _near_lazy(tg, ev.values))
            advance(f"round {k + 1}/{rounds}, min violation {np.min(ev.violation):.2e}")
        params = state.params
        if polish_steps:
            params = _polish(projection(full=full), state.params, arrays, polish_steps)
            polished = evaluate(params)
            if tg.needs_signature and not full and not polished.feasible.any():
                # A lazily handled constraint became active in the polish: redo it with all rows.
                params = _polish(projection(full=True), state.params, arrays, polish_steps)
                polished = evaluate(params)
            # Keep the polish per restart only where it did not make things worse.
            worse = polished.worse_than(ev)
            params = jax.tree_util.tree_map(
                lambda a, b: jnp.where(worse.reshape((-1,) + (1,) * (a.ndim - 1)), b, a), params, state.params
            )
            ev = polished.where(worse, ev)
            history.append((rounds * inner, ev, state.rho))
        advance("polish")

    best = ev.best()
    p_best = jax.tree_util.tree_map(lambda x: np.asarray(x[best]), params)
    sig = ev.signatures[best]
    if sig is None:
        # Only Gaussian components were targeted: the full signature of the winner alone.
        sig = evaluate(jax.tree_util.tree_map(lambda x: x[None], p_best), True).signatures[0]
    return DesignResult(
        family=fam,
        params=p_best,
        targets=tg,
        feasible=bool(ev.feasible[best]),
        values=ev.values[best],
        margins=ev.margins[best],
        satisfied=ev.satisfied[best],
        signature=Signature(*(float(x) for x in sig)),
        objective=float(ev.objective[best]),
        violation=float(ev.violation[best]),
        restart=best,
        history=History(
            step=np.array([h[0] for h in history]),
            violation=np.stack([np.where(h[1].failed_checks > 0, np.inf, h[1].violation) for h in history]),
            objective=np.stack([h[1].objective for h in history]),
            rho=np.stack([np.asarray(h[2]) for h in history]),
        ),
        seed=int(seed),
        steps=inner * rounds,
        restarts=restarts,
        rounds=rounds,
        eq_tol=eq_tol,
        dtype=jnp.dtype(dtype).name,
        optimizer="adam(0.02, cosine decay to 5 %)" if optimizer is None else repr(optimizer)[:80],
        version=__version__,
    )

"""Judging the restarts of a design outside ``jit``: values, verdicts, the best restart."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.designing import targets as _targets

__all__ = ["Evaluation", "evaluate_restarts", "near_lazy"]


class Evaluation(NamedTuple):
    """Every restart judged against the targets (NumPy, leading axis: restarts).

    Attributes:
      values: ``(R, T)`` target values.
      feasible: ``(R,)`` every target holds.
      violation: ``(R,)`` weighted finite violations ``sum_i w_i viol_i``.
      failed_checks: ``(R,)`` number of infinite violations.
      objective: ``(R,)`` weighted objective.
      satisfied: ``(R, T)`` verdicts.
      margins: ``(R, T)`` margins.
    """

    values: np.ndarray
    feasible: np.ndarray
    violation: np.ndarray
    failed_checks: np.ndarray
    objective: np.ndarray
    satisfied: np.ndarray
    margins: np.ndarray

    def worse_than(self, other: "Evaluation") -> np.ndarray:
        """Restarts where ``self`` is worse: infeasible where ``other`` is feasible, or
        infeasible in both with more failed checks or a larger violation."""
        more = (self.failed_checks > other.failed_checks) | (
            (self.failed_checks == other.failed_checks) & (self.violation > other.violation)
        )
        return ~self.feasible & (other.feasible | more)

    def where(self, mask: np.ndarray, other: "Evaluation") -> "Evaluation":
        """``other`` on the restarts in ``mask``, ``self`` elsewhere."""

        def pick(a, b):
            return np.where(mask.reshape((-1,) + (1,) * (np.ndim(a) - 1)), b, a)

        return Evaluation(*(pick(a, b) for a, b in zip(self, other)))

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


def evaluate_restarts(act, params, targets, rule, eq_tol, full) -> Evaluation:
    """Target values of each restart (leading axis of ``params``), outside ``jit``.

    Each restart is one :func:`jaxsig.targets.evaluate` call: Gaussian and
    mean-field components from :func:`jaxsig.moments`, and with ``full`` the
    others from one :func:`jaxsig.signature` call at the scalar default sigma,
    the shape every other caller uses, so its compilation is shared. A restart
    whose ``phi`` overflows (the core refuses it) reads ``nan``: infeasible.
    """
    params = jax.tree_util.tree_map(np.asarray, params)
    n = jax.tree_util.tree_leaves(params)[0].shape[0]
    values = []
    for i in range(n):
        p = jax.tree_util.tree_map(lambda x, i=i: x[i], params)
        try:
            values.append(np.asarray(_targets.evaluate(targets, act, p, rule=rule, full=full)))
        except (ValueError, FloatingPointError):
            values.append(np.full(len(targets), np.nan))
    values = np.stack(values)
    arr = targets.arrays
    sat, viol, obj, marg = (np.asarray(x) for x in _summaries(arr.astype(values.dtype), jnp.asarray(values), eq_tol))
    return Evaluation(
        values=values,
        feasible=np.all(sat, axis=1),
        violation=np.sum(arr.weight * np.where(np.isfinite(viol), viol, 0.0), axis=1),
        failed_checks=np.sum(~np.isfinite(viol), axis=1),
        objective=obj,
        satisfied=sat,
        margins=marg,
    )


def near_lazy(targets, values) -> bool:
    """Whether a lazily handled target (a finite-bound inequality reading ``tv``, ``c``,
    a slope or an intercept) is within ``10 %`` of ``1 + |bound|`` of its bound, or over it."""
    cheap = targets.arrays.cheap
    for i, spec in enumerate(targets.specs):
        if cheap[i] or spec.is_check or spec.op in ("minimize", "maximize", "=="):
            continue
        v = values[:, i]
        r = (v - spec.value) if spec.op in ("<", "<=") else (spec.value - v)
        # NaN (a restart whose phi overflowed) says nothing about this target.
        if np.any(np.isinf(r) | (r > -0.1 * (1.0 + abs(spec.value)))):
            return True
    return False

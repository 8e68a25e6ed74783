"""The result of a design search: :class:`DesignResult` (and its JSON file) and
the optimisation :class:`History`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core._format import from_json_number, json_number
from jaxsig.core.signature import FIELDS, Signature
from jaxsig.designing import families as _families
from jaxsig.designing import targets as _targets

__all__ = ["DesignResult", "History"]

_FORMAT = "jaxsig.DesignResult/1"


class History(NamedTuple):
    """Search history, one row per round (and a last one after the polish).

    Attributes:
      step: optimizer steps done at the end of each row, ``(K,)``.
      violation: weighted total violation ``sum_i w_i viol_i`` per restart, ``(K, R)``.
      objective: weighted objective per restart, ``(K, R)`` (0 without objectives).
      rho: penalty parameter per restart, ``(K, R)``.
    """

    step: np.ndarray
    violation: np.ndarray
    objective: np.ndarray
    rho: np.ndarray


def _from_lists(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), tree, is_leaf=lambda x: isinstance(x, list))


def _tree_to_json(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x).tolist(), tree)


@dataclasses.dataclass(frozen=True, eq=False)
class DesignResult:
    """The outcome of :func:`design`.

    Attributes:
      family: the searched :class:`~jaxsig.families.Family` (or Activation).
      params: the chosen parameters (NumPy pytree).
      targets: the :class:`~jaxsig.targets.Targets`.
      feasible: whether every target holds at ``params``.
      values: each target's component value, ``(T,)``.
      margins: each target's margin (``>= 0`` satisfied; ``nan`` for objectives).
      satisfied: each target's verdict, ``(T,)`` bool.
      signature: the :class:`~jaxsig.Signature` of the designed activation at
        ``targets.sigma`` (floats).
      objective: the weighted objective (0 without objectives).
      violation: the weighted total violation ``sum_i w_i viol_i`` (finite part).
      restart: index of the chosen restart (0: the default start).
      history: :class:`History`.
      seed, steps, restarts, rounds: search settings.
      eq_tol: tolerance used for equalities.
      dtype: working precision.
      optimizer: description of the optimizer.
      version: jaxsig version that produced it.
      fixed: ``{name: value}`` of the parameters held fixed (not optimised).
      bounds: ``{name: (lo, hi)}`` of the bounded parameters.
      notes: why the targets may be infeasible whatever the family (e.g. the
        Gaussian Poincaré bound on ``chi1``, :func:`jaxsig.targets.poincare_note`).
    """

    family: Any
    params: Any
    targets: _targets.Targets
    feasible: bool
    values: np.ndarray
    margins: np.ndarray
    satisfied: np.ndarray
    signature: Optional[Signature]
    objective: float
    violation: float
    restart: int
    history: History
    seed: int
    steps: int
    restarts: int
    rounds: int
    eq_tol: float
    dtype: str
    optimizer: str
    version: str
    fixed: dict = dataclasses.field(default_factory=dict)
    bounds: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()

    @property
    def sigma(self) -> float:
        """Default input scale of the targets."""
        return self.targets.sigma

    @property
    def q(self) -> float:
        """Pre-activation variance of the operating point of mean-field targets."""
        return self.targets.q

    @property
    def sigma_b2(self) -> float:
        """Bias variance of the operating point of mean-field targets."""
        return self.targets.sigma_b2

    @property
    def activation(self) -> _activations.Activation:
        """The designed activation: the family's function with ``params``."""
        fam = self.family
        if isinstance(fam, _families.Family):
            return fam.activation(self.params)
        return dataclasses.replace(fam, params=self.params)

    def summary(self) -> str:
        """A table of targets with values, margins and verdicts, and the parameters."""
        head = "feasible" if self.feasible else "INFEASIBLE (closest point found)"
        lines = [
            f"DesignResult: {head}; family {self.family.name!r}, restart {self.restart} of "
            f"{self.restarts}, seed {self.seed}, {self.steps} steps, {self.dtype}",
        ]
        width = max(len(t) for t in self.targets.texts)
        lines.append(f"  {'target':<{width}}  {'value':>22}  {'margin':>10}  ok")
        for text, v, m, ok in zip(self.targets.texts, self.values, self.margins, self.satisfied):
            mtxt = "" if np.isnan(m) else f"{m + 0.0:10.3g}"  # + 0.0: print -0 as 0
            lines.append(f"  {text:<{width}}  {float(v):>22.16g}  {mtxt:>10}  {'yes' if ok else 'NO'}")
        if self.signature is not None:
            sig = ", ".join(f"{k}={float(v):.6g}" for k, v in self.signature._asdict().items())
            lines.append(f"  signature at sigma={self.sigma:g}: {sig}")
        if self.targets.needs_network:
            lines.append(f"  mean field at the variance-preserving init for q={self.q:g}, sigma_b2={self.sigma_b2:g}")
        flat = jax.tree_util.tree_map(lambda x: np.round(np.asarray(x, float), 6).tolist(), self.params)
        lines.append(f"  params: {flat}")
        if self.fixed:
            lines.append(f"  fixed: {self.fixed}")
        if self.bounds:
            lines.append(f"  bounds: {self.bounds}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = summary

    def to_dict(self) -> dict:
        """A JSON-able dict; non-finite numbers are the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
        fam = self.family
        spec = fam.spec() if isinstance(fam, _families.Family) else {"name": fam.name, "config": {}}
        spec["kind"] = "family" if isinstance(fam, _families.Family) else "activation"
        report = [
            {"target": t, "value": json_number(v), "margin": json_number(m), "satisfied": bool(ok)}
            for t, v, m, ok in zip(self.targets.texts, self.values, self.margins, self.satisfied)
        ]

        def nums(a):
            return jax.tree_util.tree_map(json_number, np.asarray(a).tolist())

        return {
            "format": _FORMAT,
            "jaxsig_version": self.version,
            "family": spec,
            "params": _tree_to_json(self.params),
            "targets": list(self.targets.texts),
            "sigma": self.sigma,
            "q": self.q,
            "sigma_b2": self.sigma_b2,
            "fixed": dict(self.fixed),
            "bounds": {k: [json_number(a), json_number(b)] for k, (a, b) in self.bounds.items()},
            "notes": list(self.notes),
            "feasible": bool(self.feasible),
            "report": report,
            "signature": None
            if self.signature is None
            else {k: json_number(v) for k, v in self.signature._asdict().items()},
            "objective": json_number(self.objective),
            "violation": json_number(self.violation),
            "restart": int(self.restart),
            "search": {
                "seed": self.seed,
                "steps": self.steps,
                "restarts": self.restarts,
                "rounds": self.rounds,
                "eq_tol": self.eq_tol,
                "dtype": self.dtype,
                "optimizer": self.optimizer,
            },
            "history": {k: nums(getattr(self.history, k)) for k in History._fields},
        }

    def save(self, path) -> Path:
        """Write :meth:`to_dict` as standard JSON (no NaN/Infinity literals) to ``path``."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: dict, family=None) -> "DesignResult":
        """Rebuild a result from :meth:`to_dict`; the family is rebuilt by name unless given."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"not a saved DesignResult (expected format {_FORMAT!r})")
        spec = d["family"]
        if family is None:
            try:
                if spec.get("kind") == "activation":
                    family = _activations.get(spec["name"])
                else:
                    family = _families.get(spec["name"], **spec.get("config", {}))
            except KeyError as e:
                raise ValueError(f"cannot rebuild {spec['name']!r}: {e.args[0]} Pass family= to load().") from None
            if jax.tree_util.tree_structure(_from_lists(d["params"])) != jax.tree_util.tree_structure(family.params):
                raise ValueError(
                    f"the saved parameters do not fit the registered {spec['name']!r} (its parameters are "
                    f"{family.params}); pass the activation that was designed as family= to load()."
                )
        targets = _targets.parse_targets(
            d["targets"], sigma=d["sigma"], q=d.get("q", 1.0), sigma_b2=d.get("sigma_b2", 0.0)
        )
        params = _from_lists(d["params"])

        def arr(key):
            return np.array([from_json_number(r[key]) for r in d["report"]], np.float64)

        hist = d["history"]

        def unn(a):
            return np.asarray(jax.tree_util.tree_map(from_json_number, a), np.float64)

        sig = d["signature"]
        s = d["search"]
        return cls(
            family=family,
            params=params,
            targets=targets,
            feasible=bool(d["feasible"]),
            values=arr("value"),
            margins=arr("margin"),
            satisfied=np.array([bool(r["satisfied"]) for r in d["report"]]),
            signature=None if sig is None else Signature(**{k: float(from_json_number(sig[k])) for k in FIELDS}),
            objective=float(from_json_number(d["objective"])),
            violation=float(from_json_number(d["violation"])),
            restart=int(d["restart"]),
            history=History(*(unn(hist[k]) for k in History._fields)),
            seed=s["seed"],
            steps=s["steps"],
            restarts=s["restarts"],
            rounds=s["rounds"],
            eq_tol=s["eq_tol"],
            dtype=s["dtype"],
            optimizer=s["optimizer"],
            version=d["jaxsig_version"],
            fixed=dict(d.get("fixed", {})),
            bounds={
                k: (float(from_json_number(a)), float(from_json_number(b))) for k, (a, b) in d.get("bounds", {}).items()
            },
            notes=tuple(d.get("notes", ())),
        )

    @classmethod
    def load(cls, path, family=None) -> "DesignResult":
        """Read a result written by :meth:`save`.

        Args:
          path: the JSON file.
          family: the family or activation, if it is not a built-in one (the
            file stores its name and configuration only).
        """
        return cls.from_dict(json.loads(Path(path).read_text()), family=family)

"""Objectives and constraints as data: what a search optimises and what it must respect.

An :class:`Objective` names a metric of an evaluation result and a direction (Optuna's ``"maximize"`` /
``"minimize"``); a :class:`Constraint` is ``metric <= bound``. Both are plain, frozen values, stored in the
ledger with the run and replayed the same way live and on resume. The four names the CLI knows (``accuracy``,
``params``, ``flops``, ``latency_ms``) are presets in :data:`OBJECTIVES`; any other metric an evaluator reports
(``val_bpc``, ``energy_mj``, a tabular benchmark's ``cost_s``) is an objective or a constraint by naming it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archlab.errors import UserError

__all__ = ["DIRECTIONS", "OBJECTIVES", "Constraint", "Objective", "resolve_constraints", "resolve_objectives"]

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Objective:
    """``metric`` of a result, to ``direction`` (``"maximize"`` or ``"minimize"``); ``name`` is what runs,
    reports and the CLI call it; ``label`` how a plot's axis reads."""

    name: str
    metric: str
    direction: str = "maximize"
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise UserError(f"an objective needs a name, got {self.name!r}")
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise UserError(f"objective {self.name!r} needs the name of a metric, got {self.metric!r}")
        if self.direction not in DIRECTIONS:
            raise UserError(f"objective {self.name!r}: direction must be 'maximize' or 'minimize', "
                            f"got {self.direction!r}")

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def oriented(self, value: float) -> float:
        """``value`` oriented so that larger is better."""
        return float(value) if self.maximize else -float(value)

    @property
    def worst(self) -> float:
        """The value an evaluation without this metric (an infeasible arch, never trained) scores."""
        return -math.inf if self.maximize else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "direction": self.direction, "label": self.label}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Objective:
        try:
            return cls(d["name"], d["metric"], d.get("direction", "maximize"), d.get("label"))
        except (KeyError, TypeError):
            raise UserError(f"an objective is {{name, metric, direction}}, got {d!r}") from None


#: The presets: the objectives the CLI names (``--objectives accuracy,latency_ms``).
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("accuracy", "val_accuracy", "maximize", "validation accuracy"),
    Objective("params", "params", "minimize", "parameters"),
    Objective("flops", "flops", "minimize", "FLOPs"),
    Objective("latency_ms", "latency_ms", "minimize", "latency (ms)"),
)}


def resolve_objectives(objectives: Iterable[str | Objective | Mapping[str, Any]] | str) -> tuple[Objective, ...]:
    """Objectives from preset names, :class:`Objective`\\ s or their dicts; at least one, no name twice."""
    if isinstance(objectives, (str, Objective)):
        objectives = [objectives]
    out: list[Objective] = []
    for o in objectives:
        if isinstance(o, Objective):
            out.append(o)
        elif isinstance(o, Mapping):
            out.append(Objective.from_dict(o))
        elif isinstance(o, str):
            name = o.strip()
            if not name:
                continue
            if name not in OBJECTIVES:
                raise UserError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)} "
                                "(or pass archlab.search.Objective(name, metric, direction))")
            out.append(OBJECTIVES[name])
        else:
            raise UserError(f"an objective is a preset name or an Objective, got {type(o).__name__}")
    if not out:
        raise UserError(f"at least one objective is needed ({', '.join(OBJECTIVES)})")
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise UserError(f"objective listed twice in {names}")
    return tuple(out)


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound``: an arch whose measured ``metric`` is above ``bound`` is infeasible."""

    metric: str
    bound: float

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise UserError(f"a constraint needs a metric name, got {self.metric!r}")
        if isinstance(self.bound, bool) or not isinstance(self.bound, (int, float)) or not math.isfinite(self.bound):
            raise UserError(f"constraint {self.metric} <= bound: the bound must be a finite number, got {self.bound!r}")

    def violation(self, metrics: Mapping[str, Any]) -> float:
        """``value / bound - 1`` for a positive bound (``value - bound`` otherwise): <= 0 when met (Optuna's
        convention for ``constraints_func``). A missing metric is a :class:`UserError`."""
        if self.metric not in metrics:
            raise UserError(f"constraint on {self.metric!r}: the evaluator reported no such metric "
                            f"(it reported {sorted(metrics)})")
        value = float(metrics[self.metric])
        return value / self.bound - 1.0 if self.bound > 0 else value - self.bound

    def met(self, metrics: Mapping[str, Any]) -> bool:
        return self.violation(metrics) <= 0.0

    def describe(self, metrics: Mapping[str, Any]) -> str:
        return f"{self.metric} {float(metrics[self.metric]):.4g} > {self.bound:.4g}"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "bound": self.bound}


def resolve_constraints(constraints: Iterable[Constraint | Mapping[str, Any] | Sequence[Any]] | Mapping[str, float]
                        | None) -> tuple[Constraint, ...]:
    """Constraints from :class:`Constraint`\\ s, ``{"metric": m, "bound": b}`` dicts, ``(metric, bound)`` pairs
    or one ``{metric: bound}`` mapping."""
    if constraints is None:
        return ()
    if isinstance(constraints, Mapping) and "metric" not in constraints:
        constraints = list(constraints.items())
    out: list[Constraint] = []
    for c in constraints:
        if isinstance(c, Constraint):
            out.append(c)
        elif isinstance(c, Mapping):
            out.append(Constraint(c.get("metric"), c.get("bound")))
        elif isinstance(c, (tuple, list)) and len(c) == 2:
            out.append(Constraint(c[0], c[1]))
        else:
            raise UserError(f"a constraint is Constraint(metric, bound) or (metric, bound), got {c!r}")
    return tuple(out)

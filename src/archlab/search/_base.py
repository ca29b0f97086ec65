"""The strategy interface: ``ask() -> Arch`` and ``tell(record)``, with state rebuilt from the ledger.

A strategy never trains anything: the runner asks it for an arch, evaluates it, records the result in the
ledger and tells the strategy. Resuming a run replays the ledger's finished trials through ``tell`` in order,
so a strategy whose decisions depend only on its seed and on what it was told (every strategy here) continues
exactly where the interrupted run stopped.

Objectives are named ``accuracy`` (validation accuracy, maximised), ``params``, ``flops`` and ``latency_ms``
(minimised).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archlab.errors import UserError
from archlab.space import Arch, Space

__all__ = [
    "OBJECTIVES",
    "Strategy",
    "TrialRecord",
    "check_objectives",
    "dominates",
    "objective_values",
    "pareto_front",
]

# objective name -> (metric key in TrialRecord.metrics, Optuna direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("val_accuracy", "maximize"),
    "params": ("params", "minimize"),
    "flops": ("flops", "minimize"),
    "latency_ms": ("latency_ms", "minimize"),
}


def check_objectives(objectives: Sequence[str]) -> list[str]:
    objs = [o.strip() for o in objectives if o.strip()]
    if not objs:
        raise UserError("at least one objective is needed (accuracy, params, flops, latency_ms)")
    for o in objs:
        if o not in OBJECTIVES:
            raise UserError(f"unknown objective {o!r}; choose from {', '.join(OBJECTIVES)}")
    if len(set(objs)) != len(objs):
        raise UserError(f"objective listed twice in {objs}")
    return objs


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as strategies see it (test metrics are never shown to a strategy)."""

    number: int
    arch: Arch
    state: str  # "complete" | "failed" | "infeasible"
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "complete"


def objective_values(record: TrialRecord, objectives: Sequence[str]) -> tuple[float, ...]:
    """Objective values oriented so that larger is better for every objective."""
    out = []
    for o in objectives:
        key, direction = OBJECTIVES[o]
        v = float(record.metrics[key])
        out.append(v if direction == "maximize" else -v)
    return tuple(out)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (both oriented larger-is-better)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def pareto_front(records: Iterable[TrialRecord], objectives: Sequence[str]) -> list[TrialRecord]:
    """Completed records that no other completed record dominates, in trial order."""
    done = [r for r in records if r.ok]
    vals = [objective_values(r, objectives) for r in done]
    return [r for r, v in zip(done, vals, strict=True) if not any(dominates(w, v) for w in vals)]


class Strategy(abc.ABC):
    """A search strategy over one space.

    Subclasses implement :meth:`propose`; the base class handles the seed stream (one generator per step,
    derived from the seed and the number of trials told, so resume is exact) and de-duplication (an arch
    already evaluated is never proposed again while unseen ones remain).
    """

    name: str = "strategy"
    max_resample: int = 200

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str] = ("accuracy",)) -> None:
        self.space = space
        self.seed = seed
        self.objectives = check_objectives(objectives)
        self.history: list[TrialRecord] = []
        self.seen: set[Arch] = set()

    # -- the interface
    def ask(self) -> Arch:
        rng = random.Random(f"{self.name}:{self.seed}:{len(self.history)}")
        arch = self.propose(rng)
        tries = 0
        while arch in self.seen and tries < self.max_resample:
            arch = self.propose(rng)
            tries += 1
        if arch in self.seen:  # the strategy is stuck on evaluated archs: take an unseen one at random
            arch = self._unseen(rng) or arch
        return arch

    def _unseen(self, rng: random.Random) -> Arch | None:
        for _ in range(self.max_resample):
            arch = self.space.sample(rng)
            if arch not in self.seen:
                return arch
        if self.space.size() <= 100_000:
            rest = [a for a in self.space.enumerate() if a not in self.seen]
            return rng.choice(rest) if rest else None
        return None

    def tell(self, record: TrialRecord) -> None:
        self.history.append(record)
        self.seen.add(record.arch)

    def rebuild(self, records: Iterable[TrialRecord]) -> None:
        """Reset and replay finished trials (in trial order): the state a fresh run would have reached."""
        self.history, self.seen = [], set()
        for r in sorted(records, key=lambda r: r.number):
            self.tell(r)

    @abc.abstractmethod
    def propose(self, rng: random.Random) -> Arch:
        """One candidate arch (may be a duplicate; :meth:`ask` retries)."""

    # -- helpers for subclasses
    @property
    def completed(self) -> list[TrialRecord]:
        return [r for r in self.history if r.ok]

    def fitness(self, record: TrialRecord) -> tuple[float, ...]:
        return objective_values(record, self.objectives)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed}

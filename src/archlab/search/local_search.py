"""Local search (White, Nolen & Savani, "Exploring the Loss Landscape in Neural Architecture Search", UAI 2021,
first as "Local Search is State of the Art for Neural Architecture Search Benchmarks", 2020; NASLib's
``LocalSearch`` optimizer).

``num_init`` random archs first; then the best arch found so far is the current one and its whole neighbourhood
(:meth:`Space.neighbors`: every arch one decision away) is evaluated, in a random order. When the neighbourhood is
done, the search moves to the best arch found so far; if that is still the current one, it is a local optimum and
the search restarts from a random arch, whose neighbourhood comes next. Archs already evaluated are not queued
again.

The state (the current arch, its queue, a pending restart) changes only when a record is told, with a generator
seeded by the run seed and the number of records told, so a strategy rebuilt from the ledger continues exactly as
the uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from archlab.errors import UserError
from archlab.search._base import Strategy, TrialRecord
from archlab.search._objectives import Objective
from archlab.space import Arch, Space

__all__ = ["LocalSearch"]


class LocalSearch(Strategy):
    name = "local_search"

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 num_init: int = 10, dedupe: bool = True) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=dedupe)
        if num_init < 1:
            raise UserError(f"local_search: num_init must be >= 1, got {num_init}")
        self.num_init = num_init
        self._reset_walk()

    def _reset_walk(self) -> None:
        self.current: TrialRecord | None = None
        self.queue: list[Arch] = []
        self._restart = False
        self._evaluated: set[Arch] = set()
        self._best: TrialRecord | None = None

    def reset(self) -> None:
        super().reset()
        self._reset_walk()

    def observe(self, record: TrialRecord) -> None:
        self._evaluated.add(record.arch)
        if record.arch in self.queue:
            self.queue.remove(record.arch)
        if record.ok and (self._best is None or self.fitness(record) > self.fitness(self._best)):
            self._best = record
        if self._restart:  # the random arch of a restart: its neighbourhood comes next
            self._restart = False
            if record.ok:
                self._walk_from(record)
            return
        if len(self.history) < self.num_init or self._best is None or self.queue:
            return
        if self.current is None or self.fitness(self._best) > self.fitness(self.current):
            self._walk_from(self._best)  # move to the best arch found (the first move starts the walk)
        if not self.queue:  # a local optimum (or a neighbourhood evaluated already): restart at random
            self.current, self._restart = None, True

    def _walk_from(self, record: TrialRecord) -> None:
        self.current = record
        rng = random.Random(self._step_seed("neighbours"))
        self.queue = [a for a in self.space.neighbors(record.arch) if a not in self._evaluated]
        rng.shuffle(self.queue)

    def propose(self, rng: random.Random) -> Arch:
        for arch in self.queue:
            if arch not in self.pending:
                return arch
        return self.space.sample(rng)  # the initial archs, a restart, or a neighbourhood all running elsewhere

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "current": None if self.current is None else self.current.arch.key,
                "queue": [a.key for a in self.queue], "restart": self._restart}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "num_init": self.num_init}

"""Regularized evolution (Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019).

Aging evolution: the population is the ``population_size`` most recent successful trials; each step draws
``sample_size`` of them at random, mutates the best (one decision changed) and the oldest member leaves as the
child joins. The first ``population_size`` proposals are random samples. With several objectives the parent is
drawn among the non-dominated members of the sample.

With a ``scorer`` (zero-cost proxies, :class:`archlab.proxies.ProxyScorer`) the initial population is warmed up
as in Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021): each initial member is the best
of ``warmup_candidates`` random samples by the scorer (the sum of each proxy's rank among the candidates), so
the small budgets of a laptop do not spend their first trials on untrainable archs. This is the warm start every
strategy has (:meth:`Strategy.set_warmstart`) over the first ``population_size`` trials asked: ``scorer=`` is
shorthand for it, and :meth:`warmstart_trials` is the population size. (A member that fails leaves a place in the
population that the next proposal, a plain random sample, fills.)
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from archlab.errors import UserError
from archlab.search._base import Strategy, TrialRecord
from archlab.search._objectives import Objective
from archlab.search._pareto import pareto_mask
from archlab.space import Arch, Space


class RegularizedEvolution(Strategy):
    name = "rea"

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 population_size: int = 10, sample_size: int = 3,
                 scorer: Callable[[Arch], Sequence[float]] | None = None, warmup_candidates: int = 10,
                 dedupe: bool = True) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=dedupe)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise UserError(f"rea: need population_size >= 2 and 1 <= sample_size <= population_size, "
                            f"got {population_size}, {sample_size}")
        if warmup_candidates < 1:
            raise UserError(f"rea: warmup_candidates must be >= 1, got {warmup_candidates}")
        self.population_size = population_size
        self.sample_size = sample_size
        self._population: deque[TrialRecord] = deque(maxlen=population_size)
        if scorer is not None:
            self.set_warmstart(scorer, trials=population_size, candidates=warmup_candidates)

    @classmethod
    def from_context(cls, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                     constraints: Sequence[Any] = (), expected_trials: int | None = None,
                     **kwargs: Any) -> RegularizedEvolution:
        """With a budget estimate the population scales with it (:meth:`population_for`), the sample a third."""
        if expected_trials is not None:
            kwargs.setdefault("population_size", cls.population_for(expected_trials))
            kwargs.setdefault("sample_size", max(2, kwargs["population_size"] // 3))
        return cls(space, seed=seed, objectives=objectives, **kwargs)

    @staticmethod
    def population_for(expected_trials: int) -> int:
        """A population that leaves about two thirds of the budget to evolution (4 to 50 members).

        Real et al. used 100 members over 20,000 trials; a laptop budget of tens of trials would spend all of
        that on random initialisation, so the population scales with the budget.
        """
        return max(4, min(50, expected_trials // 3))

    def warmstart_trials(self, expected_trials: int | None) -> int:
        """The initial population is the warm start (Abdelfattah et al.'s warm-up of aging evolution)."""
        return self.population_size

    @property
    def population(self) -> list[TrialRecord]:
        """The ``population_size`` most recent completed trials, oldest first (kept as they are told)."""
        return list(self._population)

    def observe(self, record: TrialRecord) -> None:
        if record.ok:
            self._population.append(record)  # the oldest member leaves as the child joins

    def reset(self) -> None:
        super().reset()
        self._population.clear()

    def propose(self, rng: random.Random) -> Arch:
        population = self._population
        if len(population) < self.population_size:  # the initial population (warm-started by Strategy.ask)
            return self.space.sample(rng)
        sample = rng.sample(population, self.sample_size)
        if len(self.objectives) == 1:  # no Pareto work for one objective: the fittest (the first of equals)
            parent = max(sample, key=self.fitness)
        else:
            on_front = pareto_mask([self.fitness(r) for r in sample], ["maximize"] * len(self.objectives))
            parent = rng.choice([r for r, on in zip(sample, on_front, strict=True) if on])
        return self.space.mutate(parent.arch, rng)

    def describe(self) -> dict:
        return {**super().describe(), "population_size": self.population_size, "sample_size": self.sample_size}

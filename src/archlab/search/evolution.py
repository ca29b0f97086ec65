"""Regularized evolution (Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019).

Aging evolution: the population is the ``population_size`` most recent successful trials; each step draws
``sample_size`` of them at random, mutates the best (one decision changed) and the oldest member leaves as the
child joins. The first ``population_size`` proposals are random samples. With several objectives the parent is
drawn among the non-dominated members of the sample.

With a ``scorer`` (zero-cost proxies, :class:`archlab.proxies.ProxyScorer`) the initial population is warmed up
as in Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021): each initial member is the best
of ``warmup_candidates`` random samples by the scorer (the sum of each proxy's rank among the candidates), so
the small budgets of a laptop do not spend their first trials on untrainable archs. A scorer whose time budget is
spent (``scorer.exhausted``) ranks only the candidates it scored in time. Scores are a function of the
arch alone, so a strategy rebuilt from the ledger proposes exactly what the uninterrupted one would have.
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
        self.scorer = scorer
        self.warmup_candidates = warmup_candidates
        self._population: deque[TrialRecord] = deque(maxlen=population_size)

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
        if len(population) < self.population_size:
            if self.scorer is None:
                return self.space.sample(rng)
            return self._warm_sample(rng)
        sample = rng.sample(population, self.sample_size)
        if len(self.objectives) == 1:  # no Pareto work for one objective: the fittest (the first of equals)
            parent = max(sample, key=self.fitness)
        else:
            on_front = pareto_mask([self.fitness(r) for r in sample], ["maximize"] * len(self.objectives))
            parent = rng.choice([r for r, on in zip(sample, on_front, strict=True) if on])
        return self.space.mutate(parent.arch, rng)

    def _warm_sample(self, rng: random.Random) -> Arch:
        """The best of ``warmup_candidates`` unseen random samples by the sum of per-proxy ranks."""
        candidates: list[Arch] = []
        for _ in range(self.warmup_candidates * 20):
            arch = self.space.sample(rng)
            if not self._taken(arch) and arch not in candidates:
                candidates.append(arch)
                if len(candidates) == self.warmup_candidates:
                    break
        scores = []
        for arch in candidates:  # a scorer with a time budget (ProxyScorer.exhausted) ranks those it scored
            if len(candidates) <= 1 or getattr(self.scorer, "exhausted", False):
                break
            scores.append(tuple(self.scorer(arch)))
        if len(scores) <= 1:
            return candidates[0] if candidates else self.space.sample(rng)
        candidates = candidates[:len(scores)]
        ranks = [0.0] * len(candidates)
        for k in range(len(scores[0])):
            column = [s[k] for s in scores]
            for i, v in enumerate(column):  # rank = how many candidates this one beats (ties count half)
                ranks[i] += sum(1.0 if v > w else 0.5 if v == w else 0.0 for w in column)
        return candidates[max(range(len(candidates)), key=lambda i: ranks[i])]

    def describe(self) -> dict:
        d = {**super().describe(), "population_size": self.population_size, "sample_size": self.sample_size}
        if self.scorer is not None:
            d["warmup"] = {"candidates": self.warmup_candidates,
                           "proxies": list(getattr(self.scorer, "names", ["custom"]))}
        return d

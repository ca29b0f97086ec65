"""Regularized evolution (Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019).

Aging evolution: the population is the ``population_size`` most recent successful trials; each step draws
``sample_size`` of them at random, mutates the best (one decision changed) and the oldest member leaves as the
child joins. The first ``population_size`` proposals are random samples. With several objectives the parent is
drawn among the non-dominated members of the sample.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from archlab.errors import UserError
from archlab.search._base import Strategy, dominates
from archlab.space import Arch, Space


class RegularizedEvolution(Strategy):
    name = "rea"

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str] = ("accuracy",),
                 population_size: int = 10, sample_size: int = 3) -> None:
        super().__init__(space, seed=seed, objectives=objectives)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise UserError(f"rea: need population_size >= 2 and 1 <= sample_size <= population_size, "
                            f"got {population_size}, {sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size

    @staticmethod
    def population_for(expected_trials: int) -> int:
        """A population that leaves about two thirds of the budget to evolution (4 to 50 members).

        Real et al. used 100 members over 20,000 trials; a laptop budget of tens of trials would spend all of
        that on random initialisation, so the population scales with the budget.
        """
        return max(4, min(50, expected_trials // 3))

    @property
    def population(self) -> list:
        return self.completed[-self.population_size:]

    def propose(self, rng: random.Random) -> Arch:
        population = self.population
        if len(population) < self.population_size:
            return self.space.sample(rng)
        sample = rng.sample(population, self.sample_size)
        scored = [(self.fitness(r), r) for r in sample]
        front = [r for v, r in scored if not any(dominates(w, v) for w, _ in scored)]
        parent = front[0] if len(self.objectives) == 1 else rng.choice(front)
        return self.space.mutate(parent.arch, rng)

    def describe(self) -> dict:
        return {**super().describe(), "population_size": self.population_size, "sample_size": self.sample_size}

"""Once-for-All's evolutionary search over the subnets of a trained supernet, under a cost budget.

Paper: Cai, Gan, Wang, Zhang and Han, "Once-for-All: Train One Network and Specialize it for Efficient
Deployment", ICLR 2020; reference mit-han-lab/once-for-all ``ofa/nas/search_algorithm/evolution.py``
(``EvolutionFinder``: ``population_size`` 100, ``parent_ratio`` 0.25, ``mutation_ratio`` 0.5, ``mutate_prob``
0.1, every individual resampled until it meets the constraint). EfficientTDNN and ViT-ResNAS search their
supernets the same way; what a subnet is (its sampling, mutation and crossover) and its fitness (a predictor's
accuracy, or the inherited weights' accuracy) come from the caller.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from archlab.errors import UserError

__all__ = ["evolve"]


def evolve(subnets: Any, fitness: Callable[[Any], float], macs: Callable[[Any], int], budget: int,
           *, population: int = 100, generations: int = 30, parent_ratio: float = 0.25, mutation_ratio: float = 0.5,
           mutate_prob: float = 0.1, seed: int = 0) -> tuple[Any, float]:
    """The subnet of best ``fitness`` among those with ``macs(s) <= budget`` (see the module docstring);
    ``subnets`` provides ``sample(rng)``, ``mutate(s, rng, prob)`` and ``crossover(a, b, rng)`` of hashable
    subnets; ``fitness`` and ``macs`` are called once per distinct subnet."""
    rng = random.Random(seed)
    cache: dict[Any, int] = {}
    scores: dict[Any, float] = {}

    def score(s: Any) -> float:
        if s not in scores:
            scores[s] = float(fitness(s))
        return scores[s]

    def fits(s: Any) -> bool:
        if s not in cache:
            cache[s] = macs(s)
        return cache[s] <= budget

    def feasible(make: Callable[[], Any]) -> Any:
        for _ in range(1000):
            s = make()
            if fits(s):
                return s
        raise UserError(f"evolution: no subnet within {budget:,} MACs found (the smallest may be larger)")

    pop = [feasible(lambda: subnets.sample(rng)) for _ in range(population)]
    scored = sorted(((score(s), s) for s in pop), key=lambda t: -t[0])
    n_parents = max(1, int(parent_ratio * population))
    n_mutate = int(mutation_ratio * population)
    for _ in range(generations):
        parents = [s for _, s in scored[:n_parents]]

        def mutant(parents: list[Any] = parents) -> Any:
            return subnets.mutate(rng.choice(parents), rng, mutate_prob)

        def cross(parents: list[Any] = parents) -> Any:
            return subnets.crossover(rng.choice(parents), rng.choice(parents), rng)

        children = [feasible(mutant) for _ in range(n_mutate)]
        children += [feasible(cross) for _ in range(population - n_parents - n_mutate)]
        scored = sorted(scored[:n_parents] + [(score(s), s) for s in children], key=lambda t: -t[0])
    best_fitness, best = scored[0]
    return best, best_fitness

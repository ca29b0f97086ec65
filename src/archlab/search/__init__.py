"""archlab.search: search strategies behind one ask/tell interface.

``create_strategy(name, space, seed=..., objectives=...)`` makes any registered strategy; ``list_strategies``
names them. The default strategy (``DEFAULT_STRATEGY``) is regularized evolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from archlab.errors import UserError
from archlab.search._base import (
    OBJECTIVES,
    Strategy,
    TrialRecord,
    check_objectives,
    dominates,
    objective_values,
    pareto_front,
)
from archlab.search.evolution import RegularizedEvolution
from archlab.search.median_stopping import MedianStopping
from archlab.search.optuna_samplers import NSGAII, TPE, OptunaStrategy
from archlab.search.random_search import RandomSearch
from archlab.space import Space

__all__ = [
    "DEFAULT_STRATEGY",
    "MedianStopping",
    "OBJECTIVES",
    "NSGAII",
    "OptunaStrategy",
    "RandomSearch",
    "RegularizedEvolution",
    "Strategy",
    "TPE",
    "TrialRecord",
    "check_objectives",
    "create_strategy",
    "dominates",
    "list_strategies",
    "objective_values",
    "pareto_front",
    "register_strategy",
]

DEFAULT_STRATEGY = "rea"
_STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": RandomSearch,
    "rea": RegularizedEvolution,
    "tpe": TPE,
    "nsga2": NSGAII,
}


def register_strategy(name: str, factory: Callable[..., Strategy]) -> None:
    """Make ``factory(space, *, seed, objectives, **kw)`` available as ``name``."""
    _STRATEGIES[name] = factory


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def create_strategy(name: str, space: Space, *, seed: int = 0, objectives: Sequence[str] = ("accuracy",),
                    constrained: bool = False, expected_trials: int | None = None, **kwargs: Any) -> Strategy:
    """Make strategy ``name``; ``expected_trials`` (a budget estimate) sizes evolution's population."""
    if name not in _STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose from {', '.join(list_strategies())}")
    factory = _STRATEGIES[name]
    if isinstance(factory, type) and issubclass(factory, OptunaStrategy):
        kwargs["constrained"] = constrained
    if expected_trials is not None and factory is RegularizedEvolution:
        kwargs.setdefault("population_size", RegularizedEvolution.population_for(expected_trials))
        kwargs.setdefault("sample_size", max(2, kwargs["population_size"] // 3))
    return factory(space, seed=seed, objectives=objectives, **kwargs)

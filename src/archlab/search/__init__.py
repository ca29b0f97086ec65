"""archlab.search: search strategies behind one ask/tell interface.

``create_strategy(name, space, seed=..., objectives=...)`` makes any registered strategy; ``list_strategies``
names them; ``@register_strategy("name")`` on a :class:`Strategy` subclass (or a factory) adds one. The default
strategy (``DEFAULT_STRATEGY``) is regularized evolution. Objectives and constraints are data
(:class:`Objective`, :class:`Constraint`; presets in :data:`OBJECTIVES`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from archlab.errors import UserError
from archlab.search._base import (
    SearchExhausted,
    Strategy,
    TrialRecord,
    check_objectives,
    dominates,
    objective_values,
    pareto_front,
)
from archlab.search._objectives import (
    DIRECTIONS,
    OBJECTIVES,
    Constraint,
    Objective,
    resolve_constraints,
    resolve_objectives,
)
from archlab.search._pareto import hypervolume, pareto_mask
from archlab.search.evolution import RegularizedEvolution
from archlab.search.halving import HALVED, SuccessiveHalving
from archlab.search.local_search import LocalSearch
from archlab.search.median_stopping import STOPPED, MedianStopping
from archlab.search.naswot import NaswotSearch
from archlab.search.oneshot.strategy import DartsSearch, GdasSearch, SdDartsSearch, SharpDartsSearch, SposSearch
from archlab.search.optuna_samplers import NSGAII, TPE, OptunaStrategy
from archlab.search.random_search import RandomSearch
from archlab.search.reinforce import Reinforce
from archlab.search.robot import RoBoT
from archlab.search.surrogate_ls import SurrogateLocalSearch
from archlab.space import Space

__all__ = [
    "DEFAULT_STRATEGY",
    "DIRECTIONS",
    "EARLY_STOPS",
    "LocalSearch",
    "NSGAII",
    "OBJECTIVES",
    "TPE",
    "Constraint",
    "MedianStopping",
    "NaswotSearch",
    "Objective",
    "OptunaStrategy",
    "RandomSearch",
    "Reinforce",
    "RegularizedEvolution",
    "RoBoT",
    "SearchExhausted",
    "Strategy",
    "SuccessiveHalving",
    "SurrogateLocalSearch",
    "TrialRecord",
    "check_objectives",
    "create_strategy",
    "dominates",
    "hypervolume",
    "list_strategies",
    "objective_values",
    "pareto_front",
    "pareto_mask",
    "register_strategy",
    "resolve_constraints",
    "resolve_objectives",
    "strategy_class",
]

DEFAULT_STRATEGY = "rea"
#: the ``stopped`` reasons of a trial that an early-stopping rule ended for being behind the others
EARLY_STOPS = (HALVED, STOPPED)
_STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register_strategy(name: str, factory: Callable[..., Strategy] | None = None):
    """Register a strategy under ``name``: a :class:`Strategy` subclass (made with its ``from_context``) or a
    factory ``f(space, *, seed, objectives, constraints, expected_trials, **kw)``. Works as a decorator
    (``@register_strategy("mine")``) or a call (``register_strategy("mine", Mine)``)."""

    def deco(f: Callable[..., Strategy]) -> Callable[..., Strategy]:
        _STRATEGIES[name] = f
        return f

    return deco(factory) if factory is not None else deco


for _cls in (RandomSearch, RegularizedEvolution, Reinforce, LocalSearch, SurrogateLocalSearch, TPE, NSGAII, RoBoT,
             NaswotSearch, DartsSearch, GdasSearch, SharpDartsSearch, SdDartsSearch, SposSearch):
    register_strategy(_cls.name, _cls)


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def strategy_class(name: str) -> Callable[..., Strategy]:
    """The class (or factory) registered as ``name``; an unknown name is a :class:`UserError`."""
    if name not in _STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose from {', '.join(list_strategies())}")
    return _STRATEGIES[name]


def create_strategy(name: str, space: Space, *, seed: int = 0, objectives: Sequence[Any] = ("accuracy",),
                    constraints: Sequence[Any] = (), expected_trials: int | None = None, **kwargs: Any) -> Strategy:
    """Make strategy ``name`` for a search's context: ``constraints`` (:class:`Constraint`\\ s) and
    ``expected_trials`` (a budget estimate) are offered to every strategy, which uses what it can."""
    if name not in _STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose from {', '.join(list_strategies())}")
    factory = _STRATEGIES[name]
    context = dict(seed=seed, objectives=objectives, constraints=tuple(resolve_constraints(constraints)),
                   expected_trials=expected_trials)
    if isinstance(factory, type) and issubclass(factory, Strategy):
        return factory.from_context(space, **context, **kwargs)
    return factory(space, **context, **kwargs)

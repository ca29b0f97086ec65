"""Optuna's samplers as archlab strategies: TPE (Bergstra et al., "Algorithms for Hyper-Parameter
Optimization", NeurIPS 2011; Optuna's ``TPESampler``) and NSGA-II (Deb et al., "A Fast and Elitist
Multiobjective Genetic Algorithm: NSGA-II", 2002; Optuna's ``NSGAIISampler``).

A sampler proposes through ask/tell like every strategy and never touches the run's ledger: each strategy keeps
a private in-memory Optuna study holding exactly the records it was told (as completed trials with the arch's
params and distributions). The space is asked define-by-run (``Space.suggest``), so conditional decisions become
conditional Optuna parameters. The sampler is re-created before each ask with a seed derived from the run seed,
the number of trials told and the attempt, so a strategy rebuilt from the ledger makes the same proposals. A
proposal that repeats an evaluated arch is not recorded anywhere: the strategy asks again with the next seed
(and after ``max_duplicates`` attempts takes an unseen arch at random).

A warm start (:meth:`Strategy.set_warmstart`) applies here too: its picks are asked by the base class, not the
sampler, and told like the sampler's own proposals: each becomes a completed trial of the private study (an
arch's params are valid whoever proposed it), so TPE counts the warm trials among its startup trials. NSGA-II
only sees trials that carry its generation number: a warm trial is kept as a member of its first generation.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState, create_trial

from archlab.search._base import SearchExhausted, Strategy, TrialRecord
from archlab.search._objectives import Constraint, Objective
from archlab.space import Arch, Space

__all__ = ["NSGAII", "TPE", "OptunaStrategy", "param_distributions", "params_and_distributions"]

optuna.logging.set_verbosity(optuna.logging.WARNING)

_CONSTRAINTS = "constraints"


def param_distributions(space: Space) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every param of ``space`` (from :meth:`Space.decisions`, what ``suggest`` asks)."""
    return {d.path: d.distribution() for d in space.decisions()}


def params_and_distributions(space: Space, arch: Arch, distributions: dict[str, BaseDistribution] | None = None
                             ) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """The Optuna params of ``arch`` and the distributions they were drawn from (``distributions``: the space's
    :func:`param_distributions`, when the caller keeps them)."""
    params = space.to_params(arch)
    table = param_distributions(space) if distributions is None else distributions
    return params, {name: table[name] for name in params}


def _constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return trial.user_attrs.get(_CONSTRAINTS, [0.0])


class OptunaStrategy(Strategy):
    """An Optuna sampler proposing archs from a private in-memory study of the records it was told."""

    name = "optuna"
    max_duplicates = 20

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 constrained: bool = False, dedupe: bool = True, **sampler_kwargs: Any) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=dedupe)
        self.constrained = constrained
        self.sampler_kwargs = sampler_kwargs
        self.duplicates = 0
        self._told: list[optuna.trial.FrozenTrial] = []
        self._memos: dict[Arch, dict[str, Any]] = {}
        self._distributions = param_distributions(space)

    @classmethod
    def from_context(cls, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                     constraints: Sequence[Constraint] = (), expected_trials: int | None = None,
                     **kwargs: Any) -> OptunaStrategy:
        """With constraints, the sampler takes them (Optuna's ``constraints_func``)."""
        kwargs.setdefault("constrained", bool(constraints))
        return cls(space, seed=seed, objectives=objectives, **kwargs)

    def _new_study(self) -> optuna.Study:
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                    directions=[o.direction for o in self.objectives])
        study.add_trials(self._told)
        return study

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def propose(self, rng: random.Random) -> Arch:
        return self.space.sample(rng)  # unused: ask() is the sampler's

    def ask(self) -> Arch:
        if self.starting or self.warming:  # the portfolio's or the proxies' pick, not the sampler's
            arch = super().ask()
            attrs = self.warm_attrs()
            if attrs:
                self._memos[arch] = attrs
            return arch
        # a fresh private study of the told records for every ask: what the sampler sees is a function of the
        # history alone, so a strategy rebuilt from the ledger asks exactly what the live one asked
        study = self._new_study()
        for attempt in range(self.max_duplicates):
            seed = random.Random(self._step_seed(attempt)).randrange(2**31)
            study.sampler = self.make_sampler(seed)
            trial = study.ask()
            arch = self.space.suggest(trial)
            if not (self.dedupe and self._taken(arch)):
                if self.dedupe:
                    self.pending.add(arch)
                attrs = study._storage.get_trial_system_attrs(trial._trial_id)
                self._memos[arch] = {k: v for k, v in attrs.items() if _jsonable(v)}
                return arch
            self.duplicates += 1  # asked again with the next seed; the duplicate is recorded nowhere
        rng = random.Random(self._step_seed("fallback"))
        arch = self._unseen(rng)
        if arch is None:
            raise SearchExhausted(f"every arch of space {self.space.name!r} has been evaluated")
        if self.dedupe:
            self.pending.add(arch)
        return arch

    def warm_attrs(self) -> dict[str, Any]:
        """The sampler's attributes of a warm-start trial (kept in the ledger like those of its own trials)."""
        return {}

    def memo(self, arch: Arch) -> dict[str, Any] | None:
        """The sampler's own attributes of the trial that proposed ``arch`` (NSGA-II's generation, ...), kept in
        the ledger with the trial so that a rebuilt strategy's private study is the live one."""
        return self._memos.pop(arch, None) or None

    def observe(self, record: TrialRecord) -> None:
        params, distributions = params_and_distributions(self.space, record.arch, self._distributions)
        system_attrs = dict(record.memo or {})
        if record.state == "failed":
            frozen = create_trial(state=TrialState.FAIL, params=params, distributions=distributions,
                                  system_attrs=system_attrs)
        else:
            attrs = {}
            if "constraints" in record.metrics:
                attrs[_CONSTRAINTS] = list(record.metrics["constraints"])
            values = [float(record.metrics[o.metric]) if o.metric in record.metrics else o.worst
                      for o in self.objectives]
            frozen = create_trial(values=values, params=params, distributions=distributions, user_attrs=attrs,
                                  system_attrs=system_attrs)
        self._told.append(frozen)

    def reset(self) -> None:
        super().reset()
        self._told = []
        self._memos = {}


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) or (
        isinstance(value, (list, tuple)) and all(_jsonable(v) for v in value))


class TPE(OptunaStrategy):
    name = "tpe"

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        kw: dict[str, Any] = {"n_startup_trials": 10, **self.sampler_kwargs}
        if self.constrained:
            kw["constraints_func"] = _constraints
        return optuna.samplers.TPESampler(seed=seed, **kw)


class NSGAII(OptunaStrategy):
    name = "nsga2"

    def warm_attrs(self) -> dict[str, Any]:
        """A warm trial is a member of the first generation (NSGA-II ignores trials without a generation)."""
        return {optuna.samplers.NSGAIISampler._get_generation_key(): 0}

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        kw: dict[str, Any] = {"population_size": 10, **self.sampler_kwargs}
        if self.constrained:
            kw["constraints_func"] = _constraints
        return optuna.samplers.NSGAIISampler(seed=seed, **kw)

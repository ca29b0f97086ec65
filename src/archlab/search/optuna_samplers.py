"""Optuna's samplers as archlab strategies: TPE (Bergstra et al., "Algorithms for Hyper-Parameter
Optimization", NeurIPS 2011; Optuna's ``TPESampler``) and NSGA-II (Deb et al., "A Fast and Elitist
Multiobjective Genetic Algorithm: NSGA-II", 2002; Optuna's ``NSGAIISampler``).

The space is asked for define-by-run (``Space.suggest``), so conditional decisions become conditional Optuna
parameters. The sampler is re-created before each ask with a seed derived from the run seed and the number of
trials told: its state otherwise lives in the study, so a resumed run makes the same proposals. A proposal that
repeats an evaluated arch is recorded in the study as a duplicate (with the original's values, so the sampler
learns from it) and is never trained again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import optuna

from archlab.search._base import OBJECTIVES, Strategy, TrialRecord
from archlab.space import Arch, Space

__all__ = ["NSGAII", "OptunaStrategy", "TPE"]


def _constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return trial.user_attrs.get("constraints", [0.0])


class OptunaStrategy(Strategy):
    """An Optuna sampler driving the ledger's own study (``attach`` gives it the study)."""

    name = "optuna"
    max_duplicates = 20

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str] = ("accuracy",),
                 constrained: bool = False, **sampler_kwargs: Any) -> None:
        super().__init__(space, seed=seed, objectives=objectives)
        self.constrained = constrained
        self.sampler_kwargs = sampler_kwargs
        self.study: optuna.Study | None = None
        self._pending: dict[Arch, optuna.Trial] = {}
        self.duplicates = 0

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def attach(self, study: optuna.Study) -> None:
        self.study = study

    def pending_trial(self, arch: Arch) -> optuna.Trial | None:
        return self._pending.pop(arch, None)

    def propose(self, rng: random.Random) -> Arch:
        return self.space.sample(rng)  # unused: ask() is the sampler's

    def ask(self) -> Arch:
        if self.study is None:
            raise RuntimeError(f"{self.name}: attach(study) before ask()")
        by_arch = {r.arch: r for r in self.history}
        for attempt in range(self.max_duplicates):
            seed = random.Random(f"{self.name}:{self.seed}:{len(self.history)}:{attempt}").randrange(2**31)
            self.study.sampler = self.make_sampler(seed)
            trial = self.study.ask()
            arch = self.space.suggest(trial)
            if arch in by_arch:
                self._record_duplicate(trial, by_arch[arch])
            elif arch in self.seen:  # being trained by a parallel worker: no values to copy yet
                self.duplicates += 1
                trial.set_user_attr("duplicate_of", "running")
                trial.set_user_attr("reason", "duplicate of a trial still running")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self._pending[arch] = trial
                return arch
        rng = random.Random(f"{self.name}:{self.seed}:{len(self.history)}:fallback")
        return self._unseen(rng) or self.space.sample(rng)  # the sampler keeps repeating itself

    def _record_duplicate(self, trial: optuna.Trial, original: TrialRecord) -> None:
        assert self.study is not None
        self.duplicates += 1
        trial.set_user_attr("duplicate_of", original.number)
        if original.state == "failed":
            trial.set_user_attr("reason", f"duplicate of failed trial {original.number}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        if "constraints" in original.metrics:
            trial.set_user_attr("constraints", original.metrics["constraints"])
        values = [float(original.metrics[OBJECTIVES[o][0]]) for o in self.objectives]
        self.study.tell(trial, values)


class TPE(OptunaStrategy):
    name = "tpe"

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        kw: dict[str, Any] = {"n_startup_trials": 10, **self.sampler_kwargs}
        if self.constrained:
            kw["constraints_func"] = _constraints
        return optuna.samplers.TPESampler(seed=seed, **kw)


class NSGAII(OptunaStrategy):
    name = "nsga2"

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        kw: dict[str, Any] = {"population_size": 10, **self.sampler_kwargs}
        if self.constrained:
            kw["constraints_func"] = _constraints
        return optuna.samplers.NSGAIISampler(seed=seed, **kw)



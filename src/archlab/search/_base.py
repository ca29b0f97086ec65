"""The strategy interface: ``ask() -> Arch`` and ``tell(record)``, with state rebuilt from the ledger.

A strategy never trains anything and never touches the ledger: the search loop asks it for an arch, has an
evaluator score it, records the result in the ledger and tells the strategy the :class:`TrialRecord` the ledger
made of it. Resuming a run replays the ledger's records through ``tell`` in trial order, so a strategy whose
decisions depend only on its seed and on what it was told (every strategy here) continues exactly where the
interrupted run stopped.

De-duplication is a strategy policy (``dedupe``): on by default, so an arch is never proposed twice while unseen
ones remain (training it again would waste the budget); off for the published protocols that charge a repeated
arch again (regularized evolution and random search on NAS-Bench-201).

Any strategy can be given a zero-cost-proxy warm start (:meth:`Strategy.set_warmstart`): its first asks are
picked by proxies among random samples instead of proposed, and told to it like its own proposals.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archlab.errors import UserError
from archlab.search._objectives import OBJECTIVES, Objective, resolve_objectives
from archlab.search._pareto import pareto_mask
from archlab.space import Arch, Space

__all__ = [
    "SearchExhausted",
    "Strategy",
    "TrialRecord",
    "Warmstart",
    "check_objectives",
    "dominates",
    "objective_values",
    "pareto_front",
    "rank_sum_best",
]


class SearchExhausted(Exception):
    """``ask()`` of a de-duplicating strategy when every arch of the space has been evaluated or is running."""


def check_objectives(objectives: Sequence[str]) -> list[str]:
    """Preset objective names (the CLI's ``--objectives``), checked: known, at least one, none twice."""
    if any(not isinstance(o, str) for o in objectives):
        raise UserError("objectives given by name must be preset names: " + ", ".join(OBJECTIVES))
    return [o.name for o in resolve_objectives([o.strip() for o in objectives if o.strip()])]


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as strategies see it (test metrics are never shown to a strategy)."""

    number: int
    arch: Arch
    state: str  # "complete" | "failed" | "infeasible"
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    memo: dict[str, Any] | None = None  # what the proposing strategy asked the ledger to keep (Strategy.memo)

    @property
    def ok(self) -> bool:
        return self.state == "complete"


def objective_values(record: TrialRecord, objectives: Sequence[str | Objective]) -> tuple[float, ...]:
    """Objective values oriented so that larger is better for every objective."""
    return tuple(o.oriented(record.metrics[o.metric]) for o in resolve_objectives(objectives))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (both oriented larger-is-better)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def pareto_front(records: Iterable[TrialRecord], objectives: Sequence[str | Objective]) -> list[TrialRecord]:
    """Completed records that no other completed record dominates, in trial order (with one objective: the
    records that reach the best value)."""
    objs = resolve_objectives(objectives)
    done = [r for r in records if r.ok]
    if not done:
        return []
    if len(objs) == 1:  # no Pareto work for one objective
        o = objs[0]
        best = max(o.oriented(r.metrics[o.metric]) for r in done)
        return [r for r in done if o.oriented(r.metrics[o.metric]) == best]
    mask = pareto_mask([[float(r.metrics[o.metric]) for o in objs] for r in done], [o.direction for o in objs])
    return [r for r, on in zip(done, mask, strict=True) if on]


@dataclass(frozen=True)
class Warmstart:
    """A zero-cost-proxy warm start: the first ``trials`` asks each take the best of ``candidates`` unseen random
    samples by ``scorer`` (arch -> a tuple of proxy scores, larger is better, e.g.
    :class:`archlab.proxies.ProxyScorer`); see :meth:`Strategy.set_warmstart`."""

    scorer: Callable[[Arch], Sequence[float]]
    trials: int
    candidates: int = 10

    def describe(self) -> dict[str, Any]:
        return {"proxies": list(getattr(self.scorer, "names", ["custom"])), "trials": self.trials,
                "candidates": self.candidates}


def rank_sum_best(candidates: Sequence[Arch], scores: Sequence[Sequence[float]]) -> Arch:
    """The candidate with the largest sum of per-proxy ranks (a rank: how many candidates it beats on that proxy,
    ties counting half), the first of equals; ``scores[i]`` are the proxy scores of ``candidates[i]``."""
    ranks = [0.0] * len(candidates)
    for k in range(len(scores[0])):
        column = [s[k] for s in scores]
        for i, v in enumerate(column):
            ranks[i] += sum(1.0 if v > w else 0.5 if v == w else 0.0 for w in column)
    return candidates[max(range(len(candidates)), key=lambda i: ranks[i])]


class Strategy(abc.ABC):
    """A search strategy over one space.

    Subclasses implement :meth:`propose`; the base class handles the seed stream (one generator per step,
    derived from the seed and the number of trials told, so resume is exact) and de-duplication: with
    ``dedupe`` an arch already evaluated, or asked and not yet told (running in a parallel worker), is not
    proposed again while unseen ones remain, and :class:`SearchExhausted` is raised when none remain.

    With a warm start (:meth:`set_warmstart`) the first asks are the proxies' picks instead of :meth:`propose`'s.
    """

    name: str = "strategy"
    max_resample: int = 200

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 dedupe: bool = True) -> None:
        self.space = space
        self.seed = seed
        self.objectives: tuple[Objective, ...] = resolve_objectives(objectives)
        self.dedupe = dedupe
        self.history: list[TrialRecord] = []
        self.seen: set[Arch] = set()  # archs told
        self.pending: set[Arch] = set()  # archs asked and not told yet
        self.warmstart: Warmstart | None = None  # configuration, not state: kept by reset()
        self.portfolio: list[tuple[str, Arch]] = []  # configuration too: the first asks (set_portfolio)

    @classmethod
    def from_context(cls, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                     constraints: Sequence[Any] = (), expected_trials: int | None = None,
                     **kwargs: Any) -> Strategy:
        """Make the strategy for a search's context. ``constraints`` and ``expected_trials`` (a budget estimate)
        are offered to every strategy; one that can use them overrides this (evolution sizes its population,
        Optuna's samplers take the constraints)."""
        return cls(space, seed=seed, objectives=objectives, **kwargs)

    # -- the warm start
    def set_warmstart(self, scorer: Callable[[Arch], Sequence[float]] | None, *, trials: int | None = None,
                      candidates: int = 10, expected_trials: int | None = None) -> None:
        """Warm the search up with zero-cost proxies: the "zero-cost warmup" of Abdelfattah et al., "Zero-Cost
        Proxies for Lightweight NAS" (ICLR 2021), where proxy scores of many more archs than the
        budget can train pick the first archs a search trains.

        While fewer than ``trials`` trials have been asked (told, plus asked and running), :meth:`ask` returns
        the best of ``candidates`` unseen random samples by the sum of per-proxy ranks (:func:`rank_sum_best`)
        instead of :meth:`propose`'s arch; afterwards the strategy proposes as usual. Their records are told like
        any other (:meth:`observe`), so the strategy's own model starts from them. ``scorer`` maps an arch to a
        tuple of proxy scores (larger is better) and must be a function of the arch alone, so a strategy rebuilt
        from the ledger proposes exactly what the uninterrupted one would; a scorer whose time budget is spent
        (a true ``exhausted`` attribute, as :class:`~archlab.proxies.ProxyScorer`'s) ranks only the candidates it
        scored in time. ``trials`` defaults to :meth:`warmstart_trials` of ``expected_trials`` (a budget
        estimate). ``scorer=None`` removes the warm start.
        """
        if scorer is None:
            self.warmstart = None
            return
        trials = self.warmstart_trials(expected_trials) if trials is None else trials
        if trials < 1 or candidates < 1:
            raise UserError(f"{self.name}: a warm start needs trials >= 1 and candidates >= 1, got {trials}, "
                            f"{candidates}")
        self.warmstart = Warmstart(scorer, trials, candidates)

    def warmstart_trials(self, expected_trials: int | None) -> int:
        """The default number of warm trials: a quarter of the expected trials, at least 2 and at most 10 (10
        without an estimate).

        The proxies correlate with trained accuracy only moderately (Abdelfattah et al.), so their picks seed the
        strategy rather than replace it: three quarters of the budget or more is left to the strategy. The cap of
        10 is the random start of the strategies here (TPE's startup trials, NSGA-II's first generation, local
        search's and surrogate_ls's initial archs): the warm start replaces random draws by better ones and does
        not delay the model-guided phase. Evolution overrides this with its population size.
        """
        if expected_trials is None:
            return 10
        return min(10, max(2, expected_trials // 4))

    def set_portfolio(self, archs: Sequence[tuple[str, Arch]]) -> None:
        """Make named known-good archs the first asks, in order (:mod:`archlab.search.portfolio`); a warm start
        or the strategy's own proposals follow. Their records are told like any other, so the strategy starts
        from them (evolution's first population holds them)."""
        self.portfolio = [(name, self.space.validate(arch)) for name, arch in archs]

    @property
    def starting(self) -> bool:
        """Whether the next ask is a portfolio arch (fewer asked so far than the portfolio holds)."""
        return len(self.history) + len(self.pending) < len(self.portfolio)

    @property
    def warming(self) -> bool:
        """Whether the next ask is a warm-start pick (fewer than ``warmstart.trials`` asked after the portfolio)."""
        return self.warmstart is not None and \
            len(self.history) + len(self.pending) < len(self.portfolio) + self.warmstart.trials

    def _warm_sample(self, rng: random.Random) -> Arch:
        """The best of ``warmstart.candidates`` unseen random samples by the sum of per-proxy ranks."""
        assert self.warmstart is not None
        scorer, n = self.warmstart.scorer, self.warmstart.candidates
        candidates: list[Arch] = []
        for _ in range(n * 20):
            arch = self.space.sample(rng)
            if not self._taken(arch) and arch not in candidates:
                candidates.append(arch)
                if len(candidates) == n:
                    break
        scores = []
        for arch in candidates:  # a scorer with a time budget (ProxyScorer.exhausted) ranks those it scored
            if len(candidates) <= 1 or getattr(scorer, "exhausted", False):
                break
            scores.append(tuple(scorer(arch)))
        if len(scores) <= 1:
            return candidates[0] if candidates else self.space.sample(rng)
        return rank_sum_best(candidates[:len(scores)], scores)

    # -- the interface
    def ask(self) -> Arch:
        asked = len(self.history) + len(self.pending)
        if asked < len(self.portfolio) and not self._taken(self.portfolio[asked][1]):
            arch = self.portfolio[asked][1]
            self.pending.add(arch)
            return arch
        rng = random.Random(self._step_seed())
        pick = self._warm_sample if self.warming else self.propose
        arch = pick(rng)
        if self.dedupe:
            tries = 0
            while self._taken(arch) and tries < self.max_resample:
                arch = pick(rng)
                tries += 1
            if self._taken(arch):  # the strategy is stuck on evaluated archs: take an unseen one at random
                arch = self._unseen(rng)
                if arch is None:
                    raise SearchExhausted(f"every arch of space {self.space.name!r} has been evaluated")
        self.pending.add(arch)
        return arch

    def _step_seed(self, *extra: object) -> str:
        """The seed of this step's generator: the run seed and the trials asked so far (told, or running in
        parallel workers), so a rebuilt strategy draws what the live one drew, and a strategy that does not learn
        from results (random search) draws the same archs with any number of workers, whatever the timing."""
        parts = [self.name, self.seed, len(self.history) + len(self.pending)] + list(extra)
        return ":".join(map(str, parts))

    def _taken(self, arch: Arch) -> bool:
        return arch in self.seen or arch in self.pending

    def _unseen(self, rng: random.Random) -> Arch | None:
        for _ in range(self.max_resample):
            arch = self.space.sample(rng)
            if not self._taken(arch):
                return arch
        if self.space.size() <= 100_000:
            rest = [a for a in self.space.enumerate() if not self._taken(a)]
            return rng.choice(rest) if rest else None
        return None

    def tell(self, record: TrialRecord) -> None:
        self.history.append(record)
        self.pending.discard(record.arch)  # also without de-duplication: the step seed counts what is pending
        if self.dedupe:
            self.seen.add(record.arch)
        self.observe(record)

    def memo(self, arch: Arch) -> dict[str, Any] | None:
        """JSON data about the proposal of ``arch`` that the ledger keeps with its trial and gives back in the
        record on resume (a sampler's per-trial attributes); ``None`` for strategies that need none."""
        return None

    def observe(self, record: TrialRecord) -> None:  # noqa: B027 (an optional hook, empty by default)
        """What a subclass learns from a told record (called by :meth:`tell`, live and on resume)."""

    def reset(self) -> None:
        """Forget everything told (a subclass with state of its own extends this)."""
        self.history, self.seen, self.pending = [], set(), set()

    def rebuild(self, records: Iterable[TrialRecord]) -> None:
        """Reset and replay finished trials (in trial order): the state a fresh run would have reached."""
        self.reset()
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
        metrics = record.metrics
        return tuple(metrics[o.metric] if o.maximize else -metrics[o.metric] for o in self.objectives)

    def state_dict(self) -> dict[str, Any]:
        """What the strategy knows, as plain data (a strategy told live and one rebuilt hold equal states)."""
        return {"name": self.name, "seed": self.seed, "history": [(r.number, r.arch.key, r.state, r.metrics)
                                                                  for r in self.history]}

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "seed": self.seed, "dedupe": self.dedupe}
        if self.warmstart is not None:
            d["warmstart"] = self.warmstart.describe()
        if self.portfolio:
            d["portfolio"] = [{"name": name, "arch": arch.to_dict()} for name, arch in self.portfolio]
        return d

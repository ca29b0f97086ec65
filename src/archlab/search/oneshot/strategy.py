"""One-shot methods as search strategies: ``archlab search --strategy darts|gdas|sharpdarts|sd-darts|spos``.

A weight-sharing search is a strategy like any other: the search loop asks it for archs, the run's evaluator
trains each at the trial fidelity, the ledger records them, and the best is trained further, exported and
reported as in every search. What the strategy proposes comes from a supernet it trains on the first ask, on the
run's training split, for ``epochs`` (``archlab search`` passes the trials' ``--epochs``) or within its share of
the search's time (``seconds``: half of a timed search), whichever ends first:

- ``darts`` / ``gdas`` / ``sharpdarts`` / ``sd-darts`` (:func:`~archlab.search.oneshot.darts`, ``gdas``,
  ``sharpdarts``, ``sd_darts``): weights on
  one half of the training split, architecture parameters on the other; the proposals are the derived arch
  (argmax alpha per decision) and then the archs of highest probability under softmax(alpha).
- ``spos`` (:func:`~archlab.search.oneshot.spos`; Guo et al., ECCV 2020): uniform single-path training on one
  half, then the paper's evolutionary search (regularized evolution, :class:`~archlab.search.RegularizedEvolution`)
  over inherited-weight validation accuracy on the other half (:func:`inherited_accuracy`); the proposals are the
  archs it scored, best first.

After the ranking is spent the strategy proposes unseen archs at random. The ranking is kept in the first trial's
memo in the ledger, so a resumed run continues it without training the supernet again.

Before training, the supernet's memory is estimated (:func:`~archlab.search.oneshot.memory.estimate_training_memory`)
and a run that would not fit ``max_memory_mb`` is refused with a :class:`~archlab.errors.UserError`.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import torch

from archlab.errors import SpaceError, UserError
from archlab.search._base import SearchExhausted, Strategy, TrialRecord
from archlab.search._objectives import Objective
from archlab.search.evolution import RegularizedEvolution
from archlab.search.oneshot.darts import darts
from archlab.search.oneshot.gdas import gdas
from archlab.search.oneshot.memory import MB, MemoryEstimate, estimate_training_memory
from archlab.search.oneshot.sd_darts import sd_darts
from archlab.search.oneshot.sharpdarts import sharpdarts
from archlab.search.oneshot.spos import inherited_accuracy, spos_train
from archlab.space import Arch, Space

__all__ = ["DartsSearch", "GdasSearch", "OneShotSearch", "SdDartsSearch", "SharpDartsSearch", "SposSearch"]


def _epoch_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
    """An epoch callable: the pairs in a seeded shuffled order, in batches (the last one partial)."""
    gen = torch.Generator().manual_seed(seed)

    def epoch(_: int):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            yield x[idx], y[idx]

    return epoch


class OneShotSearch(Strategy):
    """The common part: the data, the time share, the memory check, the ranking and its memo."""

    name = "oneshot"
    mode = "spos"
    #: ``archlab search`` gives this strategy the training split and a share of the search's seconds
    needs_training_data = True
    #: tensors the weight optimizer keeps per weight (SGD with momentum)
    optimizer_slots = 1

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 data: tuple[torch.Tensor, torch.Tensor] | None = None, seconds: float | None = None,
                 epochs: int = 50, batch_size: int = 64, candidates: int = 50,
                 max_memory_mb: float | None = None) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=True)
        if epochs < 1 or batch_size < 1 or candidates < 1:
            raise UserError(f"{self.name}: need epochs, batch_size and candidates >= 1, got {epochs}, {batch_size}, "
                            f"{candidates}")
        if seconds is not None and not seconds > 0:
            raise UserError(f"{self.name}: seconds must be > 0, got {seconds}")
        try:
            compiled = space.supernet(self.mode, seed=seed)  # a space that does not compile fails here
        except SpaceError as e:
            raise UserError(f"--strategy {self.name}: {e}") from None
        self.data, self.seconds, self.epochs = data, seconds, epochs
        self.batch_size, self.candidates, self.max_memory_mb = batch_size, candidates, max_memory_mb
        self.ranking: list[Arch] | None = None
        self.info: dict[str, Any] = {}
        self._memo_given = False
        self._steps_per_epoch: int | None = None
        self.memory: MemoryEstimate | None = None
        if data is not None:
            self.memory = self.check_memory(compiled)

    # -- memory
    def check_memory(self, supernet: Any) -> MemoryEstimate:
        """``supernet``'s estimated training memory (its weights are not touched; a SPOS supernet's single path is
        set); a :class:`UserError` when it exceeds ``max_memory_mb``."""
        assert self.data is not None
        rng = random.Random(self.seed)
        # the largest of several paths: a single path (spos) or a Gumbel draw (gdas) varies in size
        paths = [{}] if self.mode == "darts" else [{}] * 8 if self.mode == "gdas" else \
            [{"arch": self.space.sample(rng)} for _ in range(8)]
        if self.mode == "spos":
            supernet.set_arch(paths[0]["arch"])
        estimate = estimate_training_memory(supernet, self.data[0][:2], self.batch_size,
                                            optimizer_slots=self.optimizer_slots, forward_kwargs=paths)
        if self.max_memory_mb is not None and estimate.total_mb > self.max_memory_mb:
            raise UserError(f"--strategy {self.name}: training the supernet at batch {self.batch_size} needs about "
                            f"{estimate.total_mb:.0f} MB (activations {estimate.activations / MB:.0f} MB), over "
                            f"--max-memory {self.max_memory_mb:.0f} MB; lower --batch-size or use spos")
        return estimate

    # -- the ranking
    def _split(self) -> tuple[Any, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Training batches on one half of the data, validation batches on the other (a seeded shuffle)."""
        if self.data is None:
            raise UserError(f"{self.name}: the strategy needs training data (data=(x, y)) to train its supernet")
        x, y = self.data
        if len(y) < 4:
            raise UserError(f"{self.name}: need at least 4 training examples, got {len(y)}")
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        half = len(y) // 2
        tr, va = order[:half], order[half:]
        self._steps_per_epoch = math.ceil(half / self.batch_size)
        val = [(x[va[i:i + self.batch_size]], y[va[i:i + self.batch_size]]) for i in range(0, len(va), self.batch_size)]
        return _epoch_batches(x[tr], y[tr], self.batch_size, self.seed), val

    def train_and_rank(self) -> list[Arch]:
        """Train the supernet and return the archs to propose, best first (subclasses)."""
        raise NotImplementedError

    def _ensure_ranking(self) -> list[Arch]:
        if self.ranking is None:
            start = time.perf_counter()
            self.ranking = self.train_and_rank()
            self.info["supernet_seconds"] = round(time.perf_counter() - start, 2)
        return self.ranking

    def propose(self, rng: random.Random) -> Arch:
        for arch in self._ensure_ranking():
            if not self._taken(arch):
                return arch
        return self._unseen(rng) or self.space.sample(rng)

    def memo(self, arch: Arch) -> dict[str, Any] | None:
        if self.ranking is None or self._memo_given:
            return None
        self._memo_given = True
        return {"oneshot": {"ranking": [a.to_dict() for a in self.ranking], **self.info}}

    def observe(self, record: TrialRecord) -> None:
        if self.ranking is None and record.memo and "oneshot" in record.memo:
            saved = record.memo["oneshot"]
            self.ranking = [self.space.validate(a) for a in saved["ranking"]]
            self.info = {k: v for k, v in saved.items() if k != "ranking"}
            self._memo_given = True

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(seconds=self.seconds, epochs=self.epochs, batch_size=self.batch_size, candidates=self.candidates,
                 **self.info)
        if self.memory is not None:
            d["memory_estimate_mb"] = round(self.memory.total_mb, 1)
        return d

    #: how the ranking is made, for the report
    ranking_rule = "its ranking"

    def explain(self) -> str | None:
        """One sentence for the report: how the supernet was trained and how it ranked the proposals."""
        if self.ranking is None:
            return None
        info = self.info
        trained = (f"{info['supernet_seconds']:.0f} s" if "supernet_seconds" in info else "an earlier session")
        memory = f", estimated training memory {self.memory.total_mb:.0f} MB" if self.memory is not None else ""
        return (f"a {self.name.upper()} supernet of the space trained for {trained} "
                f"({info.get('epochs_trained', '?')} epochs at batch {self.batch_size}{memory}) proposed "
                f"{len(self.ranking)} archs, {self.ranking_rule}; later proposals are random unseen archs")

    def _fit_kwargs(self) -> dict[str, Any]:
        return {"max_seconds": self.seconds, "amp": False, "steps_per_epoch": self._steps_per_epoch}


class _Differentiable(OneShotSearch):
    def train_and_rank(self) -> list[Arch]:
        train, val = self._split()
        run = {"darts": darts, "gdas": gdas, "sharpdarts": sharpdarts, "sd-darts": sd_darts}[self.name]
        result = run(self.space, train, val, epochs=self.epochs, seed=self.seed, **self._fit_kwargs())
        self.info.update(epochs_trained=len(result.history),
                         final_val_accuracy=result.history[-1]["val_accuracy"] if result.history else None)
        return most_probable(result.supernet, result.arch, self.candidates)


def most_probable(supernet: Any, derived: Arch, n: int) -> list[Arch]:
    """``derived`` and then the other archs of highest probability under softmax(alpha) (a product over the
    decisions), ``n`` in all: a best-first walk over the decisions' options in probability order (a heap of
    option-rank vectors, each popped vector pushing its one-step successors)."""
    probs = supernet.probabilities()
    paths = list(probs)
    options = [sorted(probs[p].items(), key=lambda kv: -kv[1]) for p in paths]
    logs = [[math.log(max(prob, 1e-30)) for _, prob in o] for o in options]

    def logp(ranks: tuple[int, ...]) -> float:
        return sum(lp[r] for lp, r in zip(logs, ranks, strict=True))

    out = [derived]
    start = (0,) * len(paths)
    heap, pushed = [(-logp(start), start)], {start}
    while heap and len(out) < n:
        _, ranks = heapq.heappop(heap)
        try:
            arch = supernet.space.from_params({p: options[i][r][0] for i, (p, r) in enumerate(zip(paths, ranks,
                                                                                             strict=True))})
        except SpaceError:
            arch = None
        if arch is not None and arch not in out:
            out.append(arch)
        for i in range(len(ranks)):
            if ranks[i] + 1 < len(options[i]):
                nxt = ranks[:i] + (ranks[i] + 1,) + ranks[i + 1:]
                if nxt not in pushed:
                    pushed.add(nxt)
                    heapq.heappush(heap, (-logp(nxt), nxt))
    return out


class DartsSearch(_Differentiable):
    name = "darts"
    mode = "darts"
    ranking_rule = "the derived arch (argmax alpha) first, then by probability under softmax(alpha)"


class GdasSearch(_Differentiable):
    name = "gdas"
    mode = "gdas"
    ranking_rule = DartsSearch.ranking_rule


class SharpDartsSearch(_Differentiable):
    name = "sharpdarts"
    mode = "darts"
    ranking_rule = DartsSearch.ranking_rule + " (Max-W weighting, cosine power annealing)"


class SdDartsSearch(_Differentiable):
    name = "sd-darts"
    mode = "darts"
    ranking_rule = DartsSearch.ranking_rule + " (weights trained with self-distillation from earlier snapshots)"


class SposSearch(OneShotSearch):
    name = "spos"
    mode = "spos"
    ranking_rule = "best first by inherited-weight validation accuracy (regularized evolution over the supernet)"

    def train_and_rank(self) -> list[Arch]:
        train, val = self._split()
        share = 0.8 if self.seconds is not None else None  # the rest: scoring candidates by inherited weights
        kwargs = self._fit_kwargs()
        if share is not None:
            kwargs["max_seconds"] = share * self.seconds
        supernet, history = spos_train(self.space, train, val, epochs=self.epochs, seed=self.seed, **kwargs)
        deadline = None if self.seconds is None else time.perf_counter() + (1 - share) * self.seconds
        scored = evolve_inherited(self.space, lambda a: inherited_accuracy(supernet, a, train, val),
                                  self.candidates, seed=self.seed, deadline=deadline)
        self.info.update(epochs_trained=len(history), scored=len(scored))
        return [arch for arch, _ in sorted(scored, key=lambda t: -t[1])]


def evolve_inherited(space: Space, score: Any, n: int, *, seed: int = 0, population: int = 10, sample: int = 3,
                     deadline: float | None = None) -> list[tuple[Arch, float]]:
    """SPOS' search step: regularized evolution over ``score(arch)`` (inherited-weight accuracy), ``n`` distinct
    archs at most, stopping early at ``deadline`` (a ``time.perf_counter()`` value) once one arch is scored."""
    rea = RegularizedEvolution(space, seed=seed, population_size=max(2, min(population, n)),
                               sample_size=max(1, min(sample, population, n)))
    out: list[tuple[Arch, float]] = []
    for number in range(n):
        if out and deadline is not None and time.perf_counter() > deadline:
            break
        try:
            arch = rea.ask()
        except SearchExhausted:  # a space smaller than n
            break
        value = float(score(arch))
        rea.tell(TrialRecord(number=number, arch=arch, state="complete", metrics={"val_accuracy": value}))
        out.append((arch, value))
    return out

"""A time budget is a promise: the loop starts no trial it cannot finish, an evaluation given ``seconds`` ends on
time with its measurements and evaluations included, ranking by proxies takes a bounded share, and the main job
counts what was spent before it (the CLI's start-up) and skips a final training the budget has no room for."""

from __future__ import annotations

import json
import random
import time

import pytest
import torch
from torch import nn

from archlab.data import Dataset
from archlab.errors import UserError
from archlab.proxies import ProxyScorer
from archlab.search import Objective, create_strategy
from archlab.space import Space, choice
from archlab.study import Budget, EvalResult, Ledger, SearchConfig, TrainingEvaluator, run_search, search
from archlab.train import TrainConfig

ACC = [Objective("accuracy", "val_accuracy")]


class Sleeper:
    """Takes ``0.4`` s, or the ``seconds`` it is given when fewer (as a time fidelity does)."""

    instant = True

    def __call__(self, arch, *, monitor=None, seconds=None):
        time.sleep(min(0.4, seconds) if seconds is not None else 0.4)
        return EvalResult("complete", {"val_accuracy": arch["w"] / 100})


def test_no_trial_starts_with_less_than_half_the_quickest_trials_time_left():
    space = Space(name="toy", w=choice(list(range(20))))
    strategy = create_strategy("random", space, objectives=ACC, seed=0)
    result = search(space, Sleeper(), strategy, Ledger.memory(ACC, space=space), Budget(seconds=0.95))
    # two 0.4 s trials leave 0.15 s, less than half the quickest (0.2 s): a third would only end past the budget
    assert len(result.records) == 2
    assert result.elapsed_s < 0.95


def test_a_proxy_scorer_with_a_time_budget_stops_ranking_when_it_is_spent():
    space = Space(lambda a: nn.Sequential(nn.Flatten(), nn.Linear(4, a["w"]), nn.ReLU(), nn.Linear(a["w"], 2)),
                  name="mlp", w=choice([2, 4, 8, 16, 32, 64]))
    x, y = torch.randn(16, 1, 2, 2), torch.randint(0, 2, (16,))
    unlimited = ProxyScorer(space, x, y, names=("naswot",), batch_size=16)
    limited = ProxyScorer(space, x, y, names=("naswot",), batch_size=16, time_budget_s=1e-9)
    assert not unlimited.exhausted and not limited.exhausted
    arch = space.sample(random.Random(0))
    assert limited(arch) == unlimited(arch)  # the budget limits how many archs are scored, not the scores
    assert limited.exhausted and limited.spent_s > 0 and not unlimited.exhausted

    class Counting:
        """A scorer that is spent after scoring two archs."""

        def __init__(self):
            self.scored = []

        @property
        def exhausted(self):
            return len(self.scored) >= 2

        def __call__(self, arch):
            self.scored.append(arch)
            return (arch["w"],)

    scorer = Counting()
    rea = create_strategy("rea", space, objectives=ACC, seed=0, scorer=scorer, warmup_candidates=5,
                          population_size=4)
    first = rea.ask()
    assert len(scorer.scored) == 2  # ranked the two it had time for, not all five candidates
    assert first == max(scorer.scored, key=lambda a: a["w"])
    rea.ask()
    assert len(scorer.scored) == 2  # spent: the next member is an unranked random sample


class SlowEval(nn.Module):
    """A classifier whose evaluation (eval mode) sleeps 4 ms a sample, as a long-sequence model's does."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, x):
        if not self.training:
            time.sleep(0.004 * len(x))
        return self.fc(x)


def _data(n: int = 64) -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split(k):
        x = torch.randn(k, 1, 4, 4, generator=g)
        return x, (x.sum(dim=(1, 2, 3)) > 0).long()

    (xt, yt), (xv, yv), (xs, ys) = split(n), split(50), split(50)
    return Dataset("toy", xt, yt, xv, yv, xs, ys, classes=("neg", "pos"), mean=(0.0,), std=(1.0,))


def test_an_evaluation_given_seconds_ends_on_time_with_its_validation_and_test_included():
    space = Space(lambda a: SlowEval(a["w"]), name="slow", w=choice([8]))
    arch = space.sample(random.Random(0))
    # a time fidelity of 10 s, but only 1.5 s of budget left: 0.2 s a validation, 0.2 s for the test split
    evaluator = TrainingEvaluator(space, _data(), TrainConfig(epochs=1000, max_seconds=10.0, patience=None),
                                  latency_repeats=2)
    evaluator.measure(space.build(arch))  # a process's first measurement pays one-time imports (the FLOP counter)
    start = time.perf_counter()
    result = evaluator(arch, seconds=1.5)
    took = time.perf_counter() - start
    assert result.state == "complete", result.reason
    assert took <= 1.5 + 0.15 and result.metrics["cost_s"] <= 1.5 + 0.15
    assert result.metrics["epochs"] >= 2 and result.metrics["stopped"] == "max_seconds"
    assert {"params", "flops", "latency_ms"} <= set(result.metrics)


def test_an_evaluator_that_does_not_measure_skips_the_costs_and_refuses_constraints():
    space = Space(lambda a: nn.Sequential(nn.Flatten(), nn.Linear(16, a["w"]), nn.ReLU(), nn.Linear(a["w"], 2)),
                  name="mlp", w=choice([8]))
    evaluator = TrainingEvaluator(space, _data(), TrainConfig(epochs=1), measure=False)
    result = evaluator(space.sample(random.Random(0)))
    assert result.state == "complete"
    assert not {"params", "flops", "latency_ms"} & set(result.metrics)
    with pytest.raises(UserError, match="must measure"):
        TrainingEvaluator(space, _data(), TrainConfig(epochs=1), constraints=[("params", 10)], measure=False)


def test_the_budget_counts_what_was_spent_before_the_run_and_skips_a_final_training_it_has_no_room_for(tmp_path):
    cfg = SearchConfig(data="digits", mixers=("pooling",), budget_s=20.0, epochs=1, final_epochs=5, seed=0,
                       warmstart="none", export_onnx=False)
    # 19 s of the 20 s budget went before the call (a slow start-up): the search gets its minimum, a second of
    # trials (one or two of these tiny ones, as fast as the machine is), and there is no time left to train the
    # winner longer
    summary = run_search(cfg, tmp_path / "run", started=time.perf_counter() - 19.0, report=True)
    assert 1 <= summary["trials"]["completed"] <= 3 and summary["search"]["elapsed_s"] < 5.0
    assert summary["final"]["state"] == "skipped" and summary["final"]["used"] is False
    assert "the budget is spent" in summary["final"]["reason"]
    assert summary["elapsed_s"] >= 19.0  # the run's clock started before the call
    assert summary["best"]["val_accuracy"] == summary["best"]["search"]["val_accuracy"]  # the trial's model
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final"]["state"] == "skipped"
    assert "the longer training was skipped: the budget is spent" in (tmp_path / "run" / "report.html").read_text()

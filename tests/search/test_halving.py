"""ASHA's stopping rule (``SuccessiveHalving``): its rungs, who goes on and who stops, stopped trials counting,
a rebuilt rule judging as the live one, and a search under it spending less on bad archs than without it."""

from __future__ import annotations

import pytest

from archlab.errors import UserError
from archlab.search import SuccessiveHalving, create_strategy
from archlab.search.halving import HALVED
from archlab.space import Space, integer
from archlab.study import Budget, EvalResult, Ledger, search


def curve(values, points=9):
    """A curve of ``points`` epochs ending at progress 1, its validation accuracy rising to ``values``."""
    return [{"epoch": i + 1, "progress": (i + 1) / points, "val_accuracy": values * (i + 1) / points}
            for i in range(points)]


def run_monitor(rule, final, points=9):
    """Feed a trial's curve to a fresh monitor; (the stop reason or None, the points it saw)."""
    monitor = rule.monitor()
    seen = []
    for p in curve(final, points):
        seen.append(p)
        verdict = monitor(p)
        if verdict:
            return verdict, seen
    return None, seen


def test_rungs_and_parameters():
    assert SuccessiveHalving().rungs == pytest.approx([1 / 9, 1 / 3])
    assert SuccessiveHalving().monitor().eval_at == tuple(SuccessiveHalving().rungs)  # the trainer evaluates there
    assert SuccessiveHalving(min_resource=1 / 16, reduction_factor=2).rungs == pytest.approx([1 / 16, 1 / 8, 1 / 4,
                                                                                               1 / 2])
    for bad in ({"min_resource": 0.0}, {"min_resource": 1.0}, {"reduction_factor": 1}, {"direction": "up"}):
        with pytest.raises(UserError):
            SuccessiveHalving(**bad)


def test_the_first_trial_goes_on_then_only_the_best_third():
    rule = SuccessiveHalving()
    verdict, seen = run_monitor(rule, 0.9)
    assert verdict is None and len(seen) == 9  # nothing to compare with: trains to its end
    rule.add(seen)
    verdict, seen = run_monitor(rule, 0.5)  # worse than the only other: out at the first rung
    assert verdict == HALVED and seen[-1]["progress"] == pytest.approx(1 / 9)
    rule.add(seen, verdict)
    assert rule.describe()["trials_per_rung"] == [2, 1]  # the stopped trial counts at the rung it reached
    verdict, _ = run_monitor(rule, 0.95)  # better than both: goes on to its end
    assert verdict is None


def test_keep_count_is_a_third_of_the_rung():
    rule = SuccessiveHalving()
    for v in (0.9, 0.8, 0.7, 0.6, 0.5):
        rule.add(curve(v))
    # six values at the first rung with the newcomer: the best two go on
    assert rule.promotable(0, 0.85 / 9) and not rule.promotable(0, 0.75 / 9)


def test_minimized_metric():
    rule = SuccessiveHalving(metric="val_loss", direction="minimize")
    rule.add([{"progress": 0.2, "val_loss": 0.5}, {"progress": 1.0, "val_loss": 0.3}])
    mon = rule.monitor()
    assert mon({"progress": 0.2, "val_loss": 0.9}) == HALVED
    mon = rule.monitor()
    assert mon({"progress": 0.2, "val_loss": 0.4}) is None


class CurveEvaluator:
    """A 'training' whose curve rises to ``arch['q'] / 10``, stopping where the monitor says; each epoch costs 1."""

    def __call__(self, arch, *, monitor=None, seconds=None):
        points = []
        for p in curve(arch["q"] / 10):
            points.append(p)
            if monitor is not None and monitor(p):
                break
        return EvalResult("complete", {"val_accuracy": points[-1]["val_accuracy"], "epochs": len(points),
                                       "cost_s": float(len(points))}, curve=points)


def test_a_search_under_halving_spends_less_and_keeps_the_best():
    space = Space(q=integer(0, 10))

    def run(rule):
        ledger = Ledger(None, ["accuracy"])
        result = search(space, CurveEvaluator(), create_strategy("random", space, seed=3), ledger,
                        Budget(trials=11), median_stopping=rule)
        return result

    halved, full = run(SuccessiveHalving()), run(None)
    assert {r.arch for r in halved.records} == {r.arch for r in full.records}  # the same archs (random search)
    assert halved.best.arch == full.best.arch
    assert halved.cost_s < 0.6 * full.cost_s
    # resume: a rule rebuilt from the finished curves judges a new curve as the live one does
    live, rebuilt = SuccessiveHalving(), SuccessiveHalving()
    for r in sorted(halved.records, key=lambda r: r.number):
        live.add(r.metrics and curve(r.arch["q"] / 10)[:r.metrics["epochs"]])
        rebuilt.add(curve(r.arch["q"] / 10)[:r.metrics["epochs"]])
    for q in range(11):
        assert run_monitor(live, q / 10) == run_monitor(rebuilt, q / 10)


def test_a_trial_stopped_early_skips_its_test_pass_and_the_others_do_not():
    from archlab.data import load_dataset
    from archlab.space import choice
    from archlab.study import TrainingEvaluator
    from archlab.train import TrainConfig

    def build(arch):
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(64, arch["width"]), nn.ReLU(), nn.Linear(arch["width"], 10))

    space = Space(build, width=choice([16]))
    evaluator = TrainingEvaluator(space, load_dataset("digits", seed=0), TrainConfig(epochs=2, batch_size=32))
    arch = space.sample(0)
    stopped = evaluator(arch, monitor=lambda point: HALVED)
    assert stopped.metrics["stopped"] == HALVED and "test_accuracy" not in stopped.metrics
    full = evaluator(arch, monitor=lambda point: None)
    assert full.metrics["epochs"] == 2 and full.metrics["test_accuracy"] > 0.3  # chance is 0.1


def test_an_arch_too_slow_to_evaluate_in_its_trial_time_is_infeasible_before_training():
    import time

    import torch
    from torch import nn

    from archlab.data import load_dataset
    from archlab.space import choice
    from archlab.study import TrainingEvaluator
    from archlab.train import TrainConfig

    class Slow(nn.Module):
        """Costs ``ms`` milliseconds an example at any batch size (as an attention-heavy arch nearly does): its
        batch-1 latency says nothing about a batched validation pass being faster."""

        def __init__(self, ms: float) -> None:
            super().__init__()
            self.ms, self.fc = ms, nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(self.ms / 1e3 * len(x))
            return self.fc(x.flatten(1))

    space = Space(lambda arch: Slow(arch["ms"]), ms=choice([0.0, 2.0]))
    data = load_dataset("digits", seed=0)
    fast, slow = space.from_params({"ms": 0.0}), space.from_params({"ms": 2.0})
    pass_s = 2.0 / 1e3 * len(data.y_val)  # the slow arch's validation pass
    trial_s = 1.5 * pass_s  # the pass is two thirds of the trial: more than the half it may take
    done = TrainingEvaluator(space, data, TrainConfig(epochs=1, max_seconds=trial_s))(fast)
    assert done.state == "complete"
    started = time.perf_counter()
    refused = TrainingEvaluator(space, data, TrainConfig(epochs=1, max_seconds=trial_s))(slow)
    assert refused.state == "infeasible" and refused.reason.startswith("too slow for its trial"), refused.reason
    assert "epochs" not in refused.metrics and refused.metrics["latency_ms"] > 0  # measured, never trained
    assert time.perf_counter() - started < 0.5 * pass_s + 5.0  # judged from one batch, not a whole pass
    # with room for its passes the same arch trains
    assert TrainingEvaluator(space, data, TrainConfig(epochs=1, max_seconds=8 * pass_s))(slow).state == "complete"

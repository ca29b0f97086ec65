"""A time fidelity ends on time, evaluation included: fit's ``reserve_s`` and train_model's evaluation reserve."""

from __future__ import annotations

import time

import torch
from torch import nn

from archlab.train import Hook, TrainConfig, evaluate, fit, train_model


class FakeClock:
    """Stands in for the ``time`` module of archlab.train._fit; the hook below moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Timed(Hook):
    """Each step costs 0.125 s and each epoch-end evaluation 0.25 s on the fake clock (binary fractions: exact
    sums); with ``reserve`` the hook says how long its evaluation takes."""

    def __init__(self, clock: FakeClock, reserve: bool) -> None:
        self.clock, self.reserve, self.evaluations = clock, reserve, 0

    def before_step(self, state) -> None:
        self.clock.now += 0.125

    def on_step(self, state) -> None:
        if self.reserve:
            state.reserve_s = 0.25

    def on_epoch(self, state) -> None:
        self.clock.now += 0.25
        self.evaluations += 1


def _run(monkeypatch, reserve: bool) -> tuple[float, int, str]:
    import archlab.train._fit as fit_module

    clock = FakeClock()
    monkeypatch.setattr(fit_module, "time", clock)
    model = nn.Linear(2, 1)
    batches = [torch.zeros(4, 2)] * 10  # 10 steps an epoch: 1.25 s of steps, then 0.25 s of evaluation
    hook = Timed(clock, reserve)
    result = fit(model, batches, lambda m, b: m(b).pow(2).mean(), epochs=50, max_seconds=2.5, hooks=[hook])
    return clock.now, hook.evaluations, result.stopped


def test_the_reserve_ends_the_steps_early_enough_for_the_last_evaluation(monkeypatch):
    ended, evaluations, stopped = _run(monkeypatch, reserve=True)
    # epoch 1 ends at 1.5 s evaluated; epoch 2 is cut after 6 steps (2.25 s + 0.25 s reserved), then evaluated
    assert (ended, evaluations, stopped) == (2.5, 2, "max_seconds")
    ended, evaluations, stopped = _run(monkeypatch, reserve=False)
    assert (ended, evaluations, stopped) == (2.75, 2, "max_seconds")  # the last evaluation runs past max_seconds


class SlowEval(nn.Module):
    """A linear classifier whose evaluation (eval mode) sleeps 5 ms a sample, as a long-sequence model's does."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            time.sleep(0.005 * len(x))
        return self.fc(x)


def test_train_model_leaves_time_for_its_validation_and_the_callers_test_split():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    xv, yv = x[:40], y[:40]  # 0.2 s a validation, and as long for the caller's test split after training
    cfg = TrainConfig(epochs=1000, max_seconds=1.5, batch_size=32, patience=None)
    torch.manual_seed(0)
    model = SlowEval()
    start = time.perf_counter()
    result = train_model(model, x, y, xv, yv, cfg, eval_after=len(yv))
    trained = time.perf_counter() - start
    evaluate(model, xv, yv)  # the caller's test split (as many samples as the validation's)
    total = time.perf_counter() - start
    assert result.stopped == "max_seconds" and result.epochs >= 2
    assert total <= 1.5 + 0.15  # training, its last validation and the test evaluation within max_seconds
    assert trained >= 0.8  # and the training did not stop far too early
    # without the caller's samples reserved, the training alone fills max_seconds and the test runs past it
    start = time.perf_counter()
    train_model(SlowEval(), x, y, xv, yv, cfg)
    assert time.perf_counter() - start >= 1.5 - 0.2

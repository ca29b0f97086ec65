"""The Trainer: determinism, learning, failure detection, schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archlab.data import load_dataset
from archlab.train import TrainConfig, TrialFailed, evaluate, make_adamw, train_model, warmup_cosine
from archlab.train._trainer import _shift


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_same_seed_same_weights_and_curve(digits):
    cfg = TrainConfig(epochs=2, seed=3)
    results, states = [], []
    for _ in range(2):
        torch.manual_seed(0)
        m = small_cnn()
        results.append(train_model(m, digits.x_train, digits.y_train, digits.x_val, digits.y_val, cfg))
        states.append(m.state_dict())
    assert results[0].curve[-1]["val_loss"] == results[1].curve[-1]["val_loss"]
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k])


def test_a_tiny_run_learns_digits(digits):
    torch.manual_seed(0)
    m = small_cnn()
    r = train_model(m, digits.x_train, digits.y_train, digits.x_val, digits.y_val, TrainConfig(epochs=12))
    assert r.val_accuracy >= 0.93
    assert evaluate(m, digits.x_test, digits.y_test)[1] >= 0.9
    assert r.curve[-1]["train_loss"] < r.curve[0]["train_loss"] / 3


def test_best_epoch_weights_are_kept(digits):
    torch.manual_seed(0)
    m = small_cnn()
    r = train_model(m, digits.x_train, digits.y_train, digits.x_val, digits.y_val, TrainConfig(epochs=4))
    best = max(p["val_accuracy"] for p in r.curve)
    assert r.val_accuracy == best == evaluate(m, digits.x_val, digits.y_val)[1]


def test_non_finite_loss_fails_the_trial(digits):
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)) * float("nan")

    with pytest.raises(TrialFailed, match="non-finite loss"):
        train_model(Exploding(), digits.x_train, digits.y_train, digits.x_val, digits.y_val, TrainConfig(epochs=1))


def test_time_limit_fails_and_time_fidelity_stops_cleanly(digits):
    with pytest.raises(TrialFailed, match="time limit"):
        train_model(small_cnn(), digits.x_train, digits.y_train, digits.x_val, digits.y_val,
                    TrainConfig(epochs=50, time_limit_s=0.05))
    r = train_model(small_cnn(), digits.x_train, digits.y_train, digits.x_val, digits.y_val,
                    TrainConfig(epochs=500, max_seconds=1.0, patience=None))  # on a quiet machine the small CNN
    # trains enough epochs in a second for early stopping to end it first: only the time fidelity may stop it here
    assert r.stopped == "max_seconds" and r.epochs < 500 and r.cost_s < 10


def test_learning_rate_schedule_warms_up_then_decays_to_zero():
    assert warmup_cosine(1.0, 0.0) < warmup_cosine(1.0, 0.025) < warmup_cosine(1.0, 0.05) == pytest.approx(1.0)
    values = [warmup_cosine(1.0, p / 100) for p in range(5, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert warmup_cosine(1.0, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(1.0, 0.525) == pytest.approx(0.5)


def test_shift_augmentation_translates_without_wrapping():
    x = torch.zeros(64, 1, 5, 5)
    x[:, :, 2, 2] = 1.0
    out = _shift(x, 1, torch.Generator().manual_seed(0))
    assert torch.all(out.sum(dim=(1, 2, 3)) == 1.0)  # the single pixel survives a shift of at most 1
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 5, pos % 5
    assert set(rows.tolist()) <= {1, 2, 3} and set(cols.tolist()) <= {1, 2, 3}
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == 9  # every offset is drawn
    assert math.isclose(warmup_cosine(2.0, 0.05), 2.0)


def test_adamw_is_fused_for_real_parameters_and_matches_the_plain_loop():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 3), nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    fused = make_adamw(a.parameters(), lr=1e-2, weight_decay=0.05)
    plain = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.05)
    assert fused.defaults["fused"] is True
    x = torch.randn(16, 6)
    for _ in range(5):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_adamw_falls_back_to_the_plain_loop_for_complex_parameters():
    p = nn.Parameter(torch.randn(4, dtype=torch.complex64))
    opt = make_adamw([p], lr=1e-2)
    assert not opt.defaults.get("fused")
    p.grad = torch.ones_like(p)
    opt.step()  # the fused kernel would refuse a complex tensor
    assert torch.isfinite(torch.view_as_real(p)).all()


def test_points_asked_inside_an_epoch_are_evaluated_there_and_may_stop_it(digits):
    cfg = TrainConfig(epochs=2, batch_size=32, seed=1)  # ~36 steps an epoch: progress 0.1 is inside epoch 1
    torch.manual_seed(0)
    m = small_cnn()
    r = train_model(m, digits.x_train, digits.y_train, digits.x_val, digits.y_val, cfg, eval_at=(0.1, 0.75))
    epochs = [p["epoch"] for p in r.curve]
    assert len(epochs) == 4 and epochs[1] == 1 and epochs[3] == 2  # the epoch ends, as without eval_at
    assert 0 < epochs[0] < 1 and 1 < epochs[2] < 2  # and a point at each asked progress, inside its epoch
    assert r.curve[0]["progress"] == pytest.approx(0.1, abs=0.03) and r.epochs == 2
    # the same run without the marks trains the same: evaluating inside an epoch changes nothing of the training
    torch.manual_seed(0)
    plain = train_model(small_cnn(), digits.x_train, digits.y_train, digits.x_val, digits.y_val, cfg)
    assert [p["val_loss"] for p in plain.curve] == [p["val_loss"] for p in r.curve if p["epoch"] in (1, 2)]

    seen = []

    def stop_at_first(point):
        seen.append(point)
        return "halved"

    torch.manual_seed(0)
    r = train_model(small_cnn(), digits.x_train, digits.y_train, digits.x_val, digits.y_val, cfg,
                    on_epoch=stop_at_first, eval_at=(0.1,))
    assert r.stopped == "halved" and len(seen) == 1 and 0 < r.epochs < 1 and r.epochs == seen[0]["epoch"]


def test_an_epoch_cut_by_time_right_after_an_asked_point_is_not_evaluated_twice(digits):
    # eval_after makes the reserved evaluation time so large that the time fidelity ends training after one step,
    # the step at which the asked point (progress 1e-6) is evaluated
    cfg = TrainConfig(epochs=3, batch_size=32, max_seconds=60.0, seed=0)
    torch.manual_seed(0)
    r = train_model(small_cnn(), digits.x_train, digits.y_train, digits.x_val, digits.y_val, cfg,
                    eval_after=10**9, eval_at=(1e-6,))
    steps = math.ceil(len(digits.y_train) / 32)
    assert r.stopped == "max_seconds" and len(r.curve) == 1
    assert r.curve[0]["step"] == 1 and r.epochs == r.curve[0]["epoch"] == round(1 / steps, 3)

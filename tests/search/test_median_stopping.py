"""Median stopping (Golovin et al. 2017): thresholds from reference curves, on the learning-rate schedule's clock."""

from __future__ import annotations

import pytest

from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.search import MedianStopping
from archlab.search.median_stopping import STOPPED
from archlab.train import TrainConfig, train_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def curve(*points: tuple[float, float]) -> list[dict]:
    return [{"epoch": i + 1, "progress": p, "val_accuracy": a} for i, (p, a) in enumerate(points)]


def test_threshold_is_the_median_of_running_bests_at_that_progress():
    rule = MedianStopping(min_progress=0.25, min_trials=3)
    rule.add(curve((0.25, 0.5), (0.5, 0.4), (1.0, 0.9)))      # running best 0.5, 0.5, 0.9
    rule.add(curve((0.25, 0.7), (0.5, 0.8), (1.0, 0.95)))
    rule.add(curve((0.5, 0.6), (1.0, 0.7)))                   # a slow arch: first point only at 0.5
    assert rule.threshold(0.2) is None                        # too early to judge
    assert rule.threshold(0.25) is None                       # only two references have a point by then
    assert rule.threshold(0.5) == pytest.approx(0.6)          # median of 0.5, 0.8, 0.6
    assert rule.threshold(0.75) == pytest.approx(0.6)         # nothing new between 0.5 and 0.75
    assert rule.threshold(1.0) == pytest.approx(0.9)


def test_stopped_and_progress_free_curves_are_not_references():
    rule = MedianStopping(min_progress=0.1, min_trials=1)
    rule.add(curve((0.5, 0.99)), stopped=STOPPED)
    rule.add([{"epoch": 1, "val_accuracy": 0.99}])            # an old curve without progress
    rule.add([])
    assert rule.threshold(0.5) is None
    rule.add(curve((0.5, 0.3)))
    assert rule.threshold(0.5) == pytest.approx(0.3)


def test_monitor_stops_below_the_median_and_never_at_the_end():
    rule = MedianStopping(min_progress=0.25, min_trials=2)
    for a in (0.8, 0.9):
        rule.add(curve((0.3, a), (1.0, a)))
    good, bad = rule.monitor(), rule.monitor()
    assert good({"epoch": 1, "progress": 0.3, "val_accuracy": 0.86}) is None
    assert bad({"epoch": 1, "progress": 0.3, "val_accuracy": 0.84}) == STOPPED
    last = rule.monitor()
    assert last({"epoch": 1, "progress": 1.0, "val_accuracy": 0.1}) is None  # stopping at the end saves nothing
    with pytest.raises(UserError):
        MedianStopping(min_progress=1.0)


def test_training_stops_when_the_callback_says_so(digits):
    seen = []

    def on_epoch(point):
        seen.append(point)
        return "stop here" if point["epoch"] == 2 else None

    import torch.nn as nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    r = train_model(model, digits.x_train, digits.y_train, digits.x_val, digits.y_val,
                    TrainConfig(epochs=10, seed=0), on_epoch=on_epoch)
    assert r.stopped == "stop here" and r.epochs == 2 and len(seen) == 2
    assert [p["progress"] for p in seen] == pytest.approx([0.1, 0.2])  # epochs fidelity: progress = steps / total

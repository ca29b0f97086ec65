"""The progress display survives a whole run's event sequence and shows the best result so far."""

from __future__ import annotations

import io

from rich.console import Console

from archlab.cli.search import SearchProgress


def test_progress_bar_follows_a_run():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=120)
    for budget, n_trials in ((180.0, None), (None, 3)):
        progress = SearchProgress(enabled=True, console=console)
        progress({"event": "start", "resumed": True, "trials": 2, "budget_s": budget, "n_trials": n_trials})
        progress({"event": "trial_start", "number": 2, "arch": {}})
        progress({"event": "trial", "number": 2, "state": "complete", "val_accuracy": 0.9712, "reason": None,
                  "best_val_accuracy": 0.9712, "best_number": 2, "elapsed_s": 20.0, "budget_s": budget,
                  "done": 3, "n_trials": n_trials})
        progress({"event": "trial", "number": 3, "state": "failed", "val_accuracy": None, "reason": "nan",
                  "best_val_accuracy": 0.9712, "best_number": 2, "elapsed_s": 30.0, "budget_s": budget,
                  "done": 4, "n_trials": n_trials})
        progress({"event": "final_start", "number": 2, "seconds": 40.0, "epochs": 40})
        progress({"event": "final_epoch", "epoch": 1, "val_accuracy": 0.98})
        progress.close()
    text = buffer.getvalue()
    assert "resuming: 2 finished trial(s)" in text
    assert "best 97.12% (#2)" in text
    assert "trial 3: failed" in text
    assert "training the best arch (trial 2) longer: up to 40s" in text


def test_progress_is_silent_when_disabled():
    buffer = io.StringIO()
    progress = SearchProgress(enabled=False, console=Console(file=buffer, force_terminal=True))
    progress({"event": "start", "resumed": False, "trials": 0, "budget_s": 10.0, "n_trials": None})
    progress.close()
    assert buffer.getvalue() == ""

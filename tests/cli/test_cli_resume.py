"""Ctrl-C (SIGINT) during a search prints how to resume and exits 130; on resume, options that define the run are
refused with one line and exit code 2, a new budget is applied and said, and the progress display covers the
final phase."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _ledger_db import completed_trials
from rich.console import Console
from test_cli_errors import archlab

from archlab.cli.search import SearchProgress

ARGS = ["--epochs", "1", "--final-epochs", "0", "--mixers", "pooling,mlp", "--no-report", "--seed", "3"]


def _archlab(*args: str) -> subprocess.CompletedProcess:
    return archlab("search", *args)




@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A search stopped by SIGINT after its second finished trial."""
    run = tmp_path_factory.mktemp("sigint") / "run"
    # the child takes Ctrl-C's default action even when pytest itself runs with SIGINT ignored (a background job of
    # a non-interactive shell), which the child would otherwise inherit
    proc = subprocess.Popen([sys.executable, "-m", "archlab.cli", "search", "--trials", "200", *ARGS,
                             "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while completed_trials(run / "ledger.db") < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return run, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_sigint_prints_the_resume_hint_and_exits_130(interrupted) -> None:
    run, result = interrupted
    assert result.returncode == 130, (result.returncode, result.stderr[-2000:])
    assert f"continue with `archlab search --resume {run}`" in result.stderr
    assert "Traceback" not in result.stderr
    assert completed_trials(run / "ledger.db") >= 2


@pytest.mark.parametrize("option, value, field", [
    ("--data", "fashion-mnist", "data"), ("--seed", "4", "seed"), ("--mixers", "pooling", "mixers"),
    ("--warmstart", "none", "warmstart"),
])
def test_resume_refuses_options_that_define_the_run(interrupted, option: str, value: str, field: str) -> None:
    run, _ = interrupted
    result = _archlab("--resume", str(run), option, value)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert f"{option} cannot change when resuming" in lines[0] and field in lines[0], lines[0]


def test_resume_with_the_same_options_and_a_new_budget_says_so_and_finishes(interrupted) -> None:
    run, _ = interrupted
    assert _archlab("--resume", str(run), "--out", str(run)).returncode == 2  # the folder is given once
    done = completed_trials(run / "ledger.db")
    # the run's own options may be repeated; the new trial budget is applied and said
    result = _archlab("--resume", str(run), "--seed", "3", "--mixers", "pooling,mlp", "--trials", str(done + 1),
                      "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"with a budget of {done + 1} trials in all (was 200 trials" in " ".join(result.stderr.split())
    summary = json.loads(result.stdout)
    assert summary["trials"]["completed"] == done + 1


def test_progress_covers_the_final_training_and_the_export() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=120)
    progress = SearchProgress(enabled=True, console=console)
    progress({"event": "stage", "what": "loading digits"})
    progress({"event": "start", "resumed": False, "trials": 0, "budget_s": 60.0, "n_trials": None})
    progress({"event": "final_start", "number": 4, "seconds": 30.0, "epochs": 40})
    for epoch, acc in ((1, 0.91), (2, 0.955)):
        progress({"event": "final_epoch", "epoch": epoch, "val_accuracy": acc, "progress": epoch / 4})
    assert progress.bar is not None and progress.bar.tasks[0].completed == 0.5
    progress({"event": "stage", "what": "saving the best model and exporting it to ONNX"})
    progress.close()
    text = buffer.getvalue()
    assert "loading digits…" in text
    assert "final" in text and "epoch 2: val 95.5%" in text
    assert "saving the best model and exporting it to ONNX…" in text

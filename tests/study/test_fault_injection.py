"""SIGKILL of the driver while the ledger is being written and during the final training: after ``--resume`` every
trial completed before the kill is there, nothing is duplicated or half-written, and the run finishes. SIGKILL of a
worker mid-trial: that trial fails, its arch runs again, and the search finishes its budget. (SIGKILL of the driver
during a trial: tests/study/test_search_run.py.)"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from _ledger_db import completed_trials

from archlab.study import Ledger, load_run, run_search

# a toy search whose trials are instant lookups: the driver spends its time writing the ledger
_TOY = """
from archlab.space import Space, choice
from archlab.study import Budget, EvalResult

SPACE = Space(name="toy", a=choice(list(range(20))), b=choice(list(range(20))), c=choice(list(range(10))))
BUDGET = Budget(trials=1500)


class Lookup:
    instant = True

    def __call__(self, arch, *, monitor=None, seconds=None):
        return EvalResult("complete", {"val_accuracy": (arch["a"] * 7 + arch["b"] * 3 + arch["c"]) % 101 / 100,
                                       "cost_s": 1.0})
"""

_RUN = """
import sys
from toy_search import BUDGET, SPACE, Lookup
from archlab.study import run_search
run_search(None, sys.argv[1], space=SPACE, evaluator=Lookup(), budget=BUDGET, strategy="random", report=False)
"""


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("select number, state from trials order by number").fetchall()


def test_sigkill_while_the_ledger_is_written_loses_and_duplicates_nothing(tmp_path):
    (tmp_path / "toy_search.py").write_text(textwrap.dedent(_TOY))
    sys.path.insert(0, str(tmp_path))
    try:
        import toy_search
    finally:
        sys.path.remove(str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(out)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while completed_trials(out / "ledger.db") < 200 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # in the middle of the stream of ledger writes
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    before = Ledger(load_run(out)["storage"], create=False).trials()
    kept = {r["number"]: r for r in before if r["state"] == "COMPLETE"}
    assert 200 <= len(kept) < 1500

    summary = run_search(None, out, space=toy_search.SPACE, evaluator=toy_search.Lookup(),
                         budget=toy_search.BUDGET, strategy="random", resume=True, report=False)
    after = Ledger(load_run(out)["storage"], create=False).trials()
    done = [r for r in after if r["state"] == "COMPLETE"]
    assert len(done) == 1500 and summary["trials"]["completed"] == 1500
    numbers = [number for number, _ in _rows(out / "ledger.db")]
    assert len(numbers) == len(set(numbers))  # no trial number twice
    for number, row in kept.items():  # what was written before the kill is there, unchanged
        assert next(r for r in done if r["number"] == number) == row
    archs = [json.dumps(r["arch"], sort_keys=True) for r in done]
    assert len(set(archs)) == 1500  # no arch evaluated twice
    for r in done:  # every value written whole
        a = r["arch"]
        assert r["val_accuracy"] == (a["a"] * 7 + a["b"] * 3 + a["c"]) % 101 / 100


def test_sigkill_during_the_final_training_then_resume_finishes(tmp_path):
    out = tmp_path / "run"
    args = ["--data", "digits", "--trials", "2", "--epochs", "1", "--final-epochs", "25", "--mixers", "pooling",
            "--warmstart", "none", "--no-report", "--seed", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "archlab.cli", "search", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    ckpt = out / "checkpoints" / "search_best.safetensors"
    while (completed_trials(out / "ledger.db") < 2 or not ckpt.exists()) and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(2.0)  # into the 25-epoch final training
    assert proc.poll() is None, "the run ended before it could be killed in its final training"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists() and not (out / "best").exists()

    resumed = subprocess.run([sys.executable, "-m", "archlab.cli", "search", "--resume", str(out), "--json"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout)
    assert summary["trials"]["completed"] == 2 and completed_trials(out / "ledger.db") == 2  # no trial re-run
    assert summary["final"].get("epochs") or summary["final"].get("state") == "skipped"
    assert (out / "best" / "model.safetensors").is_file() and (out / "summary.json").is_file()


_SLOW = """
import os, time
from pathlib import Path
from archlab.study import EvalResult


class Slow:
    def __init__(self, folder):
        self.folder = folder

    def __call__(self, arch, *, monitor=None, seconds=None):
        Path(self.folder, f"started-{os.getpid()}-{arch['x']}").touch()
        time.sleep(2.0)
        return EvalResult("complete", {"val_accuracy": arch["x"] / 10, "cost_s": 1.0})
"""


def test_sigkill_of_a_worker_mid_trial_fails_that_trial_reruns_its_arch_and_the_search_finishes(tmp_path):
    import threading

    from archlab.search import create_strategy
    from archlab.space import Space, choice
    from archlab.study import Budget, search
    from archlab.study._loop import REQUEUED

    (tmp_path / "slow_eval.py").write_text(textwrap.dedent(_SLOW))
    sys.path.insert(0, str(tmp_path))  # spawned workers inherit the path and import the evaluator's module
    try:
        import slow_eval

        space = Space(name="ten", x=choice(list(range(10))))
        killed: list[int] = []

        def kill_the_first_worker_that_starts() -> None:
            deadline = time.time() + 120
            while time.time() < deadline:
                started = sorted(tmp_path.glob("started-*"))
                if started:
                    pid = int(started[0].name.split("-")[1])
                    time.sleep(0.5)  # mid-trial
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_the_first_worker_that_starts)
        killer.start()
        ledger = Ledger.memory(space=space)
        result = search(space, slow_eval.Slow(str(tmp_path)), create_strategy("random", space, seed=0), ledger,
                        Budget(trials=4), workers=2)
        killer.join()
    finally:
        sys.path.remove(str(tmp_path))
    assert killed, "no worker was killed"
    rows = ledger.trials()
    lost = [r for r in rows if r["state"] == "FAIL"]
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert 1 <= len(lost) <= 2 and all(r["reason"].endswith(REQUEUED) for r in lost)
    assert len(done) == 4 and len(result.records) == 4 and all(r.ok for r in result.records)
    done_archs = [json.dumps(r["arch"], sort_keys=True) for r in done]
    assert len(set(done_archs)) == 4  # each arch trained to completion once
    assert {json.dumps(r["arch"], sort_keys=True) for r in lost} <= set(done_archs)  # the lost ones were re-run

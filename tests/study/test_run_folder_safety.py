"""A run folder has one writer; a resumed run never makes its model worse; storage passwords are never saved or
printed; worker processes end with the search that started them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from archlab._urls import PASSWORD_ENV, drop_password, mask_password, restore_password
from archlab.errors import StorageError, UserError
from archlab.space import Space, choice
from archlab.study import Budget, EvalResult, SearchConfig, load_run, run_search
from archlab.study import _ledger as ledger_module
from archlab.study._lock import LOCK_FILE, RunLock

QUICK = dict(data="digits", epochs=1, budget_s=None, final_epochs=1, export_onnx=False, strategy="random",
             warmstart="none", stopping="none", batch_size=128, seed=2)

_HOLD = """
import sys, time
from archlab.study._lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_by_name_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(UserError, match=rf"in use by process {holder.pid} on .*wait for it to end"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    assert RunLock(tmp_path).holder()["pid"] == holder.pid  # the dead process's record is still there...
    with RunLock(tmp_path) as lock:  # ...and its lock is not: the kernel released it with the process
        assert lock.holder()["pid"] == os.getpid()
        with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
            _other = RunLock(tmp_path)
            # flock is per open file: a second open in this process conflicts like another process would
            _other.acquire()
    with RunLock(tmp_path):  # released on exit
        pass


def test_search_and_resume_refuse_a_folder_another_process_holds(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = _holder(out)
    try:
        with pytest.raises(UserError, match=f"run folder {out} is in use by process {holder.pid}"):
            run_search(SearchConfig(n_trials=1, **QUICK), out, report=False)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    first = run_search(SearchConfig(n_trials=1, **QUICK), out, report=False)  # the lock file alone is no run
    assert first["trials"]["completed"] == 1
    holder = _holder(out)
    try:
        with pytest.raises(UserError, match=f"in use by process {holder.pid}"):
            run_search(SearchConfig(n_trials=2, **QUICK), out, resume=True, report=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    assert run_search(SearchConfig(n_trials=2, **QUICK), out, resume=True, report=False)["trials"]["completed"] == 2


def test_a_resumed_run_never_replaces_its_model_with_a_worse_one(tmp_path):
    out = tmp_path / "run"
    run_search(SearchConfig(n_trials=1, **QUICK), out, report=False)
    summary = json.loads((out / "summary.json").read_text())
    summary["best"]["val_accuracy"] = 1.5  # a saved model no resumed run can beat
    (out / "summary.json").write_text(json.dumps(summary))
    weights = (out / "best" / "model.safetensors").read_bytes()
    resumed = run_search(SearchConfig(n_trials=2, **QUICK), out, resume=True, report=False, workers=1)
    assert resumed["trials"]["completed"] == 2
    assert resumed["best"] == summary["best"]
    kept = resumed["final"]["kept_previous"]
    assert kept["val_accuracy"] == 1.5 and kept["candidate_val_accuracy"] < 1.5
    assert (out / "best" / "model.safetensors").read_bytes() == weights
    assert json.loads((out / "summary.json").read_text())["best"] == summary["best"]
    # and a better model does replace it
    summary["best"]["val_accuracy"] = -1.0
    (out / "summary.json").write_text(json.dumps(summary))
    again = run_search(SearchConfig(n_trials=3, **QUICK), out, resume=True, report=False)
    assert "kept_previous" not in again["final"] and again["best"]["val_accuracy"] >= 0


def test_urls_lose_their_password_when_shown_or_saved(monkeypatch):
    url = "postgresql+psycopg2://ann:s3cr%40t@db.example:5432/archlab"
    assert mask_password(f"cannot reach {url}: refused") == \
        "cannot reach postgresql+psycopg2://ann:***@db.example:5432/archlab: refused"
    assert drop_password(url) == "postgresql+psycopg2://ann@db.example:5432/archlab"
    for plain in ("sqlite:///runs/a.db", "journal:///x.log", "postgresql://ann@h/db", "memory"):
        assert mask_password(plain) == drop_password(plain) == plain
    saved = drop_password(url)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert restore_password(saved) == saved  # the driver's own sources (PGPASSWORD, ~/.pgpass) apply
    assert restore_password(saved, url) == url  # the same storage given again, with its password
    assert restore_password(saved, "postgresql://bob:x@other/db") == saved  # another storage is not taken
    monkeypatch.setenv(PASSWORD_ENV, "p@ss/word")
    assert restore_password(saved) == "postgresql+psycopg2://ann:p%40ss%2Fword@db.example:5432/archlab"
    assert restore_password("sqlite:///a.db") == "sqlite:///a.db"


def test_a_storage_password_is_used_but_never_saved_or_printed(tmp_path, monkeypatch):
    """A password-protected storage (here an SQLite file behind a PostgreSQL URL): the run connects with the
    password, writes it nowhere, and a resume gets it back from the environment."""
    real_open = ledger_module.open_storage
    opened: list[str] = []

    def open_storage(storage):
        if isinstance(storage, str) and storage.startswith("postgresql://"):
            opened.append(storage)
            if ":secret@" not in storage:
                raise StorageError(f"cannot open storage {mask_password(storage)!r}: password authentication failed")
            return real_open(f"sqlite:///{tmp_path / 'db.sqlite'}")
        return real_open(storage)

    monkeypatch.setattr(ledger_module, "open_storage", open_storage)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    space = Space(name="toy", x=choice(list(range(8))))

    def lookup(arch, *, monitor=None, seconds=None):
        return EvalResult("complete", {"val_accuracy": arch["x"] / 8, "cost_s": 1.0})

    url = "postgresql://ann:secret@db.example/archlab"
    out = tmp_path / "run"
    run_search(None, out, space=space, evaluator=lookup, budget=Budget(trials=3), ledger=url, strategy="random",
               report=False)
    assert opened == [url]
    for name in ("run.json", "summary.json"):
        text = (out / name).read_text()
        assert "secret" not in text and "postgresql://ann@db.example/archlab" in text, name
    assert load_run(out)["storage"] == "postgresql://ann@db.example/archlab"
    with pytest.raises(StorageError, match="password authentication failed") as info:
        run_search(None, out, space=space, evaluator=lookup, budget=Budget(trials=5), resume=True, report=False)
    assert "secret" not in str(info.value)
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    resumed = run_search(None, out, space=space, evaluator=lookup, budget=Budget(trials=5), resume=True,
                         report=False)
    assert resumed["trials"]["completed"] == 5 and opened[-1] == url
    assert "secret" not in (out / "summary.json").read_text()


_POOL_SCRIPT = """
import sys, time
from archlab.space import Space, choice
from archlab.study._pool import TrialPool
from slow_factory import SlowFactory

space = Space(name="toy", x=choice([0, 1, 2, 3]))
pool = TrialPool(SlowFactory(), 2)
futures = [pool.submit(space.from_params({"x": i}), None, None) for i in range(2)]
while len(pool._executor._processes) < 2:
    time.sleep(0.1)
print(" ".join(str(p) for p in pool._executor._processes), flush=True)
time.sleep(300)
"""

_FACTORY = """
import time

class SlowFactory:
    def __call__(self):
        def evaluate(arch, **kw):
            time.sleep(300)
        return evaluate
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())  # a zombie is dead


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_driver(tmp_path):
    (tmp_path / "slow_factory.py").write_text(textwrap.dedent(_FACTORY))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", _POOL_SCRIPT], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=tmp_path)
    try:
        assert driver.stdout is not None
        workers = [int(p) for p in driver.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        time.sleep(1.0)  # the workers are in their 300 s trial
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "workers outlived their driver"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/statm")
def test_a_trial_over_its_memory_limit_fails_and_the_search_goes_on():
    import numpy as np

    from archlab.search import create_strategy
    from archlab.study import Budget, Ledger, search
    from archlab.study._limits import mapped_bytes

    space = Space(name="mem", size=choice([1, 2, 3, 400]))

    def hungry(arch, *, monitor=None, seconds=None):
        block = np.ones(arch["size"] * 2**20 // 8)  # size MB
        return EvalResult("complete", {"val_accuracy": float(block[0]) / arch["size"], "cost_s": 1.0})

    result = search(space, hungry, create_strategy("random", space, seed=0), Ledger.memory(space=space),
                    Budget(trials=4), trial_memory_mb=100)
    by_size = {r.arch["size"]: r for r in result.records}
    assert sorted(by_size) == [1, 2, 3, 400]
    assert all(by_size[s].ok for s in (1, 2, 3))
    assert by_size[400].state == "failed" and "MemoryError" in by_size[400].reason
    big = np.ones(400 * 2**20 // 8)  # the limit is gone after the trial
    assert big.nbytes == 400 * 2**20 and mapped_bytes() is not None

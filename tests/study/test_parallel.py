"""Trials side by side in worker processes (``workers > 1``): every arch once, results and weights intact."""

from __future__ import annotations

import json

import pytest

from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.export import load_weights
from archlab.space import Arch
from archlab.study import Ledger, SearchConfig, load_run, make_space, run_search
from archlab.study._pool import threads_per_worker
from archlab.train import evaluate

FAST = dict(data="digits", mixers=("pooling", "mlp"), epochs=2, budget_s=None, final_epochs=0, batch_size=64,
            export_onnx=False)


def _ledger_rows(out):
    run = load_run(out)
    cfg = SearchConfig.from_dict(run["config"])
    return Ledger(run["storage"], cfg.objectives, create=False).trials()


@pytest.mark.parametrize("strategy", ["rea", "tpe"])
def test_two_workers_train_each_arch_once_and_return_its_weights(tmp_path, strategy):
    out = tmp_path / "run"
    summary = run_search(SearchConfig(n_trials=5, seed=0, workers=2, strategy=strategy, **FAST), out,
                         report=False)
    assert summary["trials"]["completed"] == 5 and summary["trials"]["failed"] == 0
    rows = [r for r in _ledger_rows(out) if r.get("arch") is not None and r.get("duplicate_of") is None]
    archs = [json.dumps(r["arch"], sort_keys=True) for r in rows]
    assert len(archs) == 5 and len(set(archs)) == 5
    # the best trial's weights came back from its worker intact: they reproduce its validation accuracy
    best = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: (r["val_accuracy"], -r["params"],
                                                                            -r["number"]))
    meta = json.loads((out / "checkpoints" / "search_best.json").read_text())
    assert meta["arch"] == best["arch"]
    cfg = SearchConfig(n_trials=1, **FAST)
    data = load_dataset("digits", seed=0)
    model = load_weights(make_space(cfg, data.input_shape, data.num_classes).build(Arch(best["arch"])),
                         out / "checkpoints" / "search_best.safetensors")
    assert evaluate(model, data.x_val, data.y_val)[1] == pytest.approx(best["val_accuracy"])
    assert summary["best"]["arch"] == best["arch"]


def test_workers_share_the_cores_and_must_be_positive():
    assert threads_per_worker(1) >= 1 and threads_per_worker(10_000) == 1
    with pytest.raises(UserError, match="--workers"):
        SearchConfig(workers=0)


def test_a_dead_worker_fails_its_trial_and_the_search_goes_on(tmp_path, monkeypatch):
    """A worker killed mid-trial (out of memory, a signal) breaks the pool: its trial is recorded as failed, its arch
    runs once more, the pool is restarted, and the search continues; a resumed strategy never sees the lost trial."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import archlab.study._pool as pool_mod

    class InProcessPool:  # the real pool's interface, run here, with the first trial's worker "killed"
        restarts = 0

        def __init__(self, factory, workers, memory_mb=None):
            pool_mod._init_worker(factory, 1, memory_mb=memory_mb)
            self.submitted = 0

        def submit(self, arch, stopper, seconds):
            self.submitted += 1
            future = Future()
            if self.submitted == 1:
                future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            else:
                future.set_result(pool_mod._evaluate(arch, stopper, seconds))
            return future

        def restart(self):
            InProcessPool.restarts += 1

        def close(self):
            pass

    monkeypatch.setattr(pool_mod, "TrialPool", InProcessPool)
    out = tmp_path / "run"
    summary = run_search(SearchConfig(n_trials=4, seed=0, workers=2, **FAST), out, report=False)
    assert InProcessPool.restarts == 1
    # the dead worker's trial is recorded as failed and its arch runs once more; the budget's 4 trials complete
    assert summary["trials"]["completed"] == 4 and summary["trials"]["failed"] == 1
    rows = _ledger_rows(out)
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 1 and "worker process died" in failed[0]["reason"]
    assert failed[0]["reason"].endswith("its arch was queued to run again")
    again = [r for r in rows if r["state"] == "COMPLETE" and r["arch"] == failed[0]["arch"]]
    assert len(again) == 1 and again[0]["number"] > failed[0]["number"]
    assert summary["best"] is not None

    from archlab.search import create_strategy
    from archlab.study import Budget, Ledger, load_run, search
    from archlab.study._config import rebuild_space

    run = load_run(out)
    space = rebuild_space(run["space"])
    strategy = create_strategy("random", space)
    search(space, lambda arch, **kw: None, strategy, Ledger(run["storage"], create=False, space=space),
           Budget(trials=4), resume=True)  # the budget is spent: nothing runs, the strategy is rebuilt
    assert len(strategy.history) == 4 and all(r.ok for r in strategy.history)

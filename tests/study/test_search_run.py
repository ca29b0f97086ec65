"""The main job end to end: run folder, artifacts that agree with each other, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _ledger_db import completed_trials

from archlab.data import load_dataset
from archlab.export import check_onnx, load_weights
from archlab.space import Arch
from archlab.study import SearchConfig, make_space, run_search
from archlab.study._config import final_shift
from archlab.train import evaluate

FAST = dict(data="digits", mixers=("pooling", "mlp"), epochs=2, budget_s=None, final_epochs=1,
            batch_size=64)


def test_search_writes_a_consistent_run_folder(tmp_path):
    out = tmp_path / "run"
    summary = run_search(SearchConfig(n_trials=3, seed=0, **FAST), out)
    for name in ("run.json", "ledger.db", "summary.json", "report.html", "best/arch.json",
                 "best/model.safetensors", "best/model.onnx"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))
    assert summary["trials"]["completed"] == 3 and summary["trials"]["failed"] == 0
    best = summary["best"]
    assert best["arch"] == json.loads((out / "best/arch.json").read_text())
    assert any(p["number"] == best["number"] for p in summary["pareto"])
    # the saved weights reproduce the reported accuracies
    cfg = SearchConfig(n_trials=3, seed=0, **FAST)
    data = load_dataset("digits", seed=0)
    space = make_space(cfg, data.input_shape, data.num_classes)
    model = load_weights(space.build(Arch(best["arch"])), out / "best/model.safetensors")
    assert evaluate(model, data.x_test, data.y_test)[1] == pytest.approx(best["test_accuracy"])
    assert evaluate(model, data.x_val, data.y_val)[1] == pytest.approx(best["val_accuracy"])
    assert summary["export"]["onnx_max_abs_diff"] <= 1e-4
    # the final training's recipe is recorded: label smoothing; no flips (digits' labels do not survive a mirror
    # image) and no shifts (8x8 images) on digits
    recipe = summary["final"]["config"]
    assert (recipe["label_smoothing"], recipe["augment_flip"], recipe["augment_shift"]) == (0.1, False, 0)
    # the exported graph takes the pixels as the files hold them (digits: integers 0-16), normalises them itself,
    # scores what summary.json reports, and says so in its metadata
    import onnx
    import onnxruntime as ort

    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    raw = ((data.x_test * std + mean) * data.scale).round()
    assert data.scale == 16.0 and raw.min() >= 0 and raw.max() <= 16
    session = ort.InferenceSession(str(out / "best/model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"x": raw.numpy().astype("float32")})[0]
    assert (logits.argmax(1) == data.y_test.numpy()).mean() == pytest.approx(best["test_accuracy"])
    meta = {p.key: p.value for p in onnx.load(str(out / "best/model.onnx")).metadata_props}
    described = json.loads(meta["archlab.input"])
    assert described["layout"] == "NCHW" and described["scale"] == 16.0 and "inside the graph" in \
        described["normalisation"]
    assert json.loads(meta["archlab.classes"]) == list(data.classes)
    assert summary["export"]["input"] == described
    html = (out / "report.html").read_text()
    assert "Pareto" in html and str(best["number"]) in html


def test_final_training_shifts_only_images_of_16_pixels_or_more():
    assert final_shift((1, 28, 28)) == 1 and final_shift((3, 32, 32)) == 1 and final_shift((3, 16, 64)) == 1
    assert final_shift((1, 8, 8)) == 0 and final_shift((3, 15, 32)) == 0
    assert final_shift((256,)) == 0 and final_shift((12, 100)) == 0  # token sequences, time series


def test_existing_run_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    from archlab.errors import UserError

    with pytest.raises(UserError, match="already exists"):
        run_search(SearchConfig(n_trials=1, **FAST), out)
    assert (out / "keep.txt").read_text() == "mine"


def test_constraints_reject_archs_before_training(tmp_path):
    summary = run_search(SearchConfig(n_trials=6, seed=3, max_params=4_000, **FAST), tmp_path / "r")
    rows = summary["trials"]
    assert rows["infeasible"] >= 1
    import optuna

    study = optuna.load_study(study_name="archlab", storage=f"sqlite:///{tmp_path}/r/ledger.db")
    for t in study.trials:
        record = t.user_attrs["archlab"]  # the ledger's one JSON record of the trial
        if record["state"] == "infeasible":
            assert record["metrics"]["params"] > 4_000
            assert "val_accuracy" not in record["metrics"]  # never trained
            assert record["reason"].startswith("constraint: params")
        else:
            assert record["metrics"]["params"] <= 4_000
    if summary["best"] is not None:
        assert summary["best"]["params"] <= 4_000


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "archlab.cli", "search", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _ledger(db: Path) -> list[dict]:
    import optuna

    study = optuna.load_study(study_name="archlab", storage=f"sqlite:///{db}")
    rows = []
    for t in study.trials:  # the ledger's one JSON record per trial, flattened
        record = dict(t.user_attrs["archlab"])
        status = record.pop("state")
        rows.append({**record.pop("metrics", {}), **record, "status": status, "number": t.number,
                     "state": t.state.name})
    return rows


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing_and_matches_an_uninterrupted_run(tmp_path):
    args = ["--trials", "7", "--epochs", "2", "--final-epochs", "0", "--seed", "5", "--mixers", "pooling,mlp",
            "--strategy", "rea", "--no-report", "--json"]
    ref = _cli(*args, "--out", str(tmp_path / "ref"))
    ref_out, ref_err = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_err
    reference = json.loads(ref_out)

    run = tmp_path / "killed"
    proc = _cli(*args, "--out", str(run))
    deadline = time.time() + 300
    while completed_trials(run / "ledger.db") < 3 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r["number"]: r for r in _ledger(run / "ledger.db") if r["state"] == "COMPLETE"}
    assert len(before) >= 3

    resumed = _cli("--resume", str(run), "--json")
    res_out, res_err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, res_err
    summary = json.loads(res_out)

    after = _ledger(run / "ledger.db")
    done = [r for r in after if r["state"] == "COMPLETE"]
    for number, row in before.items():  # every trial completed before the kill is still there, unchanged
        assert next(r for r in done if r["number"] == number) == row
    archs = [json.dumps(r["arch"], sort_keys=True) for r in done]
    assert len(archs) == len(set(archs)) == 7  # no arch trained twice, the trial budget respected
    ref_archs = [json.dumps(r["arch"], sort_keys=True) for r in _ledger(tmp_path / "ref" / "ledger.db")]
    assert sorted(archs) == sorted(ref_archs)
    assert summary["best"]["arch"] == reference["best"]["arch"]
    assert summary["best"]["val_accuracy"] == reference["best"]["val_accuracy"]


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    out = tmp_path / "r"
    first = run_search(SearchConfig(n_trials=2, seed=1, **FAST), out)
    again = run_search(None, out, resume=True)
    assert again["trials"] == first["trials"]
    assert again["best"]["arch"] == first["best"]["arch"]


def test_training_failures_are_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    from archlab.study import _evaluator
    from archlab.train import TrialFailed

    real = _evaluator.train_model
    calls = {"n": 0}

    def flaky(model, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TrialFailed("non-finite loss (nan) at epoch 1, step 3")
        if calls["n"] == 2:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return real(model, *a, **kw)

    monkeypatch.setattr(_evaluator, "train_model", flaky)
    summary = run_search(SearchConfig(n_trials=4, seed=2, **FAST), tmp_path / "r", report=True)
    assert summary["trials"]["failed"] == 2 and summary["trials"]["completed"] == 2
    reasons = [r.get("reason") for r in _ledger(tmp_path / "r" / "ledger.db") if r["state"] == "FAIL"]
    assert reasons[0].startswith("non-finite loss")
    assert reasons[1].startswith("RuntimeError: mat1 and mat2")
    assert torch.isfinite(torch.tensor(summary["best"]["val_accuracy"]))


def test_sequence_space_search_on_a_token_task(tmp_path):
    """The main job on sequence data: the ``sequence`` space on generated token ids, exported with int64 input."""
    out = tmp_path / "seq"
    cfg = SearchConfig(space="sequence", data="associative-recall", mixers=("lstm", "gla"), strategy="random",
                       n_trials=2, budget_s=None, epochs=1, train_subset=256, final_epochs=0, batch_size=64, seed=0)
    summary = run_search(cfg, out, report=False)
    assert summary["trials"]["completed"] == 2
    assert summary["data"]["vocab_size"] == 64 and summary["data"]["input_shape"] == [256]
    best = summary["best"]
    assert {layer["option"] for layer in best["arch"]["layers"]} <= {"lstm", "gla"}
    data = load_dataset("associative-recall", seed=0)
    space = make_space(cfg, data.input_shape, data.num_classes, data.vocab_size)
    model = load_weights(space.build(Arch(best["arch"])), out / "best/model.safetensors")
    assert evaluate(model, data.x_val, data.y_val)[1] == pytest.approx(best["val_accuracy"])
    assert check_onnx(model, out / "best/model.onnx", data.input_shape, input_dtype="long",
                      vocab_size=data.vocab_size) <= 1e-4

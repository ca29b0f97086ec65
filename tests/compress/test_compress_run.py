"""``archlab compress`` on a finished run: each method writes a new folder whose model is measured before and after,
loads back, and never touches the run; methods that do not apply and existing folders are refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from archlab.compress._run import CompressSettings, compress_run, load_compressed
from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.study import SearchConfig, run_search
from archlab.train import evaluate


def archlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=600)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compress") / "run"
    # the metaformer space with attention: linear layers (qkv, proj) for the low-rank methods, convolutions too
    cfg = SearchConfig(space="metaformer", data="digits", strategy="random", n_trials=2, budget_s=None, epochs=3,
                       final_epochs=10, mixers=("attention",), seed=0)
    run_search(cfg, out, report=False)
    return out


@pytest.mark.parametrize("method", ["svd", "maestro", "qat"])
def test_the_pytorch_level_methods_shrink_or_quantise_and_load_back(run, tmp_path, method):
    before = digest(run)
    settings = CompressSettings(rank=0.5, epochs=1)
    result = compress_run(run, method, tmp_path / method, settings)
    folder = tmp_path / method
    assert {"compress.json", "model.onnx", "model.safetensors", "report.md"} <= {p.name for p in folder.iterdir()}
    assert digest(run) == before  # the run is untouched
    b, a = result["before"], result["after"]
    if method == "qat":
        assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    else:
        assert a["params"] < b["params"] and result["structure"]["factorised"]
    assert a["accuracy"] >= b["accuracy"] - 0.15
    # the ONNX file (raw inputs, normalisation inside) agrees with the PyTorch model on the test split
    assert a["onnx_accuracy"] == pytest.approx(a["accuracy"], abs=0.02)
    model = load_compressed(folder)
    data = load_dataset("digits", seed=0)
    assert evaluate(model, data.x_test, data.y_test)[1] == pytest.approx(a["accuracy"], abs=1e-6)
    saved = json.loads((folder / "compress.json").read_text())
    assert saved["method"] == method and saved["source"] == str(run)
    assert "| parameters |" in (folder / "report.md").read_text()


@pytest.mark.parametrize("method", ["int8-dynamic", "int8-static", "int8-mixed"])
def test_post_training_int8_changes_the_onnx_file_only(run, tmp_path, method):
    result = compress_run(run, method, tmp_path / method, CompressSettings(max_drop=0.01))
    folder = tmp_path / method
    assert not (folder / "model.safetensors").exists()
    b, a = result["before"], result["after"]
    assert a["accuracy"] is None and a["params"] is None
    assert a["onnx_bytes"] < b["onnx_bytes"]
    assert a["onnx_accuracy"] >= b["onnx_accuracy"] - 0.03
    if method == "int8-mixed":
        s = result["structure"]
        assert s["int8"] or s["fp32"]
        assert a["onnx_accuracy"] >= b["onnx_accuracy"] - 0.04  # bounded on validation, measured on test
    with pytest.raises(UserError, match="holds only an ONNX model"):
        load_compressed(folder)


def test_the_cli_writes_a_folder_and_refuses_what_it_cannot_do(run, tmp_path):
    target = tmp_path / "svd"
    result = archlab("compress", str(run), "--method", "svd", "--out", str(target), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["method"] == "svd" and (target / "model.onnx").is_file()
    for args, needle in ((["--method", "svd", "--out", str(target)], "already exists; archlab compress never "
                                                                    "overwrites"),
                         (["--method", "prune-everything"], "unknown compression method 'prune-everything'"),
                         (["--method", "svd", "--rank", "0"], "--rank must be in (0, 1]"),
                         (["--method", "svd", "--out", str(run / "inside")], "inside the run")):
        bad = archlab("compress", str(run), *args)
        assert bad.returncode == 2, (args, bad.stderr)
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], (args, bad.stderr)
    missing = archlab("compress", str(tmp_path / "nothing"), "--method", "svd")
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_a_token_model_is_refused(tmp_path):
    out = tmp_path / "seq"
    cfg = SearchConfig(space="sequence", data="associative-recall", mixers=("gla",), strategy="random", n_trials=1,
                       budget_s=None, epochs=1, train_subset=256, final_epochs=0, batch_size=64, seed=0)
    run_search(cfg, out, report=False)
    with pytest.raises(UserError, match="reads token ids"):
        compress_run(out, "int8-static", tmp_path / "q")
    assert not (tmp_path / "q").exists()

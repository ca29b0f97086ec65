"""Bad input reaches the user as one line on stderr and exit code 2, and leaves no run folder behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def archlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlab.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "COLUMNS": "200"}, timeout=300)


def assert_one_line_error(result: Any, *needles: str) -> None:
    """Exit code 2 and one ``error:`` line on stderr naming ``needles``: a subprocess's result or CliRunner's."""
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 2, (code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def one_class_folder(root: Path) -> Path:
    (root / "cats").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(root / "cats" / f"{i}.png")
    return root


def mismatched_folder(root: Path) -> Path:
    for cls, size in (("a", 8), ("b", 9)):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((size, size), np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "make_args, needles",
    [
        (lambda t: ["--data", "imagenet-1k"], ["unknown dataset 'imagenet-1k'"]),
        (lambda t: ["--mixers", "pooling,fourier"], ["unknown mixer 'fourier'"]),
        (lambda t: ["--data", str(one_class_folder(t / "one"))], ["class"]),
        (lambda t: ["--data", str(mismatched_folder(t / "mixed"))], ["size"]),
        (lambda t: ["--budget", "-5m"], ["negative"]),
        (lambda t: ["--budget", "soon"], ["cannot parse budget 'soon'"]),
        (lambda t: ["--storage", "sqlite:////no/such/folder/x.db"], ["does not exist"]),
        (lambda t: ["--storage", "postgresql://archlab@127.0.0.1:1/nothing"], ["cannot open storage"]),
        (lambda t: ["--strategy", "hill-climbing"], ["unknown strategy"]),
        (lambda t: ["--objectives", "accuracy,speed"], ["unknown objective 'speed'"]),
        (lambda t: ["--max-params", "-3"], ["max-params"]),
        (lambda t: ["--workers", "0"], ["--workers must be >= 1"]),
        (lambda t: ["--warmstart", "magic"], ["unknown --warmstart 'magic'", "proxies, none"]),
        (lambda t: ["--strategy", "darts", "--space", "metaformer"],
         ["--strategy darts", "cannot be compiled into a supernet"]),
        (lambda t: ["--strategy", "darts", "--space", "nb201", "--max-memory", "1"],
         ["--strategy darts", "over --max-memory 1 MB"]),
        (lambda t: ["--max-memory", "-1"], ["--max-memory must be a positive number"]),
        (lambda t: ["--precision", "fp8"], ["unknown --precision 'fp8'", "fp32, bf16, auto"]),
        (lambda t: ["--space", "metaformer", "--data", "associative-recall"],
         ["the metaformer space does not fit the data 'associative-recall'", "does not take vocab_size"]),
    ],
)
def test_bad_search_input(tmp_path, make_args, needles):
    out = tmp_path / "run"
    result = archlab("search", "--trials", "1", "--out", str(out), *make_args(tmp_path))
    assert_one_line_error(result, *needles)
    assert not out.exists(), "a run folder was left behind"


def test_a_storage_password_is_never_printed(tmp_path):
    result = archlab("search", "--trials", "1", "--out", str(tmp_path / "run"), "--storage",
                     "postgresql://archlab:hunter2@127.0.0.1:1/nothing")
    assert_one_line_error(result, "cannot open storage 'postgresql://archlab:***@127.0.0.1:1/nothing'")
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and /sys")
def test_an_unusable_out_folder_is_one_line(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    for out, needle in ((file, "is a file, not a folder"), (file / "run", "a part of the path is a file"),
                        (Path("/proc/archlab-run"), "cannot write there"),
                        (Path("/sys/archlab-run"), "--out /sys/archlab-run")):
        assert_one_line_error(archlab("search", "--trials", "1", "--out", str(out)), needle)
    assert file.read_text() == "keep me" and not Path("/sys/archlab-run").exists()


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(archlab("search", "--resume", str(tmp_path)), "not an archlab run folder")
    assert_one_line_error(archlab("search", "--resume", str(tmp_path / "missing")), "is not a folder")
    (tmp_path / "run.json").write_text("{broken")
    assert_one_line_error(archlab("search", "--resume", str(tmp_path)), "corrupt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "run.json"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = archlab("search", "--trials", "2", "--epochs", "1", "--final-epochs", "0", "--mixers", "pooling",
                     "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in ("arch", "val_accuracy", "test_accuracy", "params", "latency_ms"):
        assert key in summary["best"]
    assert isinstance(summary["pareto"], list) and summary["pareto"]
    assert summary["trials"]["completed"] == 2 and summary["trials"]["failed"] == 0
    return out


def test_export_and_report_of_a_finished_run(finished_run, tmp_path):
    target = tmp_path / "m.onnx"
    result = archlab("export", str(finished_run), "--out", str(target), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert target.is_file() and info["max_abs_diff"] <= 1e-4
    (finished_run / "report.html").unlink()
    result = archlab("report", str(finished_run))
    assert result.returncode == 0, result.stderr
    assert (finished_run / "report.html").is_file()


def test_corrupt_arch_json_and_checkpoint(finished_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(finished_run, broken)
    arch = broken / "best" / "arch.json"
    arch.write_text('{"stages": [{"mixer": "pooling"')
    assert_one_line_error(archlab("export", str(broken)), "malformed")
    arch.write_text(json.dumps({"stem_stride": 1, "first": {"block": "teleport", "depth": 1, "width": 16},
                                "rest": [{"block": "conv", "depth": 1, "width": 16}], "mlp_ratio": 2}))
    assert_one_line_error(archlab("export", str(broken)), "teleport")
    shutil.copy(finished_run / "best" / "arch.json", arch)
    (broken / "best" / "model.safetensors").write_bytes(b"\x80\x04 not safetensors at all")
    assert_one_line_error(archlab("export", str(broken)), "not a valid safetensors file")


def test_help_has_examples():
    for command in (["search"], ["export"], ["report"], ["zoo", "list"], ["zoo", "profile"]):
        result = archlab(*command, "--help")
        assert result.returncode == 0 and "Example" in result.stdout

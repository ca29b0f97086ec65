"""Every example of the README runs as written: each fenced Python block, and each ``archlab`` command of the
bash blocks, in a fresh folder, with its budgets made small (a search gets 20 seconds, a benchmark 4 runs, a
distillation 2 steps a stage). ``test_readme.py`` checks what two of the Python blocks compute; here every block
must simply run, so a README edit that breaks an example fails CI."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[2] / "README.md"

# what test_readme.py already runs, by the heading above the block
CHECKED_ELSEWHERE = {"## Python API", "## Tabular benchmarks (`archlab bench`)"}
# small budgets for the Python blocks: exact text -> replacement
PYTHON_BUDGETS = {"steps=(100, 100, 800)": "steps=(2, 2, 2)"}


def blocks(language: str) -> list[tuple[str, str]]:
    """``(heading, code)`` of every fenced block of ``language``, in README order."""
    text = README.read_text()
    found = []
    for match in re.finditer(r"```(\w*)\n(.*?)```", text, re.S):
        if match[1] == language:
            headings = re.findall(r"(?m)^#+ .*$", text[:match.start()])
            found.append((headings[-1] if headings else "", match[2]))
    return found


def archlab_commands() -> list[str]:
    commands = []
    for _, code in blocks("bash"):
        for line in code.splitlines():
            line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            commands += [part.strip() for part in line.split("&&") if part.strip().startswith("archlab ")]
    return commands


def small(command: str) -> list[str]:
    """The command with a small budget: a search of 20 s (or 2 trials of 1 epoch), 4 runs of a benchmark, 3 archs
    scored by proxies."""
    args = shlex.split(command)
    if args[1] == "search" and "--resume" not in args:
        args = _drop(args, "--budget", "--trials", "--epochs")
        args += ["--budget", "20s"] + (["--trials", "2", "--epochs", "1"] if "--trials" in command else [])
    if args[1] == "proxies":
        args = _drop(args, "--sample", "--batch-size") + ["--sample", "3", "--batch-size", "16"]
    if args[1:3] == ["bench", "nb201"] and "--pareto" not in args:
        args = _drop(args, "--runs") + ["--runs", "4"]
    return args


def _drop(args: list[str], *options: str) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        else:
            out.append(arg)
    return out


def test_the_readme_has_the_examples_this_file_runs() -> None:
    assert len(blocks("python")) >= 4 and len(archlab_commands()) >= 20
    headings = {heading for heading, _ in blocks("python")}
    assert CHECKED_ELSEWHERE <= headings  # test_readme.py's blocks are still there
    code = "\n".join(code for _, code in blocks("python"))
    for text in PYTHON_BUDGETS:
        assert text in code, f"the README no longer has {text!r}: update PYTHON_BUDGETS"


@pytest.mark.slow
@pytest.mark.parametrize("heading, code", [(h, c) for h, c in blocks("python") if h not in CHECKED_ELSEWHERE],
                         ids=lambda value: value if value.startswith("#") else "")
def test_python_block_runs_as_written(heading: str, code: str, tmp_path, monkeypatch, shared_data) -> None:
    for text, replacement in PYTHON_BUDGETS.items():
        code = code.replace(text, replacement)
    monkeypatch.chdir(tmp_path)
    if "runs/tpe3/best/model.onnx" in code:  # the block that calls an exported model needs a run to call
        _run(["archlab", "search", "--trials", "2", "--epochs", "1", "--final-epochs", "0", "--out", "runs/tpe3"],
             tmp_path)
    exec(compile(code, f"{README}:{heading}", "exec"), {"__name__": "readme"})


@pytest.mark.slow
def test_every_archlab_command_runs_with_a_small_budget(tmp_path, shared_data) -> None:
    """In README order, in one folder: the runs the later commands name (runs/tpe3) are made by the earlier ones,
    and ./my_images is a small image folder made here."""
    for cls in ("cats", "dogs", "owls"):
        (tmp_path / "my_images" / cls).mkdir(parents=True)
        rng = np.random.default_rng(len(cls))
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "my_images" / cls /
                                                                                    f"{i}.png")
    failures = []
    for command in archlab_commands():
        result = _run(small(command), tmp_path)
        if result.returncode != 0:
            failures.append(f"{command}\n  -> exit {result.returncode}: {result.stderr.strip()[-600:]}")
    assert not failures, "\n".join(failures)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "archlab.cli", *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)

"""The README's Python examples run as written: the main one searches the space it declares, the tabular one
keeps its latency bound."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_api_example(heading: str = "## Python API") -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"the README's section {heading!r} has no python block"
    return match.group(1)


def test_the_readme_python_example_runs_and_searches_its_own_space(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_python_api_example(), str(README), "exec"), namespace)
    space, summary = namespace["space"], namespace["summary"]
    run = json.loads((tmp_path / "runs/mine/run.json").read_text())
    assert run["space"]["fingerprint"] == space.fingerprint()  # the README's space, not a predefined one
    assert summary["trials"]["completed"] + summary["trials"]["failed"] == 8
    best = summary["best"]["arch"]
    assert best in space and {s["mixer"] for s in best["stages"]} <= {"pooling", "attention", "mlp", "sepconv"}
    assert (tmp_path / "runs/mine/report.html").is_file()
    result = namespace["result"]
    assert result["search"]["cost_s"] >= 20_000 and result["best"]["val_accuracy"] > 0.8


def test_the_readme_tabular_example_runs_and_keeps_its_latency_bound(shared_data, capsys):
    namespace: dict = {}
    exec(compile(_python_api_example("## Tabular benchmarks"), str(README), "exec"), namespace)
    result = namespace["result"]
    assert len(result.rows) == 100 and all(row["latency_ms"] <= 3.0 for row in result.rows)
    assert result.summary()["mean"] > 90
    assert capsys.readouterr().out.split()[0] == str(result.summary()["mean"])

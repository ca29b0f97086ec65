"""Tests of the HTML search report.

The plots are checked through the figure JSON embedded in the page (what a browser would draw), the table
through an HTML parser, so the tests hold the rendered output rather than internal helpers.
"""

from __future__ import annotations

import html
import json
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest
from report_helpers import brute_force_front, make_run, make_trial, plot_json, table, trace

from archlab.errors import UserError
from archlab.report import render_report, write_report
from archlab.report.format import format_count, format_flops, format_ms, format_percent


@pytest.fixture(scope="module")
def run():
    return make_run()


@pytest.fixture(scope="module")
def page(run):
    return render_report(*run)


# ---------------------------------------------------------------------------------------------------------
# Page structure


def test_plotly_js_is_inline_once_and_no_network_is_needed(page):
    assert page.count("window.PlotlyConfig") == 1
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert re.search(r"<script[^>]*\ssrc=", page) is None
    assert re.search(r"<link[^>]*\shref=", page) is None  # the bundle itself names a CDN only for geo maps
    for name in ("pareto", "progress", "curves"):
        assert plot_json(page, name) is not None, name


def test_render_is_deterministic(run):
    assert render_report(*run) == render_report(*run)


def test_header_describes_the_run_and_the_best_architecture(run, page):
    summary, _ = run
    for text in (
        "metaformer",
        "digits",
        "rea",
        "accuracy, latency_ms",
        "5 min 0 s",
        "sqlite:///run.db",
        "5 min 12 s",
    ):
        assert f"<dd>{text}</dd>" in page, text
    best = summary["best"]
    assert f"Best architecture (trial {best['number']})" in page
    assert f"<dd>{format_percent(best['val_accuracy'])}</dd>" in page
    assert f"<dd>{format_count(best['params'])} params</dd>" in page
    assert f"<dd>{format_flops(best['flops'])}</dd>" in page
    assert f"<dd>{format_ms(best['latency_ms'])} at batch 1</dd>" in page
    # without a final training, the exported model is the trial's: said, with the trial's numbers
    assert "Exported model (best/): the trial&#39;s weights from the search" in page
    (pretty,) = re.findall(r'<pre class="arch">(.*?)</pre>', page, flags=re.S)
    assert html.unescape(pretty) == json.dumps(best["arch"], indent=2) and '"' not in pretty  # escaped
    counts = summary["trials"]
    assert f"<dt>completed</dt><dd>{counts['completed']}</dd>" in page
    assert f"<dt>failed</dt><dd>{counts['failed']}</dd>" in page


def test_final_retrain_is_shown_with_its_curve():
    summary, trials = make_run()
    curve = [
        {"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.9 + e / 100} for e in range(1, 4)
    ]
    summary["final"] = {
        "test_accuracy": 0.987,
        "val_accuracy": 0.99,
        "epochs": 3,
        "cost_s": 7200,
        "curve": curve,
        "used": True,
    }
    best = summary["best"]  # as run_search records it: the exported model's accuracies, the trial's under "search"
    best["search"] = {"val_accuracy": best["val_accuracy"], "test_accuracy": best["test_accuracy"],
                      "cost_s": best["cost_s"]}
    best.update(val_accuracy=0.99, test_accuracy=0.987)
    page = render_report(summary, trials)
    assert "Exported model (best/): the arch trained longer on the full training split, continuing from its " \
           "trial&#39;s weights" in page
    assert "<dd>98.7 %</dd>" in page and "<dd>2 h 0 min</dd>" in page
    search_val = format_percent(best["search"]["val_accuracy"])
    assert f"<dt>validation accuracy in the search</dt><dd>{search_val}</dd>" in page
    data, _ = plot_json(page, "curves")
    final = trace(data, "final retrain")
    assert final["x"] == [1, 2, 3] and final["y"] == pytest.approx([0.91, 0.92, 0.93])


# ---------------------------------------------------------------------------------------------------------
# Table


def test_table_lists_every_trial_with_state_reason_and_pareto_mark(run, page):
    _, trials = run
    headers, rows = table(page)
    assert headers == [
        "trial",
        "state",
        "val acc",
        "test acc",
        "epochs",
        "params",
        "FLOPs",
        "latency",
        "cost",
        "reason",
        "arch",
    ]
    assert [int(row["cells"][0][0]["data-sort"]) for row in rows] == [t["number"] for t in trials]
    for trial, row in zip(trials, rows, strict=True):
        cells = row["cells"]
        assert cells[1][1] == trial["state"]
        assert cells[9][1] == (trial.get("reason") or "")
        assert cells[4][1].split(" ")[0] == ("" if trial.get("epochs") is None else str(trial["epochs"]))
        on_front = bool(trial.get("pareto"))
        assert (row["class"] == "pareto") == on_front
        assert cells[0][1] == (f"{trial['number']} ★" if on_front else str(trial["number"]))
        if trial.get("val_accuracy") is not None:
            assert float(cells[2][0]["data-sort"]) == trial["val_accuracy"]
            assert cells[2][1] == format_percent(trial["val_accuracy"])
        else:
            assert "data-sort" not in cells[2][0] and cells[2][1] == "–"


def test_epochs_cell_marks_a_stopped_trial_and_the_report_explains_the_choices():
    trials = [make_trial(0, val_accuracy=0.9, epochs=9, stopped="max_seconds"),
              make_trial(1, val_accuracy=0.5, epochs=1, stopped="successive_halving")]
    summary = {"choices": {"portfolio": [{"name": "textbook", "number": 0, "val_accuracy": 0.9, "epochs": 9,
                                          "stopped": "max_seconds"}],
                           "stopping": "successive halving (ASHA)", "winner": "trial 0 (the portfolio's textbook)"}}
    page = render_report(summary, trials)
    _, rows = table(page)
    assert rows[0]["cells"][4][1] == "9" and rows[1]["cells"][4][1] == "1 ✂"
    assert rows[1]["cells"][4][0]["title"] == "stopped by successive halving at a rung"
    assert "How the search chose" in page and "<dt>portfolio: textbook</dt>" in page
    assert "trial 0: 90.0 % validation after 9 epochs (its time fidelity ran out)" in page
    assert "How the search chose" not in render_report({}, trials)


def test_long_arch_is_truncated_with_full_text_in_title():
    arch = {"stages": [{"mixer": "attention", "name": 'say "hi" & <bye>', "depth": d} for d in range(10)]}
    page = render_report({}, [make_trial(0, arch=arch, val_accuracy=0.5)])
    _, rows = table(page)
    attributes, text = rows[0]["cells"][10]
    full = json.dumps(arch, separators=(",", ":"))
    assert attributes["title"] == full  # the parser unescapes: the attribute survived quotes intact
    assert text.endswith("…") and len(text) < len(full) and full.startswith(text[:-1])


def test_sort_script_is_inline_and_valid_javascript(page, tmp_path):
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    sorter = [s for s in scripts if "table.sortable" in s]
    assert len(sorter) == 1
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot syntax-check the inline script")
    source = tmp_path / "sort.js"
    source.write_text(sorter[0], encoding="utf-8")
    subprocess.run([node, "--check", str(source)], check=True, capture_output=True, timeout=60)


# ---------------------------------------------------------------------------------------------------------
# Plots


def test_pareto_trace_holds_exactly_the_front_members(run, page):
    _, trials = run
    data, layout = plot_json(page, "pareto")
    front = trace(data, "Pareto front")
    others = trace(data, "trial")
    expected_front = sorted((t for t in trials if t.get("pareto")), key=lambda t: t["latency_ms"])
    expected_others = [t for t in trials if t["state"] == "COMPLETE" and not t.get("pareto")]
    assert [number for number, _ in front["customdata"]] == [t["number"] for t in expected_front]
    assert sorted(number for number, _ in others["customdata"]) == [t["number"] for t in expected_others]
    # Default x axis is latency; the front is joined by a step line in x order.
    assert layout["xaxis"]["title"]["text"] == "latency (ms)"
    assert front["x"] == [t["latency_ms"] for t in expected_front]
    assert front["y"] == [t["val_accuracy"] for t in expected_front]
    assert front["line"]["shape"] == "hv" and "lines" in front["mode"]
    # Failed and pruned trials are not plotted anywhere.
    absent = {t["number"] for t in trials if t["state"] != "COMPLETE"}
    for name in ("pareto", "progress"):
        plotted = set()
        for item in plot_json(page, name)[0]:
            plotted.update(c[0] if isinstance(c, list) else c for c in item.get("customdata") or [])
            if name == "progress":
                plotted.update(item["x"])
        assert not plotted & absent, name


def test_front_falls_back_to_the_objectives_when_none_is_recorded():
    summary, trials = make_run(count=20, seed=3)
    for trial in trials:
        trial.pop("pareto", None)
    summary["pareto"] = []
    completed = [t for t in trials if t["state"] == "COMPLETE"]
    expected = brute_force_front(
        [[t["val_accuracy"], t["latency_ms"]] for t in completed], ["maximize", "minimize"]
    )
    data, _ = plot_json(render_report(summary, trials), "pareto")
    front = trace(data, "Pareto front")
    assert sorted(n for n, _ in front["customdata"]) == [
        t["number"] for t, on in zip(completed, expected, strict=True) if on
    ]


def test_front_falls_back_to_objective_dicts_and_skips_unknown_names():
    summary, trials = make_run(count=20, seed=5)
    for trial in trials:
        trial.pop("pareto", None)
    summary["pareto"] = []
    summary["run"]["objectives"] = [
        {"name": "acc", "metric": "val_accuracy", "direction": "maximize", "label": "accuracy"},
        {"name": "size", "metric": "params", "direction": "minimize", "label": None},
        "no_such_objective",
    ]
    completed = [t for t in trials if t["state"] == "COMPLETE"]
    expected = brute_force_front([[t["val_accuracy"], t["params"]] for t in completed], ["maximize", "minimize"])
    page = render_report(summary, trials)
    assert "<dd>acc, size, no_such_objective</dd>" in page
    front = trace(plot_json(page, "pareto")[0], "Pareto front")
    assert sorted(n for n, _ in front["customdata"]) == [
        t["number"] for t, on in zip(completed, expected, strict=True) if on
    ]


def test_front_members_may_come_from_the_summary_alone():
    summary, trials = make_run(count=10, seed=4)
    for trial in trials:
        trial.pop("pareto", None)
    chosen = [t for t in trials if t["state"] == "COMPLETE"][:2]
    summary["pareto"] = [{"number": t["number"]} for t in chosen]
    data, _ = plot_json(render_report(summary, trials), "pareto")
    assert sorted(n for n, _ in trace(data, "Pareto front")["customdata"]) == [t["number"] for t in chosen]


@pytest.mark.parametrize(
    ("metrics", "labels", "default_title"),
    [
        (("params", "flops", "latency_ms"), ["latency", "params", "FLOPs"], "latency (ms)"),
        (("params", "latency_ms"), ["latency", "params"], "latency (ms)"),
        (("params", "flops"), ["params", "FLOPs"], "parameters"),
        (("flops",), None, "FLOPs"),
    ],
)
def test_dropdown_lists_only_the_metrics_present(metrics, labels, default_title):
    summary, trials = make_run(metrics=metrics)
    page = render_report(summary, trials)
    data, layout = plot_json(page, "pareto")
    assert layout["xaxis"]["title"]["text"] == default_title
    if labels is None:
        assert not layout.get("updatemenus")
        return
    (menu,) = layout["updatemenus"]
    assert [button["label"] for button in menu["buttons"]] == labels
    keys = {"latency": "latency_ms", "params": "params", "FLOPs": "flops"}
    front_trials = [t for t in trials if t.get("pareto")]
    for button in menu["buttons"]:
        restyle, relayout = button["args"]
        key = keys[button["label"]]
        assert relayout["xaxis.title.text"] in {"latency (ms)", "parameters", "FLOPs"}
        # Trace 1 is the front, re-sorted along the chosen axis so that its step line stays a staircase.
        assert restyle["x"][1] == sorted(t[key] for t in front_trials)
        assert sorted(restyle["x"][0] + restyle["x"][1]) == sorted(
            t[key] for t in trials if t["state"] == "COMPLETE"
        )


def test_progress_plot_is_the_running_best(run, page):
    _, trials = run
    data, _ = plot_json(page, "progress")
    completed = [t for t in trials if t["state"] == "COMPLETE"]
    best = trace(data, "best so far")
    assert best["x"] == [t["number"] for t in completed]
    assert best["y"] == pytest.approx(np.maximum.accumulate([t["val_accuracy"] for t in completed]).tolist())
    assert trace(data, "trial")["y"] == [t["val_accuracy"] for t in completed]


def test_learning_curves_of_the_top_five(run, page):
    _, trials = run
    data, _ = plot_json(page, "curves")
    top = sorted((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: -t["val_accuracy"])[:5]
    assert [item["name"] for item in data] == [f"trial {t['number']}" for t in top]
    assert data[0]["y"] == [point["val_accuracy"] for point in top[0]["curve"]]


# ---------------------------------------------------------------------------------------------------------
# Escaping and degenerate runs


def test_user_text_is_escaped_everywhere():
    attack = "<script>alert(1)</script>"
    summary, trials = make_run(count=6)
    summary["run"]["space"] = attack
    summary["run"]["strategy"] = '"><img src=x onerror=alert(2)>'
    for trial in trials:
        trial["arch"] = {"stages": [{"mixer": attack, "note": "a & b"}]}
        if trial["state"] != "COMPLETE":
            trial["reason"] = attack
    summary["best"] = next(t for t in trials if t["state"] == "COMPLETE")
    page = render_report(summary, trials)
    assert attack not in page
    assert '"><img src=x' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    _, rows = table(page)
    assert all(attack in row["cells"][10][0]["title"] for row in rows)  # unescaped by the parser: text intact
    assert [row["cells"][9][1] for row in rows if row["cells"][1][1] == "FAIL"] == [attack]
    # Hover labels are escaped too, because plotly renders a subset of HTML tags in them.
    data, _ = plot_json(page, "pareto")
    assert all("&lt;script&gt;" in text for item in data for text in item["text"])


def test_zero_completed_trials_render():
    for trials in ([], [make_trial(0, "RUNNING")]):
        summary = {"run": {"space": "nb201", "objectives": ["accuracy"]}, "best": None, "pareto": []}
        page = render_report(summary, trials)
        assert "No completed trial yet." in page
        assert "Plotly.newPlot" not in page and "window.PlotlyConfig" not in page
    _, rows = table(page)
    assert rows[0]["cells"][1][1] == "RUNNING"


def test_failed_only_run_renders_with_reasons():
    trials = [make_trial(0, "FAIL", reason="CUDA out of memory"), make_trial(1, "PRUNED", reason="slow")]
    summary = {"run": {"space": "nb201"}, "best": None, "trials": {"completed": 0, "failed": 1, "pruned": 1}}
    page = render_report(summary, trials)
    assert "No completed trial yet." in page and "Plotly.newPlot" not in page
    _, rows = table(page)
    assert [(row["cells"][1][1], row["cells"][9][1]) for row in rows] == [
        ("FAIL", "CUDA out of memory"),
        ("PRUNED", "slow"),
    ]


def test_minimal_trials_and_empty_summary_render():
    page = render_report(
        {}, [{"number": 0, "state": "COMPLETE"}, {"number": 1, "state": "COMPLETE", "arch": None}]
    )
    assert "No completed trial yet." in page  # completed but without a validation accuracy: nothing to plot
    _, rows = table(page)
    assert len(rows) == 2


def test_single_objective_run_without_cost_metrics():
    summary, trials = make_run(metrics=())
    summary["best"] = None
    page = render_report(summary, trials)
    assert plot_json(page, "pareto") is None
    assert "No trial recorded latency, parameters or FLOPs" in page
    progress, _ = plot_json(page, "progress")
    assert trace(progress, "best so far")
    completed = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(completed, key=lambda t: t["val_accuracy"])
    assert f"Best architecture (trial {best['number']})" in page  # derived when the summary has none
    assert page.count("window.PlotlyConfig") == 1  # plotly.js goes with the first figure that exists


def test_storage_password_is_masked():
    page = render_report({"run": {"storage": "postgresql://alice:s3cret@db.example/archlab"}}, [])
    assert "s3cret" not in page and "postgresql://alice:***@db.example/archlab" in page


@pytest.mark.parametrize(
    ("summary", "trials", "message"),
    [
        ([], [], "summary must be a mapping"),
        ({}, "abc", "list of mappings"),
        ({}, [1], "position 0 must be a mapping"),
        ({}, [{"state": "COMPLETE"}], "has no 'number'"),
        ({}, [{"number": 0}], "has no 'state'"),
        ({}, [{"number": "0", "state": "COMPLETE"}], "non-integer number"),
    ],
)
def test_bad_input_is_a_user_error(summary, trials, message):
    with pytest.raises(UserError, match=message):
        render_report(summary, trials)


# ---------------------------------------------------------------------------------------------------------
# write_report


def test_write_report_writes_the_rendered_page_and_leaves_no_temporary_file(run, tmp_path):
    target = tmp_path / "out" / "report.html"
    written = write_report(target, *run)
    assert written == target
    assert target.read_text(encoding="utf-8") == render_report(*run)
    assert sorted(os.listdir(tmp_path / "out")) == ["report.html"]
    # Overwriting replaces the whole file.
    write_report(str(target), {}, [])
    assert target.read_text(encoding="utf-8") == render_report({}, [])
    assert sorted(os.listdir(tmp_path / "out")) == ["report.html"]


def test_write_report_failure_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")

    def failing_replace(source, destination):
        assert pathlib.Path(source).read_text(encoding="utf-8") == render_report(
            {}, []
        )  # complete before swap
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(UserError, match="disk full"):
        write_report(target, {}, [])
    assert target.read_text(encoding="utf-8") == "old report"
    assert os.listdir(tmp_path) == ["report.html"]


def test_write_report_to_a_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        write_report(tmp_path, {}, [])

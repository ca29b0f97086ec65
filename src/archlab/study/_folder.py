"""The run folder: ``run.json``, ``summary.json``, ``report.html``, and the summaries written into them.

Every file is written atomically (a temporary file, then a rename), so a killed run never leaves half a file.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from archlab._io import atomic_write_text
from archlab.errors import UserError
from archlab.search import Objective, pareto_front, resolve_objectives
from archlab.study._ledger import INTERRUPTED, Ledger

__all__ = ["RUN_FILE", "SUMMARY_FILE", "counts", "default_run_dir", "load_run", "rewrite_report", "run_objectives",
           "trial_summary", "versions", "write_json", "write_run_report"]

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"


def default_run_dir() -> Path:
    """Where a run goes when no folder is given: ``runs/search-<local time to the second>``."""
    return Path("runs") / datetime.now().strftime("search-%Y%m%d-%H%M%S")


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temporary file + rename)."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=str))


def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` of a run folder; a folder that is not an archlab run is a :class:`UserError`."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder")
    if not path.is_file():
        raise UserError(f"{run_dir} is not an archlab run folder (no {RUN_FILE})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt: {e}") from None
    if not isinstance(data, dict) or "storage" not in data:
        raise UserError(f"{path} is not an archlab run description")
    return data


def run_objectives(run: dict[str, Any]) -> tuple[Objective, ...]:
    """A run's objectives as it recorded them (objective dicts, or preset names in its configuration)."""
    if run.get("objectives"):
        return resolve_objectives(run["objectives"])
    return resolve_objectives((run.get("config") or {}).get("objectives") or ["accuracy"])


def versions() -> dict[str, str]:
    import optuna

    import archlab

    return {"archlab": archlab.__version__, "torch": torch.__version__, "optuna": optuna.__version__,
            "python": platform.python_version()}


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Trials by outcome: completed, failed, infeasible, interrupted, running."""
    c = {"completed": 0, "failed": 0, "infeasible": 0, "interrupted": 0, "running": 0}
    for t in rows:
        if t.get("reason") == INTERRUPTED:
            c["interrupted"] += 1
        elif t["state"] == "FAIL":
            c["failed"] += 1
        elif t["state"] == "COMPLETE":
            c["infeasible" if t.get("status") == "infeasible" else "completed"] += 1
        elif t["state"] == "RUNNING":
            c["running"] += 1
    return c


def trial_summary(row: dict[str, Any], objectives: Sequence[Objective] = ()) -> dict[str, Any]:
    keys = ["val_accuracy", "test_accuracy", "params", "flops", "latency_ms", "cost_s", "epochs"]
    keys += [o.metric for o in objectives if o.metric not in keys]
    out = {"number": row["number"], "arch": row.get("arch"), **{k: row.get(k) for k in keys}}
    if row.get("arch_str"):  # the space's own notation (a NAS-Bench-201 cell string), kept by the ledger
        out["arch_str"] = row["arch_str"]
    return out


def rewrite_report(run_dir: str | os.PathLike) -> Path:
    """(Re)write ``run_dir/report.html`` from the ledger: for a finished run from its summary, for a run that is
    still going or was interrupted from the trials recorded so far."""
    out = Path(run_dir)
    run = load_run(out)
    objectives = run_objectives(run)
    ledger = Ledger(run["storage"], objectives, create=False)
    summary_file = out / SUMMARY_FILE
    if summary_file.is_file():
        try:
            summary = json.loads(summary_file.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{summary_file} is corrupt") from None
    else:
        rows = {t["number"]: t for t in ledger.trials()}
        front = pareto_front(ledger.records(), objectives)
        summary = {"run": {**(run.get("config") or {}), "objectives": [o.name for o in objectives],
                           "storage": run["storage"], "out": str(out)},
                   "trials": counts(ledger.trials()), "best": None,
                   "pareto": [trial_summary(rows[r.number], objectives) for r in front], "elapsed_s": None}
    return write_run_report(out, summary, ledger)


def write_run_report(out: Path, summary: dict[str, Any], ledger: Ledger) -> Path:
    from archlab.report import write_report

    front = {p["number"] for p in summary.get("pareto", [])}
    trials = []
    for t in ledger.trials():
        row = dict(t)
        row["pareto"] = t["number"] in front
        trials.append(row)
    report_summary = dict(summary)
    report_summary["run"] = {**summary["run"], "budget": summary["run"].get("budget_s")}
    return write_report(out / "report.html", report_summary, trials)


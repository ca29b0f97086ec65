"""The main job as a user runs it: ``archlab search`` from the command line, one run per seed, and its raw row.

Each run is the real command in a subprocess (start-up, data loading, search, final training, export and report
all count in its wall time). The row appended to ``--jsonl`` holds the command, the code version (commit and
whether the tree had changes), the date, the machine, and what the run's ``summary.json`` says: test and
validation accuracy of the exported model, the search's best trial, the trials, the winning arch and its size.

    python benchmarks/main_job.py --data digits --budget 180s --seeds 0
    python benchmarks/main_job.py --data fashion-mnist --budget 30m --seeds 0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """The short commit, with ``+changes`` when the library's source (``src/``) differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return commit + ("+changes" if dirty else "")


def describe(arch: dict) -> str:
    stages = arch.get("stages") or ([arch["first"], *arch["rest"]] if "first" in arch else [])
    stages = " → ".join(f"{s.get('mixer', s.get('block'))}({s['depth']}×{s['width']})" for s in stages)
    rest = ", ".join(f"{k} {v}" for k, v in arch.items() if k not in ("stages", "first", "rest"))
    return "; ".join(part for part in (stages, rest) if part)


def timed_search(args: list[str], out: Path) -> tuple[float, subprocess.CompletedProcess, dict | None]:
    """``archlab search ARGS --out OUT`` in a subprocess: its wall time from start to exit, the process, and the
    run's ``summary.json`` (None when the command failed)."""
    cmd = [sys.executable, "-m", "archlab.cli", "search", *args, "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text()) if proc.returncode == 0 else None
    return wall, proc, summary


def run_once(data: str, budget: str, seed: int, extra: list[str], keep: Path | None = None) -> dict:
    """One ``archlab search`` run and its row; ``keep``: a folder to leave the run folder in (else it is removed)."""
    args = ["--data", data, "--budget", budget, "--seed", str(seed), *extra]
    shown = shlex.join(["archlab", "search", *args])
    if keep is not None:
        out = keep / f"{data.replace(':', '_')}-{budget}-seed{seed}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        wall, proc, summary = timed_search(args, out)
    else:
        with TemporaryDirectory() as tmp:
            wall, proc, summary = timed_search(args, Path(tmp) / "run")
    if summary is None:
        raise SystemExit(f"{shown} failed with exit code {proc.returncode}:\n{proc.stderr[-2000:]}")
    best, final = summary["best"], summary.get("final") or {}
    return {
        "command": shown, "data": data, "budget": budget, "seed": seed, "code": code_version(),
        "date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "wall_s": wall, "test_accuracy": best["test_accuracy"], "val_accuracy": best["val_accuracy"],
        "search_val_accuracy": (best.get("search") or {}).get("val_accuracy"),
        "trial": best["number"], "arch": best["arch"], "arch_text": describe(best["arch"]),
        "params": best.get("params"), "latency_ms": best.get("latency_ms"),
        "final_epochs": final.get("epochs"), "trials": summary["trials"],
        "final_seconds": final.get("cost_s"), "choices": summary.get("choices"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--budget", default="180s")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jsonl", type=Path, default=ROOT / "benchmarks/results/main_job.jsonl",
                    help="append one row per run here")
    ap.add_argument("--keep", type=Path, help="leave each run's folder in this folder")
    ap.add_argument("extra", nargs="*", help="more `archlab search` options, after --")
    args = ap.parse_args()
    for seed in args.seeds:
        row = run_once(args.data, args.budget, seed, args.extra, args.keep)
        with args.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        t = row["trials"]
        print(f"| `{row['command']}` | {row['code']} | {seed} | {100 * row['test_accuracy']:.2f} % | "
              f"{100 * row['val_accuracy']:.2f} % | {t['completed'] + t['failed']} | {row['arch_text']}; "
              f"{row['params']:,} params | {row['wall_s'] / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    sys.exit(main())

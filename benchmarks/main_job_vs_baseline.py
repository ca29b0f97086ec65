"""The main job against the textbook baseline: ``archlab search`` and a hand-written CNN in the same wall clock.

For each dataset, budget and seed, in one run, one after the other on the same machine: ``archlab search --data D
--budget B --seed S`` as a user runs it (a subprocess; start-up, loading, search, final training, export and report
count), then the textbook CNN of ``benchmarks/textbook_cnn.py`` (a subprocess too, its loading counted) trained
for the same B on the same training split, both tested on the same test split. One JSON row per pair is appended
to ``--jsonl``; the table in BENCHMARKS.md gives the medians and spreads over seeds.

    python benchmarks/main_job_vs_baseline.py --data fashion-mnist --budgets 10m --seeds 0 1 2
    python benchmarks/main_job_vs_baseline.py --data cifar10 --budgets 10m 30m --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from main_job import ROOT, run_once  # noqa: E402

from archlab.study import parse_duration  # noqa: E402


def baseline(data: str, seconds: float, seed: int) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks/textbook_cnn.py"), "--data", data, "--seconds", str(seconds),
           "--seed", str(seed)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        raise SystemExit(f"the baseline failed:\n{proc.stderr[-2000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**row, "process_wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--budgets", nargs="+", default=["10m"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jsonl", type=Path, default=ROOT / "benchmarks/results/main_job_vs_baseline.jsonl")
    ap.add_argument("--keep", type=Path, help="leave each search's run folder in this folder")
    ap.add_argument("extra", nargs="*", help="more `archlab search` options, after --")
    args = ap.parse_args()
    for budget in args.budgets:
        for seed in args.seeds:
            search = run_once(args.data, budget, seed, args.extra, args.keep)
            base = baseline(args.data, parse_duration(budget), seed)
            row = {"data": args.data, "budget": budget, "seed": seed, "archlab": search, "baseline": base}
            args.jsonl.parent.mkdir(parents=True, exist_ok=True)
            with args.jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{args.data} {budget} seed {seed}: archlab {100 * search['test_accuracy']:.2f} % "
                  f"({search['wall_s']:.0f} s, {search['arch_text']}) | textbook CNN "
                  f"{100 * base['test_accuracy']:.2f} % ({base['epochs']:.1f} epochs, {base['process_wall_s']:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()

"""Trials side by side (``--workers``) against one at a time: how much training a search gets done per minute.

Both arms run the same search (random strategy, epoch fidelity, no time budget) for the same number of trials
on the same data; what is compared is the wall-clock time of the search phase and the training work done in it
(training examples seen per second, summed over trials). The archs differ between the arms after the first
ones (with workers, proposals are made while other trials are still running), so the work rate, not the
accuracy, is the result.

    python benchmarks/parallel_trials.py --data fashion-mnist --trials 8 --epochs 2 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from archlab.study import Ledger, SearchConfig, load_run, run_search


def run(data: str, trials: int, epochs: int, workers: int, seed: int) -> dict:
    cfg = SearchConfig(data=data, strategy="random", n_trials=trials, epochs=epochs, budget_s=None, seed=seed,
                       final_epochs=0, export_onnx=False, workers=workers, median_stopping=False)
    with TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        summary = run_search(cfg, out, report=False)
        wall = time.perf_counter() - t0
        run_info = load_run(out)
        rows = Ledger(run_info["storage"], cfg.objectives, create=False).trials()
    n_train = summary["run"].get("train_subset") or run_info["data"]["sizes"]["train"]
    epochs_done = sum(r.get("epochs") or 0 for r in rows if r["state"] == "COMPLETE")
    return {"workers": workers, "wall_s": wall, "trials": summary["trials"]["completed"],
            "epochs": epochs_done, "examples_per_s": epochs_done * n_train / wall,
            "best_val": summary["best"]["val_accuracy"] if summary.get("best") else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/parallel_trials.json"))
    args = ap.parse_args()
    rows = []
    for w in args.workers:
        row = run(args.data, args.trials, args.epochs, w, args.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["examples_per_s"]
    print()
    print(f"{args.data}, {args.trials} random archs x {args.epochs} epochs, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}")
    print("| workers | search wall-clock | trials | training examples / s | vs first row |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['wall_s']:.0f} s | {r['trials']} | {r['examples_per_s']:,.0f} | "
              f"{r['examples_per_s'] / base:.2f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                     "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

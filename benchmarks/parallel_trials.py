"""Trials side by side (``--workers``) against one at a time: how much training a search gets done per minute.

Both arms run the same search (random strategy, epoch fidelity, no time budget) for the same number of trials
on the same data; what is compared is the wall-clock time of the search phase and the training work done in it
(training examples seen per second, summed over trials). The archs differ between the arms after the first
ones (with workers, proposals are made while other trials are still running), so the work rate, not the
accuracy, is the result.

    python benchmarks/parallel_trials.py --data fashion-mnist --trials 8 --epochs 2 --workers 1 2
    python benchmarks/parallel_trials.py --data fashion-mnist --trials 6 --epochs 1 --same-archs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from _results import save_results  # benchmarks/ is on the path when a script runs

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


def run_fixed(data_name: str, trials: int, epochs: int, workers: int, seed: int) -> dict:
    """The same ``trials`` archs (sampled with ``seed``) trained one at a time in this process, or by a pool of
    ``workers`` processes: the pure throughput of the pool, with no difference in what is trained."""
    import random

    import torch

    from archlab.data import load_dataset
    from archlab.study import TrainingEvaluator, make_space
    from archlab.study._pool import TrialPool

    cfg = SearchConfig(data=data_name, strategy="random", n_trials=trials, epochs=epochs, budget_s=None,
                       seed=seed, final_epochs=0, export_onnx=False, workers=workers, median_stopping=False)
    data = load_dataset(data_name, seed=seed)
    cfg = cfg.resolve(len(data.y_train))
    space = make_space(cfg, data.input_shape, data.num_classes)
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(trials)]
    t0 = time.perf_counter()
    if workers == 1:
        evaluator = TrainingEvaluator(space, data, cfg.trial_config(), cfg.constraint_list, cfg.search_subset())
        torch.set_num_threads(os.cpu_count() or 1)
        results = [evaluator(a) for a in archs]
    else:
        pool = TrialPool(cfg.to_dict(), workers)
        results = [f.result()[0] for f in [pool.submit(a, cfg.trial_config(), None) for a in archs]]
        pool.close()
    wall = time.perf_counter() - t0
    epochs_done = sum(r.metrics.get("epochs") or 0 for r in results)
    return {"workers": workers, "wall_s": wall, "trials": len(results), "epochs": epochs_done,
            "examples_per_s": epochs_done * cfg.train_subset / wall if cfg.train_subset else None,
            "best_val": max(r.metrics.get("val_accuracy", 0.0) for r in results), "same_archs": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--same-archs", action="store_true",
                    help="train the same sampled archs in every arm, outside the search loop (pure throughput)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.json is None:
        args.json = Path("benchmarks/results") / ("parallel_trials_same_archs.json" if args.same_archs
                                                  else "parallel_trials.json")
    rows = []
    for w in args.workers:
        row = (run_fixed if args.same_archs else run)(args.data, args.trials, args.epochs, w, args.seed)
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
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

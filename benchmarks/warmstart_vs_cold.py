"""Does the zero-cost-proxy warm start reach a good arch in fewer trained trials than a cold start?

The same search (``metaformer`` on digits, the same data split, an epoch fidelity so that a trial is the same
work whatever the machine's load, no median stopping) runs with ``--warmstart proxies`` and with ``--warmstart
none`` for each seed and strategy, for ``--trials`` trials. Counted in trials, not seconds: per run, the number of
trained trials until the best validation accuracy first reaches ``--target`` (``None`` when it never does), the
best validation accuracy after 5, 10 and all trials, and the seconds the proxies took. The summary gives, per arm,
the median and the spread (min–max) over seeds, and how many seeds each arm needed fewer trials on.

    python benchmarks/warmstart_vs_cold.py --strategies random rea --seeds 0 1 2 3 4 --trials 20 --epochs 3 \\
        --json benchmarks/results/warmstart_vs_cold.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _results import save_results

from archlab.study import Ledger, SearchConfig, run_search


def one_run(strategy: str, seed: int, warmstart: str, args: argparse.Namespace) -> dict:
    cfg = SearchConfig(space="metaformer", data="digits", strategy=strategy, budget_s=None, n_trials=args.trials,
                       seed=seed, epochs=args.epochs, final_epochs=0, export_onnx=False, median_stopping=False,
                       warmstart=warmstart)
    ledger = Ledger.memory(("accuracy",))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:  # the run's checkpoints are not kept
        summary = run_search(cfg, out, ledger=ledger, report=False)
    wall = time.perf_counter() - start
    rows = sorted((t for t in ledger.trials() if t.get("status") == "complete"), key=lambda t: t["number"])
    best, curve = 0.0, []
    for t in rows:
        best = max(best, float(t["val_accuracy"]))
        curve.append(best)
    reach = next((i + 1 for i, v in enumerate(curve) if v >= args.target), None)
    return {"strategy": strategy, "seed": seed, "warmstart": warmstart, "trials": len(rows), "curve": curve,
            "trials_to_target": reach, "best_at_5": curve[4] if len(curve) >= 5 else None,
            "best_at_10": curve[9] if len(curve) >= 10 else None, "best": curve[-1] if curve else None,
            "wall_s": wall, "strategy_describe": summary.get("strategy")}


def spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "never"
    return f"median {statistics.median(known):.3g} (min {min(known):.3g}, max {max(known):.3g}; " \
           f"{len(values) - len(known)} never)" if len(known) < len(values) else \
        f"median {statistics.median(known):.3g} (min {min(known):.3g}, max {max(known):.3g})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=["random", "rea"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.95, help="validation accuracy to reach")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for strategy in args.strategies:
        for seed in args.seeds:
            for warmstart in (("proxies", "none") if seed % 2 == 0 else ("none", "proxies")):  # alternate order
                row = one_run(strategy, seed, warmstart, args)
                rows.append(row)
                print(f"{strategy} seed {seed} {warmstart:8s}: {row['trials_to_target']} trials to "
                      f"{args.target}, best {row['best']:.4f} ({row['wall_s']:.0f} s)", flush=True)
                if args.json is not None:  # the rows so far, so an interrupted run keeps them
                    save_results(args.json, args, rows)
    summary = []
    for strategy in args.strategies:
        by = {w: {r["seed"]: r for r in rows if r["strategy"] == strategy and r["warmstart"] == w}
              for w in ("proxies", "none")}
        never = args.trials + 1  # a run that never reached the target counts as needing more than its trials
        fewer = sum((by["proxies"][s]["trials_to_target"] or never) < (by["none"][s]["trials_to_target"] or never)
                    for s in args.seeds)
        more = sum((by["proxies"][s]["trials_to_target"] or never) > (by["none"][s]["trials_to_target"] or never)
                   for s in args.seeds)
        entry = {"strategy": strategy, "seeds": len(args.seeds), "warm_fewer_trials": fewer,
                 "warm_more_trials": more}
        for w in ("proxies", "none"):
            entry[w] = {k: [by[w][s][k] for s in args.seeds] for k in ("trials_to_target", "best_at_5",
                                                                        "best_at_10", "best")}
            print(f"{strategy:7s} {w:8s} trials to {args.target}: {spread(entry[w]['trials_to_target'])}; "
                  f"best after 5: {spread(entry[w]['best_at_5'])}; after {args.trials}: {spread(entry[w]['best'])}")
        print(f"{strategy}: the warm start needed fewer trials on {fewer} of {len(args.seeds)} seeds, more on {more}")
        summary.append(entry)
    if args.json is not None:
        save_results(args.json, args, [{"summary": summary}, *rows])


if __name__ == "__main__":
    main()

"""Accuracy against measured Raspberry Pi 5 latency on NAS-Bench-201: each strategy's Pareto front and its
hypervolume, as a fraction of the whole table's exact front's.

Each run searches the ``nb201`` space for two objectives, 12-epoch CIFAR-10 validation accuracy (maximised) and
the cell's HW-NAS-Bench-360 latency on a Raspberry Pi 5 with ONNX Runtime (minimised), under the NB201 protocol's
budget (12,000 simulated seconds); its result is the Pareto front of what it evaluated. The hypervolume's reference
point is the table's worst value of each objective. Usage::

    ARCHLAB_DATA=../shared/data python benchmarks/nb201_pareto.py --runs 100 --workers 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _results import save_results

from archlab.bench import load_nb201_table, run_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--strategies", nargs="+", default=["nsga2", "surrogate_ls", "rea", "random", "local_search"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="pi5")
    parser.add_argument("--framework", default="onnx")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nb201_pareto.json"))
    args = parser.parse_args()
    table = load_nb201_table(device=args.device, framework=args.framework)
    rows = []
    for name in args.strategies:
        result = run_protocol(table, name, runs=args.runs, objectives=["accuracy", "latency"], workers=args.workers)
        s = result.summary()
        rows += [{"strategy": name, **row} for row in result.rows]
        print(f"{name}: hypervolume / table front's {s['hypervolume_ratio_mean']:.4f} +- "
              f"{s['hypervolume_ratio_std']:.4f}, front of {statistics.fmean(r['front_size'] for r in result.rows):.1f}"
              f" cells, {s['queries_mean']:.1f} queries a run, {result.wall_s:.1f} s for {args.runs} runs")
    save_results(args.out, args, rows)


if __name__ == "__main__":
    main()

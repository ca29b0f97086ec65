"""NAS-Bench-201's search protocol on the real table: independent seeded runs of 12,000 simulated seconds each.

Each run searches the ``nb201`` space with one strategy; every query is charged the cell's 12-epoch CIFAR-10
training time (REA, REINFORCE and random search may repeat an arch and are charged again, as in the paper), the
best arch by 12-epoch validation accuracy is reported by its 200-epoch test accuracies on CIFAR-10, CIFAR-100 and
ImageNet16-120 (the last two reached by searching on CIFAR-10 validation accuracy, as in the paper). Mean and
standard deviation over the runs are printed beside the NB201 paper's (Dong & Yang, ICLR 2020, Table 5). The runs
are :func:`archlab.bench.run_protocol`, what ``archlab bench nb201`` runs. Usage::

    ARCHLAB_DATA=../shared/data python benchmarks/nb201_protocol.py --runs 500 --workers 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _results import device_name, save_results

from archlab.bench import DATASETS, PUBLISHED, load_nb201_table, run_protocol

LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--budget-seconds", type=float, default=12_000)
    parser.add_argument("--strategies", nargs="+",
                        default=["surrogate_ls", "rea", "reinforce", "random", "local_search", "tpe"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="nb201_robot.csv (default: $ARCHLAB_DATA)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nb201_protocol.json"))
    args = parser.parse_args()
    table = load_nb201_table(args.table)
    rows = []
    for name in args.strategies:
        result = run_protocol(table, name, runs=args.runs, budget_seconds=args.budget_seconds, workers=args.workers)
        rows += [{"strategy": name, **row} for row in result.rows]
        print(f"{name}: {args.runs} runs in {result.wall_s:.1f} s with {args.workers} worker(s) "
              f"({device_name('cpu')}), {statistics.fmean(r['queries'] for r in result.rows):.1f} queries a run")
        for dataset in DATASETS:
            values = [r[dataset] for r in result.rows]
            published = PUBLISHED.get(name, {}).get(dataset)
            ref = "-" if published is None else f"{published[0]:.2f}" + (
                f" +- {published[1]:.2f}" if published[1] is not None else "")
            print(f"  {LABELS[dataset]:<15} {statistics.fmean(values):.2f} +- {statistics.stdev(values):.2f}   "
                  f"published {ref}")
    save_results(args.out, args, rows)


if __name__ == "__main__":
    main()

"""NAS-Bench-201's search protocol on the real table: independent seeded runs of 12,000 simulated seconds each.

Each run searches the ``nb201`` space with one strategy; every query is charged the cell's 12-epoch CIFAR-10
training time (a repeated arch is charged again: ``dedupe=False``), the best arch by 12-epoch validation accuracy
is reported by its 200-epoch test accuracies on CIFAR-10, CIFAR-100 and ImageNet16-120 (the last two reached by
searching on CIFAR-10 validation accuracy, as in the paper). Mean and standard deviation over the runs are printed
beside the NB201 paper's (Dong & Yang, ICLR 2020, Table 5). Usage::

    ARCHLAB_DATA=../shared/data python benchmarks/nb201_protocol.py --runs 100
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _results import device_name, save_results

from archlab.bench import TableEvaluator, load_nb201_table
from archlab.search import create_strategy
from archlab.study import Budget, Ledger, search

PUBLISHED = {  # CIFAR-10 / CIFAR-100 / ImageNet16-120 test accuracy, mean and std over 500 runs
    "rea": ((93.92, 0.30), (71.84, None), (45.54, None)),
    "reinforce": ((93.85, 0.37), (71.71, None), (45.24, None)),
    "random": ((93.70, 0.36), (71.04, None), (44.57, None)),
}
TESTS = ("test_accuracy", "test_cifar100_accuracy", "test_imagenet16_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--budget-seconds", type=float, default=12_000)
    parser.add_argument("--strategies", nargs="+", default=["rea", "reinforce", "random"])
    parser.add_argument("--table", type=Path, default=None, help="nb201_robot.csv (default: $ARCHLAB_DATA)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nb201_protocol.json"))
    args = parser.parse_args()
    table = load_nb201_table(args.table)
    evaluator = TableEvaluator(table)
    rows = []
    for name in args.strategies:
        t0 = time.perf_counter()
        for seed in range(args.runs):
            kw = {"population_size": 10, "sample_size": 3} if name == "rea" else {}
            strategy = create_strategy(name, table.space, seed=seed, dedupe=False, **kw)
            result = search(table.space, evaluator, strategy, Ledger.memory(space=table.space),
                            Budget(cost_s=args.budget_seconds))
            best = table.row(result.best.arch)
            rows.append({"strategy": name, "seed": seed, "queries": len(result.records), "cost_s": result.cost_s,
                         "arch": table.space.to_string(result.best.arch),
                         **{k: 100 * best[k] for k in TESTS}})
        wall = time.perf_counter() - t0
        mine = [r for r in rows if r["strategy"] == name]
        print(f"{name}: {len(mine)} runs in {wall:.1f} s ({device_name('cpu')})")
        for k, (label, published) in zip(TESTS, zip(("CIFAR-10", "CIFAR-100", "ImageNet16-120"),
                                                     PUBLISHED.get(name, ((None, None),) * 3), strict=True),
                                          strict=True):
            values = [r[k] for r in mine]
            ref = f"{published[0]:.2f}" + (f" +- {published[1]:.2f}" if published[1] else "") if published[0] else "-"
            print(f"  {label:<15} {statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}   published {ref}")
    save_results(args.out, args, rows)


if __name__ == "__main__":
    main()

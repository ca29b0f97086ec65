"""The NAS-Bench-201 protocol's wall time through archlab, through a bare loop and through plain Optuna, side by side.

Every arm runs ``--runs`` seeded runs of NAS-Bench-201's search protocol on the real table
(:func:`archlab.bench.load_nb201_table`): a run queries archs until 12,000 simulated seconds are spent, every query
charged its cell's 12-epoch training time (``cost_s``; a repeated arch is charged again), and reports the best arch
by 12-epoch validation accuracy by its 200-epoch CIFAR-10 test accuracy. The arms:

- ``archlab random`` / ``archlab REA`` (population 10, sample 3, ``dedupe=False``): :func:`archlab.study.search`
  with :meth:`Ledger.memory` and the :class:`TableEvaluator`, as ``benchmarks/nb201_protocol.py`` runs them;
- ``bare random`` / ``bare REA`` (the same population, sample and aging): hand-written loops over tuples of six
  operation indices and the table's columns, a dict from the tuple to the row (built before the clock starts);
- ``optuna Random`` / ``optuna TPE``: Optuna's ``RandomSampler`` / ``TPESampler`` (default settings, seeded)
  driving the same protocol through ``study.ask()`` / ``study.tell()`` on an in-memory study, each edge a
  ``suggest_categorical`` over the five operations. TPE is slow: it runs ``--tpe-runs`` runs once, and its time
  for ``--runs`` runs is extrapolated from them (and labelled so).

Each arm's wall time is the median over ``--repeats`` repetitions (the arms interleaved within a repetition); the
ratio is to the bare loop of the same algorithm (Optuna's random sampler to the bare random loop; TPE has none,
and is also shown against the bare random loop). The mean test accuracy shows that every arm ran the same
protocol. Usage::

    ARCHLAB_DATA=../shared/data python benchmarks/bench_overhead.py --runs 500 --repeats 3 --tpe-runs 50
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import optuna
from _results import device_name, save_results

from archlab.bench import TableEvaluator, load_nb201_table
from archlab.bench._table import Table
from archlab.search import create_strategy
from archlab.space.nb201 import OPERATIONS
from archlab.study import Budget, Ledger, search

EDGES = 6
POPULATION, SAMPLE = 10, 3


class Lookup:
    """The table as the bare loops and the Optuna arms read it: the row of every cell, keyed by the tuple of its six
    operation indices (bare loops) and by the tuple of its six operation names (Optuna), and plain lists of the
    columns they read. Built once, before any clock starts."""

    def __init__(self, table: Table) -> None:
        space = table.space
        self.names = list(space.to_params(space.sample(0)))  # the six edge params, in order
        assert len(self.names) == EDGES
        self.row_of: dict[tuple[int, ...], int] = {}
        for ops in itertools.product(range(len(OPERATIONS)), repeat=EDGES):
            params = {name: OPERATIONS[i] for name, i in zip(self.names, ops, strict=True)}
            self.row_of[ops] = space.index(space.from_params(params))
        self.row_of_names = {tuple(OPERATIONS[i] for i in ops): row for ops, row in self.row_of.items()}
        self.val = table.columns["val_accuracy"].tolist()
        self.cost = table.columns["cost_s"].tolist()
        self.test = table.columns["test_accuracy"].tolist()


def bare_random(lookup: Lookup, seed: int, budget: float) -> tuple[int, int]:
    """Uniform random cells until the budget is spent: (best row by validation accuracy, queries)."""
    rng = random.Random(seed)
    row_of, val, cost = lookup.row_of, lookup.val, lookup.cost
    n_ops = len(OPERATIONS)
    spent, best, best_val, queries = 0.0, -1, -1.0, 0
    while spent < budget:
        row = row_of[tuple([rng.randrange(n_ops) for _ in range(EDGES)])]
        spent += cost[row]
        queries += 1
        if val[row] > best_val:
            best, best_val = row, val[row]
    return best, queries


def bare_rea(lookup: Lookup, seed: int, budget: float) -> tuple[int, int]:
    """Regularized evolution (aging; population 10, sample 3; a child changes one edge to another operation)."""
    rng = random.Random(seed)
    row_of, val, cost = lookup.row_of, lookup.val, lookup.cost
    n_ops = len(OPERATIONS)
    population: deque[tuple[tuple[int, ...], float]] = deque(maxlen=POPULATION)  # the oldest leaves as a child joins
    spent, best, best_val, queries = 0.0, -1, -1.0, 0
    while spent < budget:
        if len(population) < POPULATION:
            ops = tuple([rng.randrange(n_ops) for _ in range(EDGES)])
        else:
            parent = max(rng.sample(population, SAMPLE), key=lambda member: member[1])[0]
            edge = rng.randrange(EDGES)
            ops = parent[:edge] + ((parent[edge] + rng.randrange(1, n_ops)) % n_ops,) + parent[edge + 1:]
        row = row_of[ops]
        spent += cost[row]
        queries += 1
        population.append((ops, val[row]))
        if val[row] > best_val:
            best, best_val = row, val[row]
    return best, queries


def archlab_run(table: Table, evaluator: TableEvaluator, name: str, seed: int, budget: float) -> tuple[int, int]:
    kw = {"population_size": POPULATION, "sample_size": SAMPLE} if name == "rea" else {}
    strategy = create_strategy(name, table.space, seed=seed, dedupe=False, **kw)
    result = search(table.space, evaluator, strategy, Ledger.memory(space=table.space), Budget(cost_s=budget))
    return table.space.index(result.best.arch), len(result.records)


def optuna_run(lookup: Lookup, sampler: optuna.samplers.BaseSampler, budget: float) -> tuple[int, int]:
    """Optuna's ask/tell on an in-memory study, one ``suggest_categorical`` per edge."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    operations = list(OPERATIONS)
    spent, best, best_val, queries = 0.0, -1, -1.0, 0
    while spent < budget:
        trial = study.ask()
        row = lookup.row_of_names[tuple(trial.suggest_categorical(name, operations) for name in lookup.names)]
        study.tell(trial, lookup.val[row])
        spent += lookup.cost[row]
        queries += 1
        if lookup.val[row] > best_val:
            best, best_val = row, lookup.val[row]
    return best, queries


def timed(arm: Callable[[int], tuple[int, int]], runs: int) -> tuple[float, list[int], list[int]]:
    t0 = time.perf_counter()
    results = [arm(seed) for seed in range(runs)]
    return time.perf_counter() - t0, [r for r, _ in results], [q for _, q in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of every arm but TPE")
    parser.add_argument("--tpe-runs", type=int, default=50, help="TPE runs (timed once; extrapolated to --runs)")
    parser.add_argument("--budget-seconds", type=float, default=12_000)
    parser.add_argument("--table", type=Path, default=None, help="nb201_robot.csv (default: $ARCHLAB_DATA)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_overhead.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = load_nb201_table(args.table)
    evaluator = TableEvaluator(table)
    lookup = Lookup(table)
    budget = args.budget_seconds
    arms: dict[str, tuple[str, Callable[[int], tuple[int, int]]]] = {  # name -> (algorithm, one run of a seed)
        "bare random": ("random", lambda s: bare_random(lookup, s, budget)),
        "archlab random": ("random", lambda s: archlab_run(table, evaluator, "random", s, budget)),
        "optuna RandomSampler": ("random", lambda s: optuna_run(lookup, optuna.samplers.RandomSampler(seed=s),
                                                                budget)),
        "bare REA": ("rea", lambda s: bare_rea(lookup, s, budget)),
        "archlab REA": ("rea", lambda s: archlab_run(table, evaluator, "rea", s, budget)),
        "optuna TPESampler": ("tpe", lambda s: optuna_run(lookup, optuna.samplers.TPESampler(seed=s), budget)),
    }
    for _, arm in arms.values():
        arm(10_000)  # warm-up: imports, caches
    rows = []
    for repeat in range(args.repeats):
        for name, (algorithm, arm) in arms.items():
            if algorithm == "tpe" and repeat > 0:
                continue
            runs = args.tpe_runs if algorithm == "tpe" else args.runs
            wall, best, queries = timed(arm, runs)
            tests = [100 * lookup.test[r] for r in best]
            rows.append({"arm": name, "algorithm": algorithm, "repeat": repeat, "runs": runs, "wall_s": wall,
                         "ms_per_run": wall / runs * 1000, "mean_queries": statistics.mean(queries),
                         "test_accuracy_mean": statistics.mean(tests), "test_accuracy_std": statistics.stdev(tests),
                         "best_rows": best})
            print(f"  repeat {repeat}: {name:<22} {wall:8.2f} s for {runs} runs", flush=True)

    summary = {}
    for name, (algorithm, _) in arms.items():
        mine = [r for r in rows if r["arm"] == name]
        summary[name] = {"algorithm": algorithm, "runs": mine[0]["runs"], "repeats": len(mine),
                         "wall_s": statistics.median(r["wall_s"] for r in mine),
                         "test_accuracy_mean": mine[0]["test_accuracy_mean"],
                         "test_accuracy_std": mine[0]["test_accuracy_std"], "mean_queries": mine[0]["mean_queries"]}
        summary[name]["ms_per_run"] = summary[name]["wall_s"] / summary[name]["runs"] * 1000
    bare = {"random": summary["bare random"]["ms_per_run"], "rea": summary["bare REA"]["ms_per_run"]}

    print(f"\nNAS-Bench-201 protocol, {budget:,.0f} simulated s a run, {device_name('cpu')}; wall: median of "
          f"{args.repeats} repetitions (TPE: 1)")
    head = (f"{'arm':<34}{'runs':>6}{'wall s':>10}{'ms/run':>10}{'x bare':>9}{'queries/run':>13}"
            f"{'CIFAR-10 test':>17}")
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        ratio = f"{s['ms_per_run'] / bare[s['algorithm']]:.1f}" if s["algorithm"] in bare else "n/a"
        print(f"{name:<34}{s['runs']:>6}{s['wall_s']:>10.2f}{s['ms_per_run']:>10.2f}{ratio:>9}"
              f"{s['mean_queries']:>13.1f}{s['test_accuracy_mean']:>9.2f} +- {s['test_accuracy_std']:.2f}")
        if s["algorithm"] == "tpe" and s["runs"] != args.runs:
            wall = s["ms_per_run"] * args.runs / 1000
            print(f"{'  -> ' + f'{args.runs} runs (EXTRAPOLATED)':<34}{args.runs:>6}{wall:>10.2f}"
                  f"{s['ms_per_run']:>10.2f}{'n/a':>9}")
    tpe = summary["optuna TPESampler"]["ms_per_run"]
    print(f"(TPE has no bare loop; against the bare random loop it is x{tpe / bare['random']:.0f}, "
          f"against the bare REA loop x{tpe / bare['rea']:.0f})")
    summary["optuna TPESampler"]["extrapolated_wall_s"] = tpe * args.runs / 1000
    summary["optuna TPESampler"]["extrapolated_runs"] = args.runs
    save_results(args.out, args, rows + [{"summary": summary, "machine": device_name("cpu")}])


if __name__ == "__main__":
    main()

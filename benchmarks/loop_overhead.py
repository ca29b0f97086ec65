"""The search loop's own cost per query, on a NAS-Bench-201-sized table (6 edges x 5 operations), side by side.

Every arm runs regularized evolution (population 10, sample 3; TPE for plain Optuna) for ``--queries`` lookups
of the synthetic table :func:`archlab.bench.synthetic_nb201_table` (the one the tests build), so the lookups cost
the same everywhere and what differs is the machinery around them:

- ``numpy_rea``: a bare REA loop over integer codes and NumPy arrays (the floor);
- ``archlab_rea``: archlab's REA strategy, ask/tell with the table evaluator, no ledger;
- ``loop_memory``: the whole search loop (:func:`archlab.study.search`) with an in-memory ledger;
- ``loop_sqlite``: the same with a SQLite file ledger;
- ``optuna_tpe``: plain Optuna, ``study.optimize`` with TPE over the same six categorical params, in memory.

Each arm is run ``--repeats`` times with different seeds; the medians of the per-query times are reported, and
the ratios to the bare loop. Usage::

    python benchmarks/loop_overhead.py --queries 114 --repeats 9 --out benchmarks/results/loop_overhead.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import optuna
from _results import device_name, save_results

from archlab.bench import NB201_OPERATIONS, TableEvaluator, synthetic_nb201_table
from archlab.search import TrialRecord, create_strategy
from archlab.study import Budget, Ledger, search

EDGES = 6


def numpy_rea(table, queries: int, seed: int) -> float:
    """The floor: REA on integer codes, the table as a NumPy array indexed by the base-5 code."""
    acc = table.columns["val_accuracy"]
    weights = 5 ** np.arange(EDGES)[::-1]
    rng = np.random.default_rng(seed)
    population: deque = deque(maxlen=10)
    best = -1.0
    for _ in range(queries):
        if len(population) < 10:
            code = rng.integers(0, 5, EDGES)
        else:
            sample = [population[i] for i in rng.choice(len(population), 3, replace=False)]
            code = max(sample, key=lambda m: m[1])[0].copy()
            edge = rng.integers(EDGES)
            code[edge] = (code[edge] + rng.integers(1, 5)) % 5
        value = float(acc[int(code @ weights)])
        population.append((code, value))
        best = max(best, value)
    return best


def archlab_rea(table, queries: int, seed: int) -> float:
    """archlab's REA and the table evaluator, told directly (no ledger)."""
    evaluator = TableEvaluator(table)
    strategy = create_strategy("rea", table.space, seed=seed, population_size=10, sample_size=3, dedupe=False)
    best = -1.0
    for i in range(queries):
        arch = strategy.ask()
        result = evaluator(arch)
        strategy.tell(TrialRecord(i, arch, result.state, result.metrics))
        best = max(best, result.metrics["val_accuracy"])
    return best


def loop(table, queries: int, seed: int, storage: str | None) -> float:
    strategy = create_strategy("rea", table.space, seed=seed, population_size=10, sample_size=3, dedupe=False)
    ledger = Ledger(storage, ["accuracy"], space=table.space)
    result = search(table.space, TableEvaluator(table), strategy, ledger, Budget(trials=queries))
    return result.best.metrics["val_accuracy"]


def optuna_tpe(table, queries: int, seed: int) -> float:
    position = {op: i for i, op in enumerate(NB201_OPERATIONS)}
    weights = 5 ** np.arange(EDGES)[::-1]
    acc = table.columns["val_accuracy"]

    def objective(trial: optuna.Trial) -> float:
        code = [position[trial.suggest_categorical(f"edge{i}", list(NB201_OPERATIONS))] for i in range(EDGES)]
        return float(acc[int(np.dot(code, weights))])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=queries)
    return study.best_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=114)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sqlite-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loop_overhead.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = synthetic_nb201_table(seed=0)
    tmp = Path(tempfile.mkdtemp())
    arms = {
        "numpy_rea": lambda s: numpy_rea(table, args.queries, s),
        "archlab_rea": lambda s: archlab_rea(table, args.queries, s),
        "loop_memory": lambda s: loop(table, args.queries, s, None),
        "loop_sqlite": lambda s: loop(table, args.queries, s, f"sqlite:///{tmp}/ledger-{s}-{random.random()}.db"),
        "optuna_tpe": lambda s: optuna_tpe(table, args.queries, s),
    }
    rows = []
    for name, run in arms.items():
        run(1000)  # warm-up: imports, caches
        repeats = args.sqlite_repeats if name == "loop_sqlite" else args.repeats
        for seed in range(repeats):
            t0 = time.perf_counter()
            best = run(seed)
            seconds = time.perf_counter() - t0
            rows.append({"arm": name, "seed": seed, "queries": args.queries, "seconds": seconds,
                         "us_per_query": seconds / args.queries * 1e6, "best_val_accuracy": best})
    medians = {name: statistics.median(r["us_per_query"] for r in rows if r["arm"] == name) for name in arms}
    floor = medians["numpy_rea"]
    print(f"{'arm':<14}{'median us/query':>17}{'x bare loop':>13}   ({device_name('cpu')}, {args.queries} queries)")
    for name, us in medians.items():
        print(f"{name:<14}{us:>17.1f}{us / floor:>13.1f}")
    save_results(args.out, args, rows + [{"summary": {"median_us_per_query": medians,
                                                      "ratio_to_numpy": {k: v / floor for k, v in medians.items()},
                                                      "machine": device_name("cpu")}}])


if __name__ == "__main__":
    main()

"""The NAS-Bench-201 search protocol (Dong & Yang, ICLR 2020, Section 5 and Table 5), replayed on the table.

A run searches the ``nb201`` space with one strategy under a simulated budget (12,000 s by default): each query is
charged the cell's 12-epoch CIFAR-10 training time, a repeated query is charged again, and the run that spends the
last of the budget counts in full. The reward is the 12-epoch CIFAR-10 validation accuracy. The best arch by that
reward is reported by its 200-epoch test accuracy; the CIFAR-100 and ImageNet16-120 numbers are those of the same
arch, found by searching on CIFAR-10 validation accuracy (as in the paper). Many independent runs (seeds 0, 1,
...) give the mean and standard deviation printed beside the paper's.

With two objectives (accuracy and measured latency, :func:`run_protocol` ``objectives=``), each run's result is
the Pareto front of what it evaluated and its hypervolume as a fraction of the whole table's front's.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from typing import Any

import numpy as np

from archlab.bench._table import Table, TableEvaluator
from archlab.errors import UserError
from archlab.search import (
    Constraint,
    Objective,
    create_strategy,
    hypervolume,
    pareto_mask,
    resolve_constraints,
    strategy_class,
)
from archlab.study import Budget, Ledger, search

__all__ = ["DATASETS", "DEFAULT_BENCH_STRATEGY", "PROTOCOL_KWARGS", "PUBLISHED", "ProtocolResult",
           "front_hypervolume", "run_protocol", "table_front"]

#: archlab's best strategy on this protocol, the default of ``archlab bench``
DEFAULT_BENCH_STRATEGY = "surrogate_ls"
#: dataset name -> the table's test column
DATASETS = {"cifar10": "test_accuracy", "cifar100": "test_cifar100_accuracy",
            "imagenet16": "test_imagenet16_accuracy"}
#: NB201 paper, Table 5: test accuracy (%) mean and std over 500 runs; std None where the paper's is not quoted here
PUBLISHED: dict[str, dict[str, tuple[float, float | None]]] = {
    "rea": {"cifar10": (93.92, 0.30), "cifar100": (71.84, None), "imagenet16": (45.54, None)},
    "reinforce": {"cifar10": (93.85, 0.37), "cifar100": (71.71, None), "imagenet16": (45.24, None)},
    "random": {"cifar10": (93.70, 0.36), "cifar100": (71.04, None), "imagenet16": (44.57, None)},
    "bohb": {"cifar10": (93.61, 0.52), "cifar100": (70.85, None), "imagenet16": (44.42, None)},
    # RoBoT (He et al., ICLR 2024), Table 2: 20 queries, 10 runs, on proxies of all 15,625 cells
    "robot": {"cifar10": (94.36, 0.00), "cifar100": (73.51, 0.00), "imagenet16": (46.34, 0.00)},
}
#: where each published row comes from
PUBLISHED_SOURCE = {"robot": "RoBoT paper, Table 2 (20 queries)"}
#: NASWOT (Mellor et al., ICML 2021), Table 2: CIFAR-10 test accuracy of the best-scored of N random cells
PUBLISHED_NASWOT: dict[int, tuple[float, float]] = {10: (92.44, 1.13), 100: (92.81, 0.99), 1000: (92.96, 0.81)}
#: the settings the published runs used: REA with a population of 10 and samples of 3; REA, REINFORCE and random
#: search may query an arch again (and are charged again), as in the paper
PROTOCOL_KWARGS: dict[str, dict[str, Any]] = {
    "rea": {"population_size": 10, "sample_size": 3, "dedupe": False},
    "reinforce": {"dedupe": False},
    "random": {"dedupe": False},
}
ACCURACY = Objective("accuracy", "val_accuracy", "maximize", "12-epoch CIFAR-10 validation accuracy")
LATENCY = Objective("latency", "latency_ms", "minimize", "latency (ms)")


@dataclass
class ProtocolResult:
    """Per-run rows and their summary: ``mean`` / ``std`` of the chosen dataset's test accuracy (%) and, with two
    objectives, of the hypervolume ratio."""

    strategy: str
    dataset: str
    budget_seconds: float | None
    rows: list[dict[str, Any]]
    wall_s: float
    objectives: tuple[str, ...] = ("accuracy",)
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self, key: str | None = None) -> list[float]:
        return [r[key or self.dataset] for r in self.rows if r.get(key or self.dataset) is not None]

    def summary(self) -> dict[str, Any]:
        values = self.values()
        published = PUBLISHED.get(self.strategy, {}).get(self.dataset)
        source = PUBLISHED_SOURCE.get(self.strategy, "NB201 paper, Table 5")
        if self.strategy == "naswot":
            n = self.extra.get("candidates")
            published = PUBLISHED_NASWOT.get(n) if self.dataset == "cifar10" else None
            source = f"NASWOT paper, Table 2 (N = {n})"
        out: dict[str, Any] = {
            "strategy": self.strategy, "dataset": self.dataset, "runs": len(self.rows),
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "published": None if published is None else {"mean": published[0], "std": published[1],
                                                          "source": source},
            "budget_seconds": self.budget_seconds, "queries": self.extra.get("queries"),
            "queries_mean": statistics.fmean(r["queries"] for r in self.rows) if self.rows else None,
            "wall_s": self.wall_s, "objectives": list(self.objectives),
            "searched_on": "12-epoch CIFAR-10 validation accuracy",
        }
        if self.dataset != "cifar10":
            out["note"] = (f"{self.dataset} test accuracy of the arch found by searching on CIFAR-10 validation "
                           "accuracy, as in the NB201 paper")
        hv = self.values("hypervolume_ratio")
        if hv:
            out["hypervolume_ratio_mean"] = statistics.fmean(hv)
            out["hypervolume_ratio_std"] = statistics.stdev(hv) if len(hv) > 1 else None
        out.update(self.extra)
        return out


def table_front(table: Table, objectives: Sequence[Objective]) -> np.ndarray:
    """Rows of the exact Pareto front of the whole table over ``objectives``, sorted by the first objective's
    value (best first)."""
    for o in objectives:
        if o.metric not in table.columns:
            raise UserError(f"the table has no {o.metric!r} column ({', '.join(sorted(table.columns))})")
    values = np.stack([table.columns[o.metric] for o in objectives], axis=1)
    rows = np.flatnonzero(pareto_mask(values.tolist(), [o.direction for o in objectives]))
    first = objectives[0]
    return rows[np.argsort([-first.oriented(v) for v in values[rows, 0]], kind="stable")]


def front_hypervolume(table: Table, objectives: Sequence[Objective]) -> tuple[np.ndarray, float, list[float]]:
    """The whole table's exact front (:func:`table_front`), its hypervolume, and the reference point it is measured
    from: each objective's worst value over the table."""
    reference = [float(table.columns[o.metric].min() if o.maximize else table.columns[o.metric].max())
                 for o in objectives]
    front = table_front(table, objectives)
    points = np.stack([table.columns[o.metric][front] for o in objectives], axis=1).tolist()
    return front, hypervolume(points, [o.direction for o in objectives], reference), reference


_TABLE: Table | None = None  # the table a forked worker inherits


def _one_run(strategy: str, seed: int, budget: Budget, objectives: tuple[Objective, ...],
             constraints: tuple[Constraint, ...], kwargs: dict[str, Any], reference: list[float] | None,
             front_hv: float | None, table: Table | None = None) -> dict[str, Any]:
    table = table if table is not None else _TABLE
    space = table.space
    kw = {**PROTOCOL_KWARGS.get(strategy, {}), **kwargs}
    s = create_strategy(strategy, space, seed=seed, objectives=objectives, constraints=constraints, **kw)
    result = search(space, TableEvaluator(table), s, Ledger.memory(objectives, space=space),
                    budget, constraints=constraints)
    row: dict[str, Any] = {"seed": seed, "queries": len(result.records), "cost_s": result.cost_s}
    best = result.best
    if best is None:  # nothing feasible was found
        row.update({name: None for name in DATASETS}, arch=None, val_accuracy=None)
    else:
        found = table.row(best.arch)
        row.update({name: 100 * found[column] for name, column in DATASETS.items()},
                   arch=space.to_string(best.arch) if hasattr(space, "to_string") else best.arch.to_json(),
                   val_accuracy=100 * found["val_accuracy"])
        if "latency_ms" in found:
            row["latency_ms"] = found["latency_ms"]
    if len(objectives) > 1:
        points = [[r.metrics[o.metric] for o in objectives] for r in result.pareto]
        hv = hypervolume(points, [o.direction for o in objectives], reference) if points else 0.0
        row.update(front_size=len(points), hypervolume=hv, hypervolume_ratio=hv / front_hv if front_hv else None)
    return row


def run_protocol(table: Table, strategy: str, *, runs: int = 500, budget_seconds: float | None = 12_000,
                 queries: int | None = None,
                 dataset: str = "cifar10", objectives: Sequence[str | Objective] = ("accuracy",),
                 constraints: Sequence[Constraint | Any] = (), workers: int = 1, first_seed: int = 0,
                 strategy_kwargs: dict[str, Any] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ProtocolResult:
    """``runs`` independent runs (seeds ``first_seed``...) of ``strategy`` on ``table`` under the protocol.

    ``objectives``: ``"accuracy"`` (12-epoch validation accuracy) and optionally ``"latency"`` (the table's
    ``latency_ms``), or :class:`Objective` s. ``constraints`` such as ``Constraint("latency_ms", 5.0)``: an arch over
    a bound is infeasible (still charged its training time) and never reported. ``workers`` > 1 spreads the runs
    over processes (each run is seeded by its number, so the rows do not depend on ``workers``). ``progress(done,
    runs)`` is called after each run."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    if runs < 1:
        raise UserError(f"runs must be >= 1, got {runs}")
    if budget_seconds is None and queries is None:
        raise UserError("the protocol needs a budget: simulated seconds, a number of queries, or both")
    if budget_seconds is not None and (not budget_seconds > 0 or math.isinf(budget_seconds)):
        raise UserError(f"the budget must be a positive number of seconds, got {budget_seconds}")
    if queries is not None and (isinstance(queries, bool) or not isinstance(queries, int) or queries < 1):
        raise UserError(f"queries must be an int >= 1, got {queries!r}")
    presets = {"accuracy": ACCURACY, "latency": LATENCY}
    objs = []
    for o in objectives:
        if isinstance(o, Objective):
            objs.append(o)
        elif o in presets:
            objs.append(presets[o])
        else:
            raise UserError(f"unknown objective {o!r} for the NB201 protocol; choose from accuracy, latency")
    objs_t = tuple(objs)
    cons = tuple(resolve_constraints(constraints))
    for metric in [o.metric for o in objs_t] + [c.metric for c in cons]:
        if metric not in table.columns:
            raise UserError(f"the table has no {metric!r} column: device measurements come from "
                            "hwnasbench360.parquet beside the table (or --hardware PATH)")
    reference = front_hv = None
    if len(objs_t) > 1:
        _, front_hv, reference = front_hypervolume(table, objs_t)
    kwargs = dict(strategy_kwargs or {})
    extra: dict[str, Any] = {"queries": queries}
    if front_hv is not None:
        extra["front_hypervolume"] = front_hv
    if getattr(strategy_class(strategy), "proxy_names", None) and "scores" not in kwargs and "scorer" not in kwargs:
        kwargs["scores"] = _shipped_scores(table, strategy_class(strategy).proxy_names, extra)
    probe = create_strategy(strategy, table.space, objectives=objs_t, constraints=cons,  # bad names fail here
                            **{**PROTOCOL_KWARGS.get(strategy, {}), **kwargs})
    if hasattr(probe, "n_candidates"):
        extra["candidates"] = probe.n_candidates
    args = (Budget(cost_s=budget_seconds, trials=queries), objs_t, cons, kwargs, reference, front_hv)
    seeds = list(range(first_seed, first_seed + runs))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    workers = max(1, min(workers, runs))
    if workers == 1:
        for seed in seeds:
            rows.append(_one_run(strategy, seed, *args, table=table))
            if progress is not None:
                progress(len(rows), runs)
    else:
        global _TABLE
        _TABLE = table
        try:
            context = get_context("fork") if "fork" in get_all_start_methods() else None
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_one_run, strategy, seed, *args, **({} if context else {"table": table}))
                           for seed in seeds]
                for future in futures:
                    rows.append(future.result())
                    if progress is not None:
                        progress(len(rows), runs)
        finally:
            _TABLE = None
    return ProtocolResult(strategy=strategy, dataset=dataset, budget_seconds=budget_seconds, rows=rows,
                          wall_s=time.perf_counter() - t0, objectives=tuple(o.name for o in objs_t), extra=extra)


def _shipped_scores(table: Table, names: Sequence[str], extra: dict[str, Any]) -> dict[Any, tuple[float, ...]]:
    """The shipped proxy scores a training-free strategy searches (its candidates are those cells), described in
    the result with the best test accuracies among them (what a search of that sample can at most find)."""
    from archlab.bench._proxy_table import load_nb201_proxies

    proxies = load_nb201_proxies(names)
    rows = [table.row(a) for a in proxies.scores]
    extra.update(proxy_table=proxies.describe(), proxy_command=proxies.command, candidates_in_table=proxies.cells,
                 pool_optimum={name: 100 * max(r[column] for r in rows) for name, column in DATASETS.items()})
    return proxies.scores

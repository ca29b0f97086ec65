"""The search loop: any space, any evaluator, any budget and any ledger, through one ``ask -> evaluate -> record
-> tell`` loop.

:func:`search` is the open core every method plugs into: a strategy proposes (ask/tell), an
:class:`~archlab.study.Evaluator` scores (training, a table lookup, a supernet, a proxy), the
:class:`~archlab.study.Ledger` records (the only writer to the Optuna study) and a
:class:`~archlab.study.Budget` says when to stop (wall seconds, simulated cost seconds, trials). Constraints are
checked on every result (an evaluator that can check them earlier, before training, does). An exception raised
by one evaluation fails that trial, never the search. With ``workers > 1`` trials run side by side in processes
that rebuild the evaluator from its picklable factory (``executor="local"``), or, with ``executor="ray"``, in Ray
actors on a cluster (:mod:`archlab.study._ray`); either way results come back to this process, which alone writes
the ledger.

:func:`archlab.study.run_search` (the main job, the CLI) is a caller of this loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from archlab.errors import UserError, WorkersDied
from archlab.search import (
    Constraint,
    MedianStopping,
    Objective,
    SearchExhausted,
    Strategy,
    TrialRecord,
    pareto_front,
    resolve_constraints,
)
from archlab.space import Arch
from archlab.study._budget import Budget
from archlab.study._evaluator import EvalResult, Evaluator, check_constraints, evaluator_factory, failure_reason
from archlab.study._ledger import Ledger, PendingTrial
from archlab.study._limits import trial_memory_limit

__all__ = ["EXECUTORS", "SearchResult", "search"]

#: Where trials run: ``local`` (this process, or ``workers`` local processes), ``ray`` (Ray actors).
EXECUTORS = ("local", "ray")
#: The end of the reason of a trial whose worker died and whose arch was queued to run again.
REQUEUED = "; its arch was queued to run again"

Progress = Callable[[dict[str, Any]], None]
OnResult = Callable[[TrialRecord, EvalResult, bytes | None], None]


@dataclass
class SearchResult:
    """What a search loop leaves: the ledger, the records told, the best record by the first objective, the
    Pareto front over all objectives, and the budget spent."""

    ledger: Ledger
    records: list[TrialRecord]
    best: TrialRecord | None
    pareto: list[TrialRecord]
    elapsed_s: float
    cost_s: float
    exhausted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def best_record(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> TrialRecord | None:
    """The best completed record by the first objective (ties: fewer parameters, then the earlier trial)."""
    done = [r for r in records if r.ok]
    if not done:
        return None
    o = objectives[0]
    return max(done, key=lambda r: (o.oriented(r.metrics[o.metric]), -float(r.metrics.get("params", 0) or 0),
                                    -r.number))


def search(space: Any, evaluator: Evaluator, strategy: Strategy, ledger: Ledger, budget: Budget, *,
           constraints: Sequence[Constraint | Any] = (), workers: int = 1,
           median_stopping: MedianStopping | None = None, progress: Progress | None = None,
           on_result: OnResult | None = None, resume: bool = False, executor: str = "local",
           address: str = "local", trial_memory_mb: float | None = None) -> SearchResult:
    """Run ``strategy`` on ``space`` until ``budget`` is spent (or the space is exhausted).

    With ``resume`` the ledger's finished trials are replayed into the strategy (and the median-stopping rule)
    first, trials left running by a killed process are marked interrupted, and the clocks start where they
    stopped. ``trial_memory_mb`` caps how much a trial may grow its process's address space
    (:mod:`archlab.study._limits`; a trial past it fails with its reason). Under a wall-clock budget no trial
    starts with less than half the quickest trial's wall time left (it would end past the budget, or too short to
    compete). ``on_result(record, result, weights)`` sees every finished trial (``weights``: a worker's safetensors
    bytes of the trained model, when it returned one).
    """
    constraints = resolve_constraints(constraints)
    progress = progress or (lambda event: None)
    objectives = ledger.objectives
    if [o.name for o in strategy.objectives] != [o.name for o in objectives]:
        raise UserError(f"the strategy optimises {[o.name for o in strategy.objectives]} and the ledger records "
                        f"{[o.name for o in objectives]}: give both the same objectives")
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    instant = bool(getattr(evaluator, "instant", False))
    recovered = ledger.recover() if resume else 0
    # a trial whose worker died and whose arch was run again is not the strategy's: it never saw it
    records = [r for r in ledger.records() if not (r.reason or "").endswith(REQUEUED)] if resume else []
    strategy.rebuild(records)
    spent = [r.metrics.get("cost_s") for r in records]
    elapsed_before = 0.0
    for row in ledger.trials() if resume else []:  # the wall clock and the median rule as the last session left them
        elapsed_before = max(elapsed_before, float(row.get("search_elapsed_s") or 0.0))
        if median_stopping is not None and row["state"] == "COMPLETE" and row.get("status") == "complete":
            median_stopping.add(row.get("curve") or [], row.get("stopped"))
    clock = budget.clock(elapsed=elapsed_before, cost=sum(float(c) for c in spent if c is not None),
                         trials=len(records))
    size = space.size()
    best = best_record(records, objectives)
    progress({"event": "start", "resumed": bool(records) or recovered > 0, "trials": len(records),
              "budget_s": budget.seconds, "n_trials": budget.trials, "budget_cost_s": budget.cost_s})

    def finish(pending: PendingTrial, result: EvalResult, weights: bytes | None, requeued: bool = False) -> None:
        """Record a trial; a ``requeued`` one (its worker died, its arch runs again) is recorded as failed but
        neither told to the strategy nor charged to the budget."""
        nonlocal best
        if not requeued and result.state == "complete":
            missing = [o.metric for o in objectives if o.metric not in result.metrics]
            if missing:
                raise UserError(f"the evaluator reported no {', '.join(map(repr, missing))} metric for the "
                                f"objectives (it reported {sorted(result.metrics)})")
            reason = check_constraints(constraints, result.metrics)
            if reason:
                result.state, result.reason = "infeasible", reason
        if median_stopping is not None and not requeued and result.state == "complete":
            median_stopping.add(result.curve, result.metrics.get("stopped"))
        record = ledger.finish(pending, result, extra={"search_elapsed_s": clock.elapsed},
                               memo=None if requeued else strategy.memo(pending.arch))
        if not requeued:
            clock.charge(record.metrics.get("cost_s"))
            strategy.tell(record)
            if record.ok and (best is None or best_record([best, record], objectives) is record):
                best = record
            if on_result is not None:
                on_result(record, result, weights)
        o = objectives[0]
        progress({"event": "trial", "number": record.number, "state": record.state,
                  "value": record.metrics.get(o.metric), "objective": o.name,
                  "val_accuracy": record.metrics.get("val_accuracy"), "reason": record.reason,
                  "best_value": best.metrics[o.metric] if best else None,
                  "best_val_accuracy": best.metrics.get("val_accuracy") if best else None,
                  "best_number": best.number if best else None, "elapsed_s": clock.elapsed,
                  "cost_s": clock.cost, "budget_s": budget.seconds, "done": clock.trials,
                  "n_trials": budget.trials, "fraction": clock.fraction()})

    quickest = math.inf  # the wall seconds of the quickest trial so far

    def time_for_another() -> bool:
        left = clock.remaining_seconds()
        return left is None or quickest == math.inf or left >= 0.5 * quickest

    def evaluate_here(arch: Arch) -> EvalResult:
        nonlocal quickest
        monitor = median_stopping.monitor() if median_stopping is not None else None
        started = time.perf_counter()
        try:
            with trial_memory_limit(trial_memory_mb):
                return evaluator(arch, monitor=monitor, seconds=clock.remaining_seconds())
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # whatever one arch raises fails its trial, never the search
            return EvalResult("failed", reason=failure_reason(e))
        finally:
            quickest = min(quickest, time.perf_counter() - started)

    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    retry: list[Arch] = []  # archs whose trial's worker died, to run once more
    retried: set[Arch] = set()

    def lost(pending: PendingTrial, reason: str) -> None:
        """A trial whose worker died: recorded as failed; its arch runs once more (a second death fails it)."""
        if pending.arch in retried:
            finish(pending, EvalResult("failed", reason=reason), None)
            return
        retried.add(pending.arch)
        retry.append(pending.arch)
        finish(pending, EvalResult("failed", reason=f"{reason}{REQUEUED}"), None, requeued=True)

    pool = None
    if executor == "ray":  # Ray actors, even for one worker: the trials run where the cluster has room
        from archlab.study._ray import RayPool

        factory = evaluator_factory(evaluator)
        if hasattr(factory, "with_data") and getattr(evaluator, "data", None) is not None:
            factory = factory.with_data(evaluator.data)  # the data reaches the cluster through its object store
        pool = RayPool(factory, workers, address=address, memory_mb=trial_memory_mb)
    elif workers > 1:
        from archlab.study._pool import TrialPool

        pool = TrialPool(evaluator_factory(evaluator), workers, memory_mb=trial_memory_mb)
    in_flight: dict[Future, PendingTrial] = {}
    submitted: dict[Future, float] = {}
    exhausted, restarts = False, 0
    try:
        while True:
            while (not exhausted or retry) and len(in_flight) < workers and clock.may_start(len(in_flight)) \
                    and time_for_another() and (not strategy.dedupe or len(strategy.history) + len(in_flight) < size):
                if retry:  # the arch of a trial whose worker died, once more (the strategy still awaits it)
                    arch = retry.pop(0)
                else:
                    try:
                        arch = strategy.ask()
                    except SearchExhausted:
                        exhausted = True
                        break
                pending = ledger.start(arch, mark_running=not instant)
                progress({"event": "trial_start", "number": pending.number, "arch": arch.to_dict()})
                if pool is None:
                    finish(pending, evaluate_here(arch), None)
                else:
                    future = pool.submit(arch, median_stopping, clock.remaining_seconds())
                    in_flight[future], submitted[future] = pending, time.perf_counter()
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                pending = in_flight.pop(future)
                quickest = min(quickest, time.perf_counter() - submitted.pop(future))
                try:
                    result, weights = future.result()
                except BrokenProcessPool as e:  # a worker was killed (out of memory, signal)
                    broken = True
                    lost(pending, f"worker process died ({e})")
                    continue
                finish(pending, result, weights)
            if broken and pool is not None:
                for future, pending in list(in_flight.items()):  # the pool took them all down
                    in_flight.pop(future)
                    lost(pending, "worker process died (pool restarted)")
                restarts += 1
                if restarts > 3:
                    raise WorkersDied(f"the search's {workers} worker processes kept dying (4 times); the trials "
                                      f"so far are in the ledger")
                pool.restart()
            elif done:
                restarts = 0
    finally:
        if pool is not None:
            pool.close()
    records = list(strategy.history)
    return SearchResult(ledger=ledger, records=records, best=best, pareto=pareto_front(records, objectives),
                        elapsed_s=clock.elapsed, cost_s=clock.cost, exhausted=exhausted)

"""Trials in parallel on one machine: a pool of evaluator processes, each with its share of the cores.

The small nets a search trains on a CPU use a second thread poorly (a training step of a 300k-parameter
MetaFormer at batch 128 is about 1.3x faster on two threads than on one), so trials side by side with fewer
threads each might get more training done per minute. On a 2-core machine they do not (0.93x on the same archs,
``benchmarks/parallel_trials.py``); machines with more cores are not measured yet. Each worker is a separate
process started with ``spawn`` (forking a process whose OpenMP threads have run can hang the child); it rebuilds
the evaluator once from its picklable factory (:func:`archlab.study.evaluator_factory`) and then evaluates archs
sent to it, returning the result and the trained weights (as safetensors bytes). The search loop keeps the ledger,
the strategy and the median-stopping rule in its own process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

import torch

from archlab.search import MedianStopping
from archlab.space import Arch
from archlab.study._evaluator import EvalResult, Evaluator, failure_reason

__all__ = ["TrialPool", "threads_per_worker"]

_EVALUATOR: Evaluator | None = None


def threads_per_worker(workers: int) -> int:
    """The cores of this machine shared out between ``workers`` processes (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(factory: Callable[[], Evaluator], threads: int) -> None:
    global _EVALUATOR
    torch.set_num_threads(threads)
    _EVALUATOR = factory()


def _evaluate(arch: Arch, stopper: MedianStopping | None, seconds: float | None) -> tuple[EvalResult, bytes | None]:
    from safetensors.torch import save

    assert _EVALUATOR is not None, "worker not initialised"
    try:
        result = _EVALUATOR(arch, monitor=stopper.monitor() if stopper is not None else None, seconds=seconds)
    except Exception as e:  # one arch's failure fails its trial, never the worker
        return EvalResult("failed", reason=failure_reason(e)), None
    weights = None
    if result.model is not None:
        weights = save({k: v.detach().contiguous().clone() for k, v in result.model.state_dict().items()})
        result.model = None
    return result, weights


class TrialPool:
    """``workers`` processes, each evaluating archs with the evaluator ``factory()`` builds."""

    def __init__(self, factory: Callable[[], Evaluator], workers: int) -> None:
        self.workers = workers
        self._args = (factory, threads_per_worker(workers))
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=self._args)

    def submit(self, arch: Arch, stopper: MedianStopping | None,
               seconds: float | None) -> Future[tuple[EvalResult, bytes | None]]:
        return self._executor.submit(_evaluate, arch, stopper, seconds)

    def restart(self) -> None:
        """A fresh set of processes after one died (its trial is recorded as failed by the caller)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._start()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

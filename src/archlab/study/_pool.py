"""Trials in parallel on one machine: a pool of evaluator processes, each with its share of the cores.

The small nets a search trains on a CPU use a second thread poorly (a training step of a 300k-parameter
MetaFormer at batch 128 is about 1.3x faster on two threads than on one), so trials side by side with fewer
threads each might get more training done per minute. On a 2-core machine they do not (0.93x on the same archs,
``benchmarks/parallel_trials.py``); machines with more cores are not measured yet. Each worker is a separate
process started with ``spawn`` (forking a process whose OpenMP threads have run can hang the child); it rebuilds
the evaluator once from its picklable factory (:func:`archlab.study.evaluator_factory`) and then evaluates archs
sent to it, returning the result and the trained weights (as safetensors bytes). The search loop keeps the ledger,
the strategy and the median-stopping rule in its own process. A worker ends when the search process does, however
that ends (:func:`_die_with`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

import torch

from archlab.search import MedianStopping
from archlab.space import Arch
from archlab.study._evaluator import EvalResult, Evaluator, failure_reason
from archlab.study._limits import trial_memory_limit

__all__ = ["TrialPool", "run_trial", "threads_per_worker"]

_EVALUATOR: Evaluator | None = None
_MEMORY_MB: float | None = None


def threads_per_worker(workers: int) -> int:
    """The cores of this machine shared out between ``workers`` processes (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _die_with(parent: int) -> None:
    """End this worker as soon as the search process that started it is gone (killed, even by SIGKILL): on Linux
    the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); everywhere, a daemon thread checks the
    parent every half second, so no orphaned worker keeps training (and holding memory) for minutes."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="archlab-parent-watch", daemon=True).start()


def _init_worker(factory: Callable[[], Evaluator], threads: int, parent: int | None = None,
                 memory_mb: float | None = None) -> None:
    global _EVALUATOR, _MEMORY_MB
    if parent is not None:
        _die_with(parent)
    _MEMORY_MB = memory_mb
    torch.set_num_threads(threads)
    _EVALUATOR = factory()


def _evaluate(arch: Arch, stopper: MedianStopping | None, seconds: float | None) -> tuple[EvalResult, bytes | None]:
    assert _EVALUATOR is not None, "worker not initialised"
    return run_trial(_EVALUATOR, arch, stopper, seconds, _MEMORY_MB)


def run_trial(evaluator: Evaluator, arch: Arch, stopper: MedianStopping | None, seconds: float | None,
              memory_mb: float | None = None) -> tuple[EvalResult, bytes | None]:
    """One trial in a worker (a local process or a Ray actor): the result, and the trained weights as safetensors
    bytes (the model itself does not cross processes); ``memory_mb`` limits the trial's growth in memory."""
    from safetensors.torch import save

    try:
        with trial_memory_limit(memory_mb):
            result = evaluator(arch, monitor=stopper.monitor() if stopper is not None else None, seconds=seconds)
    except Exception as e:  # one arch's failure fails its trial, never the worker
        return EvalResult("failed", reason=failure_reason(e)), None
    weights = None
    if result.model is not None:
        weights = save({k: v.detach().contiguous().clone() for k, v in result.model.state_dict().items()})
        result.model = None
    return result, weights


class TrialPool:
    """``workers`` processes, each evaluating archs with the evaluator ``factory()`` builds."""

    def __init__(self, factory: Callable[[], Evaluator], workers: int, memory_mb: float | None = None) -> None:
        self.workers = workers
        self._args = (factory, threads_per_worker(workers), os.getpid(), memory_mb)
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

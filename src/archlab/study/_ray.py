"""Trials on a Ray cluster (``--executor ray``), with the interface of the local ``TrialPool``.

Ray (``pip install "archlab[ray]"``) is the distributed engine; archlab adds no scheduler of its own. ``workers``
Ray actors are started, each declaring ``cpus`` CPUs (and ``gpus`` GPUs) so Ray places them on machines that have
them; each builds the evaluator once from its factory and then evaluates the archs sent to it. The factory goes
into Ray's object store once (with the dataset, when the factory carries it: a cluster's machines need not have the
data files) and every actor reads it from there. Results (and the trained weights, as safetensors bytes) come back
to the driver, which alone writes the ledger, exactly as with local workers.

``address``: ``"local"`` starts a Ray instance on this machine for the search (stopped with it), ``"auto"``
connects to the cluster this machine belongs to (``ray start --head`` / ``ray start --address ...``), and
``"ray://host:10001"`` connects through Ray Client. An actor that dies (its machine lost, out of memory) fails its
trial like a dead local worker: the pool is restarted and the search goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from archlab.errors import UserError
from archlab.search import MedianStopping
from archlab.space import Arch
from archlab.study._evaluator import EvalResult, Evaluator

__all__ = ["RayPool", "import_ray"]


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError('--executor ray needs Ray: pip install "archlab[ray]"') from None
    return ray


class _Worker:
    """One Ray actor: the evaluator built once, then archs evaluated one at a time."""

    def __init__(self, factory: Callable[[], Evaluator], threads: int, memory_mb: float | None = None) -> None:
        import torch

        torch.set_num_threads(threads)
        self.evaluator = factory()
        self.memory_mb = memory_mb

    def evaluate(self, arch: Arch, stopper: MedianStopping | None,
                 seconds: float | None) -> tuple[EvalResult, bytes | None]:
        from archlab.study._pool import run_trial

        return run_trial(self.evaluator, arch, stopper, seconds, self.memory_mb)


class RayPool:
    """``workers`` Ray actors evaluating archs with the evaluator ``factory()`` builds."""

    def __init__(self, factory: Callable[[], Evaluator], workers: int, *, address: str = "local",
                 cpus: float | None = None, gpus: float = 0.0, memory_mb: float | None = None) -> None:
        ray = self._ray = import_ray()
        self.workers = workers
        self._owns = False
        if not ray.is_initialized():
            try:
                if address == "local":
                    ray.init(include_dashboard=False, log_to_driver=False)
                    self._owns = True
                else:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except Exception as e:  # unreachable cluster, bad address
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"cannot start or reach Ray at --address {address}: {msg}") from None
        total = float(ray.cluster_resources().get("CPU", 1.0))
        self.cpus = float(cpus) if cpus is not None else max(1.0, total // workers)
        self.gpus = float(gpus)
        self.memory_mb = memory_mb
        self._factory_ref = ray.put(factory)  # once, for every actor
        self._actor_class = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)(_Worker)
        self._start()

    def _start(self) -> None:
        threads = max(1, int(self.cpus))
        self._actors = [self._actor_class.remote(self._factory_ref, threads, self.memory_mb)
                        for _ in range(self.workers)]
        self._busy: dict[int, int] = {i: 0 for i in range(self.workers)}

    def submit(self, arch: Arch, stopper: MedianStopping | None,
               seconds: float | None) -> Future[tuple[EvalResult, bytes | None]]:
        ray = self._ray
        index = min(self._busy, key=lambda i: (self._busy[i], i))  # the least busy actor
        self._busy[index] += 1
        ref = self._actors[index].evaluate.remote(arch, stopper, seconds)
        out: Future[tuple[EvalResult, bytes | None]] = Future()

        def done(inner: Future) -> None:
            self._busy[index] = max(0, self._busy[index] - 1)
            try:
                out.set_result(inner.result())
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as e:  # the actor or its machine is gone: as a dead local worker
                out.set_exception(BrokenProcessPool(f"Ray actor died: {type(e).__name__}"))
            except Exception as e:
                out.set_exception(e)

        ref.future().add_done_callback(done)
        return out

    def restart(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._start()

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owns:
            self._ray.shutdown()

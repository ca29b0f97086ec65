"""Evaluators: arch in, :class:`EvalResult` out (metrics, cost, learning curve, optionally the trained model).

:class:`Evaluator` is the seam every way of scoring an arch plugs into — training it at a fidelity
(:class:`TrainingEvaluator`, here), looking it up in a tabular benchmark, inheriting a supernet's weights, or
computing a zero-cost proxy — without touching the search loop. An evaluator reports whatever metrics it has;
objectives and constraints name them. ``metrics["cost_s"]`` is what a trial costs (charged to a cost-clock
:class:`~archlab.study.Budget`).

:class:`TrainingEvaluator` measures parameters, FLOPs and latency before training and checks the constraints on
them there, so an arch that cannot meet them costs a build and a measurement, not a training run. Test accuracy
is measured for the record but is never shown to a strategy (nor for a trial stopped early for being behind
the others: that would cost a test pass per cheap look).
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from archlab.data import Dataset
from archlab.errors import UserError
from archlab.export import load_weights
from archlab.measure import count_flops, count_params, measure_latency
from archlab.search import EARLY_STOPS, Constraint, resolve_constraints
from archlab.space import Arch, Space
from archlab.train import TrainConfig, TrialFailed, eval_batch_size, evaluate, seed_everything, train_model
from archlab.train._precision import autocast, resolve_precision

__all__ = ["EvalResult", "Evaluator", "TrainingEvaluator", "check_constraints", "evaluator_factory",
           "failure_reason"]

Monitor = Callable[[dict[str, Any]], str | None]


@dataclass
class EvalResult:
    """One evaluation: ``state`` is ``complete``, ``failed`` or ``infeasible``; ``metrics`` what was measured
    (``cost_s`` is the trial's charge); ``curve`` the learning curve's points; ``model`` the trained module when
    asked for."""

    state: str
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None


@runtime_checkable
class Evaluator(Protocol):
    """Scores an arch. ``monitor(point)`` (optional) is called with each learning-curve point and may answer a
    reason to stop (median stopping); ``seconds`` (optional) caps the time the evaluation may take.

    Optional attributes a search loop reads: ``instant`` (True for lookups and proxies: the ledger writes such a
    trial once, when it is done, instead of marking it running first), and ``factory()`` (a picklable zero-argument
    callable that rebuilds the evaluator in a worker process; without it the evaluator itself is pickled)."""

    def __call__(self, arch: Arch, *, monitor: Monitor | None = None,
                 seconds: float | None = None) -> EvalResult: ...


def failure_reason(e: BaseException) -> str:
    """One line naming an exception and where it was raised (the ledger's reason of a failed trial)."""
    if isinstance(e, TrialFailed):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}{where}"


def check_constraints(constraints: Sequence[Constraint], metrics: dict[str, Any]) -> str | None:
    """Record each constraint's violation in ``metrics["constraints"]`` (Optuna's convention, <= 0 when met)
    and return the reason an arch is infeasible, or None."""
    if not constraints:
        return None
    metrics["constraints"] = [c.violation(metrics) for c in constraints]
    broken = [c.describe(metrics) for c in constraints if not c.met(metrics)]
    return "constraint: " + ", ".join(broken) if broken else None


def _identity(evaluator: Evaluator) -> Evaluator:
    return evaluator


def evaluator_factory(evaluator: Evaluator) -> Callable[[], Evaluator]:
    """A picklable zero-argument callable that gives ``evaluator`` in another process: its own ``factory()`` when
    it has one that returns a factory, else the evaluator itself, pickled."""
    make = getattr(evaluator, "factory", None)
    built = make() if callable(make) else None
    return built if built is not None else functools.partial(_identity, evaluator)


class TrainingEvaluator:
    """Trains archs of ``space`` on ``data`` with ``train_config``; ``constraints`` (on ``params``, ``flops``,
    ``latency_ms``, measured before training) make an arch infeasible untrained. ``measure=False`` skips those
    measurements (an arch whose costs are already known, trained again)."""

    curves = True

    def __init__(self, space: Space, data: Dataset, train_config: TrainConfig,
                 constraints: Sequence[Any] = (), train_subset: int | None = None,
                 latency_repeats: int = 20, keep_model: bool = True,
                 factory: Callable[[], TrainingEvaluator] | None = None, measure: bool = True) -> None:
        self.space = space
        self.data = data
        self.config = train_config
        self.constraints = resolve_constraints(constraints)
        self.train_data = data.subset_train(train_subset, seed=train_config.seed) if train_subset else data
        self.latency_repeats = latency_repeats
        self.keep_model = keep_model
        self._factory = factory
        self.measures = measure
        if not measure and self.constraints:
            raise UserError("a TrainingEvaluator with constraints must measure (measure=True)")

    def factory(self) -> Callable[[], TrainingEvaluator] | None:
        """The factory given (a run's configuration rebuilds the evaluator in a worker), or None."""
        return self._factory

    def measure(self, model: nn.Module) -> dict[str, Any]:
        shape, dtype = self.data.input_shape, self.data.input_dtype
        return {"params": count_params(model), "flops": count_flops(model, shape, input_dtype=dtype),
                "latency_ms": measure_latency(model, shape, repeats=self.latency_repeats, input_dtype=dtype)}

    #: examples in the timed forward pass that estimates an arch's validation pass
    PROBE_BATCH = 64

    def _eval_seconds(self, model: nn.Module, cfg: TrainConfig) -> float:
        """The seconds one validation pass of ``model`` takes, from a timed batched forward in the trial's
        precision (the batch-1 latency is no guide: batching speeds a small CNN up ~3x an example and an
        attention-heavy arch ~1.3x, so a guess from it let such an arch evaluate for minutes past its trial)."""
        x = self.data.x_val
        n = min(self.PROBE_BATCH, len(x))
        precision = resolve_precision(cfg.precision, x.device, tuple(x.shape[1:]))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), autocast(precision, x.device):
                model(x[:2])  # warm-up: the first call allocates
                t = time.perf_counter()
                model(x[:n])
                per_example = (time.perf_counter() - t) / n
        finally:
            model.train(was_training)
        return per_example * len(x)

    def _too_slow(self, model: nn.Module, cfg: TrainConfig) -> str | None:
        """Under a time fidelity, why an arch cannot be judged in its trial's time: its validation pass alone,
        timed on a batch, would take more than half the trial (such an arch trained for one step and then
        evaluated for minutes past its budget)."""
        if cfg.max_seconds is None:
            return None
        estimate = self._eval_seconds(model, cfg)
        if estimate <= 0.5 * cfg.max_seconds:
            return None
        return (f"too slow for its trial: one validation pass would take about {estimate:.0f} s "
                f"({estimate / len(self.data.y_val) * 1e3:.1f} ms an example, batched) of the trial's "
                f"{cfg.max_seconds:.0f} s")

    def __call__(self, arch: Arch, config: TrainConfig | None = None, keep_model: bool | None = None,
                 on_epoch: Monitor | None = None, init_weights: str | os.PathLike | None = None, *,
                 monitor: Monitor | None = None, seconds: float | None = None) -> EvalResult:
        """Evaluate ``arch``; ``init_weights`` (a safetensors file) starts training from saved weights, ``config``
        replaces the training configuration. ``seconds`` caps the whole evaluation under a time fidelity: what the
        measurements took is taken from the training's seconds, and the training leaves time for the validation
        and test evaluations (a search's last trial ends with its budget)."""
        cfg = config or self.config
        keep = self.keep_model if keep_model is None else keep_model
        on_epoch = on_epoch or monitor
        start = time.perf_counter()
        metrics: dict[str, Any] = {}
        try:
            seed_everything(cfg.seed)
            model = self.space.build(arch)
            if init_weights is not None:
                load_weights(model, init_weights)
            if self.measures:
                metrics.update(self.measure(model))
            reason = check_constraints(self.constraints, metrics)
            if reason:
                metrics["cost_s"] = time.perf_counter() - start
                return EvalResult("infeasible", metrics, reason=reason)
            if seconds is not None and cfg.max_seconds is not None:
                left = seconds - (time.perf_counter() - start)
                cfg = replace(cfg, max_seconds=max(0.5, min(cfg.max_seconds, left)))
            too_slow = self._too_slow(model, cfg)
            if too_slow:
                metrics["cost_s"] = time.perf_counter() - start
                return EvalResult("infeasible", metrics, reason=too_slow)
            d, full = self.train_data, self.data  # a training subset keeps the full validation and test splits
            # a monitor may ask for evaluations inside an epoch (successive halving's rungs: its ``eval_at``)
            result = train_model(model, d.x_train, d.y_train, full.x_val, full.y_val, cfg, on_epoch=on_epoch,
                                 eval_after=len(full.y_test), eval_at=getattr(on_epoch, "eval_at", ()))
            metrics.update(val_accuracy=result.val_accuracy, val_loss=result.val_loss, epochs=result.epochs,
                           stopped=result.stopped)
            if result.stopped not in EARLY_STOPS:  # a trial stopped for being behind is not worth its test pass
                metrics["test_loss"], metrics["test_accuracy"] = evaluate(model, full.x_test, full.y_test,
                                                                          eval_batch_size(cfg))
            metrics["cost_s"] = time.perf_counter() - start
            return EvalResult("complete", metrics, curve=result.curve, model=model if keep else None)
        except Exception as e:  # any failure of one arch fails its trial, never the search
            metrics["cost_s"] = time.perf_counter() - start
            return EvalResult("failed", metrics, reason=failure_reason(e))

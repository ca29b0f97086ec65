"""Evaluating one arch: build, measure, check the constraints, train at the search fidelity, test.

Constraints on parameters, FLOPs and latency are checked before training, so an arch that cannot meet them
costs a build and a measurement, not a training run. Test accuracy is measured for the record but is never
shown to a strategy (see :class:`~archlab.search.TrialRecord`).
"""

from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlab.data import Dataset
from archlab.errors import UserError
from archlab.export import load_weights
from archlab.measure import count_flops, count_params, measure_latency
from archlab.space import Arch, Space
from archlab.train import TrainConfig, TrialFailed, evaluate, seed_everything, train_model

__all__ = ["Constraints", "EvalResult", "Evaluator"]


@dataclass(frozen=True)
class Constraints:
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_params", "max_flops", "max_latency_ms"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {v}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_params, self.max_flops, self.max_latency_ms))

    def violations(self, metrics: dict[str, Any]) -> list[float]:
        """One value per active constraint: ``value / limit - 1`` (<= 0 when met), Optuna's convention."""
        out = []
        for key, limit in (("params", self.max_params), ("flops", self.max_flops),
                           ("latency_ms", self.max_latency_ms)):
            if limit is not None:
                out.append(float(metrics[key]) / float(limit) - 1.0)
        return out

    def reason(self, metrics: dict[str, Any]) -> str | None:
        broken = []
        for key, limit in (("params", self.max_params), ("flops", self.max_flops),
                           ("latency_ms", self.max_latency_ms)):
            if limit is not None and metrics[key] > limit:
                broken.append(f"{key} {metrics[key]:.4g} > {limit:.4g}")
        return "constraint: " + ", ".join(broken) if broken else None

    def to_dict(self) -> dict[str, Any]:
        return {"max_params": self.max_params, "max_flops": self.max_flops, "max_latency_ms": self.max_latency_ms}


@dataclass
class EvalResult:
    state: str  # complete | failed | infeasible
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None


class Evaluator:
    """Trains archs of ``space`` on ``data`` with ``train_config`` under ``constraints``."""

    def __init__(self, space: Space, data: Dataset, train_config: TrainConfig,
                 constraints: Constraints = Constraints(), train_subset: int | None = None,
                 latency_repeats: int = 20) -> None:
        self.space = space
        self.data = data
        self.config = train_config
        self.constraints = constraints
        self.train_data = data.subset_train(train_subset, seed=train_config.seed) if train_subset else data
        self.latency_repeats = latency_repeats

    def measure(self, model: nn.Module) -> dict[str, Any]:
        shape, dtype = self.data.input_shape, self.data.input_dtype
        return {"params": count_params(model), "flops": count_flops(model, shape, input_dtype=dtype),
                "latency_ms": measure_latency(model, shape, repeats=self.latency_repeats, input_dtype=dtype)}

    def __call__(self, arch: Arch, config: TrainConfig | None = None, keep_model: bool = False,
                 on_epoch: Any = None, init_weights: str | os.PathLike | None = None) -> EvalResult:
        """Evaluate ``arch``; ``init_weights`` (a safetensors file) starts training from saved weights."""
        cfg = config or self.config
        start = time.perf_counter()
        metrics: dict[str, Any] = {}
        try:
            seed_everything(cfg.seed)
            model = self.space.build(arch)
            if init_weights is not None:
                load_weights(model, init_weights)
            metrics.update(self.measure(model))
            if self.constraints.active:
                metrics["constraints"] = self.constraints.violations(metrics)
                reason = self.constraints.reason(metrics)
                if reason:
                    metrics["cost_s"] = time.perf_counter() - start
                    return EvalResult("infeasible", metrics, reason=reason)
            d = self.train_data
            result = train_model(model, d.x_train, d.y_train, d.x_val, d.y_val, cfg, on_epoch=on_epoch)
            if self.train_data is not self.data:  # validation on the full validation split
                val_loss, val_acc = evaluate(model, self.data.x_val, self.data.y_val)
            else:
                val_loss, val_acc = result.val_loss, result.val_accuracy
            test_loss, test_acc = evaluate(model, self.data.x_test, self.data.y_test)
            metrics.update(val_accuracy=val_acc, val_loss=val_loss, test_accuracy=test_acc, test_loss=test_loss,
                           epochs=result.epochs, stopped=result.stopped)
            metrics["cost_s"] = time.perf_counter() - start
            return EvalResult("complete", metrics, curve=result.curve, model=model if keep_model else None)
        except TrialFailed as e:
            metrics["cost_s"] = time.perf_counter() - start
            return EvalResult("failed", metrics, reason=str(e))
        except (RuntimeError, ValueError, TypeError, IndexError, torch.cuda.OutOfMemoryError,
                MemoryError, UserError) as e:
            metrics["cost_s"] = time.perf_counter() - start
            where = traceback.extract_tb(e.__traceback__)[-1]
            return EvalResult("failed", metrics,
                              reason=f"{type(e).__name__}: {e} ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")

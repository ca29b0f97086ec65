"""Cost measurements shared by the evaluator, the zoo profiler and the benchmarks.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as two FLOPs; ops it does
not model, such as pooling and element-wise activations, count as zero). Latency is the median wall time of
repeated forward passes after warm-up, in inference mode, on one thread by default so that numbers are
comparable between runs on a loaded machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_params", "measure_latency", "profile_model"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def count_flops(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1) -> int:
    """FLOPs of one forward pass on a batch of ``batch_size`` inputs of ``input_shape``."""
    x = torch.zeros(batch_size, *input_shape)
    with _eval_mode(model), torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    return int(counter.get_total_flops())


def measure_latency(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, repeats: int = 30,
                    warmup: int = 5, threads: int | None = 1) -> float:
    """Median milliseconds of a forward pass (inference mode) over ``repeats`` runs after ``warmup``."""
    x = torch.randn(batch_size, *input_shape)
    times = []
    with _eval_mode(model), torch.inference_mode(), _threads(threads):
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def profile_model(model: nn.Module, input_shape: Sequence[int], latency_batches: Sequence[int] = (1,),
                  repeats: int = 30) -> dict[str, Any]:
    """Params, FLOPs (batch 1) and median CPU latency at each of ``latency_batches``."""
    out: dict[str, Any] = {"params": count_params(model), "flops": count_flops(model, input_shape)}
    for b in latency_batches:
        out[f"latency_ms_b{b}"] = measure_latency(model, input_shape, batch_size=b, repeats=repeats)
    return out

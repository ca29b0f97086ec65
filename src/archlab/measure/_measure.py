"""Cost measurements shared by the evaluator, the zoo profiler and the benchmarks.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as two FLOPs; ops it does
not model, such as pooling and element-wise activations, count as zero). Its registry has no formula for the
CPU kernel of ``scaled_dot_product_attention`` (it counted attention as zero FLOPs on a CPU model, and in full on
the meta device); archlab adds torch's own SDPA formula for that kernel, so both devices agree. Latency is the
median wall time of repeated forward passes after warm-up, in inference mode, on one thread by default so that
numbers are comparable between runs on a loaded machine.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

__all__ = ["count_flops", "count_params", "example_input", "measure_latency", "peak_activation_bytes",
           "profile_model"]


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,  # noqa: ANN001
                            out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


#: Formulas FlopCounterMode lacks: the CPU flash-attention kernels behind ``F.scaled_dot_product_attention``.
_EXTRA_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}


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


def example_input(input_shape: Sequence[int], batch_size: int = 1, input_dtype: str = "float",
                  device: torch.device | str | None = None) -> torch.Tensor:
    """A batch for measuring: random floats for images/features, token ids (0 or 1) for ``input_dtype="long"``."""
    if input_dtype == "long":
        return torch.randint(0, 2, (batch_size, *input_shape), device=device)
    if input_dtype != "float":
        raise ValueError(f"input_dtype must be 'float' or 'long', got {input_dtype!r}")
    return torch.randn(batch_size, *input_shape, device=device)


def count_flops(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, input_dtype: str = "float") -> int:
    """FLOPs of one forward pass on a batch of ``batch_size`` inputs of ``input_shape``.

    Works on a model on the ``meta`` device too (shapes only, no memory), which is how the zoo counts the
    FLOPs of models too large to build.
    """
    device = next((p.device for p in model.parameters()), None)
    x = example_input(input_shape, batch_size, input_dtype, device=device)
    # grad mode stays on: FlopCounterMode's module tracker hooks the autograd graph, and under no_grad a view
    # of a parameter (a mixer's learned latents, say) requires grad without a grad_fn, which it rejects
    with _eval_mode(model):
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)
        with counter:
            model(x)
    return int(counter.get_total_flops())


def measure_latency(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, repeats: int = 30,
                    warmup: int = 5, threads: int | None = 1, input_dtype: str = "float") -> float:
    """Median milliseconds of a forward pass (inference mode) over ``repeats`` runs after ``warmup``."""
    x = example_input(input_shape, batch_size, input_dtype)
    times = []
    with _eval_mode(model), torch.inference_mode(), _threads(threads):
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages created by operators while they are alive, and their peak."""

    def __init__(self, exclude: Sequence[torch.Tensor] = ()) -> None:
        super().__init__()
        # parameters, buffers and the input (and views of them, which share their storage) are not activations
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors referring to it]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key == 0 or key in self.exclude:
                    continue
                if key in self.live:
                    self.live[key][1] += 1
                else:
                    self.live[key] = [storage.nbytes(), 1]
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                weakref.finalize(t, self._release, key)
        return out


def peak_activation_bytes(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1,
                          input_dtype: str = "float") -> int:
    """Peak bytes of intermediate tensors alive at once during one inference forward pass.

    Counts every storage an operator creates from its creation until the last tensor using it is freed;
    parameters and the input are not counted. This is the activation memory an inference runtime that frees
    tensors eagerly needs (PyTorch eager on CPU behaves so).
    """
    x = example_input(input_shape, batch_size, input_dtype)
    tracker = _LiveBytes([x, *model.parameters(), *model.buffers()])
    with _eval_mode(model), torch.no_grad(), tracker:
        out = model(x)
    del out
    return int(tracker.peak)


def profile_model(model: nn.Module, input_shape: Sequence[int], latency_batches: Sequence[int] = (1,),
                  repeats: int = 30, input_dtype: str = "float", memory: bool = False) -> dict[str, Any]:
    """Params, FLOPs (batch 1) and median CPU latency at each of ``latency_batches``; with ``memory``, also the
    peak activation bytes at batch 1."""
    out: dict[str, Any] = {"params": count_params(model),
                           "flops": count_flops(model, input_shape, input_dtype=input_dtype)}
    for b in latency_batches:
        out[f"latency_ms_b{b}"] = measure_latency(model, input_shape, batch_size=b, repeats=repeats,
                                                  input_dtype=input_dtype)
    if memory:
        out["peak_activation_bytes"] = peak_activation_bytes(model, input_shape, input_dtype=input_dtype)
    return out

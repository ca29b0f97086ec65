"""Training precision: float32, or bfloat16 autocast (with the channels-last memory format for convolutions).

bfloat16 autocast runs the matrix products and convolutions of the forward pass in bfloat16 while the weights,
their gradients and the optimizer stay in float32 (mixed precision, Micikevicius et al. 2018, with bfloat16's
float32 exponent range, so no loss scaling). On a CPU with native bfloat16 instructions (``avx512_bf16`` / AMX)
it is much faster: on the 2-core Zen 4 of ``benchmarks/cpu_precision.py`` the textbook CNN trains 1.83x faster
per step, 2.41x with channels-last activations. On a CPU without them bfloat16 is emulated and slower, so
``"auto"`` takes it only where it is native, and there only for images of at least 16 pixels a side: on 8x8
digits, in one 20-second run through :func:`~archlab.train.train_model`, the textbook CNN trained only 6 % more
epochs in bf16 and tested lower (98.6 against 99.2 %). On CUDA ``"auto"`` is always bf16.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from archlab.errors import UserError

__all__ = ["PRECISIONS", "autocast", "check_precision", "channels_last_works", "describe_precision", "native_bf16",
           "resolve_precision", "to_channels_last", "to_contiguous"]

#: "fp32": full precision; "bf16": bfloat16 autocast; "auto": bf16 on CUDA, and on a CPU with native bfloat16 for
#: images of at least AUTO_MIN_SIDE pixels a side
PRECISIONS = ("fp32", "bf16", "auto")
AUTO_MIN_SIDE = 16


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (oneDNN's check for ``avx512_bf16`` or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: torch.device | str, input_shape: tuple[int, ...] | None = None) -> str:
    """``"fp32"`` or ``"bf16"``: what ``precision`` means on ``device`` for examples of ``input_shape`` (one
    example, no batch; needed by "auto" on a CPU, which otherwise stays in float32)."""
    check_precision(precision)
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16"
    image = input_shape is not None and len(input_shape) == 3 and min(input_shape[1:]) >= AUTO_MIN_SIDE
    return "bf16" if kind == "cpu" and native_bf16() and image else "fp32"


def describe_precision(precision: str, device: torch.device | str, input_shape: tuple[int, ...] | None) -> str:
    """One line for a report: what ``precision`` resolved to on ``device`` for these inputs, and why."""
    chosen = resolve_precision(precision, device, input_shape)
    what = "bfloat16 autocast, channels-last convolutions" if chosen == "bf16" else "float32"
    if precision != "auto":
        return f"{what} (asked: {precision})"
    kind = torch.device(device).type
    why = ("CUDA" if kind == "cuda" else
           f"this CPU computes bfloat16 natively and the inputs are images of >= {AUTO_MIN_SIDE} pixels a side"
           if chosen == "bf16"
           else "this CPU has no native bfloat16" if kind == "cpu" and not native_bf16()
           else "bfloat16 does not pay on inputs this small or not images")
    return f"{what} (auto: {why})"


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The forward pass's context: bfloat16 autocast on ``device`` for ``"bf16"``, nothing for ``"fp32"`` (resolve
    ``"auto"`` first with :func:`resolve_precision`: here it means float32 on a CPU)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def channels_last_works(model: nn.Module, example: torch.Tensor) -> bool:
    """Whether ``model`` has 2-D convolutions and runs on channels-last images: a forward pass of ``example``
    (a small image batch) in eval mode, without gradients and without touching the random state. A model that
    reshapes its activations with ``view`` fails on channels-last tensors; it then trains contiguous."""
    if example.dim() != 4 or not example.is_floating_point() or not _has_conv2d(model):
        return False
    was_training = model.training
    to_channels_last(model)
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(example.contiguous(memory_format=torch.channels_last))
        return True
    except RuntimeError:
        to_contiguous(model)
        return False
    finally:
        model.train(was_training)


def to_channels_last(model: nn.Module) -> nn.Module:
    """The 4-D parameters and buffers of ``model`` in the channels-last format, in place."""
    return model.to(memory_format=torch.channels_last)


def to_contiguous(model: nn.Module) -> nn.Module:
    """Back to the default (contiguous) format, in place: safetensors and ONNX export want contiguous weights."""
    return model.to(memory_format=torch.contiguous_format)


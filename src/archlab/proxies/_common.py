"""What every zero-cost proxy shares: which layers the proxies score, and running a model without side effects.

The references (SamsungLabs/zero-cost-nas and NASLib, ``foresight/pruners/p_utils.py::get_layer_metric_array``)
score the weights of ``nn.Conv2d`` and ``nn.Linear`` layers only. Here the 1-d and 3-d convolutions count too
(:data:`WEIGHT_LAYERS`): on a network made of ``Conv2d`` and ``Linear`` layers the scores are the references',
and a 1-d CNN (time series, sequences) is not reduced to its classifier head.

A proxy never writes to the user's model: parameters are read through :func:`torch.func.functional_call` with
detached (or replaced) tensors, buffers are cloned so that train-mode BatchNorm updates land on the clones, the
train/eval flag of every module is put back, and the global RNG (CPU, and the CUDA device of ``x``) is restored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

__all__ = ["WEIGHT_LAYERS", "call", "cloned_buffers", "isolated", "kept_modes", "nan_on_error", "removing", "reseed",
           "weight_names"]

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weight_names(model: nn.Module) -> list[str]:
    """The parameter names (as :meth:`nn.Module.named_parameters` spells them) of the conv/linear weights, one per
    layer in module order (a weight shared by two layers appears twice, as the references count it)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(m.weight)] for m in model.modules()
            if isinstance(m, WEIGHT_LAYERS) and isinstance(m.weight, nn.Parameter) and id(m.weight) in names]


def cloned_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every buffer: a train-mode forward updates BatchNorm running statistics in place, on these."""
    return {n: b.detach().clone() for n, b in model.named_buffers()}


def call(model: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with ``tensors`` standing in for the named parameters/buffers; a tuple output gives its first
    element (as NASLib's ``epe_nas`` does)."""
    out = torch.func.functional_call(model, tensors, (x,))
    return out[0] if isinstance(out, (tuple, list)) else out


def reseed(seed: int, x: torch.Tensor) -> None:
    """Seed the generators a forward on ``x`` draws from (dropout masks, Gaussian draws)."""
    torch.default_generator.manual_seed(seed)
    if x.device.type == "cuda":
        with torch.cuda.device(x.device):
            torch.cuda.manual_seed(seed)


def nan_on_error(score: Callable[..., float], *args, **kwargs) -> float:
    """``score(*args, **kwargs)``, or NaN where it raises."""
    try:
        return float(score(*args, **kwargs))
    except Exception:
        return math.nan


@contextlib.contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Put back every module's train/eval flag on leaving (``model.train(mode)`` would set them all alike)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


@contextlib.contextmanager
def isolated(model: nn.Module, x: torch.Tensor, seed: int, *, train: bool = True) -> Iterator[None]:
    """Run with the model in train (or eval) mode and the RNG seeded; put back every module's mode and the RNG."""
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] \
        if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), kept_modes(model):
        model.train(train)
        reseed(seed, x)
        yield


@contextlib.contextmanager
def removing(handles: list) -> Iterator[list]:
    """Remove every hook handle added to ``handles`` on leaving."""
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()
        handles.clear()

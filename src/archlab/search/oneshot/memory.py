"""How much memory training a supernet takes, estimated before the run from one small forward and backward.

A training step's peak is the weights, their gradients and the optimizer's state (one slot per weight for SGD
with momentum, two for Adam) plus the activations autograd keeps for the backward pass. The activations grow
with the batch and dominate a DARTS supernet, whose mixed operations keep every candidate's output. The estimate
counts the tensors that autograd saves (``torch.autograd.graph.saved_tensors_hooks``, each storage once) in a
forward and backward of a batch of two, scales them to the run's batch, and adds the per-weight terms.

The backward pass holds the gradients of activations beside the saved tensors; that overhead is not counted
tensor by tensor but as a factor on the activations, ``BACKWARD_OVERHEAD = 1.25``, measured by
``benchmarks/supernet_cost.py`` (peak resident memory of real training steps in fresh processes): on the
NAS-Bench-201 supernet (C=16, N=5, batch 64) the measured peak was 1.06–1.40 times the saved tensors for a
standalone network, SPOS, GDAS and DARTS (BENCHMARKS.md), so the factor puts each estimate within 25 %.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["MemoryEstimate", "estimate_training_memory"]

MB = 1024 * 1024
#: the backward pass's activation gradients, as a factor on the saved activations (measured; module docstring)
BACKWARD_OVERHEAD = 1.25


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step at ``batch_size``: ``weights`` (and as much again for their gradients),
    ``optimizer`` state, ``activations`` kept for the backward pass (with the backward's overhead)."""

    batch_size: int
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def total_mb(self) -> float:
        return self.total / MB

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def _saved_bytes(model: nn.Module, example: torch.Tensor, forward_kwargs: dict[str, Any]) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in seen and not isinstance(t, nn.Parameter):
                seen.add(key)
                total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(example, **forward_kwargs)
        loss = out.float().pow(2).mean() if isinstance(out, torch.Tensor) else sum(o.float().mean() for o in out)
    loss.backward()
    return total


def estimate_training_memory(model: nn.Module, example: torch.Tensor, batch_size: int, *,
                             optimizer_slots: int = 1, forward_kwargs: list[dict[str, Any]] | None = None
                             ) -> MemoryEstimate:
    """The memory of training ``model`` at ``batch_size``, from a forward and backward of ``example`` (a batch of a
    few inputs; ``model`` itself is not touched: a copy runs). ``forward_kwargs``: several forwards' keyword
    arguments (single paths of a supernet, say), of which the largest counts; ``optimizer_slots``: tensors the
    optimizer keeps per weight (1: SGD with momentum, 2: Adam)."""
    if len(example) < 1:
        raise ValueError("estimate_training_memory: the example batch is empty")
    probe = copy.deepcopy(model).train()
    weights = sum(p.numel() * p.element_size() for p in probe.parameters())
    activations = 0
    for kwargs in forward_kwargs or [{}]:
        probe.zero_grad(set_to_none=True)
        activations = max(activations, _saved_bytes(probe, example, kwargs))
    scaled = int(activations * batch_size / len(example) * BACKWARD_OVERHEAD)
    return MemoryEstimate(batch_size=batch_size, weights=weights, gradients=weights,
                          optimizer=optimizer_slots * weights, activations=scaled)

"""Stochastic depth (``DropPath``): drop a whole residual branch per sample while training.

Paper: Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016; per-sample form and
name as timm's ``DropPath`` (``timm/layers/drop.py``), used by the ViT, MetaFormer, UniRepLKNet, RaftMLP,
ViT-ResNAS and sequence-model blocks here. It has no parameters, so it never changes a state dict.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath"]


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples at rate ``drop_prob`` while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        # Rescaling keeps the branch's expected value equal to its value at evaluation.
        return x * mask / keep

"""Normalisation layers for channels-first ``(B, C, H, W)`` feature maps, chosen by name.

Follows the norms of PoolFormer (Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022;
reference: sail-sg/poolformer ``models/poolformer.py``): ``GroupNorm`` with one group (PoolFormer's default,
a LayerNorm over ``(C, H, W)``) and ``LayerNormChannel`` (a LayerNorm over ``C`` only, at every pixel), which
is named ``LayerNorm2d`` here as in timm. Parameter names and shapes (``weight``/``bias`` of shape ``(C,)``)
match both references, so their checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError

__all__ = ["NORMS", "LayerNorm2d", "create_norm"]

NORMS: tuple[str, ...] = ("groupnorm", "layernorm", "batchnorm")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor, independently at every pixel."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        # eps 1e-5 is PoolFormer's LayerNormChannel default (timm's LayerNorm2d uses 1e-6).
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last round trip lets the fused layer_norm kernel normalise the last axis.
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def create_norm(name: str, dim: int) -> nn.Module:
    """A norm for ``(B, dim, H, W)`` tensors: one of :data:`NORMS`.

    - ``"groupnorm"``: ``GroupNorm(1, dim)``, statistics over ``(C, H, W)`` per sample;
    - ``"layernorm"``: :class:`LayerNorm2d`, statistics over ``C`` per sample and pixel;
    - ``"batchnorm"``: ``BatchNorm2d(dim)``, statistics over ``(B, H, W)`` per channel.
    """
    if name == "groupnorm":
        return nn.GroupNorm(1, dim)
    if name == "layernorm":
        return LayerNorm2d(dim)
    if name == "batchnorm":
        return nn.BatchNorm2d(dim)
    raise UserError(f"unknown norm {name!r}; known: {', '.join(NORMS)}")

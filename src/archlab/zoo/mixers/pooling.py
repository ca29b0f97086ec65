"""PoolFormer's pooling token mixer.

Paper: Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022. Names follow
sail-sg/poolformer ``models/poolformer.py`` class ``Pooling`` (one submodule ``pool``; no parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer

__all__ = ["Pooling", "create_pooling"]


class Pooling(nn.Module):
    """``AvgPool(x) - x`` over a ``(B, C, H, W)`` map, stride 1 so the resolution is kept."""

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        # count_include_pad=False averages only real pixels at the borders, so a constant map gives exactly
        # zero everywhere; subtracting x cancels the residual's identity already present in the block.
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


@register_mixer("pooling", layout="image",
                paper="MetaFormer Is Actually What You Need for Vision (Yu et al., CVPR 2022)")
def create_pooling(dim: int, *, resolution: tuple[int, int] | None = None, pool_size: int = 3) -> Pooling:
    """Pooling mixer; ``dim`` and ``resolution`` are unused (it has no parameters)."""
    if pool_size < 1 or pool_size % 2 == 0:
        # An even window with padding pool_size // 2 would change the resolution.
        raise UserError(f"pooling: pool_size must be a positive odd integer, got {pool_size}")
    return Pooling(pool_size)

"""Channel MLPs of the MetaFormer family.

``Mlp`` is PoolFormer's channel MLP built from 1x1 convolutions (Yu et al., "MetaFormer Is Actually What You
Need for Vision", CVPR 2022); names follow sail-sg/poolformer ``models/poolformer.py`` (``fc1``, ``act``,
``fc2``, ``drop``). ``StarReLU`` is the activation of "MetaFormer Baselines for Vision" (Yu et al., 2022);
names follow sail-sg/metaformer ``metaformer_baselines.py`` (``scale``, ``bias``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp", "StarReLU"]


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` over channels of a ``(B, C, H, W)`` tensor, with 1x1 convolutions."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 act_layer: type[nn.Module] = nn.GELU, drop: float = 0.0) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden_features, out_features, 1)
        self.drop = nn.Dropout(drop)
        # The reference initialises these convs like ViT linears (truncated normal, std 0.02, zero bias).
        for conv in (self.fc1, self.fc2):
            nn.init.trunc_normal_(conv.weight, std=0.02)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class StarReLU(nn.Module):
    """``scale * relu(x) ** 2 + bias`` with a learnable scalar ``scale`` and ``bias``."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0) -> None:
        super().__init__()
        # Shapes (1,) as in the reference so that ConvFormer checkpoints load.
        self.scale = nn.Parameter(torch.full((1,), float(scale_value)))
        self.bias = nn.Parameter(torch.full((1,), float(bias_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.relu(x) ** 2 + self.bias

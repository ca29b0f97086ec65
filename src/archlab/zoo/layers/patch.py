"""Patch embedding of the Vision Transformer: an image cut into non-overlapping patches, each one a token.

Paper: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR 2021.
Names as timm's ``PatchEmbed`` (``timm/layers/patch_embed.py``: ``proj``), so the ``patch_embed.proj`` weights of
timm's ViT, DeiT and ConViT checkpoints load unchanged; shared by :mod:`archlab.zoo.models.vit` and
:mod:`archlab.zoo.models.convit`. (MetaFormer's overlapping, normalised ``PatchEmbed``, its stem and downsampling,
stays in :mod:`archlab.zoo.models.metaformer`.)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchEmbed"]


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches, each projected to ``embed_dim``: ``(B, C, H, W) -> (B, N, D)``."""

    def __init__(self, img_size: tuple[int, int], patch_size: tuple[int, int], in_chans: int,
                 embed_dim: int) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (img_size[0] // patch_size[0], img_size[1] // patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # row-major tokens: token n sits at grid row n // W, column n % W (GPSA's relative positions rely on it)
        return self.proj(x).flatten(2).transpose(1, 2)

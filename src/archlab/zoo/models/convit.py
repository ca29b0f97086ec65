"""ConViT: a ViT/DeiT whose first blocks use gated positional self-attention (GPSA).

Paper: d'Ascoli, Touvron, Leavitt, Morcos, Biroli and Sagun, "ConViT: Improving Vision Transformers with Soft
Convolutional Inductive Biases", ICML 2021. Names follow facebookresearch/convit ``convit.py`` as ported to timm
``timm/models/convit.py`` (``ConVit``, ``Block`` with ``attn`` a ``GPSA`` or ``MHSA``), so timm's
``convit_*`` checkpoints load with a plain ``load_state_dict``.

The first ``local_up_to_layer`` blocks are GPSA over the patch tokens only (their relative positions need a
grid); the class token is prepended just before the first plain-attention block. Positions are a learned
embedding of the patches (none for the class token). As in the reference, ``embed_dim`` is the width *per head*:
the token width is ``embed_dim * num_heads`` (48 × 4 = 192 for ConViT-Ti).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.patch import PatchEmbed
from archlab.zoo.mixers.attention import Attention
from archlab.zoo.mixers.gpsa import GPSA
from archlab.zoo.models.vit import Block, check_image_input, check_vit_config, init_vit_weights, to_pair

__all__ = ["ConVit"]

_PAPER = ("ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases "
          "(d'Ascoli et al., ICML 2021)")


class ConVit(nn.Module):
    """ConViT classifier.

    Args:
        img_size, patch_size, in_chans, num_classes, depth, mlp_ratio, qkv_bias: as in ViT.
        embed_dim: width per head; the token width is ``embed_dim * num_heads``.
        local_up_to_layer: how many leading blocks use GPSA (0 gives a ViT without position for the class token).
        locality_strength: GPSA's α, the sharpness of the initial positional attention.
        use_pos_embed: add a learned absolute position embedding to the patches.
        name: the configuration name used in error messages.
    """

    def __init__(self, *, img_size: int | Sequence[int] = 224, patch_size: int | Sequence[int] = 16,
                 in_chans: int = 3, num_classes: int = 1000, embed_dim: int = 48, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = False, drop_rate: float = 0.0,
                 pos_drop_rate: float = 0.0, proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, local_up_to_layer: int = 3, locality_strength: float = 1.0,
                 use_pos_embed: bool = True, name: str = "convit") -> None:
        super().__init__()
        self.name = name
        img_size = to_pair(name, "img_size", img_size)
        patch_size = to_pair(name, "patch_size", patch_size)
        if embed_dim < 1 or num_heads < 1:
            raise UserError(f"{name}: embed_dim (per head) and num_heads must be >= 1, got {embed_dim}, {num_heads}")
        if not 0 <= local_up_to_layer <= depth:
            raise UserError(f"{name}: local_up_to_layer must be in [0, depth={depth}], got {local_up_to_layer}")
        width = embed_dim * num_heads
        check_vit_config(name, img_size, patch_size, in_chans, num_classes, width, depth, num_heads, mlp_ratio,
                         (drop_rate, pos_drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate))
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.local_up_to_layer = local_up_to_layer
        self.locality_strength = locality_strength
        self.use_pos_embed = use_pos_embed
        self.embed_dim = self.num_features = width

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, width)
        grid = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        if use_pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, width))
        else:
            self.register_parameter("pos_embed", None)
        rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]  # linear, as in vit.py
        blocks = []
        for i in range(depth):
            if i < local_up_to_layer:
                attn: nn.Module = GPSA(width, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                                       proj_drop=proj_drop_rate, locality_strength=locality_strength,
                                       use_local_init=False, grid_size=grid, name=name)
            else:
                # the reference's MHSA is plain multi-head attention with timm's names (qkv, proj)
                attn = Attention(width, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                                 proj_drop=proj_drop_rate)
            blocks.append(Block(width, num_heads, mlp_ratio=mlp_ratio, proj_drop=proj_drop_rate,
                                drop_path=rates[i], attn=attn))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_vit_weights)
        # after the generic Linear init, which would undo it (timm's ConVit does the same)
        for module in self.modules():
            if isinstance(module, GPSA):
                module.local_init()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final ``norm``: ``(B, 1 + N, width)`` (class token first) if any MHSA block,
        else ``(B, N, width)``."""
        check_image_input(self.name, x, self.in_chans, self.img_size)
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        for i, block in enumerate(self.blocks):
            if i == self.local_up_to_layer:
                x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # all blocks GPSA: no class token was inserted, so pool the patches (the reference would read patch 0)
        pooled = x[:, 0] if self.local_up_to_layer < len(self.blocks) else x.mean(dim=1)
        return self.head(self.head_drop(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _convit(name: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> ConVit:
    return ConVit(**{**defaults, **kwargs, "name": name})


@register_model(family="convit", paper=_PAPER, input_shape=(3, 224, 224))
def convit_tiny(**kwargs: Any) -> ConVit:
    """ConViT-Ti: 4 heads of 48 (width 192), 12 blocks, the first 10 GPSA (5.7M parameters)."""
    return _convit("convit_tiny", dict(local_up_to_layer=10, locality_strength=1.0, embed_dim=48, num_heads=4),
                   kwargs)


@register_model(family="convit", paper=_PAPER, input_shape=(3, 224, 224))
def convit_small(**kwargs: Any) -> ConVit:
    """ConViT-S: 9 heads of 48 (width 432), 12 blocks, the first 10 GPSA (27.8M parameters)."""
    return _convit("convit_small", dict(local_up_to_layer=10, locality_strength=1.0, embed_dim=48, num_heads=9),
                   kwargs)


@register_model(family="convit", paper=_PAPER, input_shape=(3, 224, 224))
def convit_base(**kwargs: Any) -> ConVit:
    """ConViT-B: 16 heads of 48 (width 768), 12 blocks, the first 10 GPSA (86.5M parameters)."""
    return _convit("convit_base", dict(local_up_to_layer=10, locality_strength=1.0, embed_dim=48,
                                       num_heads=16), kwargs)

"""Vision Transformer (ViT) and DeiT: a class token, learned absolute positions, pre-norm transformer blocks.

Papers: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR
2021; Touvron et al., "Training data-efficient image transformers & distillation through attention" (DeiT), ICML
2021. DeiT's non-distilled models are ViTs of the same shape trained differently, so both families share one
class here.

Names follow timm ``timm/models/vision_transformer.py`` (``VisionTransformer``, ``Block``, ``Mlp``) and
``timm/models/deit.py``: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.<i>.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm`` and ``head``, so that timm's ``vit_*``/``deit_*`` checkpoints
load with a plain ``load_state_dict``. Attention is :class:`archlab.zoo.mixers.attention.Attention`, whose names
already follow timm's.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.drop import DropPath
from archlab.zoo.layers.patch import PatchEmbed
from archlab.zoo.mixers.attention import Attention

__all__ = ["Block", "Mlp", "VisionTransformer", "check_image_input", "check_vit_config", "to_pair"]

_VIT_PAPER = ("An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale "
              "(Dosovitskiy et al., ICLR 2021)")
_DEIT_PAPER = ("Training data-efficient image transformers & distillation through attention "
               "(Touvron et al., ICML 2021)")


def to_pair(name: str, what: str, value: int | Sequence[int]) -> tuple[int, int]:
    """``value`` as a pair of positive ints (an int means a square); ``UserError`` naming ``name`` otherwise."""
    try:
        pair = (operator.index(value),) * 2 if not isinstance(value, Sequence) else tuple(
            operator.index(v) for v in value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise UserError(f"{name}: {what} must be a positive int or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def check_image_input(name: str, x: torch.Tensor, in_chans: int, img_size: tuple[int, int]) -> None:
    """Raise ``UserError`` unless ``x`` is a ``(B, in_chans, *img_size)`` batch (these models have fixed sizes)."""
    if x.ndim != 4 or tuple(x.shape[1:]) != (in_chans, *img_size):
        raise UserError(f"{name}: expected input (B, {in_chans}, {img_size[0]}, {img_size[1]}), "
                        f"got {tuple(x.shape)}")


class Mlp(nn.Module):
    """``fc2(drop2(act(fc1(x))))`` over the last axis of a ``(B, L, C)`` sequence (timm's ``Mlp``)."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 act_layer: type[nn.Module] = nn.GELU, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features or in_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features or in_features, out_features or in_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 attn: nn.Module | None = None) -> None:
        super().__init__()
        # eps 1e-6 is timm's ViT/DeiT/ConViT LayerNorm (and the JAX originals'); PyTorch's default is 1e-5
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attn if attn is not None else Attention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_vit_weights(module: nn.Module) -> None:
    """timm's ``init_weights_vit_timm``: truncated-normal (std 0.02) Linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """ViT/DeiT classifier; the class token's final state (after ``norm``) feeds ``head``.

    Args:
        img_size: input ``(H, W)`` (an int means square); the input must have exactly this size.
        patch_size: side of the square (or ``(h, w)``) non-overlapping patches; must divide ``img_size``.
        embed_dim: token width; must be divisible by ``num_heads``.
        name: the configuration name used in error messages.
    """

    def __init__(self, *, img_size: int | Sequence[int] = 224, patch_size: int | Sequence[int] = 16,
                 in_chans: int = 3, num_classes: int = 1000, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 pos_drop_rate: float = 0.0, proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, name: str = "vision_transformer") -> None:
        super().__init__()
        self.name = name
        img_size = to_pair(name, "img_size", img_size)
        patch_size = to_pair(name, "patch_size", patch_size)
        check_vit_config(name, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio,
                      (drop_rate, pos_drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate))
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # the class token has a position of its own (index 0), as in the original ViT and DeiT
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        # stochastic depth grows linearly with depth (plain floats: the model can be built on the meta device)
        rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate,
                  attn_drop=attn_drop_rate, drop_path=rates[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(init_vit_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final ``norm``: ``(B, 1 + N, embed_dim)``, the class token first."""
        check_image_input(self.name, x, self.in_chans, self.img_size)
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = self.blocks(self.pos_drop(x))
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(x[:, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def check_vit_config(name: str, img_size: tuple[int, int], patch_size: tuple[int, int], in_chans: int,
                  num_classes: int, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float,
                  rates: Sequence[float]) -> None:
    """Configuration checks shared by ViT and ConViT, each a one-line ``UserError`` naming the model."""
    if img_size[0] % patch_size[0] or img_size[1] % patch_size[1]:
        raise UserError(f"{name}: patch_size {patch_size} must divide img_size {img_size}")
    if in_chans < 1 or num_classes < 0 or depth < 1 or embed_dim < 1 or num_heads < 1:
        raise UserError(f"{name}: in_chans, depth, embed_dim and num_heads must be >= 1 and num_classes >= 0; "
                        f"got {in_chans}, {depth}, {embed_dim}, {num_heads}, {num_classes}")
    if embed_dim % num_heads:
        raise UserError(f"{name}: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if mlp_ratio <= 0:
        raise UserError(f"{name}: mlp_ratio must be > 0, got {mlp_ratio}")
    if not all(0.0 <= r < 1.0 for r in rates):
        raise UserError(f"{name}: dropout and drop-path rates must be in [0, 1), got {list(rates)}")


def _vit(name: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(**{**defaults, **kwargs, "name": name})


@register_model(family="vit", paper=_VIT_PAPER, input_shape=(3, 224, 224))
def vit_tiny_patch16_224(**kwargs: Any) -> VisionTransformer:
    """ViT-Ti/16 at 224x224 (5.7M parameters at 1000 classes)."""
    return _vit("vit_tiny_patch16_224", dict(patch_size=16, embed_dim=192, depth=12, num_heads=3), kwargs)


@register_model(family="vit", paper=_VIT_PAPER, input_shape=(3, 224, 224))
def vit_small_patch16_224(**kwargs: Any) -> VisionTransformer:
    """ViT-S/16 at 224x224 (22.1M parameters)."""
    return _vit("vit_small_patch16_224", dict(patch_size=16, embed_dim=384, depth=12, num_heads=6), kwargs)


@register_model(family="vit", paper=_DEIT_PAPER, input_shape=(3, 224, 224))
def deit_tiny_patch16_224(**kwargs: Any) -> VisionTransformer:
    """DeiT-Ti at 224x224: ViT-Ti/16's shape (5.7M parameters)."""
    return _vit("deit_tiny_patch16_224", dict(patch_size=16, embed_dim=192, depth=12, num_heads=3), kwargs)


@register_model(family="vit", paper=_DEIT_PAPER, input_shape=(3, 224, 224))
def deit_small_patch16_224(**kwargs: Any) -> VisionTransformer:
    """DeiT-S at 224x224: ViT-S/16's shape (22.1M parameters)."""
    return _vit("deit_small_patch16_224", dict(patch_size=16, embed_dim=384, depth=12, num_heads=6), kwargs)

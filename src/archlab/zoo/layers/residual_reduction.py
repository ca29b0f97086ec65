"""ViT-ResNAS's residual spatial reduction, and the masked LayerNorm its super-network trains with.

Paper: Liao, Karaman and Sze, "Searching for Efficient Multi-Stage Vision Transformers", ICCV 2021 workshops
(ViT-ResNAS). Names and shapes follow yilunliao/vit-search ``nets/vit_sr_supernet.py``
(``SpatialReductionPatchEmbedding``: ``norm``, ``patch_reduce``, ``patch_pool``, ``token_transform``,
``pos_embed``) and ``nets/masked_layer_norm.py`` (``MaskedLayerNorm``: ``weight``, ``bias``, eps 1e-6).

Between two stages of a multi-stage ViT the token sequence ``(B, T + H*W, C_in)`` (``T`` class tokens, then a
row-major ``H x W`` patch map) is reduced to ``(B, T + H/p * W/p, C_out)``:

- main path: LayerNorm -> ``Conv2d(C_in, C_out, k=p+1, stride=p, padding=p//2)`` on the patch map, plus a new
  learned position embedding; class tokens go through LayerNorm -> ``Linear(C_in, C_out)``;
- residual path: ``AvgPool2d(p)`` of the patch map (class tokens as they are), zero-padded from ``C_in`` to
  ``C_out`` channels.

The output is the sum, so a reduction whose main path is zero is exactly "pool, then pad": the network can
start as a deeper copy of its shallower self, which is why the paper calls it residual.

Super-network training ("multi-architectural sampling", ``nets/channel_drop.py``) gives every example of a batch
its own sub-network by zeroing channels beyond the sub-network's width. ``MaskedLayerNorm`` normalises each
example over its kept channels only, so a masked example computes exactly what the smaller network would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError

__all__ = ["MaskedLayerNorm", "ResidualSpatialReduction"]


class MaskedLayerNorm(nn.Module):
    """LayerNorm over the last axis; with a ``mask`` (``(B, 1, C)``, 1 = kept) only kept channels count."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return F.layer_norm(x, (self.num_channels,), self.weight, self.bias, self.eps)
        mask = mask.to(x.dtype)
        kept = mask.sum(dim=-1, keepdim=True)
        # Statistics of the kept channels only: the same numbers a LayerNorm of the narrower network computes.
        mean = (x * mask).sum(dim=-1, keepdim=True) / kept
        centred = (x - mean) * mask
        var = (centred * centred).sum(dim=-1, keepdim=True) / kept
        return (centred * torch.rsqrt(var + self.eps) * self.weight + self.bias) * mask

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, eps={self.eps}"


class ResidualSpatialReduction(nn.Module):
    """Reduce a ``(B, num_tokens + H*W, in_features)`` token sequence by ``patch_size`` in each direction.

    Args:
        img_size: ``(H, W)`` of the incoming patch map; both must be divisible by ``patch_size``.
        in_features, out_features: channels before and after (``out_features >= in_features``: the
            residual path zero-pads channels, it never drops them).
        patch_size: the reduction factor ``p`` (the reference uses 2).
        num_tokens: class (and distillation) tokens in front of the patch tokens.
    """

    def __init__(self, img_size: tuple[int, int], in_features: int, out_features: int, patch_size: int = 2,
                 num_tokens: int = 1) -> None:
        super().__init__()
        height, width = img_size
        if patch_size < 1 or height % patch_size or width % patch_size:
            raise UserError(f"residual spatial reduction: map {height}x{width} is not divisible by "
                            f"patch_size {patch_size}")
        if out_features < in_features:
            raise UserError(f"residual spatial reduction: out_features {out_features} < in_features "
                            f"{in_features} (the shortcut zero-pads channels)")
        if num_tokens < 0:
            raise UserError(f"residual spatial reduction: num_tokens must be >= 0, got {num_tokens}")
        self.img_size = (height, width)
        self.patch_size = patch_size
        self.num_tokens = num_tokens
        self.in_features = in_features
        self.out_features = out_features
        self.out_size = (height // patch_size, width // patch_size)
        self.num_patches = self.out_size[0] * self.out_size[1]
        self.norm = MaskedLayerNorm(in_features)
        # k = p + 1 with padding p // 2 overlaps neighbouring patches by one pixel and, for even p, gives the
        # same output size as the p x p average pool of the shortcut.
        self.patch_reduce = nn.Conv2d(in_features, out_features, kernel_size=patch_size + 1, stride=patch_size,
                                      padding=patch_size // 2)
        self.patch_pool = nn.AvgPool2d(kernel_size=patch_size, stride=patch_size)
        self.token_transform = nn.Linear(in_features, out_features) if num_tokens else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, out_features))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _to_map(self, patches: torch.Tensor) -> torch.Tensor:
        return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], *self.img_size)

    def forward(self, x: torch.Tensor, in_mask: torch.Tensor | None = None,
                out_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reduce ``x``; ``in_mask``/``out_mask`` (``(B, 1, C)``) are the per-example kept channels."""
        expected = self.num_tokens + self.img_size[0] * self.img_size[1]
        if x.ndim != 3 or x.shape[1] != expected or x.shape[2] != self.in_features:
            raise UserError(f"residual spatial reduction: expected input (B, {expected}, {self.in_features}), "
                            f"got {tuple(x.shape)}")
        tokens, patches = x[:, :self.num_tokens], x[:, self.num_tokens:]
        shortcut = self.patch_pool(self._to_map(patches)).flatten(2).transpose(1, 2)
        shortcut = torch.cat([tokens, shortcut], dim=1)
        shortcut = F.pad(shortcut, (0, self.out_features - self.in_features))

        normed = self.norm(x, in_mask)
        main = self.patch_reduce(self._to_map(normed[:, self.num_tokens:])).flatten(2).transpose(1, 2)
        main = main + self.pos_embed
        if self.token_transform is not None:
            main = torch.cat([self.token_transform(normed[:, :self.num_tokens]), main], dim=1)
        out = main + shortcut
        return out if out_mask is None else out * out_mask.to(out.dtype)

    def extra_repr(self) -> str:
        return f"img_size={self.img_size}, patch_size={self.patch_size}, num_tokens={self.num_tokens}"

"""ViT-ResNAS: a multi-stage ViT with residual spatial reduction, and its weight-sharing super-network.

Paper: Liao, Karaman and Sze, "Searching for Efficient Multi-Stage Vision Transformers", ICCV 2021 workshops.
Names follow yilunliao/vit-search ``nets/vit_sr_supernet.py`` (``FlexibleDistillVisionTransformerSR``:
``patch_embed.proj``, ``tokens``, ``pos_embed``, ``blocks`` holding transformer blocks and
``SpatialReductionPatchEmbedding`` layers in order, ``norm``, ``cls_head``) and ``nets/supernet_blocks.py``
(``Block``: ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``; attention width is
``num_heads * head_dim``, which need not equal the embedding width).

Multi-architectural sampling (``nets/channel_drop.py``): one forward pass trains several sub-networks at once.
Each example ``i`` of a batch is given sub-network ``archs[i % len(archs)]`` (the reference tiles its masks the
same way), described by a :class:`SubArch` (embedding width per stage, heads and MLP hidden width per block).
Channels beyond those widths are multiplied by zero and LayerNorms normalise over the kept channels only, so
every example computes exactly what the narrower network of :meth:`ViTResNAS.extract_subnet` computes, and
the gradient of the batch is the sum of the sub-networks' gradients.

The search (training with several sub-networks per batch, evolution under MACs) is
:mod:`archlab.search.oneshot.vit_resnas`. Not implemented: the distillation token (``distill_token=False`` in the
reference's terms), layer dropping (``layer`` channel-drop) and channel "rewiring" during warm-up.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.drop import DropPath
from archlab.zoo.layers.residual_reduction import MaskedLayerNorm, ResidualSpatialReduction

__all__ = ["Block", "SubArch", "ViTResNAS", "vit_resnas_tiny"]

_PAPER = "Searching for Efficient Multi-Stage Vision Transformers (Liao, Karaman, Sze, ICCV-W 2021)"


@dataclass(frozen=True)
class SubArch:
    """A sub-network of a ViT-ResNAS super-network: widths it keeps (prefixes of the super-network's)."""

    embed_dims: tuple[int, ...]   # per stage
    num_heads: tuple[int, ...]    # per transformer block
    mlp_hidden: tuple[int, ...]   # per transformer block


class Attention(nn.Module):
    """Multi-head self-attention with ``num_heads * head_dim`` attention channels; heads can be masked."""

    def __init__(self, dim: int, num_heads: int, head_dim: int = 64, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        if head_mask is not None:  # heads are dropped from the end, as whole head_dim-wide slices
            x = x * head_mask
        return self.proj(x)


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))`` whose hidden channels can be masked."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, hidden_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.act(self.fc1(x))
        if hidden_mask is not None:
            x = x * hidden_mask
        return self.fc2(x)


class Block(nn.Module):
    """Pre-norm transformer block; ``embed_mask`` keeps the residual stream's dropped channels at zero."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_hidden: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = MaskedLayerNorm(dim)
        self.attn = Attention(dim, num_heads, head_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = MaskedLayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor, embed_mask: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None, mlp_mask: torch.Tensor | None = None) -> torch.Tensor:
        f = self.drop_path(self.attn(self.norm1(x, embed_mask), head_mask))
        x = x + (f if embed_mask is None else f * embed_mask)
        f = self.drop_path(self.mlp(self.norm2(x, embed_mask), mlp_mask))
        return x + (f if embed_mask is None else f * embed_mask)


def _per_stage(name: str, value: Any, stages: int) -> list[Any]:
    values = list(value) if isinstance(value, Sequence) else [value] * stages
    if len(values) != stages:
        raise UserError(f"vit_resnas: {name} needs one value per stage ({stages}), got {values}")
    return values


class ViTResNAS(nn.Module):
    """Multi-stage ViT: patch embedding, then stages of blocks separated by residual spatial reductions.

    Args:
        img_size: input side (square images).
        patch_size: stem patch size; ``img_size / patch_size`` must be divisible by
            ``reduction ** (stages - 1)``.
        embed_dims, depths, num_heads: per stage. ``head_dim`` is shared.
        mlp_hidden: MLP hidden width per stage.
        reduction: spatial reduction factor between stages (the reference's 2).
        arch: build the sub-network :class:`SubArch` instead (per-block heads and MLP widths).
    """

    def __init__(self, *, img_size: int = 224, patch_size: int = 14, in_chans: int = 3, num_classes: int = 1000,
                 embed_dims: Sequence[int] = (256, 512, 1024), depths: Sequence[int] = (7, 7, 4),
                 num_heads: int | Sequence[int] = (4, 8, 12), head_dim: int = 64,
                 mlp_hidden: int | Sequence[int] = (768, 1536, 3072), reduction: int = 2,
                 drop_path_rate: float = 0.0, arch: SubArch | None = None) -> None:
        super().__init__()
        try:
            img_size, patch_size, in_chans, head_dim, reduction = (operator.index(v) for v in (
                img_size, patch_size, in_chans, head_dim, reduction))
        except TypeError:
            raise UserError("vit_resnas: img_size, patch_size, in_chans, head_dim, reduction must be ints") from None
        depths = [operator.index(d) for d in depths]
        stages = len(depths)
        if stages == 0 or min(depths) < 1:
            raise UserError(f"vit_resnas: depths must be a non-empty list of positive ints, got {depths}")
        embed_dims = [int(d) for d in _per_stage("embed_dims", embed_dims, stages)]
        heads = [int(h) for h in _per_stage("num_heads", num_heads, stages)]
        hidden = [int(h) for h in _per_stage("mlp_hidden", mlp_hidden, stages)]
        if min(embed_dims + heads + hidden + [head_dim, patch_size, in_chans]) < 1 or num_classes < 0:
            raise UserError("vit_resnas: widths, heads, head_dim, patch_size and in_chans must be >= 1")
        if any(b < a for a, b in itertools.pairwise(embed_dims)):
            raise UserError(f"vit_resnas: embed_dims must not decrease over stages, got {embed_dims}")
        side, rest = divmod(img_size, patch_size)
        if rest or side % reduction ** (stages - 1):
            raise UserError(f"vit_resnas: img_size {img_size} / patch_size {patch_size} must be a whole number "
                            f"divisible by reduction**(stages-1) = {reduction ** (stages - 1)}")
        block_heads = [h for h, d in zip(heads, depths, strict=True) for _ in range(d)]
        block_hidden = [h for h, d in zip(hidden, depths, strict=True) for _ in range(d)]
        if arch is not None:
            self._check_arch(arch, embed_dims, block_heads, block_hidden)
            embed_dims, block_heads, block_hidden = list(arch.embed_dims), list(arch.num_heads), list(
                arch.mlp_hidden)
        self.img_size, self.in_chans, self.num_classes = img_size, in_chans, num_classes
        self.depths, self.embed_dims, self.head_dim = depths, embed_dims, head_dim
        self.block_heads, self.block_hidden = block_heads, block_hidden
        self._config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
                            embed_dims=embed_dims, depths=depths, num_heads=heads, head_dim=head_dim,
                            mlp_hidden=hidden, reduction=reduction)

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dims[0], kernel_size=patch_size, stride=patch_size)
        self.tokens = nn.Parameter(torch.zeros(1, 1, embed_dims[0]))
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side + 1, embed_dims[0]))
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also under a meta device
        blocks: list[nn.Module] = []
        b = 0
        for s, depth in enumerate(depths):
            if s > 0:
                blocks.append(ResidualSpatialReduction((side, side), embed_dims[s - 1], embed_dims[s],
                                                       patch_size=reduction, num_tokens=1))
                side //= reduction
            for _ in range(depth):
                blocks.append(Block(embed_dims[s], block_heads[b], head_dim, block_hidden[b], rates[b]))
                b += 1
        self.blocks = nn.ModuleList(blocks)
        self.norm = MaskedLayerNorm(embed_dims[-1])
        self.cls_head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.tokens, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @staticmethod
    def _check_arch(arch: SubArch, dims: list[int], heads: list[int], hidden: list[int]) -> None:
        for name, got, full in (("embed_dims", arch.embed_dims, dims), ("num_heads", arch.num_heads, heads),
                                ("mlp_hidden", arch.mlp_hidden, hidden)):
            if len(got) != len(full) or any(not 1 <= g <= f for g, f in zip(got, full, strict=True)):
                raise UserError(f"vit_resnas: sub-network {name} {list(got)} must have {len(full)} entries, "
                                f"each between 1 and the super-network's {full}")
        if any(b < a for a, b in itertools.pairwise(arch.embed_dims)):
            raise UserError(f"vit_resnas: sub-network embed_dims must not decrease, got {list(arch.embed_dims)}")

    def full_arch(self) -> SubArch:
        """The sub-network that keeps every channel (the super-network itself)."""
        return SubArch(tuple(self.embed_dims), tuple(self.block_heads), tuple(self.block_hidden))

    def arch_masks(self, archs: Sequence[SubArch], batch_size: int,
                   dtype: torch.dtype = torch.float32) -> dict[str, list[torch.Tensor]]:
        """Per-example channel masks: example ``i`` gets ``archs[i % len(archs)]``."""
        if not archs:
            raise UserError("vit_resnas: archs must name at least one sub-network")
        for a in archs:
            self._check_arch(a, self.embed_dims, self.block_heads, self.block_hidden)
        assign = [archs[i % len(archs)] for i in range(batch_size)]

        def prefix(widths: list[int], size: int, unit: int = 1) -> torch.Tensor:
            keep = torch.tensor(widths).unsqueeze(1) * unit
            return (torch.arange(size).unsqueeze(0) < keep).to(dtype).unsqueeze(1)  # (B, 1, size)

        return {
            "embed": [prefix([a.embed_dims[s] for a in assign], d) for s, d in enumerate(self.embed_dims)],
            "heads": [prefix([a.num_heads[b] for a in assign], h * self.head_dim, self.head_dim)
                      for b, h in enumerate(self.block_heads)],
            "mlp": [prefix([a.mlp_hidden[b] for a in assign], h) for b, h in enumerate(self.block_hidden)],
        }

    def forward_features(self, x: torch.Tensor, archs: Sequence[SubArch] | None = None) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_chans, self.img_size, self.img_size):
            raise UserError(f"vit_resnas: expected input (B, {self.in_chans}, {self.img_size}, {self.img_size}), "
                            f"got {tuple(x.shape)}")
        masks = None if archs is None else self.arch_masks(archs, x.shape[0], x.dtype)
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        stage, b = 0, 0
        embed = None if masks is None else masks["embed"][0]
        if embed is not None:
            x = x * embed
        for blk in self.blocks:
            if isinstance(blk, ResidualSpatialReduction):
                stage += 1
                new = None if masks is None else masks["embed"][stage]
                x = blk(x, embed, new)
                embed = new
            else:
                x = blk(x, embed, None if masks is None else masks["heads"][b],
                        None if masks is None else masks["mlp"][b])
                b += 1
        return self.norm(x[:, 0], None if embed is None else embed[:, 0])

    def forward(self, x: torch.Tensor, archs: Sequence[SubArch] | None = None) -> torch.Tensor:
        """Logits; with ``archs``, example ``i`` runs sub-network ``archs[i % len(archs)]``."""
        return self.cls_head(self.forward_features(x, archs))

    @torch.no_grad()
    def extract_subnet(self, arch: SubArch) -> ViTResNAS:
        """A stand-alone narrower network holding this super-network's weights for ``arch`` (prefix slices)."""
        sub = ViTResNAS(**self._config, arch=arch)
        hd = self.head_dim
        own = self.state_dict()
        new = {}
        for name, target in sub.state_dict().items():
            src = own[name]
            if name.endswith("attn.qkv.weight") or name.endswith("attn.qkv.bias"):
                h_full = src.shape[0] // (3 * hd)
                h_sub = target.shape[0] // (3 * hd)
                shaped = src.reshape(3, h_full, hd, *src.shape[1:])[:, :h_sub]
                src = shaped.reshape(3 * h_sub * hd, *src.shape[1:])
            new[name] = src[tuple(slice(0, n) for n in target.shape)].clone()
        sub.load_state_dict(new)
        return sub.train(self.training)


@register_model(family="vit_resnas", paper=_PAPER, input_shape=(3, 224, 224))
def vit_resnas_tiny(**kwargs: Any) -> ViTResNAS:
    """The Tiny super-network of the reference (``supernet_config/sr_tiny.py``): 224 px, patch 14, stages of
    7/7/4 blocks at 256/512/1024 channels, 4/8/12 heads of 64, MLP 768/1536/3072, reductions by 2."""
    return ViTResNAS(**kwargs)

"""CRATE: the white-box transformer whose layers unroll sparse rate reduction (compress with MSSA, then
sparsify with ISTA).

Paper: Yu, Buchanan, Pai, Chu, Wu, Tong, Haeffele, Ma, "White-Box Transformers via Sparse Rate Reduction",
NeurIPS 2023. Names and shapes follow Ma-Lab-Berkeley/CRATE ``model/crate.py`` (``CRATE``, ``Transformer``,
``PreNorm``): ``to_patch_embedding`` (patchify, LayerNorm, Linear, LayerNorm), ``pos_embedding``,
``cls_token``, ``transformer.layers[i] = [PreNorm(MSSA), PreNorm(ISTA)]``, ``mlp_head`` (LayerNorm, Linear),
so the reference's checkpoints load with a plain ``load_state_dict``. A layer is
``z' = z + MSSA(LN(z))`` then ``z = ISTA(LN(z'))`` -- no residual around ISTA, as in the reference.

Published configurations (the reference's ``CRATE_tiny/small/base/large``; parameter counts in the paper's
Table 1: 6.09M, 13.12M, 22.80M, 77.64M at 224x224 and 1000 classes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.mixers.crate import ISTA, MSSA

__all__ = ["CRATE", "crate_base", "crate_large", "crate_small", "crate_tiny"]

_PAPER = "White-Box Transformers via Sparse Rate Reduction (Yu et al., NeurIPS 2023)"


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))`` (reference names ``norm`` and ``fn``)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Patchify(nn.Module):
    """``(B, C, H, W) -> (B, H/p * W/p, p*p*C)``, pixels of a patch ordered (row, column, channel)."""

    def __init__(self, patch_height: int, patch_width: int) -> None:
        super().__init__()
        self.ph, self.pw = patch_height, patch_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // self.ph, self.ph, w // self.pw, self.pw)
        # (b, hh, ww, p1, p2, c): the reference's 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // self.ph) * (w // self.pw), self.ph * self.pw * c)


class Transformer(nn.Module):
    """``depth`` CRATE layers; ``layers[i][0]`` is MSSA, ``layers[i][1]`` the ISTA step."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, dropout: float = 0.0,
                 ista: float = 0.1, lambd: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([PreNorm(dim, MSSA(dim, heads=heads, dim_head=dim_head, dropout=dropout)),
                           PreNorm(dim, ISTA(dim, step_size=ista, lambd=lambd))])
            for _ in range(depth)
        ])

    def forward(self, x: torch.Tensor, return_intermediates: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        compressed, sparse = [], []
        for attn, ff in self.layers:
            x = attn(x) + x
            compressed.append(x)
            x = ff(x)
            sparse.append(x)
        return (x, compressed, sparse) if return_intermediates else x


class CRATE(nn.Module):
    """A CRATE image classifier (ViT layout: patches, class token, learned positions)."""

    def __init__(self, *, image_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 16,
                 num_classes: int = 1000, dim: int = 384, depth: int = 12, heads: int = 6,
                 dim_head: int = 64, pool: str = "cls", in_chans: int = 3, dropout: float = 0.0,
                 emb_dropout: float = 0.0, ista: float = 0.1, lambd: float = 0.1, name: str = "crate") -> None:
        super().__init__()
        ih, iw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        if min(ih, iw, ph, pw) < 1 or ih % ph or iw % pw:
            raise UserError(f"{name}: image_size {(ih, iw)} must be divisible by patch_size {(ph, pw)}")
        if pool not in ("cls", "mean"):
            raise UserError(f"{name}: pool must be 'cls' or 'mean', got {pool!r}")
        if min(dim, depth, heads, dim_head, in_chans) < 1 or num_classes < 0:
            raise UserError(f"{name}: dim, depth, heads, dim_head and in_chans must be >= 1")
        self.name = name
        self.input_shape = (in_chans, ih, iw)
        num_patches = (ih // ph) * (iw // pw)
        patch_dim = in_chans * ph * pw
        self.to_patch_embedding = nn.Sequential(Patchify(ph, pw), nn.LayerNorm(patch_dim),
                                                nn.Linear(patch_dim, dim), nn.LayerNorm(dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = Transformer(dim, depth, heads, dim_head, dropout, ista=ista, lambd=lambd)
        self.pool = pool
        self.to_latent = nn.Identity()
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes) if num_classes
                                      else nn.Identity())

    def _embed(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or tuple(img.shape[1:]) != self.input_shape:
            raise UserError(f"{self.name}: expected input (B, {', '.join(map(str, self.input_shape))}), "
                            f"got {tuple(img.shape)}")
        x = self.to_patch_embedding(img)
        cls_tokens = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls_tokens, x), dim=1) + self.pos_embedding
        return self.dropout(x)

    def forward_intermediates(self, img: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer, the tokens after MSSA (compression) and after ISTA (sparsification)."""
        _, compressed, sparse = self.transformer(self._embed(img), return_intermediates=True)
        return compressed, sparse

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self._embed(img))
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        return self.mlp_head(self.to_latent(x))


def _crate(name: str, config: dict[str, Any], overrides: dict[str, Any]) -> CRATE:
    # every published CRATE splits dim evenly over its heads; overriding dim or heads keeps that split
    merged: dict[str, Any] = {"image_size": 224, "patch_size": 16, "num_classes": 1000, "name": name,
                              **config, **overrides}
    merged.setdefault("dim_head", max(1, merged["dim"] // max(1, merged["heads"])))
    return CRATE(**merged)


@register_model(family="crate", paper=_PAPER, input_shape=(3, 224, 224))
def crate_tiny(**kwargs: Any) -> CRATE:
    """CRATE-T: dim 384, 12 layers, 6 heads (6.09M parameters)."""
    return _crate("crate_tiny", {"dim": 384, "depth": 12, "heads": 6}, kwargs)


@register_model(family="crate", paper=_PAPER, input_shape=(3, 224, 224))
def crate_small(**kwargs: Any) -> CRATE:
    """CRATE-S: dim 576, 12 layers, 12 heads (13.12M parameters)."""
    return _crate("crate_small", {"dim": 576, "depth": 12, "heads": 12}, kwargs)


@register_model(family="crate", paper=_PAPER, input_shape=(3, 224, 224))
def crate_base(**kwargs: Any) -> CRATE:
    """CRATE-B: dim 768, 12 layers, 12 heads (22.80M parameters)."""
    return _crate("crate_base", {"dim": 768, "depth": 12, "heads": 12}, kwargs)


@register_model(family="crate", paper=_PAPER, input_shape=(3, 224, 224))
def crate_large(**kwargs: Any) -> CRATE:
    """CRATE-L: dim 1024, 24 layers, 16 heads (77.64M parameters)."""
    return _crate("crate_large", {"dim": 1024, "depth": 24, "heads": 16}, kwargs)

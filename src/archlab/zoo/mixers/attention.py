"""Multi-head self-attention as a token mixer.

Paper: Vaswani et al., "Attention Is All You Need", 2017. Names follow timm's ``Attention``
(``timm/layers/attention.py``): ``qkv`` (one Linear for queries, keys and values), ``attn_drop``, ``proj``,
``proj_drop``, so that ViT-style checkpoints load. As in the MetaFormer baselines (sail-sg/metaformer
``Attention``), the number of heads is derived from a target ``head_dim`` of 32 unless given.

Two forms compute the same function: the fused form calls
``torch.nn.functional.scaled_dot_product_attention``; the reference form spells out
``softmax(Q K^T / sqrt(d)) V``. ``Attention.fused`` selects between them and the tests hold the fused form
to the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.heads import default_num_heads

__all__ = ["Attention", "create_attention"]


class Attention(nn.Module):
    """Multi-head self-attention over a ``(B, L, C)`` sequence, no masking (every token sees every token)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, proj_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, fused: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise UserError(f"attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        # (B, L, 3, heads, head_dim) -> 3 x (B, heads, L, head_dim), the layout timm's checkpoints assume.
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            x = self.reference_attention(q, k, v)
        x = x.transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(x))

    def reference_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``softmax(q k^T / sqrt(head_dim)) v``, written out: the form the fused kernel is tested against."""
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = self.attn_drop(attn.softmax(dim=-1))
        return attn @ v


@register_mixer("attention", layout="sequence", paper="Attention Is All You Need (Vaswani et al., 2017)")
def create_attention(dim: int, *, resolution: tuple[int, int] | None = None, head_dim: int = 32,
                     num_heads: int | None = None, qkv_bias: bool = False, proj_bias: bool = True,
                     attn_drop: float = 0.0, proj_drop: float = 0.0, fused: bool = True) -> Attention:
    """Self-attention mixer for ``dim`` channels; ``resolution`` is not needed (attention is global).

    ``num_heads`` defaults to ``max(1, dim // head_dim)`` (reduced to a divisor of ``dim`` if needed); an
    explicit ``num_heads`` that does not divide ``dim`` is an error.
    """
    if head_dim < 1:
        raise UserError(f"attention: head_dim must be >= 1, got {head_dim}")
    heads = default_num_heads(dim, head_dim) if num_heads is None else num_heads
    return Attention(dim, num_heads=heads, qkv_bias=qkv_bias, proj_bias=proj_bias, attn_drop=attn_drop,
                     proj_drop=proj_drop, fused=fused)

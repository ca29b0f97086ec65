"""Causal multi-head self-attention with RoPE or ALiBi positions and a key/value cache, as a sequence mixer.

Papers: Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (causal self-attention); positions from Su et
al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", Neurocomputing 2024, or Press, Smith and
Lewis, "Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation", ICLR 2022 (see
:mod:`archlab.zoo.layers.positional`). Module names follow mosaicml/llm-foundry
``llmfoundry/models/layers/attention.py`` (``MultiheadAttention``: one fused ``Wqkv`` projection whose output is
split as ``[q | k | v]``, then ``out_proj``; ``softmax_scale`` defaults to ``head_dim ** -0.5``), the MPT code
that uses both ALiBi and RoPE.

Decoding: ``forward(x, state=None, return_state=False)``. The state is a :class:`KVCache` holding every key
(already rotated, for RoPE) and value seen so far; a call with a state treats its ``L`` tokens as positions
``T .. T + L - 1`` after the ``T`` cached ones, so a sequence may be fed in pieces, and :meth:`step` decodes one
token. Unlike the recurrent mixers the cache grows by one key and value per token. New caches are returned, never
updated in place.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.heads import default_num_heads
from archlab.zoo.layers.positional import RotaryEmbedding, alibi_bias

__all__ = ["POSITIONS", "CausalSelfAttention", "KVCache", "create_causal_attention"]

POSITIONS = ("rope", "alibi", "none")


class KVCache(NamedTuple):
    """Keys and values of the positions seen so far, ``(B, n_heads, T, head_dim)`` each; ``T`` is the offset of
    the next token."""

    k: torch.Tensor
    v: torch.Tensor


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention over ``(B, L, d_model)``: token ``t`` attends to tokens ``<= t``.

    ``pos`` selects how positions enter: ``"rope"`` rotates queries and keys (the first ``rotary_dim``
    channels of each head; all of them by default), ``"alibi"`` adds ``-m_h * (i - j)`` to the scores, ``"none"``
    uses no positions (only causality orders the tokens).
    """

    def __init__(self, d_model: int, n_heads: int, *, pos: str = "rope", bias: bool = True,
                 softmax_scale: float | None = None, attn_pdrop: float = 0.0, rope_base: float = 10000.0,
                 rotary_dim: int | None = None) -> None:
        super().__init__()
        if n_heads < 1 or d_model < 1 or d_model % n_heads:
            raise UserError(f"causal_attention: d_model {d_model} must be divisible by n_heads {n_heads}")
        if pos not in POSITIONS:
            raise UserError(f"causal_attention: pos must be one of {POSITIONS}, got {pos!r}")
        if not 0.0 <= attn_pdrop < 1.0:
            raise UserError(f"causal_attention: attn_pdrop must be in [0, 1), got {attn_pdrop}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.pos = pos
        self.softmax_scale = self.head_dim ** -0.5 if softmax_scale is None else float(softmax_scale)
        self.attn_dropout_p = attn_pdrop
        self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary_emb = None
        if pos == "rope":
            if self.head_dim < 2:
                raise UserError(f"causal_attention: RoPE needs head_dim >= 2, got {self.head_dim}")
            self.rotary_emb = RotaryEmbedding(self.head_dim, base=rope_base, rotary_dim=rotary_dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def _check_state(self, state: KVCache, batch: int) -> None:
        ok = (isinstance(state, tuple) and len(state) == 2 and state[0].shape == state[1].shape
              and state[0].dim() == 4 and tuple(state[0].shape[:2]) == (batch, self.n_heads)
              and state[0].shape[3] == self.head_dim)
        if not ok:
            got = tuple(state[0].shape) if isinstance(state, tuple) and state else type(state).__name__
            raise UserError(f"causal_attention: expected a KVCache of k and v ({batch}, {self.n_heads}, T, "
                            f"{self.head_dim}), got {got}")

    def attn_mask(self, q_len: int, offset: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """The additive (ALiBi) or boolean mask for ``q_len`` queries after ``offset`` cached keys, or ``None``
        when ``is_causal`` says all (no cache, no bias)."""
        k_len = offset + q_len
        if self.pos == "alibi":
            bias = alibi_bias(self.n_heads, q_len, k_len, q_offset=offset, dtype=dtype, device=device)
            future = torch.arange(k_len, device=device)[None, :] > torch.arange(offset, k_len, device=device)[:, None]
            return bias.masked_fill(future, float("-inf"))
        if offset == 0:
            return None
        # query i sits at position offset + i and sees keys 0 .. offset + i (is_causal would align top-left)
        return torch.arange(k_len, device=device)[None, :] <= torch.arange(offset, k_len, device=device)[:, None]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model or x.shape[1] < 1:
            raise UserError(f"causal_attention: expected input (B, L >= 1, {self.d_model}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, state: KVCache | None = None,
                return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        self._check_input(x)
        batch, length, _ = x.shape
        q, k, v = (self._heads(t) for t in self.Wqkv(x).split(self.d_model, dim=-1))
        offset = 0
        if state is not None:
            self._check_state(state, batch)
            offset = state.k.shape[2]
        if self.rotary_emb is not None:
            q, k = self.rotary_emb(q, k, offset=offset)
        if state is not None:
            k = torch.cat([state.k.to(k.dtype), k], dim=2)
            v = torch.cat([state.v.to(v.dtype), v], dim=2)
        mask = self.attn_mask(length, offset, q.dtype, q.device)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout_p if self.training else 0.0,
            is_causal=mask is None, scale=self.softmax_scale)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, self.d_model))
        return (out, KVCache(k, v)) if return_state else out

    def attention_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights ``(B, n_heads, L, L)`` of a fresh sequence ``x`` ``(B, L, d_model)``.

        Row ``i`` of a head holds the softmax weights query ``i`` gives keys ``0 .. i`` (zeros above the
        diagonal), positions included, so ``forward(x)`` is ``out_proj`` of these weights times the values. This
        is the matrix MOHAWK's stage 1 aligns a student's mixer matrix with (:mod:`archlab.compress.mohawk`).
        """
        self._check_input(x)
        length = x.shape[1]
        q, k, _ = (self._heads(t) for t in self.Wqkv(x).split(self.d_model, dim=-1))
        if self.rotary_emb is not None:
            q, k = self.rotary_emb(q, k, offset=0)
        scores = (q @ k.transpose(-1, -2)) * self.softmax_scale
        mask = self.attn_mask(length, 0, scores.dtype, scores.device)
        if mask is None:
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        else:
            scores = scores + mask
        return scores.softmax(dim=-1)

    def step(self, x_t: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """Decode one token: ``(B, d_model)`` or ``(B, 1, d_model)`` -> the same shape, and the grown cache."""
        squeeze = x_t.dim() == 2
        if squeeze:
            x_t = x_t[:, None]
        if x_t.dim() != 3 or x_t.shape[1] != 1:
            raise UserError(f"causal_attention: step takes one token (B, {self.d_model}), got {tuple(x_t.shape)}")
        out, state = self.forward(x_t, state, return_state=True)
        return (out[:, 0] if squeeze else out), state

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, pos={self.pos!r}"


@register_mixer("causal_attention", layout="sequence", causal=True,
                paper="Attention Is All You Need (Vaswani et al., NeurIPS 2017), with RoFormer RoPE "
                      "(Su et al., Neurocomputing 2024) or ALiBi (Press et al., ICLR 2022)")
def create_causal_attention(dim: int, *, resolution: tuple[int, int] | None = None, head_dim: int = 32,
                            num_heads: int | None = None, pos: str = "rope", rotary_dim: int | None = None,
                            **kwargs) -> CausalSelfAttention:
    """Causal self-attention for ``dim`` channels; ``resolution`` is not needed.

    ``num_heads`` defaults to ``max(1, dim // head_dim)``, reduced to a divisor of ``dim`` (as the ``attention``
    mixer). With RoPE and an odd head width the last channel of each head is left unrotated, so every width
    builds.
    """
    if head_dim < 1:
        raise UserError(f"causal_attention: head_dim must be >= 1, got {head_dim}")
    heads = default_num_heads(dim, head_dim) if num_heads is None else num_heads
    if pos == "rope" and rotary_dim is None and heads >= 1 and dim % heads == 0:
        rotary_dim = (dim // heads) // 2 * 2 or None
    return CausalSelfAttention(dim, heads, pos=pos, rotary_dim=rotary_dim, **kwargs)

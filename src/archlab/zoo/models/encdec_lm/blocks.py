"""The building blocks of the encoder-decoder LM and its decoder-only counterpart (the reference's ``mu_utils.py``).

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter
Efficiency for SLMs", arXiv 2501.16273 (2025). Names follow microsoft/encoder-decoder-slm ``src/mu/models/mu_utils.py``:
``MuRMSNorm``, ``MuAttention`` (``q_linear`` / ``k_linear`` / ``v_linear`` / ``out_linear``, grouped-query heads,
RoPE with the reference's dynamic NTK scaling), ``MuMLP`` (``fc1`` / tanh-GELU / ``fc2``), ``MuEncoderBlock``,
``MuDecoderBlock`` (``causal_attn``, ``cross_attn``); also the weight initialisation and the greedy loop both models
decode with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo.layers.positional import apply_rotary
from archlab.zoo.models.encdec_lm.config import DecoderLMConfig, MuConfig

__all__ = [
    "KV",
    "MuAttention",
    "MuDecoderBlock",
    "MuEncoderBlock",
    "MuMLP",
    "MuRMSNorm",
    "check_ids",
    "greedy_until_eos",
    "init_mu_weights",
]


class MuRMSNorm(nn.Module):
    def __init__(self, n_embd: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # statistics in at least float32, as the reference (which runs in bfloat16)
        h = x.to(torch.promote_types(x.dtype, torch.float32))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(x.dtype)


class KV(NamedTuple):
    """Keys and values ``(B, n_kv_head, T, head_dim)`` (self-attention keys already rotated) and which of the
    ``T`` keys are not padding, ``(B, T)``."""

    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor


def _rope_cos_sin(c: MuConfig | DecoderLMConfig, head_dim: int, positions: torch.Tensor, total_len: int,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    base = float(c.rope_theta)
    if c.rope_factor > 1.0:  # the reference's dynamic NTK scaling; constant while total_len <= block_size
        seq_len_eff = max(total_len, c.block_size)
        base = base * ((c.rope_factor * seq_len_eff / c.block_size) - (c.rope_factor - 1)) ** (
            head_dim / (head_dim - 2))
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class MuAttention(nn.Module):
    """Grouped-query attention; ``is_causal`` adds the causal mask; ``rope`` rotates queries and keys."""

    def __init__(self, c: MuConfig | DecoderLMConfig, is_causal: bool) -> None:
        super().__init__()
        self.config = c
        self.is_causal = is_causal
        self.n_head, self.n_kv_head = c.n_head, c.n_kv_head
        self.num_key_value_groups = c.n_head // c.n_kv_head
        self.head_dim = c.qkv_embd // c.n_head
        self.q_linear = nn.Linear(c.n_embd, c.n_head * self.head_dim)
        self.k_linear = nn.Linear(c.n_embd, c.n_kv_head * self.head_dim)
        self.v_linear = nn.Linear(c.n_embd, c.n_kv_head * self.head_dim)
        self.out_linear = nn.Linear(c.qkv_embd, c.n_embd)
        self.attn_dropout = nn.Dropout(c.dropout)

    def _heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1], n, self.head_dim).transpose(1, 2)

    def project_kv(self, x: torch.Tensor, key_mask: torch.Tensor) -> KV:
        """Unrotated keys and values of ``x`` (cross-attention: the encoder output, computed once)."""
        return KV(self._heads(self.k_linear(x), self.n_kv_head), self._heads(self.v_linear(x), self.n_kv_head),
                  key_mask)

    def repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_key_value_groups == 1:
            return x
        if self.config.is_interleaved:  # query head h uses kv head h // groups
            return x.repeat_interleave(self.num_key_value_groups, dim=1)
        return torch.cat([x] * self.num_key_value_groups, dim=1)  # query head h uses kv head h % n_kv_head

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, *, kv: torch.Tensor | None = None,
                past: KV | None = None, positions: torch.Tensor | None = None,
                cross: KV | None = None) -> tuple[torch.Tensor, KV | None]:
        """Self-attention over ``x`` (``key_mask``: which of its tokens are not padding), continuing ``past``,
        with RoPE at ``positions``; or cross-attention of ``x`` onto ``kv`` (or its precomputed ``cross``)."""
        batch, length, _ = x.shape
        q = self._heads(self.q_linear(x), self.n_head)
        new = None
        if cross is not None or kv is not None:
            k, v, key_mask = cross if cross is not None else self.project_kv(kv, key_mask)
        else:
            k, v = self._heads(self.k_linear(x), self.n_kv_head), self._heads(self.v_linear(x), self.n_kv_head)
            offset = 0 if past is None else past.k.shape[2]
            if positions is not None:
                cos, sin = _rope_cos_sin(self.config, self.head_dim, positions, offset + length, q.dtype)
                q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
            if past is not None:
                k, v = torch.cat([past.k, k], dim=2), torch.cat([past.v, v], dim=2)
                key_mask = torch.cat([past.mask, key_mask], dim=1)
            new = KV(k, v, key_mask)
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        allowed = key_mask[:, None, None, :].bool()
        if self.is_causal and cross is None and kv is None:
            k_len = k.shape[2]
            q_pos = torch.arange(k_len - length, k_len, device=x.device)[:, None]
            k_pos = torch.arange(k_len, device=x.device)[None, :]
            allowed = (allowed & (k_pos <= q_pos)) | (k_pos == q_pos)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        attn = self.attn_dropout(scores.softmax(-1))
        out = (attn @ v).transpose(1, 2).reshape(batch, length, self.n_head * self.head_dim)
        return self.out_linear(out), new


class MuMLP(nn.Module):
    def __init__(self, c: MuConfig | DecoderLMConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(c.n_embd, c.hidden_dim)
        self.fc2 = nn.Linear(c.hidden_dim, c.n_embd)
        self.act = nn.GELU(approximate="tanh")  # the reference's MuGELU formula
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class MuEncoderBlock(nn.Module):
    """Pre-norm block ``x + attn(ln1 x)``, ``x + mlp(ln2 x)``: bidirectional in the encoder, causal in
    :class:`DecoderLM`."""

    def __init__(self, c: MuConfig | DecoderLMConfig, is_causal: bool = False) -> None:
        super().__init__()
        self.ln1 = MuRMSNorm(c.n_embd)
        self.ln2 = MuRMSNorm(c.n_embd)
        self.attn = MuAttention(c, is_causal=is_causal)
        self.mlp = MuMLP(c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                past: KV | None = None) -> tuple[torch.Tensor, KV]:
        a, kv = self.attn(self.ln1(x), mask, past=past, positions=positions)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class MuDecoderBlock(nn.Module):
    def __init__(self, c: MuConfig) -> None:
        super().__init__()
        self.ln1 = MuRMSNorm(c.n_embd)
        self.ln2 = MuRMSNorm(c.n_embd)
        self.ln3 = MuRMSNorm(c.n_embd)
        self.causal_attn = MuAttention(c, is_causal=True)
        self.cross_attn = MuAttention(c, is_causal=False)
        self.mlp = MuMLP(c)

    def forward(self, x: torch.Tensor, decoder_mask: torch.Tensor, positions: torch.Tensor, cross: KV,
                past: KV | None = None) -> tuple[torch.Tensor, KV]:
        a, kv = self.causal_attn(self.ln1(x), decoder_mask, past=past, positions=positions)
        x = x + a
        x = x + self.cross_attn(self.ln2(x), cross.mask, cross=cross)[0]
        return x + self.mlp(self.ln3(x)), kv


def check_ids(name: str, ids: torch.Tensor, what: str) -> None:
    if ids.dim() != 2 or ids.shape[1] < 1 or ids.dtype not in (torch.int64, torch.int32):
        raise UserError(f"{name}: expected integer {what} (B, L >= 1), got {tuple(ids.shape)} {ids.dtype}")


def init_mu_weights(module: nn.Module, gen: torch.Generator | None) -> None:
    # the reference's Mu._init_weights: N(0, 0.02) linears and embeddings, zero biases
    if isinstance(module, (nn.Linear, nn.Embedding)) and not module.weight.is_meta:
        with torch.no_grad():
            module.weight.normal_(0.0, 0.02, generator=gen)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()


def greedy_until_eos(seq: torch.Tensor, next_logits: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]],
                     max_new_tokens: int, eos: int) -> torch.Tensor:
    """Append up to ``max_new_tokens`` argmax tokens to ``seq``; ``next_logits(seq, cache) -> (logits, cache)``.
    A sequence that emitted EOS continues with EOS; decoding stops once all have."""
    finished = torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
    cache = None
    for _ in range(max_new_tokens):
        logits, cache = next_logits(seq, cache)
        nxt = logits[:, -1].argmax(-1)
        finished |= nxt == eos
        nxt = torch.where(finished, torch.full_like(nxt, eos), nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if finished.all():
            break
    return seq

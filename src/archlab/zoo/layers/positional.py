"""Relative position encodings for attention: ALiBi biases and rotary embeddings (RoPE).

ALiBi: Press, Smith and Lewis, "Train Short, Test Long: Attention with Linear Biases Enables Input Length
Extrapolation", ICLR 2022. Head ``h`` (1-based) of ``H`` adds ``-m_h * |i - j|`` to the score of query ``i`` and
key ``j``, with ``m_h = 2 ** (-8 h / H)`` when ``H`` is a power of two. Other head counts take the slopes of the
nearest smaller power of two ``P`` followed by every other slope of ``2 P`` (the first ``H - P`` of them): the rule
of the authors' ``get_slopes`` (ofirpress/attention_with_linear_biases), which mosaicml/examples
``examples/benchmarks/bert/src/bert_layers.py`` (``_get_alibi_head_slopes``) copies; llm-foundry's ``gen_slopes``
reorders the same numbers identically. A causal model only ever sees ``j <= i``, so the same ``|i - j|`` bias
serves both MosaicBERT's bidirectional encoder and a decoder.

RoPE: Su, Lu, Pan, Murtadha, Wen and Liu, "RoFormer: Enhanced Transformer with Rotary Position Embedding",
Neurocomputing 2024 (arXiv 2104.09864). Conventions follow the GPT-NeoX / Hugging Face ``rotate_half`` form
(``transformers/models/llama/modeling_llama.py``: ``LlamaRotaryEmbedding``, ``rotate_half``,
``apply_rotary_pos_emb``): ``inv_freq[i] = base ** (-2 i / d)``, base 10000, the two halves of the rotated
channels paired (channel ``i`` with ``i + d/2``), and ``x * cos + rotate_half(x) * sin``. As in GPT-NeoX's
``rotary_pct``, only the first ``rotary_dim`` channels of a head may be rotated; the rest pass through.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.errors import UserError

__all__ = ["RotaryEmbedding", "alibi_bias", "alibi_slopes", "apply_rotary", "rotate_half"]


def alibi_slopes(n_heads: int) -> list[float]:
    """The ALiBi slope of each head, in head order, as the reference computes them (see the module docstring)."""
    if not isinstance(n_heads, int) or n_heads < 1:
        raise UserError(f"alibi: n_heads must be a positive int, got {n_heads!r}")

    def power_of_two(n: int) -> list[float]:
        # 2 ** (-8 / n) is both the first slope and the ratio between neighbours: m_h = 2 ** (-8 h / n)
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_two(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    # the odd-numbered slopes of 2P interleave between the slopes of P, so the extra heads get new slopes
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][:n_heads - closest]


def alibi_bias(n_heads: int, q_len: int, k_len: int | None = None, *, q_offset: int = 0,
               dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """``(n_heads, q_len, k_len)`` biases ``-m_h * |(q_offset + i) - j|`` (queries at ``q_offset + i``, keys at ``j``).

    ``q_offset`` places the queries after a cache of ``q_offset`` earlier keys (decoding); ``k_len`` defaults to
    ``q_offset + q_len``.
    """
    k_len = q_offset + q_len if k_len is None else k_len
    slopes = torch.tensor(alibi_slopes(n_heads), dtype=dtype, device=device)
    q_pos = torch.arange(q_offset, q_offset + q_len, device=device)
    k_pos = torch.arange(k_len, device=device)
    distance = (q_pos[:, None] - k_pos[None, :]).abs().to(dtype)
    return -slopes[:, None, None] * distance


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last axis."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of ``x`` (``(..., L, d)``) by the angles of ``cos``/``sin``
    (``(L, rotary_dim)``); the remaining channels pass through unchanged."""
    rot = cos.shape[-1]
    if rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding of a head of ``dim`` channels (the first ``rotary_dim`` of them rotated).

    ``forward(q, k, offset=0)`` rotates ``q`` and ``k`` of shape ``(..., L, head_dim)`` as positions
    ``offset .. offset + L - 1``: a decoder passes the length of its key cache as ``offset``. The cos/sin tables
    are cached (not saved in the state dict) and grown when a longer position is asked for.
    """

    def __init__(self, dim: int, base: float = 10000.0, rotary_dim: int | None = None,
                 max_position: int = 2048) -> None:
        super().__init__()
        rotary_dim = dim if rotary_dim is None else rotary_dim
        if dim < 2 or not 2 <= rotary_dim <= dim or rotary_dim % 2:
            raise UserError(f"rotary: rotary_dim must be even and in [2, head_dim={dim}], got {rotary_dim}")
        if base <= 0:
            raise UserError(f"rotary: base must be positive, got {base}")
        self.dim = dim
        self.rotary_dim = rotary_dim
        self.base = base
        inv_freq = 1.0 / base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._build(max_position)

    def _build(self, length: int) -> None:
        # float64 tables: angles of large positions keep their precision, and each call casts down once
        t = torch.arange(length, dtype=torch.float64, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq.double())
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def cos_sin(self, length: int, offset: int = 0, dtype: torch.dtype = torch.float32,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and ``sin`` tables ``(length, rotary_dim)`` for positions ``offset .. offset + length - 1``."""
        if offset < 0:
            raise UserError(f"rotary: offset must be >= 0, got {offset}")
        if offset + length > self.cos_cached.shape[0]:
            self._build(max(offset + length, 2 * self.cos_cached.shape[0]))
        cos = self.cos_cached[offset:offset + length]
        sin = self.sin_cached[offset:offset + length]
        return cos.to(device=device, dtype=dtype), sin.to(device=device, dtype=dtype)

    def forward(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if q.shape[-1] != self.dim or k.shape[-1] != self.dim:
            raise UserError(f"rotary: expected head_dim {self.dim}, got q {tuple(q.shape)} and k {tuple(k.shape)}")
        cos, sin = self.cos_sin(q.shape[-2], offset, q.dtype, q.device)
        if k.shape[-2] != q.shape[-2]:
            raise UserError(f"rotary: q and k must cover the same positions, got {q.shape[-2]} and {k.shape[-2]}")
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rotary_dim={self.rotary_dim}, base={self.base}"

"""Cache-aware streaming Conformer: chunked-limited attention, causal convolutions, per-layer caches.

Paper: Noroozi, Majumdar, Kumar, Balam and Ginsburg, "Stateful Conformer with Cache-based Inference for Streaming
Automatic Speech Recognition", ICASSP 2024. Module and parameter names follow NVIDIA/NeMo
(``nemo/collections/asr/modules/conformer_encoder.py`` ``ConformerEncoder``;
``nemo/collections/asr/parts/submodules/conformer_modules.py`` ``ConformerLayer``, ``ConformerFeedForward``,
``ConformerConvolution``; ``multi_head_attention.py`` ``RelPositionMultiHeadAttention``,
``RelPositionalEncoding``; ``subsampling.py`` ``ConvSubsampling``), and the registered configurations follow
``examples/asr/conf/fastconformer/cache_aware_streaming/fastconformer_ctc_bpe_streaming.yaml``, so a NeMo
encoder state dict loads with a plain ``load_state_dict``.

The encoder maps log-mel frames ``(B, T, feat_in)`` to ``(B, T', d_model)`` with ``T' = ceil(T / factor)``:

- ``pre_encode``: causal striding subsampling (``striding`` or FastConformer's ``dw_striding``), stride-2 3x3
  convolutions padded only on the left in time, so subsampled frame ``j`` sees raw frames ``<= factor * j``;
- ``layers``: Conformer layers ``x + FF/2 -> + MHSA -> + Conv -> + FF/2 -> LayerNorm``. Attention is
  *chunked-limited*: frames are cut into chunks of ``look_ahead + 1`` frames; a frame of chunk ``c`` attends to
  all frames of chunks ``c - left_context / (look_ahead + 1) .. c`` (so up to ``look_ahead`` future frames, never
  beyond its chunk, at every layer: the look-ahead does not grow with depth). The depthwise convolution is causal.

:meth:`StreamingConformer.stream` encodes a stream chunk by chunk; its cache holds, per layer, the last
``left_context`` inputs of the attention (NeMo's ``cache_last_channel``) and the last ``kernel - 1`` inputs of
the depthwise convolution (``cache_last_time``), plus the last two input frames of every strided convolution of
the subsampling. Fed in chunks of ``factor * (look_ahead + 1)`` raw frames (or multiples), the stream reproduces
the offline forward exactly. One model serves several look-aheads (multi-look-ahead training):
``att_context_size`` lists ``[left, look_ahead]`` pairs, one is drawn per training batch (``att_context_probs``),
and the first is the default at inference.

Deviations from NeMo: in time the subsampling pads ``kernel - 1`` frames on the left and none on the right
(NeMo's ``CausalConv2D`` also pads ``stride - 1`` on the right and then drops the extra frame while streaming),
so the offline output has ``ceil(T / factor)`` frames, with NeMo's kernel alignment (not checked against NeMo
itself here; the frames of the last chunk would differ, since NeMo's extra frame joins that chunk); the cache is
a list of per-layer tensors that grow up to their size, not fixed-size tensors with a length counter; the
sinusoids of the relative positional encoding are computed in float64 and cast.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.causal_conv import causal_depthwise_conv

__all__ = [
    "CausalConvSubsampling",
    "ConformerCache",
    "ConformerConvolution",
    "ConformerFeedForward",
    "ConformerLayer",
    "RelPositionMultiHeadAttention",
    "StreamingConformer",
    "chunked_limited_mask",
    "conformer_streaming_tiny",
    "fastconformer_streaming_large",
]

_PAPER = ("Stateful Conformer with Cache-based Inference for Streaming Automatic Speech Recognition "
          "(Noroozi et al., ICASSP 2024)")
SUBSAMPLINGS = ("striding", "dw_striding")
CONV_NORMS = ("layer_norm", "batch_norm")


def chunked_limited_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, left: int, look_ahead: int) -> torch.Tensor:
    """``(Tq, Tk)`` bool, True where query at absolute frame ``q_pos[i]`` may attend key ``k_pos[j]``.

    NeMo's ``chunked_limited`` rule: chunks of ``look_ahead + 1`` frames; a query sees its own chunk and the
    ``left // (look_ahead + 1)`` chunks before it (all chunks before it when ``left < 0``).
    """
    chunk = look_ahead + 1
    diff = torch.div(q_pos, chunk, rounding_mode="floor")[:, None] - torch.div(k_pos, chunk, rounding_mode="floor")
    allowed = diff >= 0
    if left >= 0:
        allowed = allowed & (diff <= left // chunk)
    return allowed


def rel_pos_emb(length: int, d_model: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(1, 2 * length - 1, d_model)`` sinusoids of relative positions ``length - 1, ..., -(length - 1)``.

    NeMo's ``RelPositionalEncoding``: positive positions are keys on the left of the query; ``sin`` on the even
    channels, ``cos`` on the odd ones.
    """
    positions = torch.arange(length - 1, -length, -1, dtype=torch.float64, device=device)[:, None]
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64, device=device)
                         * -(math.log(10000.0) / d_model))
    pe = torch.zeros(positions.shape[0], d_model, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(positions * div_term)
    pe[:, 1::2] = torch.cos(positions * div_term)
    return pe.to(dtype)[None]


class CausalConvSubsampling(nn.Module):
    """NeMo's ``ConvSubsampling`` (``conv`` Sequential, ``out`` Linear) with causal time padding.

    Every stride-2 convolution sees its output frame's own input frame and the two before it; frequency is
    padded as NeMo's ``CausalConv2D`` does (2 before, 1 after), so ``out`` has NeMo's input size.
    """

    def __init__(self, subsampling: str, subsampling_factor: int, feat_in: int, feat_out: int,
                 conv_channels: int) -> None:
        super().__init__()
        if subsampling not in SUBSAMPLINGS:
            raise UserError(f"conformer: unknown subsampling {subsampling!r}; known: {', '.join(SUBSAMPLINGS)}")
        if subsampling_factor < 2 or subsampling_factor & (subsampling_factor - 1):
            raise UserError(f"conformer: subsampling_factor must be a power of 2 >= 2, got {subsampling_factor}")
        self.subsampling_factor = subsampling_factor
        self._sampling_num = int(math.log2(subsampling_factor))
        self._kernel_size, self._stride = 3, 2
        layers: list[nn.Module] = []
        in_channels = 1
        for i in range(self._sampling_num):
            if subsampling == "dw_striding" and i > 0:
                layers += [nn.Conv2d(in_channels, in_channels, 3, stride=2, groups=in_channels),
                           nn.Conv2d(in_channels, conv_channels, 1)]
            else:
                layers.append(nn.Conv2d(in_channels, conv_channels, 3, stride=2))
            layers.append(nn.ReLU(True))
            in_channels = conv_channels
        self.conv = nn.Sequential(*layers)
        freq = feat_in
        for _ in range(self._sampling_num):
            freq = (freq + 3 - 3) // 2 + 1  # NeMo's calc_length with paddings (2, 1), kernel 3, stride 2
        self.out = nn.Linear(conv_channels * freq, feat_out)
        # the strided convolutions, whose last kernel - 1 input frames are carried between stream chunks
        self._strided = [i for i, m in enumerate(self.conv) if isinstance(m, nn.Conv2d) and m.stride[0] == 2]

    def initial_cache(self, batch: int, feat_in: int, dtype: torch.dtype,
                      device: torch.device) -> list[torch.Tensor]:
        caches, channels, freq = [], 1, feat_in
        for i, m in enumerate(self.conv):
            if i in self._strided:
                caches.append(torch.zeros(batch, channels, self._kernel_size - 1, freq, dtype=dtype, device=device))
                freq = freq // 2 + 1
            if isinstance(m, nn.Conv2d):
                channels = m.out_channels
        return caches

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(B, T, feat_in) -> (B, ceil(T / factor), feat_out)`` and the next cache (zero history if None)."""
        x = x[:, None]  # (B, 1, T, F)
        if cache is None:
            cache = self.initial_cache(x.shape[0], x.shape[-1], x.dtype, x.device)
        new_cache = []
        j = 0
        for i, m in enumerate(self.conv):
            if i in self._strided:
                x = torch.cat([cache[j], x], dim=2)
                new_cache.append(x[:, :, -(self._kernel_size - 1):])
                x = m(F.pad(x, (self._kernel_size - 1, self._stride - 1)))
                j += 1
            else:
                x = m(x)
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), new_cache

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(self._sampling_num):
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        return lengths


class ConformerFeedForward(nn.Module):
    """``linear2(dropout(swish(linear1(x))))``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1, use_bias: bool = True) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=use_bias)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class ConformerConvolution(nn.Module):
    """Pointwise conv + GLU, causal depthwise conv, norm, swish, pointwise conv (NeMo names)."""

    def __init__(self, d_model: int, kernel_size: int, norm_type: str = "layer_norm", use_bias: bool = True) -> None:
        super().__init__()
        if norm_type not in CONV_NORMS:
            raise UserError(f"conformer: unknown conv_norm_type {norm_type!r}; known: {', '.join(CONV_NORMS)}")
        self.kernel_size = kernel_size
        self.norm_type = norm_type
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1, bias=use_bias)
        self.depthwise_conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=use_bias)
        self.batch_norm = nn.LayerNorm(d_model) if norm_type == "layer_norm" else nn.BatchNorm1d(d_model)
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1, bias=use_bias)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None,
                cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D)``; ``cache`` ``(B, D, kernel - 1)`` is the depthwise input before ``x`` (zeros if None)."""
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        if pad_mask is not None:
            x = x.masked_fill(pad_mask[:, None], 0.0)
        if cache is None:
            cache = x.new_zeros(x.shape[0], x.shape[1], self.kernel_size - 1)
        x = torch.cat([cache, x], dim=-1)
        new_cache = x[..., x.shape[-1] - (self.kernel_size - 1):]
        x = causal_depthwise_conv(x, self.depthwise_conv)
        if self.norm_type == "layer_norm":
            x = self.batch_norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.batch_norm(x)
        x = self.pointwise_conv2(self.activation(x))
        return x.transpose(1, 2), new_cache


class RelPositionMultiHeadAttention(nn.Module):
    """Transformer-XL attention with relative positions (NeMo's ``RelPositionMultiHeadAttention``).

    The queries are the last ``Tq`` of the ``Tk`` keys (the keys before them are the cache).
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float = 0.0, use_bias: bool = True) -> None:
        super().__init__()
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_k = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_v = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_out = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.dropout = nn.Dropout(dropout_rate)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_head, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_head, self.d_k))

    @staticmethod
    def rel_shift(x: torch.Tensor) -> torch.Tensor:
        """``(b, h, Tq, P) -> (b, h, Tq, P)`` with row ``i`` shifted left by ``Tq - 1 - i`` (Transformer-XL)."""
        b, h, qlen, pos_len = x.shape
        x = F.pad(x, (1, 0)).view(b, h, pos_len + 1, qlen)
        return x[:, :, 1:].reshape(b, h, qlen, pos_len)

    def forward(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None,
                pos_emb: torch.Tensor) -> torch.Tensor:
        """``query (B, Tq, D)``, ``key = value (B, Tk, D)``, ``mask (B|1, Tq, Tk)`` True where masked out,
        ``pos_emb (1, 2 Tk - 1, D)``."""
        b, tq, tk = query.shape[0], query.shape[1], key.shape[1]
        q = self.linear_q(query).view(b, tq, self.h, self.d_k)
        k = self.linear_k(key).view(b, tk, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(key).view(b, tk, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        matrix_ac = (q + self.pos_bias_u).transpose(1, 2) @ k.transpose(-2, -1)
        matrix_bd = self.rel_shift((q + self.pos_bias_v).transpose(1, 2) @ p.transpose(-2, -1))[..., :tk]
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        if mask is not None:
            mask = mask[:, None]
            # finite fill, then zero: a fully masked (padding) row gives zeros, not NaN
            attn = scores.masked_fill(mask, torch.finfo(scores.dtype).min).softmax(-1).masked_fill(mask, 0.0)
        else:
            attn = scores.softmax(-1)
        x = (self.dropout(attn) @ v).transpose(1, 2).reshape(b, tq, self.h * self.d_k)
        return self.linear_out(x)


class ConformerLayer(nn.Module):
    """``FF/2 -> MHSA -> Conv -> FF/2 -> LayerNorm``, each sub-block pre-normed with a residual (NeMo names)."""

    def __init__(self, d_model: int, d_ff: int, n_heads: int = 4, conv_kernel_size: int = 9,
                 conv_norm_type: str = "layer_norm", dropout: float = 0.1, dropout_att: float = 0.1,
                 use_bias: bool = True) -> None:
        super().__init__()
        self.fc_factor = 0.5
        self.norm_feed_forward1 = nn.LayerNorm(d_model)
        self.feed_forward1 = ConformerFeedForward(d_model, d_ff, dropout, use_bias)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = ConformerConvolution(d_model, conv_kernel_size, conv_norm_type, use_bias)
        self.norm_self_att = nn.LayerNorm(d_model)
        self.self_attn = RelPositionMultiHeadAttention(n_heads, d_model, dropout_att, use_bias)
        self.norm_feed_forward2 = nn.LayerNorm(d_model)
        self.feed_forward2 = ConformerFeedForward(d_model, d_ff, dropout, use_bias)
        self.dropout = nn.Dropout(dropout)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, att_mask: torch.Tensor | None, pos_emb: torch.Tensor,
                pad_mask: torch.Tensor | None = None, cache_last_channel: torch.Tensor | None = None,
                cache_last_time: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the output and the attention / convolution inputs including the caches (for the next ones)."""
        residual = x + self.dropout(self.feed_forward1(self.norm_feed_forward1(x))) * self.fc_factor
        x = self.norm_self_att(residual)
        keys = x if cache_last_channel is None else torch.cat([cache_last_channel, x], dim=1)
        residual = residual + self.dropout(self.self_attn(x, keys, att_mask, pos_emb))
        x, conv_cache = self.conv(self.norm_conv(residual), pad_mask, cache_last_time)
        residual = residual + self.dropout(x)
        residual = residual + self.dropout(self.feed_forward2(self.norm_feed_forward2(residual))) * self.fc_factor
        return self.norm_out(residual), keys, conv_cache


@dataclass
class ConformerCache:
    """Streaming state of a :class:`StreamingConformer` for one batch of streams (all of the same length).

    ``pre_encode``: last two input frames of each strided subsampling convolution; ``last_channel``: per layer,
    the last ``left`` attention inputs ``(B, <=left, D)``; ``last_time``: per layer, the last ``kernel - 1``
    depthwise-convolution inputs ``(B, D, kernel - 1)``; ``offset``: subsampled frames emitted so far.
    """

    att_context_size: tuple[int, int]
    pre_encode: list[torch.Tensor] | None = None
    last_channel: list[torch.Tensor | None] = field(default_factory=list)
    last_time: list[torch.Tensor | None] = field(default_factory=list)
    offset: int = 0
    finished: bool = False


class StreamingConformer(nn.Module):
    """Cache-aware streaming Conformer encoder (NeMo ``ConformerEncoder`` with ``chunked_limited`` attention).

    ``forward(x, lengths=None)``: offline, ``x`` ``(B, T, feat_in)`` -> ``(B, ceil(T / factor), d_model)``
    (and the output lengths when ``lengths`` is given), under the chunked-limited mask of ``att_context_size``
    (default: the first of :attr:`att_context_size_all`; in training a random one). :meth:`stream` does the same
    chunk by chunk with a :class:`ConformerCache`.
    """

    def __init__(self, feat_in: int = 80, n_layers: int = 17, d_model: int = 512, feat_out: int = -1,
                 subsampling: str = "dw_striding", subsampling_factor: int = 8, subsampling_conv_channels: int = 256,
                 ff_expansion_factor: int = 4, n_heads: int = 8,
                 att_context_size: Sequence[int] | Sequence[Sequence[int]] = ((70, 13), (70, 6), (70, 1), (70, 0)),
                 att_context_probs: Sequence[float] | None = None, xscaling: bool = True,
                 conv_kernel_size: int = 9, conv_norm_type: str = "layer_norm", dropout: float = 0.1,
                 dropout_pre_encoder: float = 0.1, dropout_att: float = 0.1, use_bias: bool = True) -> None:
        super().__init__()
        if min(feat_in, n_layers, d_model, n_heads, subsampling_conv_channels, ff_expansion_factor) < 1:
            raise UserError("conformer: feat_in, n_layers, d_model, n_heads, subsampling_conv_channels and "
                            "ff_expansion_factor must be positive")
        if d_model % n_heads or d_model % 2:
            raise UserError(f"conformer: d_model {d_model} must be even and divisible by n_heads {n_heads}")
        if conv_kernel_size < 1:
            raise UserError(f"conformer: conv_kernel_size must be positive, got {conv_kernel_size}")
        self.att_context_size_all = self._check_contexts(att_context_size)
        if att_context_probs is None:
            att_context_probs = [1.0 / len(self.att_context_size_all)] * len(self.att_context_size_all)
        if len(att_context_probs) != len(self.att_context_size_all) or abs(sum(att_context_probs) - 1) > 1e-6:
            raise UserError(f"conformer: att_context_probs must be {len(self.att_context_size_all)} probabilities "
                            f"summing to one, got {list(att_context_probs)}")
        self.att_context_probs = list(att_context_probs)
        self.att_context_size = self.att_context_size_all[0]
        self.feat_in = feat_in
        self.d_model = d_model
        self.conv_kernel_size = conv_kernel_size
        self.subsampling_factor = subsampling_factor
        self.xscale = math.sqrt(d_model) if xscaling else None
        self.pre_encode = CausalConvSubsampling(subsampling, subsampling_factor, feat_in, d_model,
                                                subsampling_conv_channels)
        self.pre_dropout = nn.Dropout(dropout_pre_encoder)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, d_model * ff_expansion_factor, n_heads, conv_kernel_size, conv_norm_type,
                           dropout, dropout_att, use_bias) for _ in range(n_layers))
        self.out_proj = nn.Linear(d_model, feat_out) if feat_out > 0 and feat_out != d_model else None
        self.num_features = feat_out if self.out_proj is not None else d_model

    @staticmethod
    def _check_contexts(sizes: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
        items = [sizes] if len(sizes) and isinstance(sizes[0], int) else list(sizes)
        out = []
        for item in items:
            if len(item) != 2:
                raise UserError(f"conformer: att_context_size entries must be [left, look_ahead], got {item}")
            left, right = int(item[0]), int(item[1])
            if right < 0 or left < -1:
                raise UserError(f"conformer: chunked-limited attention needs look_ahead >= 0 and left >= -1, got "
                                f"{[left, right]}")
            if left > 0 and left % (right + 1):
                raise UserError(f"conformer: left context {left} must be a multiple of the chunk size look_ahead + 1 "
                                f"= {right + 1}")
            out.append((left, right))
        if not out:
            raise UserError("conformer: att_context_size must name at least one [left, look_ahead] pair")
        return out

    def _context(self, att_context_size: Sequence[int] | None) -> tuple[int, int]:
        if att_context_size is not None:
            return self._check_contexts([att_context_size])[0]
        if self.training and len(self.att_context_size_all) > 1:
            return random.choices(self.att_context_size_all, weights=self.att_context_probs)[0]
        return self.att_context_size

    def set_default_att_context_size(self, att_context_size: Sequence[int]) -> None:
        """Choose the context used at inference (one of the trained look-aheads, normally)."""
        self.att_context_size = self._check_contexts([att_context_size])[0]

    def chunk_frames(self, att_context_size: Sequence[int] | None = None) -> int:
        """Raw input frames per streaming chunk: ``factor * (look_ahead + 1)``."""
        ctx = self.att_context_size if att_context_size is None else self._check_contexts([att_context_size])[0]
        return self.subsampling_factor * (ctx[1] + 1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.feat_in or not x.is_floating_point():
            raise UserError(f"conformer: expected float features (B, T, {self.feat_in}), got "
                            f"{tuple(x.shape)} {x.dtype}")

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.xscale is not None:
            x = x * self.xscale
        return self.pre_dropout(x)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                att_context_size: Sequence[int] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        left, right = self._context(att_context_size)
        x, _ = self.pre_encode(x)
        x = self._embed(x)
        t = x.shape[1]
        pos = torch.arange(t, device=x.device)
        allowed = chunked_limited_mask(pos, pos, left, right)[None]
        pad_mask = None
        out_lengths = None
        if lengths is not None:
            if lengths.shape != (x.shape[0],):
                raise UserError(f"conformer: lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}")
            out_lengths = self.pre_encode.out_lengths(lengths.to(torch.int64))
            valid = pos[None] < out_lengths[:, None].to(x.device)
            allowed = allowed & valid[:, None, :] & valid[:, :, None]
            pad_mask = ~valid
        pos_emb = rel_pos_emb(t, self.d_model, x.dtype, x.device)
        for layer in self.layers:
            x, _, _ = layer(x, ~allowed, pos_emb, pad_mask)
        if self.out_proj is not None:
            x = self.out_proj(x)
        return x if lengths is None else (x, out_lengths)

    def initial_cache(self, att_context_size: Sequence[int] | None = None) -> ConformerCache:
        """An empty cache for a stream (the default inference look-ahead unless one is named)."""
        ctx = self.att_context_size if att_context_size is None else self._check_contexts([att_context_size])[0]
        return ConformerCache(att_context_size=ctx, last_channel=[None] * len(self.layers),
                              last_time=[None] * len(self.layers))

    def stream(self, chunk: torch.Tensor, cache: ConformerCache | None = None
               ) -> tuple[torch.Tensor, ConformerCache]:
        """Encode the next ``chunk`` ``(B, n, feat_in)`` of a stream: ``(B, ceil(n / factor), d_model)``.

        ``n`` must be a multiple of :meth:`chunk_frames` except for the stream's last chunk (any length).
        Concatenating the outputs gives the offline forward under the cache's look-ahead.
        """
        self._check_input(chunk)
        cache = self.initial_cache() if cache is None else cache
        if cache.finished:
            raise UserError("conformer: this stream already received its final (partial) chunk")
        left, right = cache.att_context_size
        step = self.subsampling_factor * (right + 1)
        if chunk.shape[1] % step:
            cache.finished = True  # a partial chunk sees less look-ahead than offline would later: it ends the stream
        x, pre_cache = self.pre_encode(chunk, cache.pre_encode)
        x = self._embed(x)
        n = x.shape[1]
        channel, times = [], []
        for i, layer in enumerate(self.layers):
            n_cached = 0 if cache.last_channel[i] is None else cache.last_channel[i].shape[1]
            q_pos = torch.arange(cache.offset, cache.offset + n, device=x.device)
            k_pos = torch.arange(cache.offset - n_cached, cache.offset + n, device=x.device)
            mask = ~chunked_limited_mask(q_pos, k_pos, left, right)[None]
            pos_emb = rel_pos_emb(n_cached + n, self.d_model, x.dtype, x.device)
            x, keys, conv_cache = layer(x, mask, pos_emb, None, cache.last_channel[i], cache.last_time[i])
            channel.append(keys if left < 0 else keys[:, max(keys.shape[1] - left, 0):])
            times.append(conv_cache)
        if self.out_proj is not None:
            x = self.out_proj(x)
        new = ConformerCache(att_context_size=(left, right), pre_encode=pre_cache, last_channel=channel,
                             last_time=times, offset=cache.offset + n, finished=cache.finished)
        return x, new


def _conformer(defaults: dict[str, Any], kwargs: dict[str, Any]) -> StreamingConformer:
    return StreamingConformer(**{**defaults, **kwargs})


@register_model(family="conformer", paper=_PAPER, input_shape=(224, 80))
def conformer_streaming_tiny(**kwargs: Any) -> StreamingConformer:
    """A small cache-aware FastConformer (2 layers of width 64) with the paper's look-aheads {13, 6, 1, 0}."""
    return _conformer(dict(feat_in=80, n_layers=2, d_model=64, n_heads=4, subsampling_conv_channels=32,
                           subsampling="dw_striding", subsampling_factor=8, conv_kernel_size=9), kwargs)


@register_model(family="conformer", paper=_PAPER, input_shape=(1120, 80))
def fastconformer_streaming_large(**kwargs: Any) -> StreamingConformer:
    """NeMo's ``fastconformer_ctc_bpe_streaming.yaml`` encoder: 17 layers, d_model 512, 8 heads, dw_striding x8
    (256 channels), conv kernel 9 with LayerNorm, multi-look-ahead [[70, 13], [70, 6], [70, 1], [70, 0]]."""
    return _conformer(dict(feat_in=80, n_layers=17, d_model=512, n_heads=8, subsampling_conv_channels=256,
                           subsampling="dw_striding", subsampling_factor=8, conv_kernel_size=9), kwargs)

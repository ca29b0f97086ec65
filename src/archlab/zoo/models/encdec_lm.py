"""Encoder-decoder small language model (Mu), its parameter-matched decoder-only counterpart, and the KD loss.

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter Efficiency
for SLMs", arXiv 2501.16273 (2025). Names and defaults follow microsoft/encoder-decoder-slm
``src/mu/models/modeling_mu.py`` (``MuConfig``, ``Mu``: ``transformer.{wte, e, ln_e, h, ln_f}`` and a tied
``lm_head``) and ``src/mu/models/mu_utils.py`` (``MuRMSNorm``, ``MuAttention``: ``q_linear`` / ``k_linear`` /
``v_linear`` / ``out_linear`` with grouped-query heads, ``MuMLP``: ``fc1`` / tanh-GELU / ``fc2``, ``MuEncoderBlock``,
``MuDecoderBlock``: ``causal_attn``, ``cross_attn``), so the released ``model.pt`` state dict loads into :class:`Mu`
with a plain ``load_state_dict``. The distillation loss follows ``src/mu/train_text2text_by_kd.py`` (``KDModel``):
``alpha * KL(p_teacher || p_student) + (1 - alpha) * CE`` with ``kd_alpha = 0.9``, the KL over the shared vocabulary
prefix, ``reduction="batchmean"`` over all flattened positions, and no temperature on the logits (the reference's 0.9
is the sampling temperature of the generated targets); :func:`distillation_loss` takes an optional ``temperature``
(Hinton's ``T**2``-scaled form) whose default 1 is the reference.

Positions (the reference's RoPE): queries and keys of self-attention are rotated over the whole head, the
encoder's positions centred (``i - (L - 1) // 2``), the decoder's ``0 .. L - 1``; cross-attention has none.
Padding (``pad_token_id``) keys are masked out in every attention.

Additions for decoding (the reference re-runs the whole decoder for every new token): :meth:`Mu.decode` takes a
:class:`MuCache` of the decoder's self-attention keys/values and the cross-attention keys/values of the encoder
output, which :meth:`Mu.generate` computes once per input. Deviations: a decoder position always sees itself, so
a padding query never averages over future keys (the reference's fully masked row would); generation is greedy
(the reference samples with temperature / top-k); ``bos_token_id`` / ``eos_token_id`` are config fields here.

:class:`DecoderLM` is the decoder-only counterpart built from the same blocks (RMSNorm, RoPE, GQA attention,
GELU MLP, tied embeddings); :func:`decoder_lm_config_matching` picks its depth and MLP width so its parameter
count matches a given :class:`MuConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train.distill import soft_target_kl
from archlab.zoo._registry import register_model
from archlab.zoo.layers.positional import apply_rotary

__all__ = [
    "DecoderLM",
    "DecoderLMConfig",
    "KDLoss",
    "Mu",
    "MuCache",
    "MuConfig",
    "decoder_lm_config_matching",
    "distillation_loss",
    "teacher_logits_for_targets",
]

PAPER = ("Return of the Encoder: Maximizing Parameter Efficiency for SLMs (Elfeki, Liu, Xu, Ranganath, Yang, "
         "Shah, arXiv 2025)")


@dataclass
class _LMConfig:
    """The fields the encoder–decoder model and its decoder-only counterpart share (the reference's names)."""

    n_embd: int = 1024
    qkv_embd: int | None = 384
    is_interleaved: bool = False
    hidden_dim: int = 4096
    n_head: int = 6
    n_kv_head: int = 3
    block_size: int = 1024
    dropout: float = 0.1
    rope_theta: float = 10000
    rope_factor: float = 1.0
    pad_token_id: int = 0
    vocab_size: int = 32128
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        if self.qkv_embd is None:
            self.qkv_embd = self.n_embd
        _check_attention_config("encdec_lm" if isinstance(self, MuConfig) else "decoder_lm", self)


@dataclass
class MuConfig(_LMConfig):
    """The reference's ``MuConfig`` (defaults = the released model), plus ``bos_token_id`` / ``eos_token_id``."""

    n_encoder_layer: int = 20
    n_decoder_layer: int = 10


@dataclass
class DecoderLMConfig(_LMConfig):
    """The decoder-only counterpart: :class:`MuConfig`'s fields without the encoder/decoder split."""

    n_layer: int = 30


def _check_attention_config(name: str, c: MuConfig | DecoderLMConfig) -> None:
    layers = [c.n_encoder_layer, c.n_decoder_layer] if isinstance(c, MuConfig) else [c.n_layer]
    if min(layers + [c.n_embd, c.qkv_embd, c.hidden_dim, c.n_head, c.n_kv_head, c.vocab_size]) < 1:
        raise UserError(f"{name}: layer counts, widths, head counts and vocab_size must be >= 1")
    if c.qkv_embd % c.n_head or c.n_head % c.n_kv_head:
        raise UserError(f"{name}: qkv_embd {c.qkv_embd} must be divisible by n_head {c.n_head}, and n_head by "
                        f"n_kv_head {c.n_kv_head}")
    if (c.qkv_embd // c.n_head) % 2:
        raise UserError(f"{name}: RoPE needs an even head size, got {c.qkv_embd // c.n_head}")
    if not 0.0 <= c.dropout < 1.0:
        raise UserError(f"{name}: dropout must be in [0, 1), got {c.dropout}")


# --- building blocks (mu_utils.py) ----------------------------------------------------------------------


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


def _check_ids(name: str, ids: torch.Tensor, what: str) -> None:
    if ids.dim() != 2 or ids.shape[1] < 1 or ids.dtype not in (torch.int64, torch.int32):
        raise UserError(f"{name}: expected integer {what} (B, L >= 1), got {tuple(ids.shape)} {ids.dtype}")


def _init_weights(module: nn.Module, gen: torch.Generator | None) -> None:
    # the reference's Mu._init_weights: N(0, 0.02) linears and embeddings, zero biases
    if isinstance(module, (nn.Linear, nn.Embedding)) and not module.weight.is_meta:
        with torch.no_grad():
            module.weight.normal_(0.0, 0.02, generator=gen)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()


class MuCache(NamedTuple):
    """Decoding state of :class:`Mu`: per decoder layer the self-attention keys/values so far and the
    cross-attention keys/values of the encoder output."""

    self_kv: list[KV]
    cross_kv: list[KV]


# --- the models ------------------------------------------------------------------------------------------


class Mu(nn.Module):
    """The encoder-decoder LM. ``forward(encoder_input_ids, decoder_input_ids=None)`` -> logits
    ``(B, L_dec, V)``; without ``decoder_input_ids`` the decoder reads one BOS token (the first output token,
    which is what first-token latency measures)."""

    def __init__(self, config: MuConfig | None = None, **overrides) -> None:
        super().__init__()
        config = replace(config or MuConfig(), **overrides)
        self.config = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "e": nn.ModuleList(MuEncoderBlock(config) for _ in range(config.n_encoder_layer)),
            "ln_e": MuRMSNorm(config.n_embd),
            "h": nn.ModuleList(MuDecoderBlock(config) for _ in range(config.n_decoder_layer)),
            "ln_f": MuRMSNorm(config.n_embd),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        gen = torch.Generator().manual_seed(42)  # the reference seeds its own init generator with 42
        self.apply(lambda m: _init_weights(m, gen))

    def encode(self, encoder_input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, L_enc, n_embd)`` and its non-padding mask."""
        _check_ids("encdec_lm", encoder_input_ids, "encoder_input_ids")
        mask = encoder_input_ids != self.config.pad_token_id
        length = encoder_input_ids.shape[1]
        positions = torch.arange(length, device=mask.device) - (length - 1) // 2  # centred, as the reference
        e = self.transformer.wte(encoder_input_ids)
        for block in self.transformer.e:
            e = block(e, mask, positions)[0]
        return self.transformer.ln_e(e), mask

    def cross_cache(self, encoder_out: torch.Tensor, encoder_mask: torch.Tensor) -> list[KV]:
        """Every decoder layer's cross-attention keys/values of the encoder output (computed once per input)."""
        return [blk.cross_attn.project_kv(encoder_out, encoder_mask) for blk in self.transformer.h]

    def decode(self, decoder_input_ids: torch.Tensor, cross_kv: list[KV], cache: MuCache | None = None
               ) -> tuple[torch.Tensor, MuCache]:
        """Logits for ``decoder_input_ids`` (positions after those in ``cache``) and the grown cache."""
        _check_ids("encdec_lm", decoder_input_ids, "decoder_input_ids")
        offset = 0 if cache is None else cache.self_kv[0].k.shape[2]
        mask = decoder_input_ids != self.config.pad_token_id
        positions = torch.arange(offset, offset + decoder_input_ids.shape[1], device=mask.device)
        x = self.transformer.wte(decoder_input_ids)
        new = []
        for i, block in enumerate(self.transformer.h):
            x, kv = block(x, mask, positions, cross_kv[i], None if cache is None else cache.self_kv[i])
            new.append(kv)
        return self.lm_head(self.transformer.ln_f(x)), MuCache(new, cross_kv)

    def forward(self, encoder_input_ids: torch.Tensor, decoder_input_ids: torch.Tensor | None = None
                ) -> torch.Tensor:
        if decoder_input_ids is None:
            decoder_input_ids = encoder_input_ids.new_full((encoder_input_ids.shape[0], 1), self.config.bos_token_id)
        if decoder_input_ids.dim() == 2 and decoder_input_ids.shape[0] != encoder_input_ids.shape[0]:
            raise UserError(f"encdec_lm: batch size mismatch between encoder {tuple(encoder_input_ids.shape)} and "
                            f"decoder {tuple(decoder_input_ids.shape)} inputs")
        out, mask = self.encode(encoder_input_ids)
        return self.decode(decoder_input_ids, self.cross_cache(out, mask))[0]

    def loss(self, encoder_input_ids: torch.Tensor, decoder_input_ids: torch.Tensor,
             targets: torch.Tensor) -> torch.Tensor:
        """The reference's CE: ``targets`` equal to ``pad_token_id`` are ignored."""
        logits = self(encoder_input_ids, decoder_input_ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=self.config.pad_token_id)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 64, use_cache: bool = True) -> torch.Tensor:
        """Greedy decoding from BOS: ``(B, 1 + n)`` decoder ids; a sequence that emitted EOS continues with EOS,
        and decoding stops once all have. The encoder runs once; with ``use_cache`` each step feeds only the new
        token through the decoder, otherwise the whole prefix is re-run (the reference's loop)."""
        bos, eos = self.config.bos_token_id, self.config.eos_token_id
        out, mask = self.encode(input_ids)
        cross = self.cross_cache(out, mask)
        seq = input_ids.new_full((input_ids.shape[0], 1), bos)

        def next_logits(seq: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
            if use_cache:
                return self.decode(seq[:, -1:], cross, cache)
            return self.decode(seq, cross)[0], None

        return _greedy(seq, next_logits, max_new_tokens, eos)


def _greedy(seq: torch.Tensor, next_logits: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]],
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


class DecoderLM(nn.Module):
    """The decoder-only counterpart: ``transformer.{wte, h, ln_f}`` of causal :class:`MuEncoderBlock` and a tied
    ``lm_head``. ``forward(input_ids, cache=None, return_cache=False)`` -> logits ``(B, L, V)``."""

    def __init__(self, config: DecoderLMConfig | None = None, **overrides) -> None:
        super().__init__()
        config = replace(config or DecoderLMConfig(), **overrides)
        self.config = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "h": nn.ModuleList(MuEncoderBlock(config, is_causal=True) for _ in range(config.n_layer)),
            "ln_f": MuRMSNorm(config.n_embd),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        gen = torch.Generator().manual_seed(42)
        self.apply(lambda m: _init_weights(m, gen))

    def forward(self, input_ids: torch.Tensor, cache: list[KV] | None = None, return_cache: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[KV]]:
        _check_ids("decoder_lm", input_ids, "input_ids")
        offset = 0 if cache is None else cache[0].k.shape[2]
        mask = input_ids != self.config.pad_token_id
        positions = torch.arange(offset, offset + input_ids.shape[1], device=mask.device)
        x = self.transformer.wte(input_ids)
        new = []
        for i, block in enumerate(self.transformer.h):
            x, kv = block(x, mask, positions, None if cache is None else cache[i])
            new.append(kv)
        logits = self.lm_head(self.transformer.ln_f(x))
        return (logits, new) if return_cache else logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 64, use_cache: bool = True) -> torch.Tensor:
        """Greedy continuation of ``input_ids`` (prompt + up to ``max_new_tokens``, EOS-filled as in :class:`Mu`)."""
        eos = self.config.eos_token_id

        def next_logits(seq: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
            if use_cache:
                return self(seq if cache is None else seq[:, -1:], cache, return_cache=True)
            return self(seq), None

        return _greedy(input_ids, next_logits, max_new_tokens, eos)


# --- parameter matching ----------------------------------------------------------------------------------


def _attn_params(c: MuConfig | DecoderLMConfig) -> int:
    kv = c.n_kv_head * (c.qkv_embd // c.n_head)
    return (c.n_embd + 1) * c.qkv_embd + 2 * (c.n_embd + 1) * kv + (c.qkv_embd + 1) * c.n_embd


def _mlp_params(n_embd: int, hidden_dim: int) -> int:
    return (n_embd + 1) * hidden_dim + (hidden_dim + 1) * n_embd


def encdec_param_count(c: MuConfig) -> int:
    """Parameters of :class:`Mu` (tied embeddings counted once)."""
    a, m, n = _attn_params(c), _mlp_params(c.n_embd, c.hidden_dim), c.n_embd
    return (c.vocab_size * n + c.n_encoder_layer * (a + m + 2 * n) + n
            + c.n_decoder_layer * (2 * a + m + 3 * n) + n)


def decoder_param_count(c: DecoderLMConfig) -> int:
    """Parameters of :class:`DecoderLM` (tied embeddings counted once)."""
    a, m, n = _attn_params(c), _mlp_params(c.n_embd, c.hidden_dim), c.n_embd
    return c.vocab_size * n + c.n_layer * (a + m + 2 * n) + n


def decoder_lm_config_matching(c: MuConfig) -> DecoderLMConfig:
    """A :class:`DecoderLMConfig` with ``c``'s width, heads and vocabulary whose parameter count matches ``c``'s:
    the depth is the nearest whole number of layers, then the MLP width absorbs the remainder."""
    shared = {f.name: getattr(c, f.name) for f in fields(DecoderLMConfig) if f.name != "n_layer"}
    base = DecoderLMConfig(n_layer=1, **shared)
    target = encdec_param_count(c)
    n = c.n_embd
    per_layer = _attn_params(base) + _mlp_params(n, c.hidden_dim) + 2 * n
    fixed = c.vocab_size * n + n
    n_layer = max(1, round((target - fixed) / per_layer))
    # solve n_layer * (attn + 2n + n + hidden * (2n + 1)) = target - fixed for the MLP width
    hidden = round(((target - fixed) / n_layer - _attn_params(base) - 3 * n) / (2 * n + 1))
    if hidden < 1:
        raise UserError(f"encdec_lm: no decoder-only MLP width matches {target} parameters at {n_layer} layers")
    return replace(base, n_layer=n_layer, hidden_dim=hidden)


# --- distillation (train_text2text_by_kd.py) ---------------------------------------------------------------


class KDLoss(NamedTuple):
    loss: torch.Tensor
    kd_loss: torch.Tensor
    ce_loss: torch.Tensor


def teacher_logits_for_targets(teacher_logits: torch.Tensor, source_len: int, target_len: int) -> torch.Tensor:
    """The decoder-only teacher reads ``[source (left-padded to source_len), target]``; the logits that predict
    the ``target_len`` target tokens are those at positions ``source_len - 1 ..``, as in ``KDModel.forward_kd``."""
    if teacher_logits.dim() != 3 or teacher_logits.shape[1] < source_len - 1 + target_len or source_len < 1:
        raise UserError(f"encdec_lm: teacher logits {tuple(teacher_logits.shape)} do not cover a source of "
                        f"{source_len} and a target of {target_len} tokens")
    return teacher_logits[:, source_len - 1:source_len - 1 + target_len]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      ce_logits: torch.Tensor | None = None, *, alpha: float = 0.9, temperature: float = 1.0,
                      ignore_index: int = 0) -> KDLoss:
    """``alpha * KL(p_teacher || p_student) + (1 - alpha) * CE(ce_logits, targets)``.

    The KL is over the first ``min(V_student, V_teacher)`` logits, averaged over all ``B * L`` positions
    (``batchmean`` of the flattened logits); with ``temperature`` T both are softened by T and the KL scaled by
    ``T ** 2`` (T = 1, the default, is the reference). ``ce_logits`` are the student's logits on the gold decoder
    inputs (the reference runs the student twice: on its generated targets for the KL, on the gold targets for
    the CE); by default ``student_logits``. CE ignores ``ignore_index`` (the pad id).
    """
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"encdec_lm: alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise UserError(f"encdec_lm: temperature must be positive, got {temperature}")
    if student_logits.shape[:-1] != teacher_logits.shape[:-1]:
        raise UserError(f"encdec_lm: student logits {tuple(student_logits.shape)} and teacher logits "
                        f"{tuple(teacher_logits.shape)} must cover the same positions")
    vocab = min(student_logits.shape[-1], teacher_logits.shape[-1])
    kd = soft_target_kl(student_logits[..., :vocab], teacher_logits[..., :vocab], temperature)
    ce_logits = student_logits if ce_logits is None else ce_logits
    ce = F.cross_entropy(ce_logits.reshape(-1, ce_logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)
    return KDLoss(alpha * kd + (1.0 - alpha) * ce, kd, ce)


# --- registered configurations -----------------------------------------------------------------------------

_TINY = dict(n_encoder_layer=2, n_decoder_layer=1, n_embd=64, qkv_embd=64, hidden_dim=256, n_head=4, n_kv_head=2,
             block_size=256, dropout=0.0, vocab_size=256)


def _with_num_classes(kwargs: dict) -> dict:
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is not None:  # the zoo's common name for the output size
        kwargs["vocab_size"] = num_classes
    return kwargs


@register_model(family="encdec_lm", paper=PAPER, input_shape=(64,), input_dtype="long")
def encdec_lm_tiny(**kwargs) -> Mu:
    """A character-level (256 ids) encoder-decoder: 2 encoder + 1 decoder layers (the reference's 2:1 split),
    width 64, 4 query / 2 key-value heads, no dropout."""
    return Mu(MuConfig(**{**_TINY, **_with_num_classes(kwargs)}))


@register_model(family="encdec_lm", paper=PAPER, input_shape=(64,), input_dtype="long")
def decoder_lm_tiny(**kwargs) -> DecoderLM:
    """The decoder-only counterpart of :func:`encdec_lm_tiny` with the same parameter count
    (:func:`decoder_lm_config_matching`); keyword overrides apply to the encoder-decoder config first."""
    kwargs = _with_num_classes(kwargs)
    return DecoderLM(decoder_lm_config_matching(MuConfig(**{**_TINY, **kwargs})))


@register_model(family="encdec_lm", paper=PAPER, input_shape=(1024,), input_dtype="long")
def encdec_lm_mu(**kwargs) -> Mu:
    """The released model's ``MuConfig`` defaults: 20 encoder + 10 decoder layers, width 1024, qkv 384 with 6
    query / 3 key-value heads, MLP 4096, vocabulary 32128."""
    return Mu(MuConfig(**_with_num_classes(kwargs)))

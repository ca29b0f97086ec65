"""Parameter counts of Mu and of its decoder-only counterpart, and a decoder-only config that matches Mu's.

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter
Efficiency for SLMs", arXiv 2501.16273 (2025). The paper's comparisons are at equal parameter counts; these
closed forms count the parameters of :class:`~archlab.zoo.models.encdec_lm.mu.Mu` and
:class:`~archlab.zoo.models.encdec_lm.decoder_lm.DecoderLM` without building them (tied embeddings once).
"""

from __future__ import annotations

from dataclasses import fields, replace

from archlab.errors import UserError
from archlab.zoo.models.encdec_lm.config import DecoderLMConfig, MuConfig

__all__ = ["decoder_lm_config_matching", "decoder_param_count", "encdec_param_count"]


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

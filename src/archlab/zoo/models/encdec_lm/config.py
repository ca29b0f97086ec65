"""The configurations of the encoder-decoder LM (``MuConfig``) and its decoder-only counterpart.

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter
Efficiency for SLMs", arXiv 2501.16273 (2025). Fields and defaults follow microsoft/encoder-decoder-slm
``src/mu/models/modeling_mu.py`` (``MuConfig``; the defaults are the released model's), plus ``bos_token_id`` /
``eos_token_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

from archlab.errors import UserError

__all__ = ["DecoderLMConfig", "MuConfig"]


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

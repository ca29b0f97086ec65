"""The registered encoder-decoder LM configurations: a tiny character-level pair and the released Mu.

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter
Efficiency for SLMs", arXiv 2501.16273 (2025).
"""

from __future__ import annotations

from archlab.zoo._registry import register_model
from archlab.zoo.models.encdec_lm.config import MuConfig
from archlab.zoo.models.encdec_lm.decoder_lm import DecoderLM
from archlab.zoo.models.encdec_lm.mu import Mu
from archlab.zoo.models.encdec_lm.params import decoder_lm_config_matching

__all__ = ["PAPER", "decoder_lm_tiny", "encdec_lm_mu", "encdec_lm_tiny"]

PAPER = ("Return of the Encoder: Maximizing Parameter Efficiency for SLMs (Elfeki, Liu, Xu, Ranganath, Yang, "
         "Shah, arXiv 2025)")


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

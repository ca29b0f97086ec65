"""BERT with its MLM head, as Hugging Face implements it: the baseline MosaicBERT is measured against.

Paper: Devlin, Chang, Lee and Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019. MosaicBERT (:mod:`archlab.zoo.models.mosaicbert`) compares itself with Hugging Face
``BertForMaskedLM`` (mosaicml/examples ``examples/benchmarks/bert/src/hf_bert.py`` wraps it); module and parameter
names here follow transformers ``models/bert/modeling_bert.py`` (``bert.embeddings.{word,position,token_type}
_embeddings``, ``bert.encoder.layer.N.attention.self.{query,key,value}``, ``attention.output.dense``,
``intermediate.dense``, ``output.dense`` / ``output.LayerNorm``, ``cls.predictions``; the head is MosaicBERT's,
whose output bias is ``cls.predictions.decoder.bias``). A Hugging Face state dict loads as it is (the head's
``cls.predictions.bias``, the original checkpoints' LayerNorm ``gamma`` / ``beta``, pooler and next-sentence head
are handled on load; ``bert-base-uncased`` needs ``vocab_size=30522``); a test loads a ``transformers``
``BertForMaskedLM`` and gets its logits.

What differs from MosaicBERT, per layer (both post-LN)::

    a = LayerNorm(x + dense(MHA(x)))                     learned absolute positions; key-padding mask only
    y = LayerNorm(a + output(gelu(intermediate(a))))     a plain GELU MLP

and every token, padding included, goes through every layer and the MLM head (no unpadding); the loss is taken
at the labelled tokens. The configuration is MosaicBERT's :class:`~archlab.zoo.models.mosaicbert.BertConfig`
(``alibi_starting_size`` unused; ``max_position_embeddings`` bounds the input length).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._checkpoint import rename_keys
from archlab.zoo._registry import register_model
from archlab.zoo.models.mosaicbert import (
    TINY_CHAR,
    BertConfig,
    BertOnlyMLMHead,
    BertSelfOutput,
    MaskedLMOutput,
    build_from_config,
    check_mlm_inputs,
    init_bert_weights,
)

__all__ = ["BertForMaskedLM", "bert_base", "bert_tiny_char"]

PAPER = ("BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding (Devlin, Chang, Lee, "
         "Toutanova, NAACL 2019)")


class BertEmbeddings(nn.Module):
    """Word + learned absolute position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        embeddings = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
                      + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention over ``(B, S, hidden)`` with separate ``query`` / ``key`` / ``value``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.p_dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, seqlen, hidden = hidden_states.shape
        q, k, v = (proj(hidden_states).reshape(batch, seqlen, self.num_attention_heads, self.attention_head_size)
                   .transpose(1, 2) for proj in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.p_dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(batch, seqlen, hidden)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden_states, bias), hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = nn.GELU(approximate="none")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(BertSelfOutput):
    """``LayerNorm(x + dropout(dense(mlp hidden)))``: the MLP's post-LN residual, reading ``intermediate_size``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config, in_features=config.intermediate_size)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        attention_output = self.attention(hidden_states, bias)
        return self.output(self.intermediate(attention_output), attention_output)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Hugging Face's extended mask: 0 where attended, the dtype's minimum at padding keys
        bias = (1.0 - attention_mask[:, None, None, :].to(hidden_states.dtype)) * torch.finfo(hidden_states.dtype).min
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, bias)
        return hidden_states


class BertModel(nn.Module):
    """Embeddings + encoder (no pooler, as in ``BertForMaskedLM``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.encoder(self.embeddings(input_ids, token_type_ids), attention_mask)


class BertForMaskedLM(nn.Module):
    """BERT with its MLM head. ``forward(input_ids)`` -> logits ``(B, S, vocab)``; with ``labels`` (``-100`` where
    not masked) -> :class:`~archlab.zoo.models.mosaicbert.MaskedLMOutput` (logits at every token)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Hugging Face's names for the few places that differ: the head's output bias is ``cls.predictions.bias``
        # (tied to ``decoder.bias``); the original Google checkpoints (``bert-base-uncased``) call LayerNorm's
        # parameters ``gamma`` / ``beta`` and also hold the pre-training parts an MLM model has no use for (the
        # pooler, the next-sentence head) and the ``position_ids`` / ``token_type_ids`` constants, which are
        # left out.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            if rest.startswith(("bert.pooler.", "cls.seq_relationship.")) or rest in (
                    "bert.embeddings.position_ids", "bert.embeddings.token_type_ids"):
                del state_dict[key]
            elif "LayerNorm." in rest and rest.endswith((".gamma", ".beta")):
                state_dict[key.rsplit(".", 1)[0] + (".weight" if rest.endswith("gamma") else ".bias")] = \
                    state_dict.pop(key)
        rename_keys(state_dict, prefix, {"cls.predictions.bias": "cls.predictions.decoder.bias"})
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None
                ) -> torch.Tensor | MaskedLMOutput:
        check_mlm_inputs("bert", self.config, input_ids, attention_mask, token_type_ids, labels)
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise UserError(f"bert: sequences of {input_ids.shape[1]} tokens exceed max_position_embeddings "
                            f"{self.config.max_position_embeddings}")
        logits = self.cls(self.bert(input_ids, token_type_ids, attention_mask))
        if labels is None:
            return logits
        return MaskedLMOutput(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100), logits)


@register_model(family="bert", paper=PAPER, input_shape=(128,), input_dtype="long")
def bert_base(**kwargs) -> BertForMaskedLM:
    """BERT-Base (bert-base-uncased dimensions, vocabulary padded to 30528 as MosaicBERT's): 110M parameters."""
    return build_from_config(BertForMaskedLM, BertConfig(), kwargs, "bert")


@register_model(family="bert", paper=PAPER, input_shape=(128,), input_dtype="long")
def bert_tiny_char(**kwargs) -> BertForMaskedLM:
    """The classic-BERT twin of ``mosaicbert_tiny_char`` (same width, depth, heads; the MLP's intermediate width is
    twice the GeGLU's, the usual 4x hidden): ASCII ids, ``0`` padding, 128 positions."""
    defaults = dict(intermediate_size=2 * TINY_CHAR.intermediate_size, max_position_embeddings=128)
    return build_from_config(BertForMaskedLM, TINY_CHAR, defaults | kwargs, "bert")

"""MosaicBERT: a post-LN BERT encoder with ALiBi, a GeGLU feed-forward and unpadding, with its MLM head.

Paper: Portes, Trott, Havens, King, Venigalla, Nadeem, Sardana, Khudia and Frankle, "MosaicBERT: A Bidirectional
Encoder Optimized for Fast Pretraining", NeurIPS 2023. Module and parameter names, defaults and initialisation
follow mosaicml/examples ``examples/benchmarks/bert/src/bert_layers.py`` (``BertForMaskedLM``, ``BertModel``,
``BertEmbeddings``, ``BertEncoder``, ``BertLayer``, ``BertUnpadAttention``, ``BertUnpadSelfAttention`` with its
fused ``Wqkv``, ``BertSelfOutput``, ``BertGatedLinearUnitMLP`` with ``gated_layers`` / ``wo`` / ``layernorm``,
``BertOnlyMLMHead``) and ``bert_padding.py`` (``unpad_input`` / ``pad_input``), so a ``BertForMaskedLM``
checkpoint of the reference loads with a plain ``load_state_dict`` (after dropping a ``model.`` prefix).

The architecture, per layer, on the packed non-pad tokens ``x`` (``(nnz, hidden)``)::

    a = LayerNorm(x + dense(MHA(x)))                     scores + ALiBi -m_h |i - j| + key-padding mask
    y = layernorm(a + wo(gelu(h[:, :I]) * h[:, I:])),    h = gated_layers(a)   (GeGLU; no bias in gated_layers)

Unpadding: the embeddings of the tokens where ``attention_mask`` is 1 are gathered into one ``(nnz, hidden)``
tensor; all projections, feed-forwards and norms run on it, so pad tokens cost nothing; only the attention scatters
``q, k, v`` back to ``(B, S, ...)`` to attend within each sequence (the reference's PyTorch path); the outputs are
padded back with zeros at the end. ``unpad=False`` runs the same layers on every token with only the attention
mask (the Hugging Face BERT computation), which the tests hold the unpadded form to. With MLM labels only the
masked tokens go through the last layer's output projections, feed-forward and the head (the reference's
``subset_idx``).

MLM data: :func:`mlm_mask` masks 30 % of the (non-special, non-pad) tokens, replacing 80 % of them by the mask
token, 10 % by a random token and leaving 10 % (Hugging Face ``DataCollatorForLanguageModeling``, which the
reference's ``text_data.py`` uses with ``mlm_probability: 0.3``).

Parameter count: ``mosaicbert_base`` (vocab 30528: bert-base-uncased's 30522 padded to a multiple of 8 as the
reference does; hidden 768, 12 layers, 12 heads, intermediate 3072 so ``gated_layers`` is ``768 -> 6144``) has
137,400,384 parameters (the paper's "137M"); the tied decoder weight is counted once.

Not implemented from the reference: the Triton flash-attention kernel (speed only), the pooler and the sequence
classification head, ``output_all_encoded_layers``, and gradient checkpointing. Deviation: a label is "masked"
where it is ``>= 0`` (the reference tests ``> 0``, identical while token 0 is the never-masked pad token).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.positional import alibi_bias

__all__ = [
    "BertConfig",
    "BertEmbeddings",
    "BertEncoder",
    "BertForMaskedLM",
    "BertGatedLinearUnitMLP",
    "BertLayer",
    "BertModel",
    "BertUnpadAttention",
    "BertUnpadSelfAttention",
    "MaskedLMOutput",
    "mlm_mask",
    "mosaicbert_base",
    "mosaicbert_tiny_char",
    "pad_input",
    "unpad_input",
]

PAPER = ("MosaicBERT: A Bidirectional Encoder Optimized for Fast Pretraining (Portes, Trott, Havens, King, "
         "Venigalla, Nadeem, Sardana, Khudia, Frankle, NeurIPS 2023)")
# The reference's additive key-padding mask: finite, so a fully padded row gives a uniform softmax, not NaN.
MASK_VALUE = -10000.0


@dataclass(frozen=True)
class BertConfig:
    """The fields of the reference's ``BertConfig`` (Hugging Face ``BertConfig`` + ``alibi_starting_size``) that
    the model reads; defaults are bert-base-uncased's, vocabulary padded to a multiple of 8."""

    vocab_size: int = 30528
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    alibi_starting_size: int = 512

    def check(self) -> None:
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "type_vocab_size", "max_position_embeddings", "alibi_starting_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"mosaicbert: {name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(f"mosaicbert: hidden_size {self.hidden_size} must be divisible by num_attention_heads "
                            f"{self.num_attention_heads}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise UserError(f"mosaicbert: pad_token_id {self.pad_token_id} outside the vocabulary "
                            f"[0, {self.vocab_size})")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"mosaicbert: {name} must be in [0, 1), got {getattr(self, name)}")


# --- unpadding (bert_padding.py) --------------------------------------------------------------------------

def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(B, S, ...)`` -> the ``nnz`` rows where ``attention_mask`` is nonzero, ``(nnz, ...)``; also their flat
    ``indices`` into ``B * S``, ``cu_seqlens`` ``(B + 1,)`` (int32, cumulative lengths) and the longest length."""
    seqlens = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    max_seqlen = int(seqlens.max().item()) if seqlens.numel() else 0
    return hidden_states.flatten(0, 1)[indices], indices, cu_seqlens, max_seqlen


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """The inverse of :func:`unpad_input`: ``(nnz, ...)`` -> ``(B, S, ...)`` with zeros at the pad positions."""
    out = hidden_states.new_zeros(batch * seqlen, *hidden_states.shape[1:])
    out = out.index_put((indices,), hidden_states)
    return out.reshape(batch, seqlen, *hidden_states.shape[1:])


# --- layers ------------------------------------------------------------------------------------------------

class BertEmbeddings(nn.Module):
    """Word + token-type embeddings, LayerNorm, dropout: no position embeddings (ALiBi gives positions)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BertUnpadSelfAttention(nn.Module):
    """Multi-head self-attention on packed tokens: ``(nnz, hidden)`` -> ``(nnz, hidden)``, each token attending to
    the tokens of its own sequence, with an additive bias (ALiBi + key-padding mask)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.p_dropout = config.attention_probs_dropout_prob
        self.Wqkv = nn.Linear(self.all_head_size, 3 * config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int,
                bias: torch.Tensor) -> torch.Tensor:
        """``bias``: ``(B, heads, S, S)``, added to the scaled scores."""
        qkv = pad_input(self.Wqkv(hidden_states), indices, batch, seqlen)
        # (B, S, 3 * hidden) -> 3 x (B, heads, S, head_size): the reference's 'b s (t h d)' layout
        qkv = qkv.reshape(batch, seqlen, 3, self.num_attention_heads, self.attention_head_size)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.p_dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(batch * seqlen, self.all_head_size)
        return out[indices]


class BertSelfOutput(nn.Module):
    """``LayerNorm(x + dropout(dense(attention)))``: the post-LN residual of the attention."""

    def __init__(self, config: BertConfig, in_features: int | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertUnpadAttention(nn.Module):
    """Self-attention then its output block; with ``subset_idx`` only those rows leave the layer."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertUnpadSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, input_tensor: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int,
                bias: torch.Tensor, subset_idx: torch.Tensor | None = None) -> torch.Tensor:
        self_output = self.self(input_tensor, indices, batch, seqlen, bias)
        if subset_idx is not None:
            return self.output(self_output[subset_idx], input_tensor[subset_idx])
        return self.output(self_output, input_tensor)


class BertGatedLinearUnitMLP(nn.Module):
    """GeGLU feed-forward with a post-LN residual: ``layernorm(x + wo(gelu(h_gate) * h_value))``.

    ``gated_layers`` maps ``hidden -> 2 * intermediate`` without a bias; its first half is the gate (through the
    exact GELU), the second half the value.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, config.intermediate_size * 2, bias=False)
        self.act = nn.GELU(approximate="none")
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        h = self.gated_layers(hidden_states)
        gated, non_gated = h[..., :self.intermediate_size], h[..., self.intermediate_size:]
        h = self.dropout(self.act(gated) * non_gated)
        return self.layernorm(self.wo(h) + hidden_states)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertUnpadAttention(config)
        self.mlp = BertGatedLinearUnitMLP(config)

    def forward(self, hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int,
                bias: torch.Tensor, subset_idx: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(self.attention(hidden_states, indices, batch, seqlen, bias, subset_idx))


class BertEncoder(nn.Module):
    """The layer stack; unpads, builds the ALiBi + padding bias once, runs the layers, pads back.

    The ALiBi table (``-m_h |i - j|``, ``alibi_starting_size`` square, grown on demand) is a plain attribute as
    in the reference, not a buffer: it is not part of the state dict.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([copy.deepcopy(BertLayer(config)) for _ in range(config.num_hidden_layers)])
        self.num_attention_heads = config.num_attention_heads
        # float64 so that a float64 model gets exact slopes; cast to the activations' dtype when used
        self.alibi = alibi_bias(self.num_attention_heads, config.alibi_starting_size, dtype=torch.float64)[None]

    def alibi_table(self, size: int, like: torch.Tensor) -> torch.Tensor:
        if self.alibi.shape[-1] < size:
            self.alibi = alibi_bias(self.num_attention_heads, size, dtype=torch.float64, device=like.device)[None]
        if self.alibi.device != like.device:
            self.alibi = self.alibi.to(like.device)
        return self.alibi[:, :, :size, :size].to(like.dtype)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor,
                subset_mask: torch.Tensor | None = None, unpad: bool = True) -> torch.Tensor:
        """``(B, S, hidden)`` -> ``(B, S, hidden)`` (zeros at pad tokens when unpadded), or the rows of
        ``subset_mask`` in row-major order, ``(n_subset, hidden)``."""
        batch, seqlen = hidden_states.shape[:2]
        mask = attention_mask.bool()
        keep = mask if unpad else torch.ones_like(mask)
        hidden, indices, _, _ = unpad_input(hidden_states, keep)
        key_mask = (~mask).to(hidden.dtype)[:, None, None, :] * MASK_VALUE
        bias = self.alibi_table(seqlen, hidden) + key_mask
        for i, layer_module in enumerate(self.layer):
            subset_idx = None
            if subset_mask is not None and i == len(self.layer) - 1:
                subset_idx = torch.nonzero(subset_mask[keep], as_tuple=False).flatten()
            hidden = layer_module(hidden, indices, batch, seqlen, bias, subset_idx)
        if subset_mask is not None:
            return hidden
        return pad_input(hidden, indices, batch, seqlen)


class BertModel(nn.Module):
    """Embeddings + encoder (no pooler: the MLM model has ``add_pooling_layer=False``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, masked_tokens_mask: torch.Tensor | None = None,
                unpad: bool = True) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embedding_output = self.embeddings(input_ids, token_type_ids)
        return self.encoder(embedding_output, attention_mask, masked_tokens_mask, unpad=unpad)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = nn.GELU(approximate="none")  # hidden_act "gelu"
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=1e-12)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig, embedding_weight: nn.Parameter) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        # the output weights are the input embeddings (tied), with an output-only bias per token
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight = embedding_weight

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig, embedding_weight: nn.Parameter) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config, embedding_weight)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class MaskedLMOutput(NamedTuple):
    """``loss``: mean cross-entropy over the masked tokens; ``logits``: ``(B, S, vocab)``, zero except at the
    masked tokens (only those are computed, as in the reference)."""

    loss: torch.Tensor
    logits: torch.Tensor


@torch.no_grad()
def init_bert_weights(module: nn.Module, std: float) -> None:
    """Hugging Face ``BertPreTrainedModel._init_weights`` (which the reference's ``post_init()`` applies), for
    ``model.apply``: N(0, std) linears and embeddings (zero pad row), zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.normal_(0.0, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.zero_()
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.fill_(1.0)
        module.bias.zero_()


def check_mlm_inputs(name: str, config: BertConfig, input_ids: torch.Tensor, *others: torch.Tensor | None) -> None:
    """A one-line :class:`UserError` (prefixed ``name``) unless ``input_ids`` is ``(B, S)`` integer ids inside the
    vocabulary and every other given tensor (attention mask, token types, labels) has its shape."""
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int32, torch.int64):
        raise UserError(f"{name}: expected input_ids (B, S) of integer token ids, got {tuple(input_ids.shape)} "
                        f"{input_ids.dtype}")
    # (values are unknown on the meta device, where the zoo counts FLOPs from shapes alone)
    if input_ids.numel() and not input_ids.is_meta and (input_ids.min() < 0 or input_ids.max() >= config.vocab_size):
        raise UserError(f"{name}: token ids must be in [0, {config.vocab_size}), got "
                        f"[{int(input_ids.min())}, {int(input_ids.max())}]")
    for other in others:
        if other is not None and other.shape != input_ids.shape:
            raise UserError(f"{name}: attention_mask / token_type_ids / labels must have the shape of "
                            f"input_ids {tuple(input_ids.shape)}, got {tuple(other.shape)}")


class BertForMaskedLM(nn.Module):
    """MosaicBERT with its MLM head. ``forward(input_ids)`` -> logits ``(B, S, vocab)``; with ``labels``
    (``-100`` where not masked) -> :class:`MaskedLMOutput`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                unpad: bool = True) -> torch.Tensor | MaskedLMOutput:
        check_mlm_inputs("mosaicbert", self.config, input_ids, attention_mask, token_type_ids, labels)
        if labels is None:
            return self.cls(self.bert(input_ids, token_type_ids, attention_mask, unpad=unpad))
        masked = labels >= 0
        if attention_mask is not None:
            masked = masked & attention_mask.bool()
        scores = self.cls(self.bert(input_ids, token_type_ids, attention_mask, masked, unpad=unpad))
        loss = F.cross_entropy(scores, labels[masked])
        batch, seqlen = input_ids.shape
        logits = pad_input(scores, torch.nonzero(masked.flatten()).flatten(), batch, seqlen)
        return MaskedLMOutput(loss, logits)


# --- MLM masking ---------------------------------------------------------------------------------------------

def mlm_mask(input_ids: torch.Tensor, *, vocab_size: int, mask_token_id: int, mlm_probability: float = 0.3,
             special_token_ids: tuple[int, ...] | list[int] = (), attention_mask: torch.Tensor | None = None,
             seed: int | None = None, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: returns ``(inputs, labels)``; ``labels`` is ``-100`` except at the chosen tokens.

    Each token that is not special and not padding (``attention_mask`` 0) is chosen with ``mlm_probability``
    (MosaicBERT: 0.3); of the chosen, 80 % become ``mask_token_id``, 10 % a uniformly random token and 10 % stay.
    ``seed`` (or a ``generator``) makes it reproducible.
    """
    if not 0.0 <= mlm_probability <= 1.0:
        raise UserError(f"mlm_mask: mlm_probability must be in [0, 1], got {mlm_probability}")
    if not 0 <= mask_token_id < vocab_size:
        raise UserError(f"mlm_mask: mask_token_id {mask_token_id} outside the vocabulary [0, {vocab_size})")
    if generator is None:
        generator = torch.Generator(device=input_ids.device)
        generator.manual_seed(torch.seed() if seed is None else seed)
    labels = input_ids.clone()
    probability = torch.full(input_ids.shape, mlm_probability, device=input_ids.device)
    special = torch.isin(input_ids, torch.as_tensor(list(special_token_ids), dtype=input_ids.dtype,
                                                     device=input_ids.device))
    if attention_mask is not None:
        special |= ~attention_mask.bool()
    probability.masked_fill_(special, 0.0)
    chosen = torch.bernoulli(probability, generator=generator).bool()
    labels[~chosen] = -100
    inputs = input_ids.clone()
    replaced = torch.bernoulli(torch.full(input_ids.shape, 0.8, device=input_ids.device),
                               generator=generator).bool() & chosen
    inputs[replaced] = mask_token_id
    randomised = torch.bernoulli(torch.full(input_ids.shape, 0.5, device=input_ids.device),
                                 generator=generator).bool() & chosen & ~replaced
    random_words = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device,
                                 dtype=input_ids.dtype)
    inputs[randomised] = random_words[randomised]
    return inputs, labels


# --- published configurations --------------------------------------------------------------------------------

def build_from_config(model_cls: type[nn.Module], base: BertConfig, overrides: dict, name: str) -> nn.Module:
    """``model_cls(base with overrides)``; an override that is not a :class:`BertConfig` field is a clear error."""
    unknown = set(overrides) - set(BertConfig.__dataclass_fields__)
    if unknown:
        raise UserError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}")
    return model_cls(replace(base, **overrides))


@register_model(family="mosaicbert", paper=PAPER, input_shape=(128,), input_dtype="long")
def mosaicbert_base(**kwargs) -> BertForMaskedLM:
    """MosaicBERT-Base (``mosaic-bert-base-uncased.yaml``): bert-base dimensions, vocab 30528, 137.4M params."""
    return build_from_config(BertForMaskedLM, BertConfig(), kwargs, "mosaicbert")


TINY_CHAR = BertConfig(vocab_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=256, hidden_dropout_prob=0.0, max_position_embeddings=256,
                       alibi_starting_size=256)


@register_model(family="mosaicbert", paper=PAPER, input_shape=(128,), input_dtype="long")
def mosaicbert_tiny_char(**kwargs) -> BertForMaskedLM:
    """A tiny character-level MosaicBERT (an archlab configuration, not a published one): ids are ASCII codes
    (``0`` is padding; take e.g. ``1`` as the mask token), hidden 128, 4 layers of 4 heads, GeGLU width 256."""
    return build_from_config(BertForMaskedLM, TINY_CHAR, kwargs, "mosaicbert")


"""GPT-NeoX layers and the vanilla GPT-NeoX language model: what both Block Transformer decoders are made of.

Papers: Ho et al., "Block Transformer: Global-to-Local Language Modeling for Fast Inference", NeurIPS 2024 (whose
block and token decoders, itsnamgyu/block-transformer ``model/block_decoder/gpt_neo_x.py`` and
``model/token_decoder/gpt_neo_x.py``, are GPT-NeoX stacks, and whose baseline is a vanilla GPT-NeoX LM); Black et
al., "GPT-NeoX-20B: An Open-Source Autoregressive Language Model", 2022 (the layer: parallel residual
``x + attn(ln1(x)) + mlp(ln2(x))``, rotary positions on the first ``rotary_pct`` of each head).

The attention's fused projection is the ``causal_attention`` mixer's ``Wqkv`` / ``out_proj`` (``[q | k | v]``
order) rather than GPT-NeoX's per-head interleaved ``query_key_value`` / ``dense``: GPT-NeoX layer weights (Pythia,
Hugging Face ``GPTNeoXForCausalLM``, the layers of the reference's decoders) are converted as they load
(:meth:`GPTNeoXLayer._load_from_state_dict`), and ``state_dict()`` gives archlab's names. A test loads a
``transformers`` ``GPTNeoXForCausalLM`` into :class:`GPTNeoXLM` and gets its logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._checkpoint import rename_keys
from archlab.zoo._registry import create_mixer
from archlab.zoo.layers.decoding import greedy_continue
from archlab.zoo.mixers.causal_attention import KVCache

__all__ = ["GPTNeoXLM", "GPTNeoXLayer", "GPTNeoXMLP", "GPTNeoXStack", "check_ids", "init_normal"]


class GPTNeoXMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(hidden_size, intermediate_size)
        self.act = nn.GELU()
        self.dense_4h_to_h = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(self.act(self.dense_h_to_4h(x)))


class GPTNeoXLayer(nn.Module):
    """Pre-LN causal layer; ``use_parallel_residual`` (GPT-NeoX default) adds attention and MLP side by side."""

    def __init__(self, hidden_size: int, num_attention_heads: int, intermediate_size: int, rotary_pct: float = 0.25,
                 rotary_emb_base: float = 10000.0, layer_norm_eps: float = 1e-5,
                 use_parallel_residual: bool = True) -> None:
        super().__init__()
        if num_attention_heads < 1 or hidden_size % num_attention_heads:
            raise UserError(f"block_transformer: hidden_size {hidden_size} must be divisible by "
                            f"num_attention_heads {num_attention_heads}")
        head_size = hidden_size // num_attention_heads
        rotary_ndims = int(head_size * rotary_pct) // 2 * 2
        if rotary_ndims < 2:
            raise UserError(f"block_transformer: rotary_pct {rotary_pct} of head size {head_size} leaves fewer than "
                            f"2 rotary channels")
        self.use_parallel_residual = use_parallel_residual
        self.num_attention_heads = num_attention_heads
        self.input_layernorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attention = create_mixer("causal_attention", hidden_size, num_heads=num_attention_heads, pos="rope",
                                      rotary_dim=rotary_ndims, rope_base=rotary_emb_base)
        self.mlp = GPTNeoXMLP(hidden_size, intermediate_size)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # GPT-NeoX checkpoints (Pythia, Hugging Face's GPTNeoXForCausalLM): ``query_key_value`` rows are
        # ``[q_h | k_h | v_h]`` per head h, ``Wqkv``'s are ``[q | k | v]``; ``dense`` is ``out_proj``. The causal
        # mask, ``masked_bias`` and the rotary ``inv_freq`` that older checkpoints store are constants here.
        att = prefix + "attention."
        for name in ("weight", "bias"):
            fused = state_dict.pop(att + f"query_key_value.{name}", None)
            if fused is not None:
                per_head = fused.reshape(self.num_attention_heads, 3, -1, *fused.shape[1:])
                state_dict[att + f"Wqkv.{name}"] = per_head.transpose(0, 1).reshape(fused.shape)
        rename_keys(state_dict, att, {"dense.weight": "out_proj.weight", "dense.bias": "out_proj.bias"})
        for constant in ("bias", "masked_bias", "rotary_emb.inv_freq"):
            state_dict.pop(att + constant, None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor, past: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        attn, cache = self.attention(self.input_layernorm(x), past, return_state=True)
        if self.use_parallel_residual:
            return x + attn + self.mlp(self.post_attention_layernorm(x)), cache
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class GPTNeoXStack(nn.Module):
    """``layers`` and ``final_layer_norm`` over input embeddings; ``embed_in`` only where tokens come in."""

    def __init__(self, hidden_size: int, num_hidden_layers: int, num_attention_heads: int, intermediate_size: int,
                 vocab_size: int | None = None, **layer_kw) -> None:
        super().__init__()
        if num_hidden_layers < 1:
            raise UserError(f"block_transformer: num_hidden_layers must be >= 1, got {num_hidden_layers}")
        if vocab_size is not None:
            self.embed_in = nn.Embedding(vocab_size, hidden_size)
        self.layers = nn.ModuleList(GPTNeoXLayer(hidden_size, num_attention_heads, intermediate_size, **layer_kw)
                                    for _ in range(num_hidden_layers))
        self.final_layer_norm = nn.LayerNorm(hidden_size, eps=layer_kw.get("layer_norm_eps", 1e-5))

    def forward(self, inputs_embeds: torch.Tensor, past_key_values: list[KVCache] | None = None
                ) -> tuple[torch.Tensor, list[KVCache]]:
        h, caches = inputs_embeds, []
        for i, layer in enumerate(self.layers):
            h, c = layer(h, None if past_key_values is None else past_key_values[i])
            caches.append(c)
        return self.final_layer_norm(h), caches


@torch.no_grad()
def init_normal(model: nn.Module, std: float) -> bool:
    """Hugging Face GPT-NeoX's init: N(0, std) linears and embeddings, zero biases. False (nothing done) on meta
    tensors, which hold no values."""
    if any(p.is_meta for p in model.parameters()):
        return False
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return True


def check_ids(input_ids: torch.Tensor, ndim: int, min_len: int = 1) -> None:
    if input_ids.dim() != ndim or input_ids.dtype not in (torch.int64, torch.int32) or (
            ndim == 2 and input_ids.shape[1] < min_len):
        want = f"(B, L >= {min_len})" if ndim == 2 else "(B,)"
        raise UserError(f"block_transformer: expected integer token ids {want}, got {tuple(input_ids.shape)} "
                        f"{input_ids.dtype}")


class GPTNeoXLM(nn.Module):
    """The paper's vanilla baseline: a decoder-only GPT-NeoX language model (Hugging Face
    ``GPTNeoXForCausalLM``'s names: ``gpt_neox.embed_in``, ``gpt_neox.layers``, ``gpt_neox.final_layer_norm``,
    ``embed_out``), built from the same layers as the Block Transformer's decoders.

    ``forward(input_ids (B, L))`` -> logits ``(B, L, V)`` (``logits[:, t]`` predicts token ``t + 1``), with the
    per-layer KV caches when ``return_state``; :meth:`step` decodes one token per sequence. Its cache grows by one
    position per token in every layer, where the Block Transformer's global cache grows by one per block.
    """

    def __init__(self, vocab_size: int = 256, hidden_size: int = 64, num_hidden_layers: int = 4,
                 num_attention_heads: int = 4, intermediate_size: int | None = None, rotary_pct: float = 0.25,
                 rotary_emb_base: float = 10000.0, layer_norm_eps: float = 1e-5, use_parallel_residual: bool = True,
                 initializer_range: float = 0.02) -> None:
        super().__init__()
        if vocab_size < 1:
            raise UserError(f"block_transformer: vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.gpt_neox = GPTNeoXStack(hidden_size, num_hidden_layers, num_attention_heads,
                                     intermediate_size or 4 * hidden_size, vocab_size=vocab_size,
                                     rotary_pct=rotary_pct, rotary_emb_base=rotary_emb_base,
                                     layer_norm_eps=layer_norm_eps, use_parallel_residual=use_parallel_residual)
        self.embed_out = nn.Linear(hidden_size, vocab_size, bias=False)
        init_normal(self, initializer_range)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # transformers 5 names the head ``lm_head``; Pythia's checkpoints and transformers 4 ``embed_out``
        rename_keys(state_dict, prefix, {"lm_head.weight": "embed_out.weight"})
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, input_ids: torch.Tensor, return_state: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[KVCache]]:
        check_ids(input_ids, 2)
        h, caches = self.gpt_neox(self.gpt_neox.embed_in(input_ids))
        logits = self.embed_out(h)
        return (logits, caches) if return_state else logits

    def step(self, input_ids: torch.Tensor, state: list[KVCache]) -> tuple[torch.Tensor, list[KVCache]]:
        """Append one token per sequence ``(B,)``; returns the logits ``(B, V)`` of the next token and the caches."""
        check_ids(input_ids, 1)
        h, caches = self.gpt_neox(self.gpt_neox.embed_in(input_ids[:, None]), state)
        return self.embed_out(h[:, 0]), caches

    def kv_cache_entries(self, seq_len: int) -> dict[str, int]:
        """KV-cache size after ``seq_len`` tokens: positions per layer and cached numbers per sequence."""
        values = 2 * len(self.gpt_neox.layers) * seq_len * self.hidden_size
        return {"positions": seq_len, "total_values": values}

    def loss(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy."""
        logits = self(input_ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding: the prompt in one call, then one :meth:`step` per new token."""
        logits, state = self(input_ids, return_state=True)
        return greedy_continue(input_ids, logits, state, self.step, max_new_tokens)

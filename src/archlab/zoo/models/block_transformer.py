"""Block Transformer: a global block decoder over blocks of tokens and a local token decoder inside each block.

Paper: Ho, Bae, Kim, Jo, Kim, Schuster, Fisch, Thorne and Yun, "Block Transformer: Global-to-Local Language
Modeling for Fast Inference", NeurIPS 2024. Structure, names and defaults follow itsnamgyu/block-transformer
``model/block_transformer.py`` (``BlockTransformer``: ``embedder``, ``block_decoder``, ``token_decoder``),
``model/embedder/lookup.py`` + ``model/embedder/base.py`` (``LookupEmbedder``: ``embeddings``, projection methods
``concat`` / ``projection_layer``), ``model/block_decoder/gpt_neo_x.py`` and ``model/token_decoder/gpt_neo_x.py``
+ ``model/token_decoder/base.py`` (GPT-NeoX stacks under ``gpt_neox``: ``embed_in``, ``layers``,
``final_layer_norm``; ``embed_out``; the ``prefix`` decoding strategy with an ``expansion_layer``).

With block length ``L_B`` and ``N = L / L_B`` blocks:

1. embedder: the ``L_B`` token embeddings of a block (width ``d_block / L_B`` each) are concatenated into one
   block embedding of width ``d_block`` (``projection_method="concat"``, the reference's main setting), or a
   linear map of the concatenation (``"projection_layer"``: a ``Conv1d`` of kernel and stride ``L_B``);
2. block decoder: a causal GPT-NeoX-style stack over the ``N`` block embeddings; its output at block ``i`` is the
   context embedding of blocks ``<= i`` (global attention, a KV cache of ``N`` positions);
3. token decoder: the tokens of block ``i + 1`` are decoded by a causal stack that attends only inside its own
   block, prefixed by ``expansion_ratio`` vectors made from the context embedding of block ``i`` by the
   ``expansion_layer`` (1x1 ``Conv1d`` ``d_block -> d_token * expansion_ratio``); the output at the last prefix
   position predicts the first token of the block (local attention, a KV cache of at most
   ``expansion_ratio + L_B - 1`` positions, independent of ``L``);
4. LM head ``embed_out``.

The first block has no previous context, so, as in the reference, it is never predicted: ``forward`` on
``L >= L_B`` tokens returns the ``L - L_B + 1`` predictions of tokens ``L_B .. L`` (the last one is the next token
after the input). Attention uses archlab's ``causal_attention`` mixer (RoPE on the first ``rotary_pct`` of each
head, GPT-NeoX's 0.25; GPT-NeoX's parallel residual ``x + attn(ln1(x)) + mlp(ln2(x))``).

The paper's baseline, a vanilla decoder-only GPT-NeoX LM, is :class:`GPTNeoXLM`; :func:`vanilla_baseline` builds one
from the same layers as a given Block Transformer's token decoder, with the depth closest in parameters
(``benchmarks/block_decode.py`` compares their decoding throughput).

The attention's fused projection is the ``causal_attention`` mixer's ``Wqkv`` / ``out_proj`` (``[q | k | v]``
order) rather than GPT-NeoX's per-head interleaved ``query_key_value`` / ``dense``: GPT-NeoX layer weights (Pythia,
Hugging Face ``GPTNeoXForCausalLM``, the layers of the reference's decoders) are converted as they load, and
``state_dict()`` gives archlab's names. A test loads a ``transformers`` ``GPTNeoXForCausalLM`` into
:class:`GPTNeoXLM` and gets its logits. Deviations from the reference: the block decoder has no (unused)
``embed_in``; padding blocks and ``attention_mask`` are not supported (every sequence is full); one embedding
token per block (``n_embedding_tokens=1``, the only setting the reference's generation supports); the optional
block-decoding and auto-encoding losses are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._checkpoint import rename_keys
from archlab.zoo._registry import create_mixer, register_model
from archlab.zoo.layers.decoding import greedy_continue
from archlab.zoo.mixers.causal_attention import KVCache

__all__ = [
    "BlockTransformer",
    "BlockTransformerState",
    "GPTNeoXBlockDecoder",
    "GPTNeoXLM",
    "GPTNeoXLayer",
    "GPTNeoXStack",
    "GPTNeoXTokenDecoder",
    "LookupEmbedder",
    "block_main_b4_85",
    "block_transformer_tiny",
    "vanilla_baseline",
]

PAPER = ("Block Transformer: Global-to-Local Language Modeling for Fast Inference (Ho, Bae, Kim, Jo, Kim, "
         "Schuster, Fisch, Thorne, Yun, NeurIPS 2024)")
PROJECTION_METHODS = ("concat", "projection_layer")


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


class LookupEmbedder(nn.Module):
    """One block of ``block_length`` token ids -> one block embedding of width ``projection_hidden_size``."""

    def __init__(self, vocab_size: int, block_length: int, projection_hidden_size: int,
                 projection_method: str = "concat", hidden_size: int | None = None) -> None:
        super().__init__()
        if projection_method not in PROJECTION_METHODS:
            raise UserError(f"block_transformer: projection_method must be one of {PROJECTION_METHODS}, "
                            f"got {projection_method!r}")
        self.block_length = block_length
        self.projection_method = projection_method
        self.projection_hidden_size = projection_hidden_size
        if projection_method == "concat":
            if projection_hidden_size % block_length:
                raise UserError(f"block_transformer: with projection_method='concat' the block decoder width "
                                f"{projection_hidden_size} must be divisible by block_length {block_length}")
            hidden_size = projection_hidden_size // block_length
        hidden_size = hidden_size or projection_hidden_size
        self.hidden_size = hidden_size
        self.embeddings = nn.Embedding(vocab_size, hidden_size)
        self.projection_layer = None
        if projection_method == "projection_layer":
            self.projection_layer = nn.Conv1d(hidden_size, projection_hidden_size, kernel_size=block_length,
                                              stride=block_length)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(..., block_length)`` ids -> ``(..., projection_hidden_size)``."""
        h = self.embeddings(input_ids)
        if self.projection_layer is None:
            return h.flatten(-2)
        lead = h.shape[:-2]
        h = self.projection_layer(h.reshape(-1, self.block_length, self.hidden_size).transpose(1, 2))
        return h.reshape(*lead, self.projection_hidden_size)


class GPTNeoXBlockDecoder(nn.Module):
    """Causal decoder over block embeddings: returns the context embedding of every block."""

    def __init__(self, hidden_size: int, num_hidden_layers: int, num_attention_heads: int,
                 intermediate_size: int, **layer_kw) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.gpt_neox = GPTNeoXStack(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                                     **layer_kw)

    def forward(self, inputs_embeds: torch.Tensor, past_key_values: list[KVCache] | None = None
                ) -> tuple[torch.Tensor, list[KVCache]]:
        return self.gpt_neox(inputs_embeds, past_key_values)


class GPTNeoXTokenDecoder(nn.Module):
    """Local decoder of one block's tokens, with the previous block's context as an ``expansion_ratio`` prefix."""

    def __init__(self, vocab_size: int, block_length: int, projection_hidden_size: int, hidden_size: int,
                 num_hidden_layers: int, num_attention_heads: int, intermediate_size: int, expansion_ratio: int = 2,
                 **layer_kw) -> None:
        super().__init__()
        if expansion_ratio < 1:
            raise UserError(f"block_transformer: expansion_ratio must be >= 1, got {expansion_ratio}")
        self.block_length = block_length
        self.hidden_size = hidden_size
        self.expansion_ratio = expansion_ratio
        self.gpt_neox = GPTNeoXStack(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                                     vocab_size=vocab_size, **layer_kw)
        self.embed_out = nn.Linear(hidden_size, vocab_size, bias=False)
        self.expansion_layer = nn.Conv1d(projection_hidden_size, hidden_size * expansion_ratio, kernel_size=1)

    def expand_block_embeddings(self, context: torch.Tensor) -> torch.Tensor:
        """``(M, d_block)`` context embeddings -> ``(M, expansion_ratio, hidden_size)`` prefix vectors."""
        out = self.expansion_layer(context[:, :, None])[:, :, 0]
        return out.reshape(context.shape[0], self.expansion_ratio, self.hidden_size)

    def forward(self, context: torch.Tensor, input_ids: torch.Tensor
                ) -> tuple[torch.Tensor, list[KVCache]]:
        """Logits ``(M, 1 + T, V)`` for ``[prefix(context), input_ids (M, T)]``: position ``j`` predicts token
        ``j`` of the block (the prefix's last output predicts the first token)."""
        h = torch.cat([self.expand_block_embeddings(context), self.gpt_neox.embed_in(input_ids)], dim=1)
        h, caches = self.gpt_neox(h)
        return self.embed_out(h[:, self.expansion_ratio - 1:]), caches

    def step(self, input_ids: torch.Tensor, past_key_values: list[KVCache]) -> tuple[torch.Tensor, list[KVCache]]:
        """One token ``(M,)`` after a local cache -> logits ``(M, V)``."""
        h, caches = self.gpt_neox(self.gpt_neox.embed_in(input_ids[:, None]), past_key_values)
        return self.embed_out(h[:, 0]), caches


@torch.no_grad()
def _init_normal(model: nn.Module, std: float) -> bool:
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


def _check_ids(input_ids: torch.Tensor, ndim: int, min_len: int = 1) -> None:
    if input_ids.dim() != ndim or input_ids.dtype not in (torch.int64, torch.int32) or (
            ndim == 2 and input_ids.shape[1] < min_len):
        want = f"(B, L >= {min_len})" if ndim == 2 else "(B,)"
        raise UserError(f"block_transformer: expected integer token ids {want}, got {tuple(input_ids.shape)} "
                        f"{input_ids.dtype}")


@dataclass
class BlockTransformerState:
    """Decoding state: the global cache (one position per finished block, every block-decoder layer), the local
    cache of the block being decoded (prefix + its tokens so far, every token-decoder layer), and those tokens."""

    global_kv: list[KVCache]
    local_kv: list[KVCache]
    pending: torch.Tensor  # (B, p) ids of the current, unfinished block, 0 <= p < block_length

    @property
    def n_blocks(self) -> int:
        return self.global_kv[0].k.shape[2]

    def cache_lengths(self) -> tuple[int, int]:
        """Positions held by (every layer of) the global and the local cache."""
        return self.global_kv[0].k.shape[2], self.local_kv[0].k.shape[2]


class BlockTransformer(nn.Module):
    """The Block Transformer language model (see the module docstring).

    ``forward(input_ids (B, L))`` with ``L >= block_length`` -> logits ``(B, L - block_length + 1, V)``;
    ``logits[:, k]`` predicts token ``block_length + k``. ``forward(..., return_state=True)`` also returns the
    decoding state after the input; :meth:`step` then decodes one token at a time.
    """

    def __init__(self, vocab_size: int = 256, block_length: int = 4, block_hidden_size: int = 64,
                 block_num_hidden_layers: int = 2, block_num_attention_heads: int = 4,
                 block_intermediate_size: int | None = None, token_hidden_size: int = 64,
                 token_num_hidden_layers: int = 2, token_num_attention_heads: int = 4,
                 token_intermediate_size: int | None = None, expansion_ratio: int = 2,
                 projection_method: str = "concat", embedder_hidden_size: int | None = None,
                 rotary_pct: float = 0.25, rotary_emb_base: float = 10000.0, layer_norm_eps: float = 1e-5,
                 use_parallel_residual: bool = True, initializer_range: float = 0.02) -> None:
        super().__init__()
        if vocab_size < 1 or block_length < 1:
            raise UserError(f"block_transformer: vocab_size and block_length must be >= 1, got {vocab_size}, "
                            f"{block_length}")
        self.vocab_size = vocab_size
        self.block_length = block_length
        self.expansion_ratio = expansion_ratio
        layer_kw = dict(rotary_pct=rotary_pct, rotary_emb_base=rotary_emb_base, layer_norm_eps=layer_norm_eps,
                        use_parallel_residual=use_parallel_residual)
        # the token decoder's layer settings, for a vanilla baseline of the same layers (vanilla_baseline)
        self.token_layer_config = dict(hidden_size=token_hidden_size, num_attention_heads=token_num_attention_heads,
                                       intermediate_size=token_intermediate_size or 4 * token_hidden_size,
                                       **layer_kw)
        self.embedder = LookupEmbedder(vocab_size, block_length, block_hidden_size, projection_method,
                                       embedder_hidden_size)
        self.block_decoder = GPTNeoXBlockDecoder(block_hidden_size, block_num_hidden_layers,
                                                 block_num_attention_heads,
                                                 block_intermediate_size or 4 * block_hidden_size, **layer_kw)
        self.token_decoder = GPTNeoXTokenDecoder(vocab_size, block_length, block_hidden_size, token_hidden_size,
                                                 token_num_hidden_layers, token_num_attention_heads,
                                                 token_intermediate_size or 4 * token_hidden_size,
                                                 expansion_ratio=expansion_ratio, **layer_kw)
        self._init_weights(initializer_range)

    @torch.no_grad()
    def _init_weights(self, std: float) -> None:
        # Hugging Face GPT-NeoX / LookupConfig: N(0, initializer_range) linears and embeddings, zero biases; the
        # reference's own init of the expansion layer (std = projection_hidden_size ** -0.5) and projection layer
        # (std = (hidden_size * block_length) ** -0.5). Meta tensors (shape-only builds) hold no values.
        if not _init_normal(self, std):
            return
        exp = self.token_decoder.expansion_layer
        nn.init.normal_(exp.weight, std=exp.in_channels ** -0.5)
        nn.init.zeros_(exp.bias)
        proj = self.embedder.projection_layer
        if proj is not None:
            nn.init.normal_(proj.weight, std=(proj.in_channels * self.block_length) ** -0.5)
            nn.init.zeros_(proj.bias)

    def forward(self, input_ids: torch.Tensor, return_state: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, BlockTransformerState]:
        _check_ids(input_ids, 2, self.block_length)
        lb = self.block_length
        batch, length = input_ids.shape
        n_full, rem = divmod(length, lb)
        blocks = input_ids[:, :n_full * lb].reshape(batch, n_full, lb)
        context, global_kv = self.block_decoder(self.embedder(blocks))  # (B, N, d_block)
        # Context i decodes block i + 1; the last context decodes the unfinished block (rem tokens given). Its
        # missing tokens are filled with 0: the token decoder is causal, so they reach no logit that is kept.
        following = F.pad(input_ids[:, lb:], (0, lb - rem))
        following = following.reshape(batch * n_full, lb)[:, :lb - 1]
        logits, local_kv = self.token_decoder(context.reshape(batch * n_full, -1), following)
        logits = logits.reshape(batch, n_full * lb, -1)[:, :length - lb + 1]
        if not return_state:
            return logits
        keep = self.expansion_ratio + rem
        local_kv = [KVCache(*(t.reshape(batch, n_full, *t.shape[1:])[:, -1, :, :keep] for t in c)) for c in local_kv]
        return logits, BlockTransformerState(global_kv, local_kv, input_ids[:, n_full * lb:])

    def step(self, input_ids: torch.Tensor, state: BlockTransformerState
             ) -> tuple[torch.Tensor, BlockTransformerState]:
        """Append one token per sequence ``(B,)``; returns the logits ``(B, V)`` of the next token and the state.

        A token that completes a block is embedded and run through the block decoder (one global step); the
        local cache then restarts from the new context's prefix. Any other token is one local step.
        """
        _check_ids(input_ids, 1)
        pending = torch.cat([state.pending, input_ids[:, None]], dim=1)
        if pending.shape[1] < self.block_length:
            logits, local_kv = self.token_decoder.step(input_ids, state.local_kv)
            return logits, BlockTransformerState(state.global_kv, local_kv, pending)
        context, global_kv = self.block_decoder(self.embedder(pending)[:, None], state.global_kv)
        logits, local_kv = self.token_decoder(context[:, 0], pending[:, :0])
        return logits[:, -1], BlockTransformerState(global_kv, local_kv, pending[:, :0])

    def kv_cache_entries(self, seq_len: int) -> dict[str, int]:
        """KV-cache size after ``seq_len`` tokens (``>= block_length``) have been read: positions per layer, and
        cached numbers (keys and values over all layers, per sequence) for the global and the local cache."""
        if seq_len < self.block_length:
            raise UserError(f"block_transformer: kv_cache_entries needs seq_len >= block_length "
                            f"{self.block_length}, got {seq_len}")
        n_global = seq_len // self.block_length
        n_local = self.expansion_ratio + seq_len % self.block_length
        g_layers = len(self.block_decoder.gpt_neox.layers)
        t_layers = len(self.token_decoder.gpt_neox.layers)
        g_values = 2 * g_layers * n_global * self.block_decoder.hidden_size
        t_values = 2 * t_layers * n_local * self.token_decoder.hidden_size
        return {"global_positions": n_global, "local_positions": n_local, "global_values": g_values,
                "local_values": t_values, "total_values": g_values + t_values}

    def loss(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over every token after the first block (the reference's token loss)."""
        logits = self(input_ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                               input_ids[:, self.block_length:].reshape(-1))

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding: the prompt (at least one block) in one call, then one :meth:`step` per new token."""
        logits, state = self(input_ids, return_state=True)
        return greedy_continue(input_ids, logits, state, self.step, max_new_tokens)


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
        _init_normal(self, initializer_range)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # transformers 5 names the head ``lm_head``; Pythia's checkpoints and transformers 4 ``embed_out``
        rename_keys(state_dict, prefix, {"lm_head.weight": "embed_out.weight"})
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, input_ids: torch.Tensor, return_state: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[KVCache]]:
        _check_ids(input_ids, 2)
        h, caches = self.gpt_neox(self.gpt_neox.embed_in(input_ids))
        logits = self.embed_out(h)
        return (logits, caches) if return_state else logits

    def step(self, input_ids: torch.Tensor, state: list[KVCache]) -> tuple[torch.Tensor, list[KVCache]]:
        """Append one token per sequence ``(B,)``; returns the logits ``(B, V)`` of the next token and the caches."""
        _check_ids(input_ids, 1)
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


def vanilla_baseline(model: BlockTransformer, num_hidden_layers: int | None = None) -> GPTNeoXLM:
    """A :class:`GPTNeoXLM` with ``model``'s token-decoder width, heads, MLP and position settings; its depth is
    ``num_hidden_layers``, or by default the depth whose parameter count comes closest to ``model``'s."""
    kw = dict(vocab_size=model.vocab_size, **model.token_layer_config)
    if num_hidden_layers is not None:
        return GPTNeoXLM(num_hidden_layers=num_hidden_layers, **kw)
    target = sum(p.numel() for p in model.parameters())
    with torch.device("meta"):  # the count is linear in depth: two shape-only builds give it
        one, two = (sum(p.numel() for p in GPTNeoXLM(num_hidden_layers=n, **kw).parameters()) for n in (1, 2))
    best = max(1, round((target - one) / (two - one)) + 1)
    return GPTNeoXLM(num_hidden_layers=best, **kw)


def _build(defaults: dict, kwargs: dict) -> BlockTransformer:
    kwargs = {**defaults, **kwargs}
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is not None:  # the zoo's common name for the output size
        kwargs["vocab_size"] = num_classes
    return BlockTransformer(**kwargs)


@register_model(family="block_transformer", paper=PAPER, input_shape=(256,), input_dtype="long")
def block_transformer_tiny(**kwargs) -> BlockTransformer:
    """A character-level (256 byte ids) Block Transformer: L_B 4, two 64-wide layers in each decoder."""
    return _build(dict(vocab_size=256, block_length=4, block_hidden_size=64, block_num_hidden_layers=2,
                       block_num_attention_heads=4, token_hidden_size=64, token_num_hidden_layers=2,
                       token_num_attention_heads=4, expansion_ratio=2), kwargs)


@register_model(family="block_transformer", paper=PAPER, input_shape=(2048,), input_dtype="long")
def block_main_b4_85(**kwargs) -> BlockTransformer:
    """The reference's ``conf/trainer/block_main_b4_85.yaml``: L_B 4, lookup embedder 192 x 4 (concat), block and
    token decoders of 6 layers at width 768 on a Pythia-410M config (16 heads, intermediate 4096, rotary_pct
    0.25, vocab 50304), prefix decoding with expansion ratio 2."""
    return _build(dict(vocab_size=50304, block_length=4, block_hidden_size=768, block_num_hidden_layers=6,
                       block_num_attention_heads=16, block_intermediate_size=4096, token_hidden_size=768,
                       token_num_hidden_layers=6, token_num_attention_heads=16, token_intermediate_size=4096,
                       expansion_ratio=2), kwargs)


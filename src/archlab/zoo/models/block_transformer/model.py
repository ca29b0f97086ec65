"""The Block Transformer language model, its decoding state, the parameter-matched vanilla baseline, and the
registered configurations.

Paper: Ho, Bae, Kim, Jo, Kim, Schuster, Fisch, Thorne and Yun, "Block Transformer: Global-to-Local Language
Modeling for Fast Inference", NeurIPS 2024; itsnamgyu/block-transformer ``model/block_transformer.py``
(``BlockTransformer``: ``embedder``, ``block_decoder``, ``token_decoder``). The package docstring
(:mod:`archlab.zoo.models.block_transformer`) gives the design and the deviations from the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.decoding import greedy_continue
from archlab.zoo.mixers.causal_attention import KVCache
from archlab.zoo.models.block_transformer.gpt_neox import GPTNeoXLM, check_ids, init_normal
from archlab.zoo.models.block_transformer.stages import GPTNeoXBlockDecoder, GPTNeoXTokenDecoder, LookupEmbedder

__all__ = [
    "PAPER",
    "BlockTransformer",
    "BlockTransformerState",
    "block_main_b4_85",
    "block_transformer_tiny",
    "vanilla_baseline",
]

PAPER = ("Block Transformer: Global-to-Local Language Modeling for Fast Inference (Ho, Bae, Kim, Jo, Kim, "
         "Schuster, Fisch, Thorne, Yun, NeurIPS 2024)")


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
    """The Block Transformer language model (see the package docstring).

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
        if not init_normal(self, std):
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
        check_ids(input_ids, 2, self.block_length)
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
        check_ids(input_ids, 1)
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

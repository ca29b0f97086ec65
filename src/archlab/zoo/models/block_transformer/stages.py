"""The three stages of the Block Transformer: the block embedder, the global block decoder, the local token decoder.

Paper: Ho, Bae, Kim, Jo, Kim, Schuster, Fisch, Thorne and Yun, "Block Transformer: Global-to-Local Language
Modeling for Fast Inference", NeurIPS 2024. Names follow itsnamgyu/block-transformer ``model/embedder/lookup.py``
+ ``model/embedder/base.py`` (``LookupEmbedder``: ``embeddings``, ``projection_layer``),
``model/block_decoder/gpt_neo_x.py`` and ``model/token_decoder/gpt_neo_x.py`` + ``model/token_decoder/base.py``
(``gpt_neox``, ``embed_out``, the ``prefix`` strategy's ``expansion_layer``); the package docstring
(:mod:`archlab.zoo.models.block_transformer`) describes how they fit together.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo.mixers.causal_attention import KVCache
from archlab.zoo.models.block_transformer.gpt_neox import GPTNeoXStack

__all__ = ["PROJECTION_METHODS", "GPTNeoXBlockDecoder", "GPTNeoXTokenDecoder", "LookupEmbedder"]

PROJECTION_METHODS = ("concat", "projection_layer")


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

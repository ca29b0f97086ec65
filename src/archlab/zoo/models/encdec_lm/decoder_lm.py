"""The decoder-only counterpart of Mu, from the same blocks (RMSNorm, RoPE, GQA attention, GELU MLP, tied embeddings).

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter
Efficiency for SLMs", arXiv 2501.16273 (2025). The paper compares Mu with decoder-only models of the same
parameter count; :func:`archlab.zoo.models.encdec_lm.params.decoder_lm_config_matching` sizes one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from archlab.zoo.models.encdec_lm.blocks import (
    KV,
    MuEncoderBlock,
    MuRMSNorm,
    check_ids,
    greedy_until_eos,
    init_mu_weights,
)
from archlab.zoo.models.encdec_lm.config import DecoderLMConfig

__all__ = ["DecoderLM"]


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
        self.apply(lambda m: init_mu_weights(m, gen))

    def forward(self, input_ids: torch.Tensor, cache: list[KV] | None = None, return_cache: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[KV]]:
        check_ids("decoder_lm", input_ids, "input_ids")
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

        return greedy_until_eos(input_ids, next_logits, max_new_tokens, eos)

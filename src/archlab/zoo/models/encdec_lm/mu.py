"""The encoder-decoder small language model Mu, with a decoding cache for generation.

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter
Efficiency for SLMs", arXiv 2501.16273 (2025). Names follow microsoft/encoder-decoder-slm
``src/mu/models/modeling_mu.py`` (``Mu``: ``transformer.{wte, e, ln_e, h, ln_f}`` and a tied ``lm_head``), so the
released ``model.pt`` state dict loads into :class:`Mu` with a plain ``load_state_dict``. The package docstring
(:mod:`archlab.zoo.models.encdec_lm`) gives positions, padding and the deviations from the reference.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo.models.encdec_lm.blocks import (
    KV,
    MuDecoderBlock,
    MuEncoderBlock,
    MuRMSNorm,
    check_ids,
    greedy_until_eos,
    init_mu_weights,
)
from archlab.zoo.models.encdec_lm.config import MuConfig

__all__ = ["Mu", "MuCache"]


class MuCache(NamedTuple):
    """Decoding state of :class:`Mu`: per decoder layer the self-attention keys/values so far and the
    cross-attention keys/values of the encoder output."""

    self_kv: list[KV]
    cross_kv: list[KV]


class Mu(nn.Module):
    """The encoder-decoder LM. ``forward(encoder_input_ids, decoder_input_ids=None)`` -> logits
    ``(B, L_dec, V)``; without ``decoder_input_ids`` the decoder reads one BOS token (the first output token,
    which is what first-token latency measures)."""

    def __init__(self, config: MuConfig | None = None, **overrides) -> None:
        super().__init__()
        config = replace(config or MuConfig(), **overrides)
        self.config = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "e": nn.ModuleList(MuEncoderBlock(config) for _ in range(config.n_encoder_layer)),
            "ln_e": MuRMSNorm(config.n_embd),
            "h": nn.ModuleList(MuDecoderBlock(config) for _ in range(config.n_decoder_layer)),
            "ln_f": MuRMSNorm(config.n_embd),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        gen = torch.Generator().manual_seed(42)  # the reference seeds its own init generator with 42
        self.apply(lambda m: init_mu_weights(m, gen))

    def encode(self, encoder_input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, L_enc, n_embd)`` and its non-padding mask."""
        check_ids("encdec_lm", encoder_input_ids, "encoder_input_ids")
        mask = encoder_input_ids != self.config.pad_token_id
        length = encoder_input_ids.shape[1]
        positions = torch.arange(length, device=mask.device) - (length - 1) // 2  # centred, as the reference
        e = self.transformer.wte(encoder_input_ids)
        for block in self.transformer.e:
            e = block(e, mask, positions)[0]
        return self.transformer.ln_e(e), mask

    def cross_cache(self, encoder_out: torch.Tensor, encoder_mask: torch.Tensor) -> list[KV]:
        """Every decoder layer's cross-attention keys/values of the encoder output (computed once per input)."""
        return [blk.cross_attn.project_kv(encoder_out, encoder_mask) for blk in self.transformer.h]

    def decode(self, decoder_input_ids: torch.Tensor, cross_kv: list[KV], cache: MuCache | None = None
               ) -> tuple[torch.Tensor, MuCache]:
        """Logits for ``decoder_input_ids`` (positions after those in ``cache``) and the grown cache."""
        check_ids("encdec_lm", decoder_input_ids, "decoder_input_ids")
        offset = 0 if cache is None else cache.self_kv[0].k.shape[2]
        mask = decoder_input_ids != self.config.pad_token_id
        positions = torch.arange(offset, offset + decoder_input_ids.shape[1], device=mask.device)
        x = self.transformer.wte(decoder_input_ids)
        new = []
        for i, block in enumerate(self.transformer.h):
            x, kv = block(x, mask, positions, cross_kv[i], None if cache is None else cache.self_kv[i])
            new.append(kv)
        return self.lm_head(self.transformer.ln_f(x)), MuCache(new, cross_kv)

    def forward(self, encoder_input_ids: torch.Tensor, decoder_input_ids: torch.Tensor | None = None
                ) -> torch.Tensor:
        if decoder_input_ids is None:
            decoder_input_ids = encoder_input_ids.new_full((encoder_input_ids.shape[0], 1), self.config.bos_token_id)
        if decoder_input_ids.dim() == 2 and decoder_input_ids.shape[0] != encoder_input_ids.shape[0]:
            raise UserError(f"encdec_lm: batch size mismatch between encoder {tuple(encoder_input_ids.shape)} and "
                            f"decoder {tuple(decoder_input_ids.shape)} inputs")
        out, mask = self.encode(encoder_input_ids)
        return self.decode(decoder_input_ids, self.cross_cache(out, mask))[0]

    def loss(self, encoder_input_ids: torch.Tensor, decoder_input_ids: torch.Tensor,
             targets: torch.Tensor) -> torch.Tensor:
        """The reference's CE: ``targets`` equal to ``pad_token_id`` are ignored."""
        logits = self(encoder_input_ids, decoder_input_ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=self.config.pad_token_id)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 64, use_cache: bool = True) -> torch.Tensor:
        """Greedy decoding from BOS: ``(B, 1 + n)`` decoder ids; a sequence that emitted EOS continues with EOS,
        and decoding stops once all have. The encoder runs once; with ``use_cache`` each step feeds only the new
        token through the decoder, otherwise the whole prefix is re-run (the reference's loop)."""
        bos, eos = self.config.bos_token_id, self.config.eos_token_id
        out, mask = self.encode(input_ids)
        cross = self.cross_cache(out, mask)
        seq = input_ids.new_full((input_ids.shape[0], 1), bos)

        def next_logits(seq: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
            if use_cache:
                return self.decode(seq[:, -1:], cross, cache)
            return self.decode(seq, cross)[0], None

        return greedy_until_eos(seq, next_logits, max_new_tokens, eos)

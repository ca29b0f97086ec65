"""The Mamba language model: token embedding, a stack of Mamba blocks, a tied head; and the published sizes.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752 (2023),
COLM 2024. Module and parameter names follow state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py``
(``Block``) and ``mamba_ssm/models/mixer_seq_simple.py`` (``MixerModel``, ``MambaLMHeadModel``) at commit 52f57d6,
so the published ``state-spaces/mamba-*`` checkpoints load with a plain ``load_state_dict``, as do Hugging Face's
``state-spaces/mamba-*-hf`` ones (``backbone.embeddings``); a test loads a ``transformers`` ``MambaForCausalLM``
and gets its logits. Weights start from the reference's scheme (:func:`archlab.zoo.mixers.mamba.init.init_lm_weights_`).

Not implemented from the reference: the ``residual_in_fp32`` / ``fused_add_norm`` options (GPU speed options that
do not change parameters; the residual stays in the model's dtype).
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._checkpoint import rename_keys
from archlab.zoo._registry import register_model
from archlab.zoo.layers.decoding import greedy_continue
from archlab.zoo.mixers.mamba.block import PAPER, Mamba, MambaState
from archlab.zoo.mixers.mamba.init import init_lm_weights_

__all__ = ["Block", "MambaLMHeadModel", "MixerModel", "mamba_lm"]


class Block(nn.Module):
    """The reference's add -> norm -> mixer block: returns the mixer output and the running residual."""

    def __init__(self, dim: int, mixer: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer
        self.norm = norm

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor | None = None,
                state: MambaState | None = None) -> tuple[torch.Tensor, torch.Tensor, MambaState]:
        residual = hidden_states if residual is None else hidden_states + residual
        out, new_state = self.mixer(self.norm(residual), state, return_state=True)
        return out, residual, new_state

    def step(self, hidden_states: torch.Tensor, residual: torch.Tensor | None,
             state: MambaState) -> tuple[torch.Tensor, torch.Tensor, MambaState]:
        residual = hidden_states if residual is None else hidden_states + residual
        out, new_state = self.mixer.step(self.norm(residual), state)
        return out, residual, new_state


class MixerModel(nn.Module):
    """Token embedding, ``n_layer`` Mamba blocks and a final norm (the reference's ``MixerModel``)."""

    def __init__(self, d_model: int, n_layer: int, vocab_size: int, ssm_cfg: dict | None = None,
                 norm_epsilon: float = 1e-5, rms_norm: bool = True) -> None:
        super().__init__()
        ssm_cfg = dict(ssm_cfg or {})
        self.embedding = nn.Embedding(vocab_size, d_model)

        def norm() -> nn.Module:
            return nn.RMSNorm(d_model, eps=norm_epsilon) if rms_norm else nn.LayerNorm(d_model, eps=norm_epsilon)

        self.layers = nn.ModuleList(
            Block(d_model, Mamba(d_model, layer_idx=i, **ssm_cfg), norm()) for i in range(n_layer))
        self.norm_f = norm()
        for m in self.modules():
            init_lm_weights_(m, n_layer)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Hugging Face's MambaForCausalLM (the ``state-spaces/mamba-*-hf`` checkpoints) calls the embedding
        # ``embeddings``; every other name is the reference's.
        rename_keys(state_dict, prefix, {"embeddings.weight": "embedding.weight"})
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, input_ids: torch.Tensor, states: list[MambaState] | None = None
                ) -> tuple[torch.Tensor, list[MambaState]]:
        hidden, residual = self.embedding(input_ids), None
        new_states = []
        for i, layer in enumerate(self.layers):
            hidden, residual, s = layer(hidden, residual, None if states is None else states[i])
            new_states.append(s)
        residual = hidden if residual is None else hidden + residual
        return self.norm_f(residual), new_states

    def step(self, input_ids: torch.Tensor, states: list[MambaState]) -> tuple[torch.Tensor, list[MambaState]]:
        hidden, residual = self.embedding(input_ids), None
        new_states = []
        for layer, state in zip(self.layers, states, strict=True):
            hidden, residual, s = layer.step(hidden, residual, state)
            new_states.append(s)
        residual = hidden if residual is None else hidden + residual
        return self.norm_f(residual), new_states


class MambaLMHeadModel(nn.Module):
    """The Mamba language model: ``backbone`` (:class:`MixerModel`) and a tied ``lm_head``.

    ``forward(input_ids (B, L)) -> logits (B, L, V)`` (``V`` = ``vocab_size`` rounded up to a multiple of
    ``pad_vocab_size_multiple``, as in the reference). ``step`` decodes one token per sequence from the states
    that ``forward(..., return_state=True)`` or ``allocate_inference_cache`` gave.
    """

    def __init__(self, d_model: int, n_layer: int, vocab_size: int, pad_vocab_size_multiple: int = 1,
                 ssm_cfg: dict | None = None, norm_epsilon: float = 1e-5, rms_norm: bool = True,
                 tie_embeddings: bool = True) -> None:
        super().__init__()
        if d_model < 1 or n_layer < 1 or vocab_size < 1 or pad_vocab_size_multiple < 1:
            raise UserError(f"mamba_lm: d_model, n_layer, vocab_size and pad_vocab_size_multiple must be >= 1, "
                            f"got {d_model}, {n_layer}, {vocab_size}, {pad_vocab_size_multiple}")
        if vocab_size % pad_vocab_size_multiple:
            vocab_size += pad_vocab_size_multiple - vocab_size % pad_vocab_size_multiple
        self.vocab_size = vocab_size
        self.backbone = MixerModel(d_model, n_layer, vocab_size, ssm_cfg=ssm_cfg, norm_epsilon=norm_epsilon,
                                   rms_norm=rms_norm)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def _check_ids(self, input_ids: torch.Tensor, ndim: int) -> None:
        if input_ids.ndim != ndim or input_ids.dtype not in (torch.int64, torch.int32):
            shape = "(B, L)" if ndim == 2 else "(B,)"
            raise UserError(f"mamba_lm: expected integer token ids {shape}, got {tuple(input_ids.shape)} "
                            f"{input_ids.dtype}")

    def forward(self, input_ids: torch.Tensor, states: list[MambaState] | None = None, return_state: bool = False):
        """Logits ``(B, L, V)``; with ``return_state=True`` also the per-layer states after the last token."""
        self._check_ids(input_ids, 2)
        hidden, new_states = self.backbone(input_ids, states)
        logits = self.lm_head(hidden)
        return (logits, new_states) if return_state else logits

    def step(self, input_ids: torch.Tensor, states: list[MambaState]) -> tuple[torch.Tensor, list[MambaState]]:
        """One token per sequence ``(B,)`` -> logits ``(B, V)`` and the next states."""
        self._check_ids(input_ids, 1)
        hidden, new_states = self.backbone.step(input_ids, states)
        return self.lm_head(hidden), new_states

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int | None = None,
                                 dtype: torch.dtype | None = None) -> list[MambaState]:
        return [layer.mixer.allocate_inference_cache(batch_size, max_seqlen, dtype) for layer in
                self.backbone.layers]

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding: the prompt in one call, then one :meth:`step` per new token."""
        logits, states = self(input_ids, return_state=True)
        return greedy_continue(input_ids, logits, states, self.step, max_new_tokens)


def _lm(d_model: int, n_layer: int, vocab_size: int, pad_vocab_size_multiple: int, **kwargs) -> MambaLMHeadModel:
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is not None:  # the zoo's common name for the output size
        vocab_size = num_classes
    return MambaLMHeadModel(d_model, n_layer, vocab_size, pad_vocab_size_multiple=pad_vocab_size_multiple,
                            **kwargs)


@register_model(family="mamba", paper=PAPER, input_shape=(1024,), input_dtype="long")
def mamba_lm(d_model: int = 256, n_layer: int = 4, vocab_size: int = 256, pad_vocab_size_multiple: int = 1,
             **kwargs) -> MambaLMHeadModel:
    """A Mamba language model of any size (``num_classes`` is accepted as ``vocab_size``)."""
    return _lm(d_model, n_layer, vocab_size, pad_vocab_size_multiple, **kwargs)


# The published checkpoints (state-spaces/mamba-*): GPT-NeoX tokenizer, vocabulary 50277 padded to 50280.
def _published(d_model: int, n_layer: int):
    def make(**kwargs) -> MambaLMHeadModel:
        kwargs.setdefault("vocab_size", 50277)
        kwargs.setdefault("pad_vocab_size_multiple", 8)
        return _lm(kwargs.pop("d_model", d_model), kwargs.pop("n_layer", n_layer), kwargs.pop("vocab_size"),
                   kwargs.pop("pad_vocab_size_multiple"), **kwargs)

    return make


for _name, (_d, _n) in {"mamba_130m": (768, 24), "mamba_370m": (1024, 48), "mamba_790m": (1536, 48),
                        "mamba_1_4b": (2048, 48), "mamba_2_8b": (2560, 64)}.items():
    register_model(_published(_d, _n), name=_name, family="mamba", paper=PAPER, input_shape=(1024,),
                   input_dtype="long")

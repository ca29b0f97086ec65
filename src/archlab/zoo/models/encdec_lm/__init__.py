"""Encoder-decoder small language model (Mu), its parameter-matched decoder-only counterpart, and the KD loss.

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter Efficiency
for SLMs", arXiv 2501.16273 (2025). Names and defaults follow microsoft/encoder-decoder-slm
``src/mu/models/modeling_mu.py`` (``MuConfig``, ``Mu``: ``transformer.{wte, e, ln_e, h, ln_f}`` and a tied
``lm_head``) and ``src/mu/models/mu_utils.py`` (``MuRMSNorm``, ``MuAttention``: ``q_linear`` / ``k_linear`` /
``v_linear`` / ``out_linear`` with grouped-query heads, ``MuMLP``: ``fc1`` / tanh-GELU / ``fc2``, ``MuEncoderBlock``,
``MuDecoderBlock``: ``causal_attn``, ``cross_attn``), so the released ``model.pt`` state dict loads into :class:`Mu`
with a plain ``load_state_dict``. The distillation loss follows ``src/mu/train_text2text_by_kd.py`` (``KDModel``):
``alpha * KL(p_teacher || p_student) + (1 - alpha) * CE`` with ``kd_alpha = 0.9``, the KL over the shared vocabulary
prefix, ``reduction="batchmean"`` over all flattened positions, and no temperature on the logits (the reference's 0.9
is the sampling temperature of the generated targets); :func:`distillation_loss` takes an optional ``temperature``
(Hinton's ``T**2``-scaled form) whose default 1 is the reference.

Positions (the reference's RoPE): queries and keys of self-attention are rotated over the whole head, the
encoder's positions centred (``i - (L - 1) // 2``), the decoder's ``0 .. L - 1``; cross-attention has none.
Padding (``pad_token_id``) keys are masked out in every attention.

Additions for decoding (the reference re-runs the whole decoder for every new token): :meth:`Mu.decode` takes a
:class:`MuCache` of the decoder's self-attention keys/values and the cross-attention keys/values of the encoder
output, which :meth:`Mu.generate` computes once per input. Deviations: a decoder position always sees itself, so
a padding query never averages over future keys (the reference's fully masked row would); generation is greedy
(the reference samples with temperature / top-k); ``bos_token_id`` / ``eos_token_id`` are config fields here.

:class:`DecoderLM` is the decoder-only counterpart built from the same blocks (RMSNorm, RoPE, GQA attention,
GELU MLP, tied embeddings); :func:`decoder_lm_config_matching` picks its depth and MLP width so its parameter
count matches a given :class:`MuConfig`.

Layout, one idea per module: :mod:`~archlab.zoo.models.encdec_lm.config` (``MuConfig``, ``DecoderLMConfig``),
:mod:`~archlab.zoo.models.encdec_lm.blocks` (the ``mu_utils.py`` building blocks both models share),
:mod:`~archlab.zoo.models.encdec_lm.mu` (:class:`Mu` and its decoding cache),
:mod:`~archlab.zoo.models.encdec_lm.decoder_lm` (:class:`DecoderLM`), :mod:`~archlab.zoo.models.encdec_lm.params`
(parameter counts and matching), :mod:`~archlab.zoo.models.encdec_lm.distill` (the KD loss) and
:mod:`~archlab.zoo.models.encdec_lm.presets` (the registered configurations; importing the package registers them).
"""

from archlab.zoo.models.encdec_lm.config import DecoderLMConfig, MuConfig
from archlab.zoo.models.encdec_lm.decoder_lm import DecoderLM
from archlab.zoo.models.encdec_lm.distill import KDLoss, distillation_loss, teacher_logits_for_targets
from archlab.zoo.models.encdec_lm.mu import Mu, MuCache
from archlab.zoo.models.encdec_lm.params import decoder_lm_config_matching, decoder_param_count, encdec_param_count
from archlab.zoo.models.encdec_lm.presets import PAPER, decoder_lm_tiny, encdec_lm_mu, encdec_lm_tiny

__all__ = [
    "PAPER",
    "DecoderLM",
    "DecoderLMConfig",
    "KDLoss",
    "Mu",
    "MuCache",
    "MuConfig",
    "decoder_lm_config_matching",
    "decoder_lm_tiny",
    "decoder_param_count",
    "distillation_loss",
    "encdec_lm_mu",
    "encdec_lm_tiny",
    "encdec_param_count",
    "teacher_logits_for_targets",
]

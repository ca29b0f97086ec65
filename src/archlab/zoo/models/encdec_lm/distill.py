"""Knowledge distillation of the encoder-decoder student from a decoder-only teacher.

Paper: Elfeki, Liu, Xu, Ranganath, Yang and Shah (Microsoft), "Return of the Encoder: Maximizing Parameter
Efficiency for SLMs", arXiv 2501.16273 (2025). The loss follows microsoft/encoder-decoder-slm
``src/mu/train_text2text_by_kd.py`` (``KDModel``): ``alpha * KL(p_teacher || p_student) + (1 - alpha) * CE`` with
``kd_alpha = 0.9``, the KL over the shared vocabulary prefix, ``reduction="batchmean"`` over all flattened positions,
and no temperature on the logits (the reference's 0.9 is the sampling temperature of the generated targets);
:func:`distillation_loss` takes an optional ``temperature`` (Hinton's ``T**2``-scaled form) whose default 1 is the
reference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.train.distill import soft_target_kl

__all__ = ["KDLoss", "distillation_loss", "teacher_logits_for_targets"]


class KDLoss(NamedTuple):
    loss: torch.Tensor
    kd_loss: torch.Tensor
    ce_loss: torch.Tensor


def teacher_logits_for_targets(teacher_logits: torch.Tensor, source_len: int, target_len: int) -> torch.Tensor:
    """The decoder-only teacher reads ``[source (left-padded to source_len), target]``; the logits that predict
    the ``target_len`` target tokens are those at positions ``source_len - 1 ..``, as in ``KDModel.forward_kd``."""
    if teacher_logits.dim() != 3 or teacher_logits.shape[1] < source_len - 1 + target_len or source_len < 1:
        raise UserError(f"encdec_lm: teacher logits {tuple(teacher_logits.shape)} do not cover a source of "
                        f"{source_len} and a target of {target_len} tokens")
    return teacher_logits[:, source_len - 1:source_len - 1 + target_len]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      ce_logits: torch.Tensor | None = None, *, alpha: float = 0.9, temperature: float = 1.0,
                      ignore_index: int = 0) -> KDLoss:
    """``alpha * KL(p_teacher || p_student) + (1 - alpha) * CE(ce_logits, targets)``.

    The KL is over the first ``min(V_student, V_teacher)`` logits, averaged over all ``B * L`` positions
    (``batchmean`` of the flattened logits); with ``temperature`` T both are softened by T and the KL scaled by
    ``T ** 2`` (T = 1, the default, is the reference). ``ce_logits`` are the student's logits on the gold decoder
    inputs (the reference runs the student twice: on its generated targets for the KL, on the gold targets for
    the CE); by default ``student_logits``. CE ignores ``ignore_index`` (the pad id).
    """
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"encdec_lm: alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise UserError(f"encdec_lm: temperature must be positive, got {temperature}")
    if student_logits.shape[:-1] != teacher_logits.shape[:-1]:
        raise UserError(f"encdec_lm: student logits {tuple(student_logits.shape)} and teacher logits "
                        f"{tuple(teacher_logits.shape)} must cover the same positions")
    vocab = min(student_logits.shape[-1], teacher_logits.shape[-1])
    kd = soft_target_kl(student_logits[..., :vocab], teacher_logits[..., :vocab], temperature)
    ce_logits = student_logits if ce_logits is None else ce_logits
    ce = F.cross_entropy(ce_logits.reshape(-1, ce_logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)
    return KDLoss(alpha * kd + (1.0 - alpha) * ce, kd, ce)

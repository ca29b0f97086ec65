"""The soft-target distillation loss shared by archlab's distillation recipes.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531 (2015): the student
matches the teacher's softened output distribution, ``T**2 * KL(softmax(t / T) || softmax(s / T))``, the ``T**2``
keeping the gradient's scale independent of the temperature. Used by MOHAWK's third stage
(:mod:`archlab.compress.mohawk`) and the encoder-decoder LM's distillation loss
(:func:`archlab.zoo.models.encdec_lm.distillation_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from archlab.errors import UserError

__all__ = ["soft_target_kl"]


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """``T**2 * KL(p_teacher || p_student)`` over the last dimension, averaged over every other position.

    Both ``(..., V)`` with the same shape; computed in at least float32.
    """
    if student_logits.shape != teacher_logits.shape:
        raise UserError(f"soft_target_kl: student logits {tuple(student_logits.shape)} and teacher logits "
                        f"{tuple(teacher_logits.shape)} differ in shape")
    if not temperature > 0:
        raise UserError(f"soft_target_kl: temperature must be positive, got {temperature}")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    s = F.log_softmax(student_logits.flatten(0, -2).to(dtype) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.flatten(0, -2).to(dtype) / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature ** 2

"""MOHAWK: distil an attention language model into a (discrete) Mamba-2 one, in three stages.

Paper: Bick, Li, Xing, Kolter & Gu, "Transformers to SSMs: Distilling Quadratic Knowledge to Subquadratic Models",
NeurIPS 2024. The losses follow goombalab/phi-mamba ``assets/mohawk_stage1.py`` and ``assets/mohawk_stage2.py``;
the student mixer is :class:`archlab.zoo.mixers.ssd.DiscreteMamba2` (Phi-Mamba's mixer).

Teacher and student are :class:`archlab.zoo.models.sequence.SequenceModel` language models of the same shape
(width, depth, norms, MLPs, vocabulary); the teacher's mixers are ``causal_attention`` and a student layer's mixer
is either ``ssd`` (distilled) or the teacher's own kind (kept, as in the hybrid Phi-Mamba). Every student
parameter outside its distilled mixers starts as a copy of the teacher's (:func:`transfer_weights`). Each
distilled layer ``l`` reads the teacher's hidden state ``h_l`` (the input of layer ``l``), normalised by the
layer's (copied) norm, so the layers are trained independently in stages 1 and 2:

1. **Matrix orientation** (:func:`matrix_orientation_loss`): ``mean over batch and heads of
   ||M_student(h_l) - A_teacher(h_l)||_F``, the student's materialised mixer matrix
   (:meth:`DiscreteMamba2.mixer_matrix`) against the teacher's softmax attention matrix
   (:meth:`CausalSelfAttention.attention_matrix`). Needs as many student heads as teacher heads.
2. **Hidden-state alignment** (:func:`hidden_state_alignment_loss`): ``mean over positions of
   ||mixer_student(h_l) - attention_teacher(h_l)||_2``, the layer outputs (the reference's ``freeze_mlp`` form).
3. **Knowledge distillation** (:func:`knowledge_distillation_loss`): end to end, ``KL(p_teacher || p_student)``
   of the next-token distributions, averaged over positions.

Stages 1 and 2 train only the distilled mixers' parameters (the reference freezes the MLPs, norms, embedding
and head); stage 3 trains the whole student. :func:`mohawk_distill` runs the three stages in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from archlab.errors import UserError
from archlab.train import FitState, Hook, TrialFailed, fit
from archlab.train.distill import soft_target_kl
from archlab.zoo.mixers.causal_attention import CausalSelfAttention
from archlab.zoo.mixers.ssd import DiscreteMamba2
from archlab.zoo.models.sequence import SequenceModel

__all__ = ["STAGES", "MohawkResult", "StageProgress", "run_stages", "distilled_layers", "hidden_state_alignment_loss",
           "knowledge_distillation_loss", "matrix_orientation_loss", "mohawk_distill", "teacher_hidden_states",
           "transfer_weights"]

STAGES = ("matrix_orientation", "hidden_state_alignment", "knowledge_distillation")


def _check_pair(teacher: nn.Module, student: nn.Module) -> None:
    for what, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, SequenceModel) or model.vocab_size is None or model.head_type != "lm":
            raise UserError(f"mohawk: the {what} must be a sequence language model (archlab.zoo sequence_lm or "
                            f"SequenceModel with vocab_size), got {type(model).__name__}")
    t_layers, s_layers = teacher.backbone.layers, student.backbone.layers
    if (teacher.dim, len(t_layers), teacher.vocab_size) != (student.dim, len(s_layers), student.vocab_size):
        raise UserError(f"mohawk: teacher and student must have the same width, depth and vocabulary, got "
                        f"{(teacher.dim, len(t_layers), teacher.vocab_size)} and "
                        f"{(student.dim, len(s_layers), student.vocab_size)} (width, depth, vocabulary)")
    for i, (t, s) in enumerate(zip(t_layers, s_layers, strict=True)):
        if not isinstance(t.mixer, CausalSelfAttention):
            raise UserError(f"mohawk: teacher layer {i} must use causal_attention, got {t.mixer_name!r}")
        if isinstance(s.mixer, DiscreteMamba2):
            if s.mixer.n_v_heads != t.mixer.n_heads:
                raise UserError(f"mohawk: student layer {i} has {s.mixer.n_v_heads} heads and the teacher's "
                                f"{t.mixer.n_heads}; matrix orientation aligns them head by head (set the ssd "
                                f"mixer's n_v_heads={t.mixer.n_heads})")
        elif type(s.mixer) is not type(t.mixer):
            raise UserError(f"mohawk: student layer {i} must use ssd (distilled) or the teacher's mixer (kept), "
                            f"got {s.mixer_name!r}")


def distilled_layers(teacher: SequenceModel, student: SequenceModel) -> list[int]:
    """The indices of the student layers whose mixer is distilled (``ssd``); the others keep the teacher's."""
    _check_pair(teacher, student)
    return [i for i, layer in enumerate(student.backbone.layers) if isinstance(layer.mixer, DiscreteMamba2)]


def _is_distilled(name: str, layers: Sequence[int]) -> bool:
    return any(name.startswith(f"backbone.layers.{i}.mixer.") for i in layers)


@torch.no_grad()
def transfer_weights(teacher: SequenceModel, student: SequenceModel) -> list[str]:
    """Copy every teacher parameter and buffer into the student except the distilled mixers; returns the names.

    Embedding, norms, MLPs, head and the mixers of kept (attention) layers become exact copies, as Phi-Mamba
    starts from Phi-1.5's weights.
    """
    layers = distilled_layers(teacher, student)
    target = student.state_dict()
    copied = []
    for name, value in teacher.state_dict().items():
        if _is_distilled(name, layers) or name not in target:
            continue
        if target[name].shape != value.shape:
            raise UserError(f"mohawk: {name} has shape {tuple(value.shape)} in the teacher and "
                            f"{tuple(target[name].shape)} in the student")
        target[name].copy_(value)
        copied.append(name)
    return copied


@torch.no_grad()
def teacher_hidden_states(teacher: SequenceModel, ids: torch.Tensor) -> list[torch.Tensor]:
    """The input of every teacher layer for token ids ``(B, L)``: ``[h_0 (the embedding), h_1, ..]``."""
    h = teacher._embed(ids, sequence=True)
    states = []
    for layer in teacher.backbone.layers:
        states.append(h)
        h = layer(h)
    return states


def _distilled_pairs(teacher: SequenceModel, student: SequenceModel, ids: torch.Tensor,
                     hidden: Sequence[torch.Tensor] | None) -> Iterator[tuple[nn.Module, nn.Module, torch.Tensor]]:
    """``(teacher layer, student layer, teacher's input to that layer)`` for every distilled layer."""
    hidden = teacher_hidden_states(teacher, ids) if hidden is None else hidden
    for i in distilled_layers(teacher, student):
        yield teacher.backbone.layers[i], student.backbone.layers[i], hidden[i]


def matrix_orientation_loss(teacher: SequenceModel, student: SequenceModel, ids: torch.Tensor,
                            hidden: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Stage 1: the sum over distilled layers of ``mean ||M_student - A_teacher||_F`` (see the module doc).

    ``hidden``: :func:`teacher_hidden_states` of ``ids`` when already computed.
    """
    total = ids.new_zeros((), dtype=torch.float32)
    for t_layer, s_layer, h in _distilled_pairs(teacher, student, ids, hidden):
        with torch.no_grad():
            attention = t_layer.mixer.attention_matrix(t_layer.norm(h))
        mixer = s_layer.mixer.mixer_matrix(s_layer.norm(h))
        total = total + torch.linalg.matrix_norm(mixer - attention, ord="fro").mean()
    return total


def hidden_state_alignment_loss(teacher: SequenceModel, student: SequenceModel, ids: torch.Tensor,
                                hidden: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Stage 2: the sum over distilled layers of ``mean ||mixer_student - attention_teacher||_2`` per position."""
    total = ids.new_zeros((), dtype=torch.float32)
    for t_layer, s_layer, h in _distilled_pairs(teacher, student, ids, hidden):
        with torch.no_grad():
            target = t_layer.mixer(t_layer.norm(h))
        out = s_layer.mixer(s_layer.norm(h))
        total = total + torch.linalg.vector_norm(out - target, dim=-1).mean()
    return total


def knowledge_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Stage 3: ``KL(softmax(teacher) || softmax(student))`` per position, averaged over ``(B, L)`` positions
    (logits of different shapes are a UserError, from :func:`~archlab.train.distill.soft_target_kl`)."""
    return soft_target_kl(student_logits, teacher_logits)


def _stage_loss(stage: str, teacher: SequenceModel, student: SequenceModel, ids: torch.Tensor) -> torch.Tensor:
    if stage == "matrix_orientation":
        return matrix_orientation_loss(teacher, student, ids)
    if stage == "hidden_state_alignment":
        return hidden_state_alignment_loss(teacher, student, ids)
    with torch.no_grad():
        teacher_logits = teacher(ids)
    return knowledge_distillation_loss(student(ids), teacher_logits)


@dataclass
class MohawkResult:
    """Steps, seconds and loss curve (``(step, loss)`` every ``log_every`` steps and the last) of each stage (also
    what :func:`archlab.compress.mmmamba.mmmamba_distill` returns)."""

    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


class StageProgress(Hook):
    """Reports ``(stage, step, loss)`` after every step of a staged distillation."""

    def __init__(self, stage: str, callback: Callable[[str, int, float], None]) -> None:
        self.stage, self.callback = stage, callback

    def on_step(self, state: FitState) -> None:
        self.callback(self.stage, state.step, state.loss)


def run_stages(label: str, teacher: nn.Module, student: nn.Module, batches: Callable[[int], object],
               stages: Sequence[tuple[str, int, float, list[nn.Parameter], Callable[..., torch.Tensor]]],
               on_step: Callable[[str, int, float], None] | None = None, **fit_kwargs: object) -> MohawkResult:
    """Run a staged distillation: each ``(stage, steps, lr, params, loss_fn)`` is one :func:`archlab.train.fit` run
    of ``steps`` steps at rate ``lr`` training only ``params`` (the student's other parameters get no gradient
    meanwhile) on ``loss_fn(student, batch)``; ``batches(step)`` counts the steps across the stages; a stage of 0
    steps is skipped. The teacher is frozen in eval mode throughout; every ``requires_grad`` flag and the
    teacher's mode are restored afterwards. ``fit_kwargs`` go to every ``fit``; a failure names ``label`` and the
    stage."""
    was_training = teacher.training
    teacher_grad = [p.requires_grad for p in teacher.parameters()]
    student_grad = [p.requires_grad for p in student.parameters()]
    teacher.eval()
    teacher.requires_grad_(False)
    result = MohawkResult()
    counter = itertools.count()
    try:
        for stage, n, lr, params, loss_fn in stages:
            if n == 0:
                continue
            trained = {id(p) for p in params}
            for p in student.parameters():
                p.requires_grad_(id(p) in trained)
            student.zero_grad(set_to_none=True)
            hooks = [StageProgress(stage, on_step)] if on_step is not None else []
            try:
                fitted = fit(student, lambda progress: batches(next(counter)), loss_fn, steps=n, params=params,
                             lr=lr, hooks=hooks, **fit_kwargs)
            except TrialFailed as e:
                raise TrialFailed(f"{label}: {stage}: {e}") from e
            result.steps[stage], result.seconds[stage] = fitted.steps, fitted.seconds
            result.curves[stage] = [(int(p["step"]), p["loss"]) for p in fitted.curve]
    finally:
        for p, flag in zip(teacher.parameters(), teacher_grad, strict=True):
            p.requires_grad_(flag)
        for p, flag in zip(student.parameters(), student_grad, strict=True):
            p.requires_grad_(flag)
        teacher.train(was_training)
    return result


def mohawk_distill(teacher: SequenceModel, student: SequenceModel, batches: Callable[[int], torch.Tensor], *,
                   steps: Sequence[int] = (300, 300, 600), lr: float | Sequence[float] = 1e-3,
                   weight_decay: float = 0.0, warmup: float = 0.05, grad_clip: float = 1.0, transfer: bool = True,
                   log_every: int = 10,
                   on_step: Callable[[str, int, float], None] | None = None) -> MohawkResult:
    """Distil ``teacher`` into ``student`` in place: stages 1, 2 and 3 for ``steps[0..2]`` steps each.

    ``batches(step)`` returns token ids ``(B, L)`` (the step counts across the stages). ``lr`` is one learning
    rate or one per stage; each stage runs :func:`archlab.train.fit` (AdamW, betas 0.9 and 0.95, linear
    warm-up and cosine decay over its own steps, gradient clipping at ``grad_clip``). A
    stage given 0 steps is skipped. ``transfer`` first copies the teacher's shared weights
    (:func:`transfer_weights`). The teacher is left unchanged (eval mode, no gradients); ``on_step(stage, step,
    loss)`` reports progress.
    """
    layers = distilled_layers(teacher, student)
    if len(steps) != 3 or any(not isinstance(n, int) or n < 0 for n in steps):
        raise UserError(f"mohawk: steps must be three counts >= 0 (one per stage), got {steps!r}")
    rates = [float(lr)] * 3 if isinstance(lr, (int, float)) else [float(r) for r in lr]
    if len(rates) != 3 or any(r <= 0 for r in rates):
        raise UserError(f"mohawk: lr must be a positive rate or three of them, got {lr!r}")
    if not layers and (steps[0] or steps[1]):
        raise UserError("mohawk: the student has no ssd layer to distil in stages 1 and 2")
    if transfer:
        transfer_weights(teacher, student)
    stages = []
    for stage, n, rate in zip(STAGES, steps, rates, strict=True):
        params = list(student.parameters()) if stage == "knowledge_distillation" else \
            [p for name, p in student.named_parameters() if _is_distilled(name, layers)]

        def loss_fn(model: nn.Module, ids: torch.Tensor, stage: str = stage) -> torch.Tensor:
            return _stage_loss(stage, teacher, model, ids)

        stages.append((stage, n, rate, params, loss_fn))
    # amp off: the stages' losses are compared against each other in full precision
    return run_stages("mohawk", teacher, student, batches, stages, on_step, weight_decay=weight_decay,
                      betas=(0.9, 0.95), warmup=warmup, grad_clip=grad_clip, log_every=log_every, amp=False)

"""Training and scoring sequence models on generated sequence-output tasks: selective copying, multi-query recall.

The synthetic tasks of Gu & Dao ("Mamba", COLM 2024, §4.1: selective copying) and Arora, Eyuboglu et al.
("Zoology", ICLR 2024: multi-query associative recall) are trained as sequence outputs: the model reads ids
``(B, L)`` and is scored by cross-entropy at the positions that carry an answer (the markers of selective
copying, the query keys of MQAR), on a fresh batch from the generator at every step — an unbounded stream, so
the model cannot memorise a fixed training set. :func:`archlab.data.selective_copying_batch` and
:func:`archlab.data.multiquery_recall_batch` are such generators.

``lengths`` gives a length curriculum: the training time is split into equal parts, trained at each length in
turn (the last is the task's length). A recurrent model applies the same update at every position, so what it
learns on short sequences carries to long ones, and a short step is cheaper; the final stage trains at the full
length, which the scores are measured at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from archlab.errors import UserError
from archlab.train._trainer import seed_everything
from archlab.train.lm import _logits, fit_token_targets

__all__ = ["TaskBatch", "TaskResult", "evaluate_task", "train_on_task"]

# (n, rng, length) -> (x (n, length) int64 ids, y targets: (n, length), or (n, k) for the last k positions)
TaskBatch = Callable[[int, np.random.Generator, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TaskResult:
    steps: int
    seconds: float  # training time
    train_tokens_per_s: float  # input tokens per second of training
    steps_per_length: dict[int, int] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)


def _targets_for(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` as ``(B, L)`` targets: a ``(B, k)`` answer block belongs to the last ``k`` positions."""
    if x.ndim != 2 or y.ndim != 2 or y.shape[0] != x.shape[0] or y.shape[1] > x.shape[1]:
        raise UserError(f"seqtasks: expected ids (B, L) and targets (B, L) or (B, k <= L), got {tuple(x.shape)} "
                        f"and {tuple(y.shape)}")
    if y.shape[1] == x.shape[1]:
        return y
    full = torch.full_like(x, -100)
    full[:, x.shape[1] - y.shape[1]:] = y
    return full


@torch.no_grad()
def evaluate_task(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> tuple[float, float]:
    """``(token accuracy, sequence accuracy)``: the fraction of answer positions (targets other than ``-100``)
    predicted right by the arg-max, and the fraction of sequences with every answer right; evaluation mode."""
    y = _targets_for(x, y)
    if not (y != -100).any():
        raise UserError("seqtasks: the targets hold no answer position (all -100)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    right = total = whole = 0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            mask = yb != -100
            hit = (_logits(model, xb).argmax(-1) == yb) & mask
            right += int(hit.sum())
            total += int(mask.sum())
            whole += int((hit.sum(1) == mask.sum(1)).sum())
    finally:
        model.train(was_training)
    return right / total, whole / len(x)


def train_on_task(model: nn.Module, make_batch: TaskBatch, *, lengths: int | Sequence[int],
                  steps: int | None = None, max_seconds: float | None = None, batch_size: int = 32,
                  lr: float = 3e-3, weight_decay: float = 0.1, warmup: float = 0.05, grad_clip: float = 1.0,
                  seed: int = 0, log_every: int | None = None,
                  on_step: Callable[[dict[str, float]], None] | None = None) -> TaskResult:
    """Train ``model`` (ids ``(B, L)`` -> logits ``(B, L, V)``) in place on fresh batches of ``make_batch``.

    ``lengths``: the task length, or a curriculum of lengths trained in equal shares of the run, in order.
    Stops after ``steps`` or ``max_seconds`` (the further along sets the curriculum stage and the cosine
    learning-rate schedule). The batches come from ``numpy.random.default_rng(seed)``, so a run stopped by
    ``steps`` is deterministic; draw the evaluation set from another seed.
    """
    stages = [lengths] if isinstance(lengths, int) else list(lengths)
    if not stages or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in stages):
        raise UserError(f"seqtasks: lengths must be a positive int or a non-empty list of them, got {lengths!r}")
    if steps is None and max_seconds is None:
        raise UserError("seqtasks: give steps or max_seconds (or both)")
    if (steps is not None and steps < 1) or (max_seconds is not None and max_seconds <= 0) or batch_size < 1:
        raise UserError(f"seqtasks: need steps >= 1, max_seconds > 0 and batch_size >= 1, got {steps}, "
                        f"{max_seconds}, {batch_size}")
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    per_length: dict[int, int] = {}
    tokens = 0

    def sample(progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal tokens
        length = stages[min(int(progress * len(stages)), len(stages) - 1)]
        per_length[length] = per_length.get(length, 0) + 1
        x, y = make_batch(batch_size, rng, length)
        tokens += x.numel()
        return x, _targets_for(x, y)

    n, seconds, curve = fit_token_targets(model, sample, steps=steps, max_seconds=max_seconds, lr=lr,
                                          weight_decay=weight_decay, warmup=warmup, grad_clip=grad_clip,
                                          log_every=log_every, on_step=on_step)
    return TaskResult(steps=n, seconds=seconds, train_tokens_per_s=tokens / max(seconds, 1e-9),
                      steps_per_length=per_length, curve=curve)

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

:func:`recall_profile` tells *how* a model answers multi-query recall: its accuracy for the first, second, ..
key asked, and how often its answer is one of the pair values not asked yet. A model that has learned no
key-value binding can still beat chance by elimination (answering with a value it has seen in a pair but not yet
as an answer): its accuracy then follows ``1 / (values left)``, 1/8, 1/7, .., 1 for 8 pairs, about 34 % overall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from archlab.errors import UserError
from archlab.train._fit import seed_everything
from archlab.train.lm import fit_token_targets, sequence_logits

__all__ = ["TaskBatch", "TaskResult", "evaluate_task", "predict", "recall_profile", "train_on_task"]

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
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The model's arg-max token at every position of ids ``x`` ``(B, L)``: ``(B, L)`` int64 on the CPU, computed
    in evaluation mode, ``batch_size`` sequences at a time, on the model's device."""
    if x.ndim != 2:
        raise UserError(f"seqtasks: expected ids (B, L), got {tuple(x.shape)}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        return torch.cat([sequence_logits(model, x[i:i + batch_size].to(device)).argmax(-1).cpu()
                          for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def _answer_mask(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y = _targets_for(x, y)
    mask = y != -100
    if not mask.any():
        raise UserError("seqtasks: the targets hold no answer position (all -100)")
    return y, mask


def evaluate_task(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> tuple[float, float]:
    """``(token accuracy, sequence accuracy)``: the fraction of answer positions (targets other than ``-100``)
    predicted right by the arg-max, and the fraction of sequences with every answer right; evaluation mode."""
    y, mask = _answer_mask(x, y)
    hit = (predict(model, x, batch_size) == y) & mask
    return int(hit.sum()) / int(mask.sum()), int((hit.sum(1) == mask.sum(1)).sum()) / len(x)


def recall_profile(pred: torch.Tensor, y: torch.Tensor) -> dict[str, list[float] | float]:
    """How predictions ``pred`` ``(B, L)`` (:func:`predict`) answer a recall task whose targets ``y`` ``(B, L)``
    ask each value once (``-100`` elsewhere), as MQAR's do. Returns

    - ``accuracy_by_query``: accuracy at the first, second, .. answer position of every sequence;
    - ``elimination_accuracy``: what guessing uniformly among the values not asked yet would score there
      (``1 / (values left)``);
    - ``among_unasked``: the fraction of answers that are one of the values not asked yet (the answer at this
      position and those after it), right or wrong: near 1 for a model that recalls or eliminates, lower for one
      that also answers with values already asked or never in the sequence.
    """
    if pred.shape != y.shape or y.ndim != 2:
        raise UserError(f"seqtasks: expected predictions and targets of one shape (B, L), got {tuple(pred.shape)} "
                        f"and {tuple(y.shape)}")
    pred, (y, mask) = pred.cpu(), _answer_mask(pred, y.cpu())
    counts = mask.sum(1)
    if not bool((counts == counts[0]).all()):
        raise UserError("seqtasks: recall_profile needs the same number of answers in every sequence, got "
                        f"{sorted(set(counts.tolist()))}")
    n_queries = int(counts[0])
    answers = y[mask].view(len(y), n_queries)  # in the order they are asked
    guesses = pred[mask].view(len(y), n_queries)
    if any(len(set(row)) != n_queries for row in answers.tolist()):
        raise UserError("seqtasks: recall_profile needs every sequence to ask each value once (distinct answers)")
    # among[b, k]: the guess at query k of sequence b is the answer to query k or to a later one
    later = torch.ones(n_queries, n_queries, dtype=torch.bool).triu()  # [k, j]: j >= k
    among = ((guesses[:, :, None] == answers[:, None, :]) & later).any(-1)
    return {"accuracy_by_query": (guesses == answers).double().mean(0).tolist(),
            "elimination_accuracy": [1 / (n_queries - k) for k in range(n_queries)],
            "among_unasked": among.double().mean().item()}


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

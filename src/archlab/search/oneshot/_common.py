"""What the one-shot methods share: the classification loss, the optimizers of the references, a cycling
validation stream, the per-epoch history hook, and the result they return."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.search.oneshot._supernet import Supernet
from archlab.train import FitState, Hook

__all__ = ["ArchStep", "EpochHistory", "OneShotResult", "accuracy", "arch_optimizer", "classification_loss",
           "cycle", "sgd_cosine"]

LossFn = Callable[[nn.Module, Any], Any]


@dataclass
class OneShotResult:
    """A one-shot search's answer: the derived ``arch``, the trained ``supernet``, and ``history`` (one entry per
    epoch: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_accuracy`` and, for DARTS and GDAS, ``alpha``:
    ``softmax(alpha)`` of every decision, keyed by option)."""

    arch: Any
    supernet: Supernet
    history: list[dict[str, Any]] = field(default_factory=list)


def classification_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of ``model(x)`` on ``(x, y)``, logging the batch's accuracy."""
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    return loss, {"accuracy": float((logits.argmax(-1) == y).float().mean())}


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[Any], **forward_kwargs: Any) -> float:
    """Top-1 accuracy of ``model`` over ``(x, y)`` batches, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in batches:
            correct += int((model(x, **forward_kwargs).argmax(-1) == y).sum())
            total += len(y)
    finally:
        model.train(was_training)
    return correct / max(total, 1)


def cycle(batches: Iterable[Any]) -> Iterator[Any]:
    """The batches over and over (DARTS draws one validation batch per training step)."""
    batches = list(batches)
    if not batches:
        raise UserError("one-shot search: the validation batches are empty")
    return itertools.cycle(batches)


def sgd_cosine(lr: float, momentum: float, weight_decay: float, lr_min: float) -> dict[str, Any]:
    """``fit`` arguments for the references' weight optimizer: SGD with momentum, the rate annealed by a cosine
    from ``lr`` to ``lr_min`` (``CosineAnnealingLR(eta_min=lr_min)`` of DARTS' ``train_search.py``)."""

    def schedule(base: float, progress: float) -> float:
        floor = min(lr_min, base)
        return floor + 0.5 * (base - floor) * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return {"optimizer": lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay),
            "schedule": schedule, "lr": lr}


def arch_optimizer(supernet: Supernet, lr: float = 3e-4, betas: tuple[float, float] = (0.5, 0.999),
                   weight_decay: float = 1e-3) -> torch.optim.Adam:
    """Adam on ``alpha`` with the DARTS / NAS-Bench-201 settings (``arch_learning_rate`` 3e-4, betas
    (0.5, 0.999), ``arch_weight_decay`` 1e-3)."""
    return torch.optim.Adam(supernet.arch_parameters(), lr=lr, betas=betas, weight_decay=weight_decay)


class ArchStep(Hook):
    """First-order architecture step before every weight step: ``alpha`` descends the loss of the next
    validation batch (the supernet's own forward mode). Subclasses change :meth:`alpha_gradients`."""

    def __init__(self, supernet: Supernet, val: Iterable[Any], loss_fn: LossFn, optimizer: torch.optim.Optimizer):
        self.supernet, self.val, self.loss_fn, self.optimizer = supernet, cycle(val), loss_fn, optimizer

    def loss(self, batch: Any) -> torch.Tensor:
        out = self.loss_fn(self.supernet, batch)
        return out[0] if isinstance(out, tuple) else out

    def alpha_gradients(self, state: FitState, val_batch: Any) -> list[torch.Tensor]:
        alpha = self.supernet.arch_parameters()
        return list(torch.autograd.grad(self.loss(val_batch), alpha))

    def before_step(self, state: FitState) -> None:
        grads = self.alpha_gradients(state, next(self.val))
        for a, g in zip(self.supernet.arch_parameters(), grads, strict=True):
            a.grad = g.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class EpochHistory(Hook):
    """Records, at the end of every epoch, the mean training loss and accuracy of its steps, the validation
    accuracy of ``evaluate()`` and, with ``alpha``, the architecture's probabilities."""

    def __init__(self, supernet: Supernet, evaluate: Callable[[], float], alpha: bool = True) -> None:
        self.supernet, self.evaluate, self.alpha = supernet, evaluate, alpha
        self.history: list[dict[str, Any]] = []
        self._losses: list[float] = []
        self._accuracies: list[float] = []

    def on_step(self, state: FitState) -> None:
        self._losses.append(state.loss)
        if "accuracy" in state.logs:
            self._accuracies.append(float(state.logs["accuracy"]))

    def on_epoch(self, state: FitState) -> None:
        entry: dict[str, Any] = {
            "epoch": state.epoch,
            "train_loss": sum(self._losses) / max(len(self._losses), 1),
            "train_accuracy": sum(self._accuracies) / len(self._accuracies) if self._accuracies else math.nan,
            "val_accuracy": self.evaluate(),
        }
        if self.alpha:
            entry["alpha"] = self.supernet.probabilities()
        self.history.append(entry)
        self._losses, self._accuracies = [], []

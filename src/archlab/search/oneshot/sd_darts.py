"""SD-DARTS: DARTS whose supernet learns, besides the labels, from a vote of its own earlier snapshots.

Paper: "Improving Differentiable Architecture Search via Self-Distillation" (SD-DARTS). There is no official
code; this is reconstructed from the paper's abstract and MAP.md row 66: the weights' loss is the DARTS
loss plus ``lam * T^2 * KL(vote || current)``, where the vote is the mean of the softened predictions
(``softmax(logits / T)``) that the last ``teachers`` snapshots of the supernet (its weights and ``alpha``, taken
every ``interval`` training steps) give on the current batch. The paper's claim is that the vote smooths the
supernet's training, which lowers the loss landscape's sharpness (the top Hessian eigenvalue with respect to
``alpha``) and the gap between the supernet and its discretised arch. The number of teachers, their interval,
``lam`` and the temperature are this reconstruction's defaults, not the paper's (unread).

The snapshots are full copies of the supernet run without gradient, so each teacher costs one forward per step.
Until the first snapshot is taken the loss is plain DARTS'.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.search.oneshot._common import OneShotResult
from archlab.search.oneshot.darts import darts
from archlab.train import FitState, Hook

__all__ = ["SelfDistillation", "sd_darts"]


class SelfDistillation(Hook):
    """The voting teachers: snapshots of ``supernet`` every ``interval`` steps, the last ``teachers`` kept.
    :meth:`loss` is the classification loss plus the distillation term; use it as ``fit``'s ``loss_fn``."""

    def __init__(self, supernet: Any, *, teachers: int = 2, interval: int = 50, lam: float = 1.0,
                 temperature: float = 2.0) -> None:
        if teachers < 1 or interval < 1 or lam < 0 or temperature <= 0:
            raise UserError(f"sd_darts: need teachers >= 1, interval >= 1, lam >= 0 and temperature > 0, got "
                            f"{teachers}, {interval}, {lam}, {temperature}")
        self.supernet, self.interval, self.lam, self.temperature = supernet, interval, lam, temperature
        self.snapshots: deque[Any] = deque(maxlen=teachers)

    def on_step(self, state: FitState) -> None:
        if state.step % self.interval == 0:
            teacher = self.snapshots.popleft() if len(self.snapshots) == self.snapshots.maxlen else None
            if teacher is None:
                teacher = self.supernet.snapshot()
                teacher.requires_grad_(False)
            else:
                teacher.load_state_dict(self.supernet.state_dict())
            self.snapshots.append(teacher)

    @torch.no_grad()
    def vote(self, x: torch.Tensor) -> torch.Tensor | None:
        """The teachers' mean softened prediction on ``x`` (``None`` before the first snapshot)."""
        if not self.snapshots:
            return None
        probs = [F.softmax(t(x) / self.temperature, -1) for t in self.snapshots]
        return torch.stack(probs).mean(0)

    def loss(self, model: Any, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        logs = {"accuracy": float((logits.argmax(-1) == y).float().mean())}
        vote = self.vote(x)
        if vote is not None and self.lam > 0:
            T = self.temperature
            kl = F.kl_div(F.log_softmax(logits / T, -1), vote, reduction="batchmean") * T * T
            loss = loss + self.lam * kl
            logs["distillation"] = float(kl.detach())
        return loss, logs


def sd_darts(space: Any, train: Iterable[Any], val: Iterable[Any], *, epochs: int = 50, teachers: int = 2,
             interval: int = 50, lam: float = 1.0, temperature: float = 2.0, seed: int | None = 0,
             supernet: Any = None, **kwargs: Any) -> OneShotResult:
    """Search ``space`` by SD-DARTS: :func:`darts` (``kwargs`` go to it) with the weights trained on the
    self-distillation loss of :class:`SelfDistillation`; the architecture step keeps DARTS' validation loss."""
    supernet = supernet if supernet is not None else space.supernet("darts", seed=seed)
    distill = SelfDistillation(supernet, teachers=teachers, interval=interval, lam=lam, temperature=temperature)
    return darts(space, train, val, epochs=epochs, seed=seed, supernet=supernet, train_loss_fn=distill.loss,
                 hooks=[distill], **kwargs)

"""Once-for-All's progressive shrinking: a supernet trained stage by stage, each stage opening one more elastic
dimension, the full network teaching the subnets.

Paper: Cai, Gan, Wang, Zhang and Han, "Once-for-All: Train One Network and Specialize it for Efficient
Deployment", ICLR 2020; reference mit-han-lab/once-for-all ``ofa/imagenet_classification/elastic_nn/training/
progressive_shrinking.py`` (``train_one_epoch``: a subnet drawn per step with ``sample_active_subnet``, the loss
cross-entropy plus ``kd_ratio`` times the distillation loss against the full network's soft predictions).
EfficientTDNN trains its dynamic TDNN in the same order of tasks (full, kernel, depth, width).

``stages`` names the schedule, e.g. ``("full", "kernel", "depth", "expand")``: the first stage trains the full
network; stage ``i`` draws subnets in which the dimensions named by stages ``1..i`` are elastic and the rest are at
their largest. The stages take equal shares of the run (by the schedule's progress, so also under a time budget).
When the ``"full"`` stage ends, a frozen copy of the full network becomes the teacher.

``subnets`` provides ``largest()``, ``sample(rng, open_dims=...)`` and ``activate(subnet)`` on the supernet it
holds as ``subnets.supernet``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import FitState, Hook, fit

__all__ = ["ProgressiveShrinking", "progressive_shrinking"]


class ProgressiveShrinking(Hook):
    """Before each step: the stage (by progress) and a random subnet of its open dimensions; the teacher copied
    when the ``"full"`` stage ends (no teacher without that stage)."""

    def __init__(self, subnets: Any, stages: Sequence[str], seed: int = 0) -> None:
        self.subnets, self.stages, self.rng = subnets, list(stages), random.Random(seed)
        self.teacher: nn.Module | None = None
        self.stage = self.stages[0]

    def before_step(self, state: FitState) -> None:
        index = min(len(self.stages) - 1, int(state.progress * len(self.stages)))
        stage = self.stages[index]
        if stage != "full" and self.teacher is None and "full" in self.stages:
            self.subnets.activate(self.subnets.largest())
            self.teacher = copy.deepcopy(self.subnets.supernet).eval().requires_grad_(False)
        self.stage = stage
        opened = [s for s in self.stages[:index + 1] if s != "full"]
        self.subnets.activate(self.subnets.sample(self.rng, open_dims=opened))


def progressive_shrinking(subnets: Any, batches: Any, *, stages: Sequence[str], epochs: int = 20,
                          kd_ratio: float = 1.0, lr: float = 3e-3, seed: int = 0, **fit_kwargs: Any) -> Any:
    """Train ``subnets.supernet`` (a classifier) on ``(x, y)`` ``batches`` through ``stages``; returns
    ``subnets`` with the largest subnet active."""
    if not stages:
        raise UserError("progressive shrinking: give at least one stage")
    hook = ProgressiveShrinking(subnets, stages, seed)

    def loss_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if hook.teacher is not None and kd_ratio > 0:
            with torch.no_grad():
                soft = F.softmax(hook.teacher(x), -1)
            loss = loss + kd_ratio * F.kl_div(F.log_softmax(logits, -1), soft, reduction="batchmean")
        return loss, {"accuracy": float((logits.argmax(-1) == y).float().mean())}

    fit(subnets.supernet, batches, loss_fn, epochs=epochs, lr=lr, hooks=[hook], seed=seed, **fit_kwargs)
    subnets.activate(subnets.largest())
    return subnets

"""GDAS: searching by a differentiable sample of one path per step, Gumbel-softmax with a decaying temperature.

Paper: Dong and Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019. Names and
defaults follow the reference, D-X-Y/AutoDL-Projects (``exps/NAS-Bench-201-algos/GDAS.py`` and
``models/cell_searchs/search_model_gdas.py``): one Gumbel-softmax sample of every decision per forward, the
hard one-hot weights with the soft gradient (``hardwts = one_h - probs.detach() + probs``), only the sampled
operation computed; the temperature ``tau`` falls linearly from ``tau_max`` = 10 to ``tau_min`` = 0.1 over the
epochs (``tau_max - (tau_max - tau_min) * epoch / (total_epoch - 1)``); the architecture optimizer is Adam,
lr 3e-4, betas (0.5, 0.999), weight decay 1e-3, stepping on a validation batch (first order) with every
weight step; the weights are trained by SGD as in DARTS (:mod:`archlab.search.oneshot.darts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from archlab.search.oneshot._common import (
    ArchStep,
    EpochHistory,
    LossFn,
    OneShotResult,
    accuracy,
    arch_optimizer,
    classification_loss,
    sgd_cosine,
)
from archlab.search.oneshot._supernet import Supernet
from archlab.train import FitState, fit

__all__ = ["GdasArchStep", "gdas", "gdas_tau"]


def gdas_tau(epoch: int, epochs: int, tau_max: float = 10.0, tau_min: float = 0.1) -> float:
    """The temperature of ``epoch`` (from 1) of ``epochs``: ``tau_max`` at the first, ``tau_min`` at the last."""
    if epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * (epoch - 1) / (epochs - 1)


class GdasArchStep(ArchStep):
    """Sets the epoch's temperature, then the first-order architecture step of :class:`ArchStep`."""

    def __init__(self, *args: Any, epochs: int, tau_max: float, tau_min: float, by_progress: bool = False) -> None:
        super().__init__(*args)
        self.epochs, self.tau_max, self.tau_min, self.by_progress = epochs, tau_max, tau_min, by_progress
        self.taus: dict[int, float] = {}  # per epoch, the temperature of its last step

    def before_step(self, state: FitState) -> None:
        if self.by_progress:  # a run bounded by time: the annealing follows the schedule's progress, not epochs
            tau = self.tau_max - (self.tau_max - self.tau_min) * min(1.0, state.progress)
        else:
            tau = gdas_tau(state.epoch, self.epochs, self.tau_max, self.tau_min)
        self.supernet.tau = self.taus[state.epoch] = tau
        super().before_step(state)


def gdas(space: Any, train: Iterable[Any], val: Iterable[Any], *, epochs: int = 50, tau_max: float = 10.0,
         tau_min: float = 0.1, lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9,
         weight_decay: float = 3e-4, grad_clip: float | None = 5.0, arch_lr: float = 3e-4,
         arch_betas: tuple[float, float] = (0.5, 0.999), arch_weight_decay: float = 1e-3,
         loss_fn: LossFn = classification_loss, supernet: Supernet | None = None, seed: int | None = 0,
         **fit_kwargs: Any) -> OneShotResult:
    """Search ``space`` by GDAS (``train`` / ``val``: re-iterable ``(x, y)`` batches). Returns the derived arch
    (largest ``alpha`` per decision), the supernet and per-epoch ``alpha``, ``tau`` and accuracies (validation:
    the derived arch's single path)."""
    if seed is not None:
        torch.manual_seed(seed)
    supernet = supernet if supernet is not None else space.supernet("gdas", seed=seed)
    supernet.mode = "gdas"
    val = list(val)
    arch_step = GdasArchStep(supernet, val, loss_fn, arch_optimizer(supernet, arch_lr, arch_betas, arch_weight_decay),
                             epochs=epochs, tau_max=tau_max, tau_min=tau_min,
                             by_progress=fit_kwargs.get("max_seconds") is not None)
    history = EpochHistory(supernet, lambda: accuracy(supernet, val, arch=supernet.derive()))
    fit(supernet, train, loss_fn, epochs=epochs, params=supernet.weight_parameters(), grad_clip=grad_clip,
        hooks=[arch_step, history], seed=seed, **sgd_cosine(lr, momentum, weight_decay, lr_min), **fit_kwargs)
    for entry in history.history:
        entry["tau"] = arch_step.taus.get(entry["epoch"], supernet.tau)
    return OneShotResult(arch=supernet.derive(), supernet=supernet, history=history.history)

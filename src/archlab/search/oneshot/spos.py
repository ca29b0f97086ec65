"""SPOS: single-path one-shot search, a supernet trained on one uniformly sampled path per step.

Paper: Guo, Zhang, Mu, Heng, Liu, Wei and Sun, "Single Path One-Shot Neural Architecture Search with Uniform
Sampling", ECCV 2020. Names follow the reference, megvii-model/SinglePathOneShot (``src/Supernet/train.py``: a
random path per batch; ``src/Search/search.py``: candidates scored with inherited weights after their BatchNorm
statistics are recalculated on training batches, ``recalc_bn``). Every training step samples an arch uniformly
(a :class:`~archlab.train.Hook`'s ``before_step``) and :func:`archlab.train.fit` trains its path.

The paper searches the trained supernet by evolution; here :func:`spos` scores ``num_candidates`` random archs
(the paper's random-search baseline) and returns the best. The weights' SGD follows DARTS' small-scale settings
(lr 0.025 cosine to 0.001, momentum 0.9) with SPOS' weight decay 4e-5; the paper's ImageNet run uses lr 0.5 with
batch 1024 and a linear decay.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.search.oneshot._common import (
    EpochHistory,
    LossFn,
    OneShotResult,
    accuracy,
    classification_loss,
    sgd_cosine,
)
from archlab.search.oneshot._supernet import Supernet
from archlab.train import FitState, Hook, fit

__all__ = ["UniformPath", "inherited_accuracy", "recalibrate_batchnorm", "spos", "spos_train"]


class UniformPath(Hook):
    """Before every step, a uniformly random arch becomes the supernet's single path."""

    def __init__(self, supernet: Supernet, seed: int | None = None) -> None:
        self.supernet, self.rng = supernet, random.Random(seed)

    def before_step(self, state: FitState) -> None:
        self.supernet.sample_arch(self.rng)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Any], max_batches: int = 20, **forward_kwargs: Any
                          ) -> nn.Module:
    """Recompute the running statistics of every BatchNorm as the cumulative average over up to ``max_batches``
    ``(x, y)`` batches (SPOS' ``recalc_bn``: a shared supernet's statistics are those of a mixture of paths)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        for i, (x, _) in enumerate(batches):
            if i >= max_batches:
                break
            model(x, **forward_kwargs)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return model


def inherited_accuracy(supernet: Supernet, arch: Any, train: Any, val: Iterable[Any], bn_batches: int = 20) -> float:
    """Validation accuracy of ``arch`` with the supernet's weights: its extracted network, BatchNorm statistics
    recalculated on up to ``bn_batches`` of ``train`` (batches, or an epoch callable), evaluated on ``val``."""
    model = recalibrate_batchnorm(supernet.extract(arch), train(0) if callable(train) else train, bn_batches)
    return accuracy(model, val)


def spos_train(space: Any, train: Any, val: Iterable[Any], *, epochs: int = 50, lr: float = 0.025,
               lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 4e-5,
               grad_clip: float | None = 5.0, loss_fn: LossFn = classification_loss, supernet: Supernet | None = None,
               seed: int | None = 0, **fit_kwargs: Any) -> tuple[Supernet, list[dict[str, Any]]]:
    """SPOS' supernet training alone: the trained ``"spos"`` supernet and its per-epoch history (train loss /
    accuracy of the sampled paths, validation accuracy of one random path with the shared BatchNorm statistics)."""
    if seed is not None:
        torch.manual_seed(seed)
    supernet = supernet if supernet is not None else space.supernet("spos", seed=seed)
    supernet.mode = "spos"
    val = list(val)
    rng = random.Random(seed)

    def evaluate_random_path() -> float:
        return accuracy(supernet, val, arch=space.sample(rng))

    history = EpochHistory(supernet, evaluate_random_path, alpha=False)
    fit(supernet, train, loss_fn, epochs=epochs, params=supernet.weight_parameters(), grad_clip=grad_clip,
        hooks=[UniformPath(supernet, seed), history], seed=seed, **sgd_cosine(lr, momentum, weight_decay, lr_min),
        **fit_kwargs)
    return supernet, history.history


def spos(space: Any, train: Iterable[Any], val: Iterable[Any], *, epochs: int = 50, num_candidates: int = 20,
         loss_fn: LossFn = classification_loss, supernet: Supernet | None = None, seed: int | None = 0,
         **kwargs: Any) -> OneShotResult:
    """Train a ``"spos"`` supernet of ``space`` on uniformly sampled paths (:func:`spos_train`; ``kwargs`` go to
    it), then return the best of ``num_candidates`` distinct random archs by validation accuracy of its extracted
    model (:func:`inherited_accuracy`). ``history``: per epoch, as :func:`spos_train`'s;
    ``history[-1]["candidates"]``: every scored arch's validation accuracy."""
    if num_candidates < 1:
        raise UserError(f"spos: num_candidates must be >= 1, got {num_candidates}")
    if not callable(train):  # an epoch callable (``fit``'s other form) is called again for the BatchNorm batches
        train = list(train)
    val = list(val)
    supernet, history = spos_train(space, train, val, epochs=epochs, loss_fn=loss_fn, supernet=supernet, seed=seed,
                                   **kwargs)
    rng = random.Random(seed)
    scored = [(inherited_accuracy(supernet, arch, train, val), arch)
              for arch in space.sample_distinct(num_candidates, seed=rng)]
    best = max(scored, key=lambda pair: pair[0])[1]
    if history:
        history[-1]["candidates"] = [(arch.to_json() if hasattr(arch, "to_json") else dict(arch), acc)
                                     for acc, arch in scored]
    return OneShotResult(arch=best, supernet=supernet, history=history)

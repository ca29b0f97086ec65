"""DARTS: differentiable architecture search on a supernet compiled from any space of module decisions.

Paper: Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019. The architecture step
follows the reference, quark0/darts ``cnn/architect.py`` (``Architect``: ``_backward_step`` for the first order,
``_backward_step_unrolled``, ``_compute_unrolled_model`` and ``_hessian_vector_product`` for the second), and the
NAS-Bench-201 baseline of D-X-Y/AutoDL-Projects (``exps/NAS-Bench-201-algos/DARTS-V1.py`` / ``DARTS-V2.py``):
the architecture optimizer is Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3; the weights are trained by
SGD, lr 0.025 annealed by a cosine to 0.001, momentum 0.9, weight decay 3e-4, gradients clipped at 5.

Per training step, before the weight step on a training batch (a :class:`~archlab.train.Hook`'s
``before_step``; :func:`archlab.train.fit` is the loop):

- first order: ``alpha`` descends ``L_val(w, alpha)``;
- second order (the unrolled approximation): ``w' = w - xi (dL_train/dw + momentum buffer + weight decay)``
  with ``xi`` the weights' current learning rate; the gradient is
  ``dL_val(w', alpha)/dalpha - xi * H``, where ``H = (dL_train(w+, alpha)/dalpha - dL_train(w-, alpha)/dalpha)
  / (2 eps)``, ``w+- = w +- eps dL_val(w', alpha)/dw'``, ``eps = 0.01 / ||dL_val(w', alpha)/dw'||`` (a
  finite-difference Hessian-vector product).

:meth:`~archlab.search.oneshot.Supernet.derive` then takes the option of largest ``alpha`` at every decision
(on NAS-Bench-201 over all operations, ``none`` included, as the NAS-Bench-201 baseline's ``genotype`` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from archlab.errors import UserError
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

__all__ = ["UnrolledArchStep", "darts"]


class UnrolledArchStep(ArchStep):
    """DARTS' second-order architecture gradient (see the module docstring); the weights are restored after.
    ``epsilon`` scales the finite difference (``eps = epsilon / ||dL_val/dw'||``; 0.01 in the reference)."""

    def __init__(self, *args: Any, epsilon: float = 0.01) -> None:
        super().__init__(*args)
        self.epsilon = epsilon

    def alpha_gradients(self, state: FitState, val_batch: Any) -> list[torch.Tensor]:
        alpha = self.supernet.arch_parameters()
        weights = [w for w in self.supernet.weight_parameters() if w.requires_grad]
        group = state.optimizer.param_groups[0]
        xi, decay, momentum = group["lr"], group.get("weight_decay", 0.0), group.get("momentum", 0.0)
        saved = [w.detach().clone() for w in weights]
        train_grads = _grads(self.loss(state.batch), weights)
        with torch.no_grad():
            for w, g in zip(weights, train_grads, strict=True):
                step = g + decay * w
                buffer = state.optimizer.state.get(w, {}).get("momentum_buffer")
                if buffer is not None and momentum:
                    step = step + momentum * buffer
                w.sub_(xi * step)
        val_grads = _grads(self.loss(val_batch), alpha + weights)
        d_alpha, d_weights = val_grads[:len(alpha)], val_grads[len(alpha):]
        eps = self.epsilon / torch.cat([g.flatten() for g in d_weights]).norm().clamp_min(1e-12)
        sides = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, s, d in zip(weights, saved, d_weights, strict=True):
                    w.copy_(s + sign * eps * d)
            sides.append(_grads(self.loss(state.batch), alpha))
        with torch.no_grad():
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)
        return [da - xi * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, *sides, strict=True)]


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads, strict=True)]


def darts(space: Any, train: Iterable[Any], val: Iterable[Any], *, epochs: int = 50, order: int = 1,
          lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
          grad_clip: float | None = 5.0, arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
          arch_weight_decay: float = 1e-3, loss_fn: LossFn = classification_loss, supernet: Supernet | None = None,
          seed: int | None = 0, schedule: Any = None, train_loss_fn: LossFn | None = None,
          **fit_kwargs: Any) -> OneShotResult:
    """Search ``space`` by DARTS: ``train`` and ``val`` are re-iterable ``(x, y)`` batches (the two halves of the
    training set in the paper); ``order`` is 1 (first order) or 2 (unrolled). Returns the derived arch, the
    supernet, and per-epoch ``alpha`` and train / validation accuracy of the mixed supernet. ``schedule``
    (``schedule(base, progress) -> lr``) replaces the weights' cosine (sharpDARTS' cosine power annealing);
    ``train_loss_fn`` the weights' loss (SD-DARTS' self-distillation), ``loss_fn`` staying the architecture's."""
    if order not in (1, 2):
        raise UserError(f"darts: order must be 1 or 2, got {order!r}")
    if seed is not None:
        torch.manual_seed(seed)
    supernet = supernet if supernet is not None else space.supernet("darts", seed=seed)
    supernet.mode = "darts"
    val = list(val)
    step_class = ArchStep if order == 1 else UnrolledArchStep
    arch_step = step_class(supernet, val, loss_fn, arch_optimizer(supernet, arch_lr, arch_betas, arch_weight_decay))
    history = EpochHistory(supernet, lambda: accuracy(supernet, val))
    optim = sgd_cosine(lr, momentum, weight_decay, lr_min)
    if schedule is not None:
        optim["schedule"] = schedule
    hooks = [arch_step, history, *fit_kwargs.pop("hooks", [])]
    fit(supernet, train, train_loss_fn or loss_fn, epochs=epochs, params=supernet.weight_parameters(),
        grad_clip=grad_clip, hooks=hooks, seed=seed, **optim, **fit_kwargs)
    return OneShotResult(arch=supernet.derive(), supernet=supernet, history=history.history)

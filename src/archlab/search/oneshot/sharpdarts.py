"""sharpDARTS: DARTS with Max-W weighting of the mixed operations and cosine power annealing of the learning rate.

Paper: Hundt, Jain and Hager, "sharpDARTS: Faster and More Accurate Differentiable Architecture Search", 2019
(arXiv:1903.09900); reference ahundt/sharpDARTS. Its three parts:

- **Max-W weighting** (``model_search.py``): a mixed operation outputs ``sum_i (1 - max_j w_j + w_i) op_i(x)``
  with ``w = softmax(alpha)`` and ``max_j w_j`` carrying no gradient, so the strongest candidate always gets
  weight 1 and the others ``1 - (max w - w_i)`` (:attr:`Supernet.mix` ``= "max_w"``).
- **Cosine power annealing** (``cosine_power_annealing.py``): with ``p = (1 + cos(pi t)) / 2`` over the run's
  progress ``t``, the proportion ``k^(p+1)`` rescaled to [1, 0], ``lr = min_lr + proportion (max_lr - min_lr)``;
  ``exponent_order`` ``k = 1`` is the plain cosine. The reference rescales over the epochs it is given
  (``np.arange(E) + 1``); here the rescaling is over ``t`` in [0, 1] (``k^2`` at the start, ``k`` at the end).
  Both are affine in ``k^(p+1)``: rescaled over the same epochs ``t = e / E`` they are equal.
- **SharpSepConv primitives** (``operations.py``): :mod:`archlab.zoo.layers.sharp_ops`, searched in the
  ``sharp_cell`` space (:mod:`archlab.space.sharp_cell`).

The rest is DARTS (:func:`~archlab.search.oneshot.darts`, first or second order), with the reference's search
defaults: SGD lr 0.025 to 0.001, momentum 0.9, weight decay 3e-4, architecture Adam 3e-4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from archlab.errors import UserError
from archlab.search.oneshot._common import OneShotResult
from archlab.search.oneshot.darts import darts

__all__ = ["cosine_power_annealing", "power_annealing_schedule", "sharpdarts"]


def cosine_power_annealing(progress: float, max_lr: float, min_lr: float, exponent_order: float = 2.0,
                           warmup: float = 0.0) -> float:
    """The learning rate at ``progress`` in [0, 1] (see the module docstring); with ``warmup`` > 0 the first
    ``warmup`` fraction rises linearly to ``max_lr`` (the reference's ``warmup_epochs``) and the annealing runs over
    the rest."""
    if exponent_order < 1:
        raise UserError(f"cosine power annealing needs exponent_order >= 1, got {exponent_order}")
    if not 0 <= warmup < 1:
        raise UserError(f"cosine power annealing needs 0 <= warmup < 1, got {warmup}")
    t = min(max(progress, 0.0), 1.0)
    if warmup and t < warmup:
        return min_lr + (max_lr - min_lr) * max(t, 1e-3) / warmup
    t = (t - warmup) / (1 - warmup)
    p = (1 + math.cos(math.pi * t)) / 2
    k = exponent_order
    share = p if k == 1 else (k ** (p + 1) - k) / (k * k - k)
    return min_lr + share * (max_lr - min_lr)


def power_annealing_schedule(lr_min: float, exponent_order: float = 2.0, warmup: float = 0.0
                             ) -> Callable[[float, float], float]:
    """A :func:`archlab.train.fit` ``schedule(base, progress)``: cosine power annealing from ``base`` to
    ``lr_min`` (or to ``base`` when it is smaller)."""

    def schedule(base: float, progress: float) -> float:
        return cosine_power_annealing(progress, base, min(lr_min, base), exponent_order, warmup)

    return schedule


def sharpdarts(space: Any, train: Iterable[Any], val: Iterable[Any], *, epochs: int = 50, order: int = 1,
               exponent_order: float = 2.0, warmup: float = 0.0, max_w: bool = True, lr: float = 0.025,
               lr_min: float = 0.001, seed: int | None = 0, supernet: Any = None, **kwargs: Any) -> OneShotResult:
    """Search ``space`` by sharpDARTS: DARTS (``order`` 1 or 2; ``kwargs`` go to :func:`darts`) with Max-W
    weighting (``max_w``) and cosine power annealing of the weights' rate (``exponent_order``, ``warmup``)."""
    supernet = supernet if supernet is not None else space.supernet("darts", seed=seed)
    supernet.mix = "max_w" if max_w else "softmax"
    return darts(space, train, val, epochs=epochs, order=order, lr=lr, lr_min=lr_min, seed=seed, supernet=supernet,
                 schedule=power_annealing_schedule(lr_min, exponent_order, warmup), **kwargs)

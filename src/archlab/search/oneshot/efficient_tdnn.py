"""EfficientTDNN's search: progressive supernet training, an accuracy predictor, and evolution under a MACs budget.

Paper: Wang et al., "EfficientTDNN: Efficient Architecture Search for Speaker Recognition", IEEE/ACM TASLP 2022;
reference mechanicalsea/sugar. The supernet is :class:`archlab.zoo.models.tdnn.DynamicTDNN` (depth, per-layer
width, kernel size and ``catconv`` width are elastic; ``extract_subnet`` gives the static network). This module
adds what the reference's ``TDNN-NAS`` adds on top:

- :class:`TDNNSubnets`: the search space of one supernet (the reference's coarse space: depth ``num_blocks - 2 ..
  num_blocks``, width ratios ``0.25 .. 1``, kernels ``1, 3, 5``), its sampling, mutation and crossover, and
  :meth:`TDNNSubnets.encode`, the ``ArchCoder``: one-hot depth and kernels, width ratios, zeros for the blocks a
  shallower subnet does not have.
- :func:`progressive_train`: the supernet's training in the reference's task order (``supernet`` →
  ``supernet_kernel`` → ``supernet_kernel_depth`` → ``supernet_width``; Once-for-All's progressive shrinking): each
  stage samples a subnet per step among the dimensions opened so far, and after the first stage the full network
  (a frozen copy) teaches the subnets by knowledge distillation (Once-for-All's ``kd_ratio``).
- :func:`subnet_accuracy` (inherited weights, BatchNorm recalculated on the subnet) and :func:`subnet_macs`.
- :class:`AccuracyPredictor`: the reference's MLP (three hidden layers of 400, ReLU) from the encoding to accuracy.
- :func:`~archlab.search.oneshot.evolution_finder.evolve` (Once-for-All's ``EvolutionFinder``) over
  :class:`TDNNSubnets` with the predictor's accuracy as fitness, within a MACs budget.
- :func:`uniform_subnet`: the baseline the search must beat, one width ratio for every layer and full depth and
  kernels, the largest that fits the budget.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.measure import count_flops
from archlab.search.oneshot._common import accuracy
from archlab.search.oneshot.evolution_finder import evolve
from archlab.search.oneshot.progressive import progressive_shrinking
from archlab.search.oneshot.spos import recalibrate_batchnorm
from archlab.zoo.models.tdnn import DynamicTDNN, make_divisible

__all__ = ["AccuracyPredictor", "Subnet", "TDNNSubnets", "evolve", "progressive_train", "subnet_accuracy",
           "subnet_macs", "uniform_subnet"]

STAGES = ("full", "kernel", "depth", "width")


@dataclass(frozen=True)
class Subnet:
    """One subnet: ``depth`` blocks, a width ratio and a kernel per position (``layer1`` then each block; all
    ``num_blocks + 1`` positions, those past the depth unused) and the ``catconv`` width ratio."""

    depth: int
    ratios: tuple[float, ...]
    kernels: tuple[int, ...]
    catconv: float

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "ratios": list(self.ratios), "kernels": list(self.kernels),
                "catconv": self.catconv}


class TDNNSubnets:
    """The subnets of ``supernet`` that EfficientTDNN searches."""

    def __init__(self, supernet: DynamicTDNN, *, depths: Sequence[int] | None = None,
                 ratios: Sequence[float] = (0.25, 0.35, 0.5, 0.75, 1.0), kernels: Sequence[int] = (1, 3, 5)) -> None:
        self.supernet = supernet
        n = supernet.num_blocks
        self.depths = tuple(sorted(depths if depths is not None else {max(1, n - 2), max(1, n - 1), n}))
        if not self.depths or min(self.depths) < 1 or max(self.depths) > n:
            raise UserError(f"efficient_tdnn: depths must lie in 1..{n}, got {self.depths}")
        self.ratios = tuple(sorted(ratios))
        self.positions = n + 1
        # the kernels each position can take: up to its full kernel
        self.kernels = tuple(tuple(k for k in kernels if k <= full) or (full,) for full in supernet.kernel_sizes)

    # -- the space
    def largest(self) -> Subnet:
        return Subnet(max(self.depths), (1.0,) * self.positions, tuple(max(k) for k in self.kernels), 1.0)

    def sample(self, rng: random.Random, *, open_dims: Iterable[str] = ("kernel", "depth", "width")) -> Subnet:
        """A random subnet; dimensions not in ``open_dims`` stay at their largest (progressive shrinking)."""
        big = self.largest()
        dims = set(open_dims)
        depth = rng.choice(self.depths) if "depth" in dims else big.depth
        ratios = tuple(rng.choice(self.ratios) for _ in range(self.positions)) if "width" in dims else big.ratios
        kernels = tuple(rng.choice(k) for k in self.kernels) if "kernel" in dims else big.kernels
        catconv = rng.choice(self.ratios) if "width" in dims else 1.0
        return Subnet(depth, ratios, kernels, catconv)

    def mutate(self, s: Subnet, rng: random.Random, prob: float = 0.1) -> Subnet:
        def maybe(value: Any, options: Sequence[Any]) -> Any:
            return rng.choice(options) if rng.random() < prob else value

        return Subnet(maybe(s.depth, self.depths), tuple(maybe(r, self.ratios) for r in s.ratios),
                      tuple(maybe(k, ks) for k, ks in zip(s.kernels, self.kernels, strict=True)),
                      maybe(s.catconv, self.ratios))

    @staticmethod
    def crossover(a: Subnet, b: Subnet, rng: random.Random) -> Subnet:
        def pick(x: Any, y: Any) -> Any:
            return x if rng.random() < 0.5 else y

        return Subnet(pick(a.depth, b.depth), tuple(pick(x, y) for x, y in zip(a.ratios, b.ratios, strict=True)),
                      tuple(pick(x, y) for x, y in zip(a.kernels, b.kernels, strict=True)), pick(a.catconv, b.catconv))

    def encode(self, s: Subnet) -> list[float]:
        """The ``ArchCoder`` vector: one-hot depth; per position its width ratio and one-hot kernel (zeros past
        the depth); the ``catconv`` ratio."""
        out = [float(s.depth == d) for d in self.depths]
        for i in range(self.positions):
            used = i <= s.depth
            out.append(s.ratios[i] if used else 0.0)
            out.extend(float(used and s.kernels[i] == k) for k in self.kernels[i])
        out.append(s.catconv)
        return out

    def activate(self, s: Subnet) -> None:
        """Make ``s`` the supernet's active subnet."""
        n = s.depth + 1
        reduction = self.supernet.blocks[0].se.reduction
        widths = []
        for i, (ratio, full) in enumerate(zip(s.ratios[:n], self.supernet.channels[:n], strict=True)):
            multiple = reduction if i == 0 else self.supernet.scale
            widths.append(min(full, max(multiple, make_divisible(ratio * full, multiple))))
        cat = min(self.supernet.catconv_channels, make_divisible(s.catconv * self.supernet.catconv_channels))
        self.supernet.set_active(s.depth, widths, list(s.kernels[:n]), cat)


# -- training
def progressive_train(supernet: DynamicTDNN, batches: Any, *, epochs: int = 20,
                      stages: Sequence[str] = STAGES, kd_ratio: float = 1.0, lr: float = 3e-3, seed: int = 0,
                      subnets: TDNNSubnets | None = None, **fit_kwargs: Any) -> TDNNSubnets:
    """Train ``supernet`` (with a ``classifier``) on ``(features, speaker)`` ``batches`` through the stages in
    equal shares of the schedule (:func:`~archlab.search.oneshot.progressive.progressive_shrinking`); returns its
    :class:`TDNNSubnets` with the largest subnet active."""
    if supernet.classifier is None:
        raise UserError("efficient_tdnn: the supernet needs num_classes (a classifier) to be trained")
    if not stages or any(s not in STAGES for s in stages):
        raise UserError(f"efficient_tdnn: stages must be a sequence of {list(STAGES)}, got {list(stages)}")
    return progressive_shrinking(subnets or TDNNSubnets(supernet), batches, stages=stages, epochs=epochs,
                                 kd_ratio=kd_ratio, lr=lr, seed=seed, **fit_kwargs)


# -- evaluation
def subnet_accuracy(subnets: TDNNSubnets, s: Subnet, train: Iterable[Any], val: Iterable[Any],
                    bn_batches: int = 10) -> float:
    """Validation accuracy of subnet ``s`` with the supernet's weights (a static copy, BatchNorm recalculated on
    up to ``bn_batches`` training batches; the supernet is left as it was)."""
    return accuracy(recalibrate_batchnorm(_extract(subnets, s), train, bn_batches), val)


def subnet_macs(subnets: TDNNSubnets, s: Subnet, frames: int) -> int:
    """Multiply-accumulates of one forward of subnet ``s`` on ``frames`` frames (FLOPs / 2)."""
    return count_flops(_extract(subnets, s), (subnets.supernet.in_feats, frames)) // 2


def _extract(subnets: TDNNSubnets, s: Subnet) -> DynamicTDNN:
    """The static network of subnet ``s``; the supernet's active subnet is restored afterwards."""
    depth, widths, kernels, cat = subnets.supernet.config
    subnets.activate(s)
    try:
        return subnets.supernet.extract_subnet()
    finally:
        subnets.supernet.set_active(depth, widths, kernels, cat)


class AccuracyPredictor(nn.Module):
    """The reference's MLP predictor: encoding → 400 → 400 → 400 → 1 (ReLU), trained on measured accuracies."""

    def __init__(self, in_features: int, hidden: int = 400, layers: int = 3) -> None:
        super().__init__()
        dims = [in_features] + [hidden] * layers
        self.layers = nn.Sequential(*[m for a, b in zip(dims, dims[1:], strict=False)
                                      for m in (nn.Linear(a, b), nn.ReLU())], nn.Linear(dims[-1], 1))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1) * self.std + self.mean

    def fit(self, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 300, lr: float = 1e-3, seed: int = 0
            ) -> AccuracyPredictor:
        """Full-batch Adam on the mean squared error of standardised accuracies."""
        if len(y) < 2:
            raise UserError("AccuracyPredictor.fit: needs at least two measured subnets")
        torch.manual_seed(seed)
        self.mean.fill_(float(y.mean()))
        self.std.fill_(float(y.std()) or 1.0)
        opt = torch.optim.Adam(self.layers.parameters(), lr=lr)
        target = (y - self.mean) / self.std
        for _ in range(epochs):
            opt.zero_grad()
            F.mse_loss(self.layers(x).squeeze(-1), target).backward()
            opt.step()
        return self


def uniform_subnet(subnets: TDNNSubnets, macs: Callable[[Subnet], int], budget: int) -> Subnet:
    """Uniform scaling: full depth and kernels, the largest single width ratio (layers and ``catconv``) in
    budget; the smallest ratio when none fits."""
    big = subnets.largest()
    best = None
    for r in subnets.ratios:
        s = Subnet(big.depth, (r,) * subnets.positions, big.kernels, r)
        if best is None or macs(s) <= budget:
            best = s
    assert best is not None
    return best

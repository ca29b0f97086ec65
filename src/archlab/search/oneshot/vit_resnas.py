"""ViT-ResNAS's search: the super-network trained by multi-architectural sampling, then evolution under MACs.

Paper: Liao, Karaman and Sze, "Searching for Efficient Multi-Stage Vision Transformers", ICCV 2021 workshops;
reference yilunliao/vit-search. The super-network is :class:`archlab.zoo.models.vit_resnas.ViTResNAS`, whose
forward runs a different sub-network per example (``archs``: per-example channel masks, the reference's
``ChannelDrop``). This module adds:

- :class:`ViTSubnets`: the sub-networks searched (embedding width per stage, heads and MLP width per block, as
  fractions of the super-network's; embedding widths kept non-decreasing over stages as the model requires),
  with sampling, mutation and crossover;
- :func:`train_supernet`: every step draws ``archs_per_batch`` sub-networks and the batch is split among them in
  one masked pass (the reference's multi-architectural sampling; its warm-up and channel rewiring are not done);
- :func:`subnet_accuracy` (inherited weights, the masked forward of that one sub-network) and :func:`subnet_macs`;
- the search itself: :func:`~archlab.search.oneshot.evolution_finder.evolve` with inherited-weight accuracy as the
  fitness and a MACs budget, as the paper's evolutionary search.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.measure import count_flops
from archlab.search.oneshot._common import accuracy
from archlab.train import FitState, Hook, fit
from archlab.zoo.models.vit_resnas import SubArch, ViTResNAS

__all__ = ["ViTSubnets", "subnet_accuracy", "subnet_macs", "train_supernet"]


def _options(full: int, ratios: Sequence[float]) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(r * full)) for r in ratios}))


class ViTSubnets:
    """The sub-networks of ``model`` searched: each width a choice among ``ratios`` of the full width (heads
    among ``head_ratios`` of the block's heads)."""

    def __init__(self, model: ViTResNAS, *, ratios: Sequence[float] = (0.5, 0.75, 1.0),
                 head_ratios: Sequence[float] = (0.5, 1.0)) -> None:
        if not ratios or not head_ratios or min(*ratios, *head_ratios) <= 0 or max(*ratios, *head_ratios) > 1:
            raise UserError("vit_resnas search: ratios must be fractions in (0, 1]")
        self.model = model
        full = model.full_arch()
        self.embed = tuple(_options(d, ratios) for d in full.embed_dims)
        self.heads = tuple(_options(h, head_ratios) for h in full.num_heads)
        self.mlp = tuple(_options(h, ratios) for h in full.mlp_hidden)

    def largest(self) -> SubArch:
        return self.model.full_arch()

    @staticmethod
    def _monotone(embed: Sequence[int]) -> tuple[int, ...]:
        out: list[int] = []
        for d in embed:
            out.append(max(d, out[-1]) if out else d)
        return tuple(out)

    def sample(self, rng: random.Random) -> SubArch:
        return SubArch(self._monotone([rng.choice(o) for o in self.embed]), tuple(rng.choice(o) for o in self.heads),
                       tuple(rng.choice(o) for o in self.mlp))

    def mutate(self, a: SubArch, rng: random.Random, prob: float = 0.1) -> SubArch:
        def genes(values: Sequence[int], options: Sequence[Sequence[int]]) -> list[int]:
            return [rng.choice(o) if rng.random() < prob else v for v, o in zip(values, options, strict=True)]

        return SubArch(self._monotone(genes(a.embed_dims, self.embed)), tuple(genes(a.num_heads, self.heads)),
                       tuple(genes(a.mlp_hidden, self.mlp)))

    def crossover(self, a: SubArch, b: SubArch, rng: random.Random) -> SubArch:
        def mix(x: Sequence[int], y: Sequence[int]) -> list[int]:
            return [p if rng.random() < 0.5 else q for p, q in zip(x, y, strict=True)]

        return SubArch(self._monotone(mix(a.embed_dims, b.embed_dims)), tuple(mix(a.num_heads, b.num_heads)),
                       tuple(mix(a.mlp_hidden, b.mlp_hidden)))


class _MultiArch(Hook):
    def __init__(self, subnets: ViTSubnets, k: int, seed: int) -> None:
        self.subnets, self.k, self.rng = subnets, k, random.Random(seed)
        self.archs: list[SubArch] = [subnets.largest()]

    def before_step(self, state: FitState) -> None:
        self.archs = [self.subnets.sample(self.rng) for _ in range(self.k)]


def train_supernet(model: ViTResNAS, batches: Any, *, epochs: int = 10, archs_per_batch: int = 4, lr: float = 1e-3,
                   seed: int = 0, subnets: ViTSubnets | None = None, **fit_kwargs: Any) -> ViTSubnets:
    """Train ``model`` on ``(images, labels)`` batches, each step's batch split among ``archs_per_batch`` random
    sub-networks in one masked pass; returns the :class:`ViTSubnets` it sampled from."""
    if archs_per_batch < 1:
        raise UserError(f"vit_resnas search: archs_per_batch must be >= 1, got {archs_per_batch}")
    subnets = subnets or ViTSubnets(model)
    hook = _MultiArch(subnets, archs_per_batch, seed)

    def loss_fn(m: Any, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        logits = m(x, archs=hook.archs)
        return F.cross_entropy(logits, y), {"accuracy": float((logits.argmax(-1) == y).float().mean())}

    fit(model, batches, loss_fn, epochs=epochs, lr=lr, hooks=[hook], seed=seed, **fit_kwargs)
    return subnets


def subnet_accuracy(model: ViTResNAS, arch: SubArch, val: Iterable[Any]) -> float:
    """Validation accuracy of sub-network ``arch`` with the super-network's weights (its masked forward, which
    equals the extracted network's)."""
    return accuracy(model, val, archs=[arch])


def subnet_macs(model: ViTResNAS, arch: SubArch) -> int:
    """Multiply-accumulates of one forward of the extracted ``arch`` on one image (FLOPs / 2)."""
    sub = model.extract_subnet(arch)
    return count_flops(sub, (model.in_chans, model.img_size, model.img_size)) // 2

"""Portfolio starts: the first trials of a search are known-good archs of its space.

A search that begins with random archs can end below what a user would have written by hand. A portfolio start
makes the hand-written answers the first trials (Feurer et al., "Efficient and Robust Automated Machine
Learning", NeurIPS 2015, warm-started Bayesian optimisation from configurations that did well on earlier
datasets; Wistuba, Schilling & Schmidt-Thieme, "Sequential Model-Free Hyperparameter Tuning", ICDM 2015, chose
such a portfolio greedily), so the search's best is never below the portfolio's at the same fidelity.

The portfolio of the ``image`` space, for inputs of at most 32 pixels a side (Fashion-MNIST, CIFAR-10, digits),
in the order they run:

1. ``textbook``: the plain VGG-style CNN, conv-BN-ReLU 32, 32 | 64, 64 | 128 at full resolution (140k
   parameters on one channel): 93.1 % on Fashion-MNIST in 10.5 minutes on 2 cores, the baseline a search must beat;
2. ``resnet``: a small CIFAR ResNet, basic blocks 16x2 | 32x2 | 64x2 at full resolution (He et al., 2016);
3. ``convformer``: full-resolution convolutions, then ConvFormer's separable-convolution blocks and a pooling
   stage at the smallest map (Yu et al., "MetaFormer Baselines for Vision", 2022);
4. for budgets of 20 minutes or more, the textbook CNN at 1.5x width (48, 48 | 96, 96 | 192), which has the time
   to train further.

Larger inputs get the same shapes behind a stride-2 stem. An arch that a restricted space does not hold (another
mixer list) is left out. Other spaces have no portfolio yet (an empty list).
"""

from __future__ import annotations

from typing import Any

from archlab.errors import SpaceError
from archlab.space import Arch, Space

__all__ = ["portfolio", "portfolio_archs"]


def _stage(block: str, depth: int, width: int) -> dict[str, Any]:
    return {"block": block, "depth": depth, "width": width}


def portfolio_archs(space: Space, budget_s: float | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The portfolio of ``space`` for a run of ``budget_s`` seconds: ``(name, arch dict)`` pairs, unvalidated."""
    spec = space.spec or {}
    if spec.get("name", space.name) != "image":
        return []
    shape = spec.get("input_shape") or (3, 32, 32)
    stem = 1 if min(shape[1:]) <= 32 else 2
    archs = [
        ("textbook", {"stem_stride": stem, "first": _stage("conv", 2, 32),
                      "rest": [_stage("conv", 2, 64), _stage("conv", 1, 128)], "mlp_ratio": 2}),
        ("resnet", {"stem_stride": stem, "first": _stage("residual", 2, 16),
                    "rest": [_stage("residual", 2, 32), _stage("residual", 2, 64)], "mlp_ratio": 2}),
        ("convformer", {"stem_stride": stem, "first": _stage("conv", 1, 32),
                        "rest": [_stage("sepconv", 2, 64), _stage("pooling", 2, 128)], "mlp_ratio": 2}),
    ]
    if budget_s is not None and budget_s >= 1200:
        archs.append(("textbook-wide", {"stem_stride": stem, "first": _stage("conv", 2, 48),
                                        "rest": [_stage("conv", 2, 96), _stage("conv", 1, 192)], "mlp_ratio": 2}))
    return archs


def portfolio(space: Space, budget_s: float | None = None) -> list[tuple[str, Arch]]:
    """The portfolio archs of ``space`` that it holds, validated, with their names (see the module docstring)."""
    out = []
    for name, arch in portfolio_archs(space, budget_s):
        try:
            out.append((name, space.validate(arch)))
        except SpaceError:
            continue  # a restricted space (fewer mixers, other widths) does not hold it
    return out

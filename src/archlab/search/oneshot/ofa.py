"""Once-for-All: an elastic MobileNetV3-style supernet (kernel, expand ratio, depth), its channel re-sorting,
progressive shrinking, and subnets extracted with their weights.

Paper: Cai, Gan, Wang, Zhang and Han, "Once-for-All: Train One Network and Specialize it for Efficient
Deployment", ICLR 2020. Names follow the reference, mit-han-lab/once-for-all ``ofa/utils/layers.py`` and
``elastic_nn/modules/dynamic_op.py`` / ``dynamic_layers.py``: an inverted-residual block has
``inverted_bottleneck`` (1×1 conv, BN, ReLU), ``depth_conv`` (depthwise k×k, BN, ReLU) and ``point_linear`` (1×1,
BN); the depthwise conv holds the largest kernel and, per step down the kernel set, a learned transform
``"{ks}to{ks'}_matrix"`` (ks'²×ks'², initialised to the identity) applied to the centre crop of the larger kernel
(``DynamicSeparableConv2d.get_active_filter``); elastic expand keeps the first channels of the expanded layer,
which :func:`sort_channels` first orders by importance (the L1 norm of ``point_linear``'s weights per input
channel, ``re_organize_middle_weights``); elastic depth runs the first ``d`` blocks of a stage.

The network is sized for small images (the stem keeps 28×28 or 32×32 resolution; stages downsample by their
stride). Progressive shrinking is :mod:`archlab.search.oneshot.progressive` with the stages ``full``, ``kernel``,
``depth``, ``expand``; the search is :mod:`archlab.search.oneshot.evolution_finder`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError

__all__ = ["STAGES", "DynamicDepthwiseConv", "ElasticBlock", "OFANet", "OFASubnet", "OFASubnets", "sort_channels"]

STAGES = ("full", "kernel", "depth", "expand")


def _make_divisible(v: float, divisor: int = 8) -> int:
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class DynamicDepthwiseConv(nn.Module):
    """Depthwise convolution with an elastic kernel (``kernel_sizes``) and elastic channels (the input's)."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7), stride: int = 1) -> None:
        super().__init__()
        self.kernel_sizes = sorted(set(int(k) for k in kernel_sizes))
        if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise UserError(f"ofa: kernel sizes must be odd and positive, got {list(kernel_sizes)}")
        k = self.kernel_sizes[-1]
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels, k, stride, k // 2, groups=channels, bias=False)
        for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1], strict=True):
            self.register_parameter(f"{big}to{small}_matrix", nn.Parameter(torch.eye(small * small)))
        self.active_kernel = k

    def active_filter(self, channels: int, kernel: int) -> torch.Tensor:
        """The ``kernel``-sized filter of the first ``channels`` channels: centre crops of the largest kernel,
        each times its transform, one step at a time."""
        w = self.conv.weight[:channels]
        for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1], strict=True):
            if big <= kernel:
                break
            start = (big - small) // 2
            crop = w[:, :, start:start + small, start:start + small].reshape(channels, 1, small * small)
            w = F.linear(crop, getattr(self, f"{big}to{small}_matrix")).reshape(channels, 1, small, small)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.active_kernel
        return F.conv2d(x, self.active_filter(x.shape[1], k), None, self.stride, k // 2, 1, x.shape[1])


def _bn_slice(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn`` on the first ``x.shape[1]`` channels, with ``nn.BatchNorm2d``'s statistics update (a cumulative
    average when ``momentum`` is None, as a BatchNorm recalculation sets it)."""
    c = x.shape[1]
    if c == bn.num_features:
        return bn(x)
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                        bn.training or not bn.track_running_stats, factor, bn.eps)


class ElasticBlock(nn.Module):
    """An inverted-residual block with elastic kernel and expand ratio (residual when shape allows)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_sizes: Sequence[int] = (3, 5, 7),
                 expand_ratios: Sequence[float] = (3, 4, 6)) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.expand_ratios = sorted(expand_ratios)
        mid = _make_divisible(in_channels * self.expand_ratios[-1])
        self.inverted_bottleneck = nn.Sequential()
        self.inverted_bottleneck.add_module("conv", nn.Conv2d(in_channels, mid, 1, bias=False))
        self.inverted_bottleneck.add_module("bn", nn.BatchNorm2d(mid))
        self.depth_conv = nn.Sequential()
        self.depth_conv.add_module("conv", DynamicDepthwiseConv(mid, kernel_sizes, stride))
        self.depth_conv.add_module("bn", nn.BatchNorm2d(mid))
        self.point_linear = nn.Sequential()
        self.point_linear.add_module("conv", nn.Conv2d(mid, out_channels, 1, bias=False))
        self.point_linear.add_module("bn", nn.BatchNorm2d(out_channels))
        self.active_expand = self.expand_ratios[-1]
        self.residual = stride == 1 and in_channels == out_channels

    @property
    def active_mid(self) -> int:
        return min(self.inverted_bottleneck.conv.out_channels, _make_divisible(self.in_channels * self.active_expand))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.active_mid
        h = F.conv2d(x, self.inverted_bottleneck.conv.weight[:mid])
        h = F.relu(_bn_slice(self.inverted_bottleneck.bn, h))
        h = F.relu(_bn_slice(self.depth_conv.bn, self.depth_conv.conv(h)))
        h = self.point_linear.bn(F.conv2d(h, self.point_linear.conv.weight[:, :mid]))
        return x + h if self.residual else h


class OFANet(nn.Module):
    """Stem (3×3 conv, BN, ReLU), stages of :class:`ElasticBlock` (``stages``: ``(channels, max_depth,
    stride)`` each), a 1×1 head conv, global pooling and a classifier. ``active_depths``: blocks run per stage."""

    def __init__(self, in_chans: int = 1, num_classes: int = 10, stem_channels: int = 16,
                 stages: Sequence[tuple[int, int, int]] = ((24, 3, 1), (40, 3, 2), (80, 3, 2)),
                 head_channels: int = 160, kernel_sizes: Sequence[int] = (3, 5, 7),
                 expand_ratios: Sequence[float] = (3, 4, 6), min_depth: int = 1) -> None:
        super().__init__()
        if not stages or any(d < 1 for _, d, _ in stages) or not 1 <= min_depth <= min(d for _, d, _ in stages):
            raise UserError("ofa: every stage needs max depth >= 1 and 1 <= min_depth <= every max depth")
        self.config = dict(in_chans=in_chans, num_classes=num_classes, stem_channels=stem_channels,
                           stages=tuple(tuple(s) for s in stages), head_channels=head_channels,
                           kernel_sizes=tuple(kernel_sizes), expand_ratios=tuple(expand_ratios), min_depth=min_depth)
        self.first_conv = nn.Sequential(nn.Conv2d(in_chans, stem_channels, 3, 1, 1, bias=False),
                                        nn.BatchNorm2d(stem_channels), nn.ReLU())
        blocks, self.block_group_info, c = [], [], stem_channels
        for out, depth, stride in stages:
            start = len(blocks)
            for i in range(depth):
                blocks.append(ElasticBlock(c, out, stride if i == 0 else 1, kernel_sizes, expand_ratios))
                c = out
            self.block_group_info.append(list(range(start, len(blocks))))
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = nn.Sequential(nn.Conv2d(c, head_channels, 1, bias=False),
                                                nn.BatchNorm2d(head_channels), nn.ReLU())
        self.classifier = nn.Linear(head_channels, num_classes)
        self.runtime_depth = [len(g) for g in self.block_group_info]
        self.min_depth = min_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for group, depth in zip(self.block_group_info, self.runtime_depth, strict=True):
            for i in group[:depth]:
                x = self.blocks[i](x)
        x = self.final_expand_layer(x).mean((2, 3))
        return self.classifier(x)


@torch.no_grad()
def sort_channels(net: OFANet) -> OFANet:
    """Order every block's expanded channels by importance, most important first (``re_organize_middle_weights``):
    the network computes the same function, and a smaller expand ratio keeps the most important channels."""
    for block in net.blocks:
        importance = block.point_linear.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        block.point_linear.conv.weight.copy_(block.point_linear.conv.weight[:, order])
        for seq in (block.inverted_bottleneck, block.depth_conv):
            bn = seq.bn
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])
        block.inverted_bottleneck.conv.weight.copy_(block.inverted_bottleneck.conv.weight[order])
        block.depth_conv.conv.conv.weight.copy_(block.depth_conv.conv.conv.weight[order])
    return net


@dataclass(frozen=True)
class OFASubnet:
    """Blocks run per stage, and a kernel size and expand ratio per block (all blocks, unused ones included)."""

    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[float, ...]


class OFASubnets:
    """The subnets of an :class:`OFANet`: sampling (with dimensions closed at their largest), mutation, crossover,
    activation, and extraction into a static network of the same class."""

    def __init__(self, supernet: OFANet) -> None:
        self.supernet = supernet
        self.kernel_sizes = supernet.blocks[0].depth_conv.conv.kernel_sizes
        self.expand_ratios = supernet.blocks[0].expand_ratios
        self.max_depths = tuple(len(g) for g in supernet.block_group_info)
        self.depth_options = tuple(tuple(range(supernet.min_depth, d + 1)) for d in self.max_depths)

    def largest(self) -> OFASubnet:
        n = len(self.supernet.blocks)
        return OFASubnet(self.max_depths, (max(self.kernel_sizes),) * n, (max(self.expand_ratios),) * n)

    def sample(self, rng: random.Random, open_dims: Sequence[str] = ("kernel", "depth", "expand")) -> OFASubnet:
        big, n = self.largest(), len(self.supernet.blocks)
        return OFASubnet(
            tuple(rng.choice(o) for o in self.depth_options) if "depth" in open_dims else big.depths,
            tuple(rng.choice(self.kernel_sizes) for _ in range(n)) if "kernel" in open_dims else big.kernels,
            tuple(rng.choice(self.expand_ratios) for _ in range(n)) if "expand" in open_dims else big.expands)

    def mutate(self, s: OFASubnet, rng: random.Random, prob: float = 0.1) -> OFASubnet:
        def pick(v: Any, options: Sequence[Any]) -> Any:
            return rng.choice(options) if rng.random() < prob else v

        return OFASubnet(tuple(pick(d, o) for d, o in zip(s.depths, self.depth_options, strict=True)),
                         tuple(pick(k, self.kernel_sizes) for k in s.kernels),
                         tuple(pick(e, self.expand_ratios) for e in s.expands))

    @staticmethod
    def crossover(a: OFASubnet, b: OFASubnet, rng: random.Random) -> OFASubnet:
        def mix(x: Sequence[Any], y: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(p if rng.random() < 0.5 else q for p, q in zip(x, y, strict=True))

        return OFASubnet(mix(a.depths, b.depths), mix(a.kernels, b.kernels), mix(a.expands, b.expands))

    def activate(self, s: OFASubnet) -> None:
        net = self.supernet
        for d, options in zip(s.depths, self.depth_options, strict=True):
            if d not in options:
                raise UserError(f"ofa: depth {d} is not one of {list(options)}")
        net.runtime_depth = list(s.depths)
        for block, k, e in zip(net.blocks, s.kernels, s.expands, strict=True):
            if k not in block.depth_conv.conv.kernel_sizes or e not in block.expand_ratios:
                raise UserError(f"ofa: kernel {k} / expand {e} outside the supernet's sets")
            block.depth_conv.conv.active_kernel, block.active_expand = k, e

    @torch.no_grad()
    def extract(self, s: OFASubnet) -> OFANet:
        """A static :class:`OFANet` of subnet ``s`` holding its weights (no retraining): same outputs as the
        supernet with ``s`` active, in train and eval mode."""
        net = self.supernet
        cfg = dict(net.config)
        stages = [(c, d, st) for (c, _, st), d in zip(cfg["stages"], s.depths, strict=True)]
        used = [i for g, d in zip(net.block_group_info, s.depths, strict=True) for i in g[:d]]
        sub = OFANet(**{**cfg, "stages": stages, "min_depth": min(s.depths), "kernel_sizes": (1,),
                        "expand_ratios": (1,)})
        # the static blocks: one kernel, one expand; rebuild each with its own sizes
        blocks = []
        for i in used:
            src = net.blocks[i]
            blk = ElasticBlock(src.in_channels, src.out_channels, src.stride, (s.kernels[i],), (s.expands[i],))
            mid = _make_divisible(src.in_channels * s.expands[i])
            mid = min(mid, src.inverted_bottleneck.conv.out_channels)
            blk.inverted_bottleneck.conv = nn.Conv2d(src.in_channels, mid, 1, bias=False)
            blk.inverted_bottleneck.bn = nn.BatchNorm2d(mid)
            blk.depth_conv.conv = DynamicDepthwiseConv(mid, (s.kernels[i],), src.stride)
            blk.depth_conv.bn = nn.BatchNorm2d(mid)
            blk.point_linear.conv = nn.Conv2d(mid, src.out_channels, 1, bias=False)
            blk.inverted_bottleneck.conv.weight.copy_(src.inverted_bottleneck.conv.weight[:mid])
            blk.depth_conv.conv.conv.weight.copy_(src.depth_conv.conv.active_filter(mid, s.kernels[i]))
            blk.point_linear.conv.weight.copy_(src.point_linear.conv.weight[:, :mid])
            for dst, srcbn in ((blk.inverted_bottleneck.bn, src.inverted_bottleneck.bn),
                               (blk.depth_conv.bn, src.depth_conv.bn), (blk.point_linear.bn, src.point_linear.bn)):
                c = dst.num_features
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(dst, name).copy_(getattr(srcbn, name)[:c])
                dst.num_batches_tracked.copy_(srcbn.num_batches_tracked)
            blocks.append(blk)
        sub.blocks = nn.ModuleList(blocks)
        sub.first_conv.load_state_dict(net.first_conv.state_dict())
        sub.final_expand_layer.load_state_dict(net.final_expand_layer.state_dict())
        sub.classifier.load_state_dict(net.classifier.state_dict())
        first = next(net.parameters())
        return sub.to(device=first.device, dtype=first.dtype).train(net.training)

"""StageNet: a hierarchical image classifier whose every stage picks its own block family.

The textbook answers and the new token mixers side by side in one network, so that one search space holds
them all (the ``image`` space, :mod:`archlab.space.image`):

- ``conv``: a plain conv-BN-ReLU layer, VGG's block (Simonyan & Zisserman, "Very Deep Convolutional Networks for
  Large-Scale Image Recognition", ICLR 2015) and SimpleNet's (Hasanpour et al., "Lets keep it simple",
  arXiv:1608.06037, 2016); a stage after the first starts with a 2x2 max-pool, and its first convolution
  changes the width. ``conv 32, 32 | conv 64, 64 | conv 128`` is the textbook Fashion-MNIST CNN.
- ``residual``: ResNet's basic block (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016): two
  3x3 conv-BN with an identity shortcut; a stage after the first starts with a stride-2 block whose shortcut is
  a 1x1 conv-BN projection (option B), the first stage of an un-stemmed net with a 3x3 conv-BN-ReLU stem, as
  the CIFAR ResNets do.
- ``unireplknet``: UniRepLKNet's block (Ding et al., "UniRepLKNet", CVPR 2024; :mod:`archlab.zoo.models.unireplknet`)
  with a 5x5 depth-wise kernel.
- any registered non-causal token mixer (``pooling``: PoolFormer; ``sepconv``: ConvFormer; ``attention``,
  ``wavemix``, ...): a MetaFormer block with that mixer and BatchNorm (Yu et al., "MetaFormer Is Actually What
  You Need for Vision", CVPR 2022).

A stage of the last two kinds starts with MetaFormer's downsampling, a 3x3 convolution (stride 2 after the
first stage) and a BatchNorm. Every stage after the first halves the map. ``stem_stride`` 2 or 4 puts a strided
3x3 conv-BN-ReLU stem (two for 4) before the first stage, which then keeps its resolution. The head is a global
average pool and a linear layer, after a BatchNorm when the last stage's blocks are pre-norm residual blocks
(whose sum is not normalised).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import get_mixer_spec, register_model
from archlab.zoo.models.metaformer import MetaFormerBlock
from archlab.zoo.models.unireplknet import UniRepLKNetBlock

__all__ = ["CONV_BLOCKS", "StageNet", "stage_resolutions"]

#: the block families of StageNet that are not token mixers (every non-causal mixer is a block family too)
CONV_BLOCKS = ("conv", "residual", "unireplknet")
_PAPER = "VGG (ICLR 2015), ResNet (CVPR 2016), UniRepLKNet (CVPR 2024), MetaFormer (CVPR 2022): one stage each"


def _conv_bn(cin: int, cout: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class BasicBlock(nn.Module):
    """ResNet's basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def stage_resolutions(image_size: Sequence[int], stem_stride: int, n_stages: int) -> list[tuple[int, int]]:
    """Each stage's map size: the stem divides the input by ``stem_stride``, every later stage halves it."""
    size = tuple(-(-int(s) // stem_stride) for s in image_size)
    out = []
    for i in range(n_stages):
        if i > 0:
            size = tuple((s + 1) // 2 for s in size)
        out.append(size)
    return out  # type: ignore[return-value]


class StageNet(nn.Module):
    """Stages of ``{"block": family, "depth": int, "width": int}``; see the module docstring.

    Args:
        stages: one dict per stage; ``block`` is ``conv``, ``residual``, ``unireplknet`` or a mixer name.
        stem_stride: 1 (no stem), 2 or 4.
        mlp_ratio: the channel-MLP expansion of MetaFormer blocks (unused by the other families).
    """

    def __init__(self, stages: Sequence[Mapping[str, Any]], *, in_chans: int = 3, num_classes: int = 10,
                 image_size: int | Sequence[int] = (32, 32), stem_stride: int = 1, mlp_ratio: float = 4) -> None:
        super().__init__()
        if isinstance(stages, Mapping) or not isinstance(stages, Sequence) or not stages:
            raise UserError("stages must be a non-empty list of {'block', 'depth', 'width'} dicts")
        for i, s in enumerate(stages):
            if not isinstance(s, Mapping) or set(s) != {"block", "depth", "width"}:
                raise UserError(f"stage {i} must be a dict with exactly the keys block, depth, width; got {s!r}")
            if int(s["depth"]) < 1 or int(s["width"]) < 4:
                raise UserError(f"stage {i}: depth must be >= 1 and width >= 4, got {s['depth']} and {s['width']}")
        if stem_stride not in (1, 2, 4):
            raise UserError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.resolutions = stage_resolutions(size, stem_stride, len(stages))
        if min(self.resolutions[-1]) < 1 or min(size) < stem_stride:
            raise UserError(f"{len(stages)} stages after a stride-{stem_stride} stem do not fit a "
                            f"{size[0]}x{size[1]} input")
        self.stage_blocks = [str(s["block"]) for s in stages]
        width0 = int(stages[0]["width"])
        stem: list[nn.Module] = []
        c = in_chans
        for _ in range({1: 0, 2: 1, 4: 2}[stem_stride]):
            stem += _conv_bn(c, width0, stride=2)
            c = width0
        self.stem = nn.Sequential(*stem)
        self.stages = nn.ModuleList()
        for i, s in enumerate(stages):
            stage, c = self._stage(str(s["block"]), int(s["depth"]), c, int(s["width"]), i > 0,
                                   self.resolutions[i], mlp_ratio)
            self.stages.append(stage)
        prenorm = self.stage_blocks[-1] not in ("conv", "residual")
        self.norm = nn.BatchNorm2d(c) if prenorm else nn.Identity()
        self.head = nn.Linear(c, num_classes)

    @staticmethod
    def _stage(block: str, depth: int, cin: int, width: int, downsample: bool, resolution: tuple[int, int],
               mlp_ratio: float) -> tuple[nn.Sequential, int]:
        layers: list[nn.Module] = []
        if block == "conv":
            if downsample:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            for _ in range(depth):
                layers += _conv_bn(cin, width)
                cin = width
        elif block == "residual":
            stride = 2 if downsample else 1
            if not downsample and cin != width:  # the CIFAR ResNet stem
                layers += _conv_bn(cin, width)
                cin = width
            for _ in range(depth):
                layers.append(BasicBlock(cin, width, stride))
                cin, stride = width, 1
        else:
            layers += _conv_bn(cin, width, stride=2 if downsample else 1, relu=False)
            for _ in range(depth):
                if block == "unireplknet":
                    layers.append(UniRepLKNetBlock(width, 5))
                else:
                    spec = get_mixer_spec(block)  # a UserError naming an unknown block
                    layers.append(MetaFormerBlock(width, spec.factory(width, resolution=resolution),
                                                  layout=spec.layout, mlp_ratio=mlp_ratio, norm="batchnorm"))
        return nn.Sequential(*layers), width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.norm(x).mean((2, 3)))


@register_model(name="stagenet", family="stagenet", paper=_PAPER, input_shape=(3, 32, 32))
def stagenet(stages: Sequence[Mapping[str, Any]] | None = None, **kwargs: Any) -> StageNet:
    """A StageNet from stage dicts (default: the textbook CNN, conv 32-32 | 64-64 | 128)."""
    if stages is None:
        stages = [{"block": "conv", "depth": 2, "width": 32}, {"block": "conv", "depth": 2, "width": 64},
                  {"block": "conv", "depth": 1, "width": 128}]
    return StageNet(stages, **kwargs)

"""Inception-v4 and Inception-ResNet-v2, with the residual scaling that made the deep residual Inceptions train.

Paper: Szegedy, Ioffe, Vanhoucke and Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", AAAI 2017. Names, shapes and defaults follow timm (huggingface/pytorch-image-models)
``timm/models/inception_v4.py`` and ``timm/models/inception_resnet_v2.py`` (themselves ports of the TensorFlow
slim checkpoints): every convolution is a ``ConvNormAct`` with ``conv`` (no bias) and ``bn`` (BatchNorm,
eps 1e-3); Inception-v4 is one ``features`` Sequential and a ``last_linear`` classifier; Inception-ResNet-v2 has
named stem layers, ``repeat`` (Block35), ``repeat_1`` (Block17), ``repeat_2`` (Block8), ``block8``, ``conv2d_7b``
and a ``classif`` classifier. timm's checkpoints load with a plain ``load_state_dict``.

Residual blocks compute ``out = ReLU(x + scale * conv2d(concat(branches)))``; the paper scales the residual
branch by 0.1-0.3 because without it very deep/wide Inception-ResNets "died" early in training. Inception-
ResNet-v2 uses 10 Block35 (scale 0.17), 20 Block17 (0.10), 9 Block8 (0.20) and a final Block8 with scale 1 and
no ReLU; the scales and depths are constructor arguments here (``scales=``, ``depths=``).

The blocks also take a ``width`` multiplier and an input width so that :class:`InceptionResNetMini` can build
small, deep stacks of the same blocks on tiny images (the residual-scaling experiment of the paper at CPU scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model

__all__ = [
    "Block8",
    "Block17",
    "Block35",
    "ConvNormAct",
    "InceptionResNetMini",
    "InceptionResnetV2",
    "InceptionV4",
    "inception_resnet_v2",
    "inception_v4",
]

_PAPER = ("Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning "
          "(Szegedy et al., AAAI 2017)")
_KernelSize = int | tuple[int, int]


class ConvNormAct(nn.Module):
    """``act(bn(conv(x)))``: a bias-free convolution, BatchNorm (eps 1e-3 as in the TF checkpoints) and ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: _KernelSize = 1, stride: int = 1,
                 padding: _KernelSize = 0, eps: float = 1e-3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chs, eps=eps)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _w(channels: int, width: float) -> int:
    return max(1, round(channels * width))


# ---------------------------------------------------------------------------------------------------------------
# Inception-v4


class Mixed3a(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.conv = ConvNormAct(64, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.maxpool(x), self.conv(x)), 1)


class Mixed4a(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(ConvNormAct(160, 64, 1), ConvNormAct(64, 96, 3))
        self.branch1 = nn.Sequential(
            ConvNormAct(160, 64, 1),
            ConvNormAct(64, 64, (1, 7), padding=(0, 3)),
            ConvNormAct(64, 64, (7, 1), padding=(3, 0)),
            ConvNormAct(64, 96, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x)), 1)


class Mixed5a(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvNormAct(192, 192, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.conv(x), self.maxpool(x)), 1)


def _avg_pool3() -> nn.AvgPool2d:
    # count_include_pad=False: border pixels average only real neighbours, as in the TF graph.
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvNormAct(384, 96, 1)
        self.branch1 = nn.Sequential(ConvNormAct(384, 64, 1), ConvNormAct(64, 96, 3, padding=1))
        self.branch2 = nn.Sequential(
            ConvNormAct(384, 64, 1), ConvNormAct(64, 96, 3, padding=1), ConvNormAct(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(_avg_pool3(), ConvNormAct(384, 96, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class ReductionA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvNormAct(384, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            ConvNormAct(384, 192, 1), ConvNormAct(192, 224, 3, padding=1), ConvNormAct(224, 256, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class InceptionB(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvNormAct(1024, 384, 1)
        self.branch1 = nn.Sequential(
            ConvNormAct(1024, 192, 1),
            ConvNormAct(192, 224, (1, 7), padding=(0, 3)),
            ConvNormAct(224, 256, (7, 1), padding=(3, 0)),
        )
        self.branch2 = nn.Sequential(
            ConvNormAct(1024, 192, 1),
            ConvNormAct(192, 192, (7, 1), padding=(3, 0)),
            ConvNormAct(192, 224, (1, 7), padding=(0, 3)),
            ConvNormAct(224, 224, (7, 1), padding=(3, 0)),
            ConvNormAct(224, 256, (1, 7), padding=(0, 3)),
        )
        self.branch3 = nn.Sequential(_avg_pool3(), ConvNormAct(1024, 128, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class ReductionB(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(ConvNormAct(1024, 192, 1), ConvNormAct(192, 192, 3, stride=2))
        self.branch1 = nn.Sequential(
            ConvNormAct(1024, 256, 1),
            ConvNormAct(256, 256, (1, 7), padding=(0, 3)),
            ConvNormAct(256, 320, (7, 1), padding=(3, 0)),
            ConvNormAct(320, 320, 3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class InceptionC(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvNormAct(1536, 256, 1)
        self.branch1_0 = ConvNormAct(1536, 384, 1)
        self.branch1_1a = ConvNormAct(384, 256, (1, 3), padding=(0, 1))
        self.branch1_1b = ConvNormAct(384, 256, (3, 1), padding=(1, 0))
        self.branch2_0 = ConvNormAct(1536, 384, 1)
        self.branch2_1 = ConvNormAct(384, 448, (3, 1), padding=(1, 0))
        self.branch2_2 = ConvNormAct(448, 512, (1, 3), padding=(0, 1))
        self.branch2_3a = ConvNormAct(512, 256, (1, 3), padding=(0, 1))
        self.branch2_3b = ConvNormAct(512, 256, (3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(_avg_pool3(), ConvNormAct(1536, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return torch.cat((
            self.branch0(x),
            self.branch1_1a(x1), self.branch1_1b(x1),
            self.branch2_3a(x2), self.branch2_3b(x2),
            self.branch3(x),
        ), 1)


def _valid(size: int, kernel: int, stride: int) -> int:
    """Output size of an unpadded ``kernel``/``stride`` convolution or pool."""
    return (size - kernel) // stride + 1


def _inception_out_size(size: int) -> int:
    """Spatial size after the stem and the two reductions (the same arithmetic for v4 and IRv2)."""
    size = _valid(size, 3, 2)  # stride-2 3x3 stem convolution
    size = _valid(size, 3, 1)  # 3x3 valid convolution
    size = _valid(size, 3, 2)  # Mixed3a / maxpool_3a
    size = _valid(size, 3, 1)  # Mixed4a's 3x3 valid convolutions / conv2d_4a
    for _ in range(3):  # Mixed5a / maxpool_5a, ReductionA / mixed_6a, ReductionB / mixed_7a
        size = _valid(size, 3, 2)
    return size


def _min_input_size() -> int:
    size = 1
    while _inception_out_size(size) < 1:
        size += 1
    return size


_MIN_SIZE = _min_input_size()  # 75, as in timm's test configurations for these models


class _InceptionBase(nn.Module):
    """Shared input checking and classifier head of Inception-v4 and Inception-ResNet-v2."""

    model_name = "inception"

    def _check_args(self, num_classes: int, in_chans: int, drop_rate: float) -> None:
        if num_classes < 0:
            raise UserError(f"{self.model_name}: num_classes must be >= 0, got {num_classes}")
        if in_chans < 1:
            raise UserError(f"{self.model_name}: in_chans must be >= 1, got {in_chans}")
        if not 0.0 <= drop_rate < 1.0:
            raise UserError(f"{self.model_name}: drop_rate must be in [0, 1), got {drop_rate}")

    def check_input(self, x: torch.Tensor) -> None:
        ok = x.ndim == 4 and x.shape[1] == self.in_chans and min(x.shape[-2:]) >= _MIN_SIZE
        if not ok:
            raise UserError(f"{self.model_name}: expected input (B, {self.in_chans}, H, W) with H, W >= "
                            f"{_MIN_SIZE}, got {tuple(x.shape)}")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x).flatten(1))
        return x if pre_logits else self.get_classifier()(x)

    def get_classifier(self) -> nn.Module:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))


class InceptionV4(_InceptionBase):
    """Inception-v4: stem, 4x Inception-A, Reduction-A, 7x Inception-B, Reduction-B, 3x Inception-C."""

    model_name = "inception_v4"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        self._check_args(num_classes, in_chans, drop_rate)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 1536
        self.features = nn.Sequential(
            ConvNormAct(in_chans, 32, 3, stride=2),
            ConvNormAct(32, 32, 3),
            ConvNormAct(32, 64, 3, padding=1),
            Mixed3a(),
            Mixed4a(),
            Mixed5a(),
            *[InceptionA() for _ in range(4)],
            ReductionA(),  # Mixed6a
            *[InceptionB() for _ in range(7)],
            ReductionB(),  # Mixed7a
            *[InceptionC() for _ in range(3)],
        )
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.last_linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# ---------------------------------------------------------------------------------------------------------------
# Inception-ResNet-v2


class Mixed_5b(nn.Module):  # noqa: N801 - timm's (and TF slim's) module name, kept for checkpoint names
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvNormAct(192, 96, 1)
        self.branch1 = nn.Sequential(ConvNormAct(192, 48, 1), ConvNormAct(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(
            ConvNormAct(192, 64, 1), ConvNormAct(64, 96, 3, padding=1), ConvNormAct(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(_avg_pool3(), ConvNormAct(192, 64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class _ScaledResidual(nn.Module):
    """``act(x + scale * conv2d(concat(branches)))``; subclasses build the branches and ``conv2d``."""

    def __init__(self, scale: float, activate: bool) -> None:
        super().__init__()
        self.scale = float(scale)
        self.activate = activate

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(self.branches(x)) * self.scale + x
        return torch.relu(out) if self.activate else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}, activate={self.activate}"


class Block35(_ScaledResidual):
    """The 35x35 Inception-ResNet-A block: 1x1 | 1x1-3x3 | 1x1-3x3-3x3, concat, 1x1 back to ``in_chs``."""

    def __init__(self, scale: float = 1.0, in_chs: int = 320, width: float = 1.0, activate: bool = True) -> None:
        super().__init__(scale, activate)
        c32, c48, c64 = _w(32, width), _w(48, width), _w(64, width)
        self.branch0 = ConvNormAct(in_chs, c32, 1)
        self.branch1 = nn.Sequential(ConvNormAct(in_chs, c32, 1), ConvNormAct(c32, c32, 3, padding=1))
        self.branch2 = nn.Sequential(
            ConvNormAct(in_chs, c32, 1), ConvNormAct(c32, c48, 3, padding=1), ConvNormAct(c48, c64, 3, padding=1))
        self.conv2d = nn.Conv2d(2 * c32 + c64, in_chs, 1)

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Mixed_6a(nn.Module):  # noqa: N801 - timm's module name
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvNormAct(320, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            ConvNormAct(320, 256, 1), ConvNormAct(256, 256, 3, padding=1), ConvNormAct(256, 384, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Block17(_ScaledResidual):
    """The 17x17 Inception-ResNet-B block: 1x1 | 1x1-1x7-7x1, concat, 1x1 back to ``in_chs``."""

    def __init__(self, scale: float = 1.0, in_chs: int = 1088, width: float = 1.0, activate: bool = True) -> None:
        super().__init__(scale, activate)
        c128, c160, c192 = _w(128, width), _w(160, width), _w(192, width)
        self.branch0 = ConvNormAct(in_chs, c192, 1)
        self.branch1 = nn.Sequential(
            ConvNormAct(in_chs, c128, 1),
            ConvNormAct(c128, c160, (1, 7), padding=(0, 3)),
            ConvNormAct(c160, c192, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(2 * c192, in_chs, 1)

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x)), 1)


class Mixed_7a(nn.Module):  # noqa: N801 - timm's module name
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(ConvNormAct(1088, 256, 1), ConvNormAct(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(ConvNormAct(1088, 256, 1), ConvNormAct(256, 288, 3, stride=2))
        self.branch2 = nn.Sequential(
            ConvNormAct(1088, 256, 1), ConvNormAct(256, 288, 3, padding=1), ConvNormAct(288, 320, 3, stride=2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block8(_ScaledResidual):
    """The 8x8 Inception-ResNet-C block: 1x1 | 1x1-1x3-3x1, concat, 1x1 back to ``in_chs``."""

    def __init__(self, scale: float = 1.0, in_chs: int = 2080, width: float = 1.0, activate: bool = True) -> None:
        super().__init__(scale, activate)
        c192, c224, c256 = _w(192, width), _w(224, width), _w(256, width)
        self.branch0 = ConvNormAct(in_chs, c192, 1)
        self.branch1 = nn.Sequential(
            ConvNormAct(in_chs, c192, 1),
            ConvNormAct(c192, c224, (1, 3), padding=(0, 1)),
            ConvNormAct(c224, c256, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(c192 + c256, in_chs, 1)

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x)), 1)


def _three(name: str, model: str, values: Sequence[Any], kind: type) -> tuple[Any, Any, Any]:
    values = tuple(values)
    if len(values) != 3:
        raise UserError(f"{model}: {name} needs one value per block type (Block35, Block17, Block8), got {values}")
    try:
        return tuple(kind(v) for v in values)  # type: ignore[return-value]
    except (TypeError, ValueError):
        raise UserError(f"{model}: {name} must be numbers, got {values}") from None


class InceptionResnetV2(_InceptionBase):
    """Inception-ResNet-v2; ``scales`` and ``depths`` configure the three stacks of scaled residual blocks."""

    model_name = "inception_resnet_v2"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 scales: Sequence[float] = (0.17, 0.10, 0.20), depths: Sequence[int] = (10, 20, 9)) -> None:
        super().__init__()
        self._check_args(num_classes, in_chans, drop_rate)
        scales = _three("scales", self.model_name, scales, float)
        depths = _three("depths", self.model_name, depths, int)
        if min(depths) < 0:
            raise UserError(f"{self.model_name}: depths must be >= 0, got {depths}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 1536
        self.scales = scales
        self.conv2d_1a = ConvNormAct(in_chans, 32, 3, stride=2)
        self.conv2d_2a = ConvNormAct(32, 32, 3)
        self.conv2d_2b = ConvNormAct(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvNormAct(64, 80, 1)
        self.conv2d_4a = ConvNormAct(80, 192, 3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed_5b()
        self.repeat = nn.Sequential(*[Block35(scale=scales[0]) for _ in range(depths[0])])
        self.mixed_6a = Mixed_6a()
        self.repeat_1 = nn.Sequential(*[Block17(scale=scales[1]) for _ in range(depths[1])])
        self.mixed_7a = Mixed_7a()
        self.repeat_2 = nn.Sequential(*[Block8(scale=scales[2]) for _ in range(depths[2])])
        # The last block feeds the 1x1 conv2d_7b (with its own BN+ReLU), so it is left linear and unscaled.
        self.block8 = Block8(scale=1.0, activate=False)
        self.conv2d_7b = ConvNormAct(2080, self.num_features, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.classif = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.classif

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        x = self.repeat(self.mixed_5b(self.maxpool_5a(x)))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.repeat_2(self.mixed_7a(x))
        return self.conv2d_7b(self.block8(x))


class InceptionResNetMini(nn.Module):
    """A small, deep Inception-ResNet for tiny images: a 3x3 stem to ``dim`` channels, ``depth`` Block35s with
    branch widths ``width`` x the paper's, global average pooling and a linear classifier.

    It exists to reproduce the paper's residual-scaling observation at CPU scale: the same stack trained with
    ``scale`` 0.1-0.3 versus ``scale`` 1.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, dim: int = 32, depth: int = 12,
                 width: float = 0.25, scale: float = 0.2) -> None:
        super().__init__()
        if min(num_classes, in_chans, dim, depth) < 1 or width <= 0:
            raise UserError(f"InceptionResNetMini: num_classes, in_chans, dim, depth must be >= 1 and width > 0; "
                            f"got {num_classes}, {in_chans}, {dim}, {depth}, {width}")
        self.in_chans = in_chans
        self.stem = ConvNormAct(in_chans, dim, 3, padding=1)
        self.blocks = nn.Sequential(*[Block35(scale=scale, in_chs=dim, width=width) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise UserError(f"InceptionResNetMini: expected input (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        x = self.blocks(self.stem(x))
        return self.head(x.mean((2, 3)))


@register_model(family="inception", paper=_PAPER, input_shape=(3, 299, 299))
def inception_v4(**kwargs: Any) -> InceptionV4:
    """Inception-v4 (42.7M parameters at 1000 classes), timm-compatible names."""
    return InceptionV4(**kwargs)


@register_model(family="inception", paper=_PAPER, input_shape=(3, 299, 299))
def inception_resnet_v2(**kwargs: Any) -> InceptionResnetV2:
    """Inception-ResNet-v2 (55.8M parameters at 1000 classes), timm-compatible names."""
    return InceptionResnetV2(**kwargs)

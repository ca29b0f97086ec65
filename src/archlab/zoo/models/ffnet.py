"""FFNet: plain BasicBlock ResNets with a light FPN-like up-head, for semantic segmentation.

Paper: Mehta, Skliar, Ben Yahia, Borse, Porikli, Habibian and Blankevoort, "Simple and Efficient Architectures
for Semantic Segmentation", CVPR Workshops (ECV) 2022. Names and structure follow Qualcomm-AI-research/FFNet
``models/ffnet_blocks.py`` (``ConvBNReLU``, ``AdapterConv``, ``UpBranch``, ``UpsampleCat``, the segmentation heads,
``FFNetUpHead``, ``FFNet``) and ``models/resnet.py`` (``BasicBlock``, ``ResNet``, ``ResNetS``), so that the
released state dicts load with a plain ``load_state_dict``: ``backbone_model.*`` and ``head.layers.{0: adapter,
1: up-branch, 3: segmentation head}.*``.

The point of the paper: a deep BasicBlock ResNet without dilation reaches a large effective receptive field and,
with a simple up-head, matches far more complex segmentation networks. The backbone returns features at strides
4, 8, 16 and 32 (8..64 for the ``_D`` variants, made for 2048x1024 inputs); the adapter projects each to the
head's base widths; the up-branch walks from coarse to fine, each step adding the upsampled 1x1-projected coarser
map to the finer one (``fam_*_up``) and emitting a 3x3 ``ConvBNReLU`` per scale (``fam_*_sm``); all scales are
upsampled to the finest one and concatenated, and a small head predicts the classes at the finest stride (the
reference's evaluation upsamples the logits to the input size; :meth:`FFNet.forward` returns them at stride 4, or
pass ``upsample_logits=True``). GPU heads upsample bilinearly (align_corners=True), "mobile" heads with nearest.

Registered configurations (reference names without the ``segmentation_`` prefix): ``ffnet40S_BBB_mobile``,
``ffnet54S_BBB_mobile``, ``ffnet78S_BBB_mobile``, ``ffnet40S_BCC_mobile``, ``ffnet40S_dBBB_mobile``,
``ffnet54S_dBBB_mobile`` (slim backbones, mobile heads) and ``ffnet18_dAAA``, ``ffnet34_dAAA`` (GPU heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model

__all__ = ["FFNet", "FFNetUpHead", "ResNet", "ResNetS", "UpBranch", "ffnet40S_BBB_mobile"]

_PAPER = "Simple and Efficient Architectures for Semantic Segmentation (Mehta et al., CVPR Workshops 2022)"
_BN_MOMENTUM = 0.1
_GPU_UP = {"mode": "bilinear", "align_corners": True}
_MOBILE_UP = {"mode": "nearest"}
# The up-head's widths per head type: the adapter's output widths (finest first) and each scale's output widths.
_HEAD_BASE = {"A": (64, 128, 256, 512), "B": (64, 128, 128, 256), "C": (128, 128, 128, 128)}
_HEAD_OUT = {"A": (128, 128, 128, 128), "B": (96, 96, 64, 32), "C": (128, 16, 16, 16)}
# Segmentation head per task letter: (middle width, kernel of the last convolution).
_SEG_HEADS = {"A": (512, 1), "B": (256, 3), "C": (128, 1)}


class ConvBNReLU(nn.Module):
    """``layers = Sequential(conv (no bias), BatchNorm[, ReLU])``."""

    def __init__(self, in_chan: int, out_chan: int, ks: int = 3, stride: int = 1, padding: int = 1,
                 activation: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_chan, out_chan, kernel_size=ks, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_chan, momentum=_BN_MOMENTUM),
        ]
        if activation:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN, a 1x1 conv-BN shortcut when the shape changes, ReLU after the sum."""

    def __init__(self, in_chan: int, out_chan: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chan, out_chan, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chan, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(out_chan, out_chan, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chan, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if in_chan != out_chan or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chan, out_chan, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chan, momentum=_BN_MOMENTUM),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(shortcut + out)


class _Backbone(nn.Module):
    """Four BasicBlock stages after a stride-4 stem; ``forward`` returns the four stage outputs, finest first."""

    def _make_stages(self, inplanes: int, layers: Sequence[int], strides: Sequence[int],
                     branch_chans: Sequence[int]) -> None:
        for i, (depth, stride, width) in enumerate(zip(layers, strides, branch_chans, strict=True)):
            blocks = [BasicBlock(inplanes, width, stride)] + [BasicBlock(width, width) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = width
        self.out_channels = list(branch_chans)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        feat4 = self.layer1(self.stem(x))
        feat8 = self.layer2(feat4)
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat4, feat8, feat16, feat32


class ResNet(_Backbone):
    """The classic ResNet stem (7x7 stride-2 conv, 3x3 stride-2 max-pool) with BasicBlock stages."""

    def __init__(self, layers: Sequence[int], strides: Sequence[int], in_chans: int = 3,
                 branch_chans: Sequence[int] = (64, 128, 256, 512), stem_chans: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, stem_chans, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chans, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._make_stages(stem_chans, layers, strides, branch_chans)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class ResNetS(_Backbone):
    """The slim ResNet: narrower stages (64, 128, 192, 320) and a deeper stem of two stride-2 3x3 convs."""

    def __init__(self, layers: Sequence[int], strides: Sequence[int], in_chans: int = 3,
                 branch_chans: Sequence[int] = (64, 128, 192, 320), stem_chans: Sequence[int] = (32, 64)) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(in_chans, stem_chans[0], 3, stride=2, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(stem_chans[0], momentum=_BN_MOMENTUM)
        self.relu0 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(stem_chans[0], stem_chans[1], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chans[1], momentum=_BN_MOMENTUM)
        self.relu1 = nn.ReLU(inplace=True)
        self._make_stages(stem_chans[1], layers, strides, branch_chans)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu1(self.bn1(self.conv1(self.relu0(self.bn0(self.conv0(x))))))


class AdapterConv(nn.Module):
    """A 1x1 ``ConvBNReLU`` per scale, from the backbone's widths to the head's base widths."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int]) -> None:
        super().__init__()
        self.adapter_conv = nn.ModuleList(
            ConvBNReLU(i, o, ks=1, padding=0) for i, o in zip(in_channels, out_channels, strict=True))

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(feat) for conv, feat in zip(self.adapter_conv, x, strict=True)]


class UpBranch(nn.Module):
    """Coarse-to-fine: at each scale add the upsampled 1x1 projection of the coarser map, then a 3x3 output."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int],
                 upsample_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._up_kwargs = dict(upsample_kwargs or _GPU_UP)
        c4, c8, c16, c32 = in_channels
        self.fam_32_sm = ConvBNReLU(c32, out_channels[3])
        self.fam_32_up = ConvBNReLU(c32, c16, ks=1, padding=0)
        self.fam_16_sm = ConvBNReLU(c16, out_channels[2])
        self.fam_16_up = ConvBNReLU(c16, c8, ks=1, padding=0)
        self.fam_8_sm = ConvBNReLU(c8, out_channels[1])
        self.fam_8_up = ConvBNReLU(c8, c4, ks=1, padding=0)
        self.fam_4 = ConvBNReLU(c4, out_channels[0])
        self.high_level_ch = sum(out_channels)
        self.out_channels = list(out_channels)

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # Interpolating to the finer map's exact size keeps odd sizes aligned (no factor-of-2 assumption).
        return F.interpolate(x, like.shape[-2:], **self._up_kwargs)

    def forward(self, x: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        feat4, feat8, feat16, feat32 = x
        sm32 = self.fam_32_sm(feat32)
        x16 = self._up(self.fam_32_up(feat32), feat16) + feat16
        sm16 = self.fam_16_sm(x16)
        x8 = self._up(self.fam_16_up(x16), feat8) + feat8
        sm8 = self.fam_8_sm(x8)
        sm4 = self.fam_4(self._up(self.fam_8_up(x8), feat4) + feat4)
        return sm4, sm8, sm16, sm32


class UpsampleCat(nn.Module):
    """Upsample every scale to the finest one and concatenate along channels."""

    def __init__(self, upsample_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._up_kwargs = dict(upsample_kwargs or _GPU_UP)

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        size = x[0].shape[-2:]
        return torch.cat([x[0]] + [F.interpolate(t, size, **self._up_kwargs) for t in x[1:]], dim=1)


class SegmentationHead(nn.Module):
    """``last_layer = Sequential(3x3 conv, BN, ReLU, conv to classes)``; the last conv is 1x1 or 3x3."""

    def __init__(self, in_chans: int, mid_chans: int, num_outputs: int, last_kernel: int = 1) -> None:
        super().__init__()
        self.last_layer = nn.Sequential(
            nn.Conv2d(in_chans, mid_chans, 3, padding=1),
            nn.BatchNorm2d(mid_chans, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_chans, num_outputs, last_kernel, padding=last_kernel // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(x)


class FFNetUpHead(nn.Module):
    """``layers = Sequential(AdapterConv, UpBranch, UpsampleCat, SegmentationHead)``.

    ``head_type`` is ``"A"``, ``"B"`` or ``"C"`` (widths), optionally with ``"_mobile"`` (nearest upsampling);
    ``task`` is ``"segmentation_A"``/``_B``/``_C`` (the segmentation head). ``base_chans``, ``out_chans`` and
    ``mid_chans`` override the widths of the named types (for small experimental models).
    """

    def __init__(self, in_chans: Sequence[int], head_type: str = "B_mobile", task: str = "segmentation_B",
                 num_classes: int = 19, base_chans: Sequence[int] | None = None,
                 out_chans: Sequence[int] | None = None, mid_chans: int | None = None) -> None:
        super().__init__()
        kind, _, suffix = head_type.partition("_")
        if kind not in _HEAD_BASE or suffix not in ("", "mobile"):
            raise UserError(f"FFNet: unknown head_type {head_type!r}; expected A, B or C, optionally + '_mobile'")
        seg = task.removeprefix("segmentation_")
        if not task.startswith("segmentation_") or seg not in _SEG_HEADS:
            raise UserError(f"FFNet: unknown task {task!r}; expected segmentation_A, segmentation_B or "
                            "segmentation_C")
        up_kwargs = _MOBILE_UP if suffix == "mobile" else _GPU_UP
        base = list(base_chans or _HEAD_BASE[kind])
        outs = list(out_chans or _HEAD_OUT[kind])
        if len(in_chans) != 4 or len(base) != 4 or len(outs) != 4:
            raise UserError("FFNet: the up-head works on exactly four scales (strides 4, 8, 16, 32)")
        mid, last_kernel = _SEG_HEADS[seg]
        branch = UpBranch(base, outs, upsample_kwargs=up_kwargs)
        self.num_features = branch.high_level_ch
        self.layers = nn.Sequential(
            AdapterConv(in_chans, base),
            branch,
            UpsampleCat(up_kwargs),
            SegmentationHead(self.num_features, mid_chans or mid, num_classes, last_kernel),
        )

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.layers(x)


def _init_weights(module: nn.Module) -> None:
    # The reference's model_weight_initializer (models/utils.py): N(0, 0.01) convs, "on purpose, [it] seems to
    # work better in practice for segmentation"; the BatchNorms rescale whatever that scale gives.
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, std=0.01)
        if module.bias is not None:
            nn.init.constant_(module.bias, 1e-4)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class FFNet(nn.Module):
    """A BasicBlock ResNet backbone (``backbone_model``) and an :class:`FFNetUpHead` (``head``).

    ``backbone`` is ``"resnet"`` (7x7 stem + max-pool, widths 64..512) or ``"resnet_s"`` (slim: two 3x3 stride-2
    stem convs, widths 64, 128, 192, 320); ``layers`` gives the BasicBlocks per stage and ``strides`` the stride
    of each stage's first block (``(1, 2, 2, 2)``: features at strides 4..32; ``(2, 2, 2, 2)``: the ``_D`` models,
    8..64). ``init`` is ``"reference"`` (N(0, 0.01) convolutions, as released) or ``"torch"`` (PyTorch defaults).
    """

    def __init__(self, *, layers: Sequence[int], backbone: str = "resnet_s", strides: Sequence[int] = (1, 2, 2, 2),
                 head_type: str = "B_mobile", task: str = "segmentation_B", num_classes: int = 19,
                 in_chans: int = 3, branch_chans: Sequence[int] | None = None,
                 stem_chans: int | Sequence[int] | None = None, head_base_chans: Sequence[int] | None = None,
                 head_out_chans: Sequence[int] | None = None, head_mid_chans: int | None = None,
                 upsample_logits: bool = False, init: str = "reference", name: str = "ffnet") -> None:
        super().__init__()
        self.name = name
        layers, strides = list(layers), list(strides)
        if len(layers) != 4 or len(strides) != 4 or min(layers) < 1 or any(s not in (1, 2) for s in strides):
            raise UserError(f"{name}: layers needs four block counts >= 1 and strides four values in (1, 2); "
                            f"got {layers}, {strides}")
        if num_classes < 1 or in_chans < 1:
            raise UserError(f"{name}: num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
        kw: dict[str, Any] = {} if branch_chans is None else {"branch_chans": list(branch_chans)}
        if backbone == "resnet_s":
            if stem_chans is not None:
                kw["stem_chans"] = list(stem_chans) if isinstance(stem_chans, Sequence) else [stem_chans] * 2
            self.backbone_model: _Backbone = ResNetS(layers, strides, in_chans=in_chans, **kw)
        elif backbone == "resnet":
            if stem_chans is not None:
                kw["stem_chans"] = int(stem_chans) if not isinstance(stem_chans, Sequence) else int(stem_chans[0])
            self.backbone_model = ResNet(layers, strides, in_chans=in_chans, **kw)
        else:
            raise UserError(f"{name}: unknown backbone {backbone!r}; expected 'resnet' or 'resnet_s'")
        self.head = FFNetUpHead(self.backbone_model.out_channels, head_type=head_type, task=task,
                                num_classes=num_classes, base_chans=head_base_chans, out_chans=head_out_chans,
                                mid_chans=head_mid_chans)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.upsample_logits = upsample_logits
        self.feature_strides = self._feature_strides(strides)
        # "reference": the released code's N(0, 0.01) convs (meant for ImageNet-pretrained backbones); "torch":
        # PyTorch's default init, which trains tiny models from scratch with Adam far faster (weights of scale
        # 0.01 are scrambled by Adam's fixed-size steps).
        if init == "reference":
            self.apply(_init_weights)
        elif init != "torch":
            raise UserError(f"{name}: init must be 'reference' or 'torch', got {init!r}")

    @staticmethod
    def _feature_strides(strides: Sequence[int]) -> tuple[int, int, int, int]:
        out, total = [], 4  # both stems reduce by 4
        for s in strides:
            total *= s
            out.append(total)
        return tuple(out)  # type: ignore[return-value]

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise UserError(f"{self.name}: expected input (B, {self.in_chans}, H, W), got {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The backbone's four feature maps, at :attr:`feature_strides`."""
        self._check(x)
        return tuple(self.backbone_model(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at the finest feature stride (or at the input size with ``upsample_logits``)."""
        logits = self.head(self.forward_features(x))
        if self.upsample_logits:
            logits = F.interpolate(logits, x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def _ffnet(name: str, layers: Sequence[int], backbone: str, strides: Sequence[int], head_type: str, task: str,
           kwargs: dict[str, Any]) -> FFNet:
    return FFNet(layers=layers, backbone=backbone, strides=strides, head_type=head_type, task=task, name=name,
                 **kwargs)


_S = (1, 2, 2, 2)  # features at strides 4, 8, 16, 32
_D = (2, 2, 2, 2)  # "_D" models: one more reduction, features at strides 8..64


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet40S_BBB_mobile(**kwargs: Any) -> FFNet:  # noqa: N802 - the reference's configuration name
    """Slim ResNet-40 backbone, B_mobile head, B segmentation head (1024x512 in, 256x128 out)."""
    return _ffnet("ffnet40S_BBB_mobile", (4, 5, 6, 4), "resnet_s", _S, "B_mobile", "segmentation_B", kwargs)


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet54S_BBB_mobile(**kwargs: Any) -> FFNet:  # noqa: N802
    """Slim ResNet-54 backbone, B_mobile head, B segmentation head."""
    return _ffnet("ffnet54S_BBB_mobile", (5, 8, 8, 5), "resnet_s", _S, "B_mobile", "segmentation_B", kwargs)


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet78S_BBB_mobile(**kwargs: Any) -> FFNet:  # noqa: N802
    """Slim ResNet-78 backbone, B_mobile head, B segmentation head."""
    return _ffnet("ffnet78S_BBB_mobile", (6, 12, 12, 8), "resnet_s", _S, "B_mobile", "segmentation_B", kwargs)


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet40S_BCC_mobile(**kwargs: Any) -> FFNet:  # noqa: N802
    """Slim ResNet-40 backbone, C_mobile head, C segmentation head."""
    return _ffnet("ffnet40S_BCC_mobile", (4, 5, 6, 4), "resnet_s", _S, "C_mobile", "segmentation_C", kwargs)


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet40S_dBBB_mobile(**kwargs: Any) -> FFNet:  # noqa: N802
    """Slim ResNet-40 with the extra reduction (2048x1024 in, 256x128 out), B_mobile head."""
    return _ffnet("ffnet40S_dBBB_mobile", (4, 5, 6, 4), "resnet_s", _D, "B_mobile", "segmentation_B", kwargs)


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet54S_dBBB_mobile(**kwargs: Any) -> FFNet:  # noqa: N802
    """Slim ResNet-54 with the extra reduction, B_mobile head."""
    return _ffnet("ffnet54S_dBBB_mobile", (5, 8, 8, 5), "resnet_s", _D, "B_mobile", "segmentation_B", kwargs)


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet18_dAAA(**kwargs: Any) -> FFNet:  # noqa: N802
    """ResNet-18 (BasicBlock) with the extra reduction, GPU head A, segmentation head A (Cityscapes 76.5 mIoU)."""
    return _ffnet("ffnet18_dAAA", (2, 2, 2, 2), "resnet", _D, "A", "segmentation_A", kwargs)


@register_model(family="ffnet", paper=_PAPER, input_shape=(3, 512, 1024))
def ffnet34_dAAA(**kwargs: Any) -> FFNet:  # noqa: N802
    """ResNet-34 (BasicBlock) with the extra reduction, GPU head A, segmentation head A."""
    return _ffnet("ffnet34_dAAA", (3, 4, 6, 3), "resnet", _D, "A", "segmentation_A", kwargs)

"""WaveMix(-Lite) image classifiers: a stem, a stack of residual wavelet blocks at one resolution, a GAP head.

Paper: Jeevan, Viswanathan, A S & Sethi, "WaveMix: A Resource-efficient Neural Network for Image Analysis",
arXiv 2205.14375, 2022. Names follow pranavphoenix/WaveMix ``wavemix/classification.py`` ``WaveMix`` (``conv``
stem, ``layers`` of blocks, ``pool`` = GAP -> flatten -> Linear), so the package's level-1 checkpoints load
with a plain ``load_state_dict``; the block is :class:`archlab.zoo.mixers.wavemix.WaveBlock`.

``wavemix_lite`` is the CIFAR-10 configuration "WaveMix Lite-64/6" of the reference README's parameter
efficiency table (90 % CIFAR-10 accuracy with 520,106 parameters): ``final_dim`` 64, depth 6, ``mult`` 2,
``ff_channel`` 64, the package's ConvTranspose block, and the ``"strided"`` stem with stride 1 (two 3x3 convs),
which is what the reference uses for 32x32 images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.mixers.wavemix import WaveBlock

__all__ = ["WaveMix", "wavemix_lite"]

_PAPER = "WaveMix: A Resource-efficient Neural Network for Image Analysis (Jeevan et al., arXiv 2022)"
STEMS = ("strided", "patchify")


class WaveMix(nn.Module):
    """``pool(blocks(conv(x)))`` with ``x = x + block(x)`` for each level-1 wavelet block."""

    def __init__(self, *, num_classes: int = 1000, depth: int = 16, mult: int = 2, ff_channel: int = 192,
                 final_dim: int = 192, dropout: float = 0.5, initial_conv: str = "patchify", patch_size: int = 4,
                 stride: int = 2, in_chans: int = 3, upsample: str = "convtranspose",
                 upsample_mode: str = "bilinear", name: str = "wavemix") -> None:
        super().__init__()
        if initial_conv not in STEMS:
            raise UserError(f"{name}: unknown initial_conv {initial_conv!r}; known: {', '.join(STEMS)}")
        for key, value in (("depth", depth), ("in_chans", in_chans), ("patch_size", patch_size),
                           ("stride", stride)):
            if value < 1:
                raise UserError(f"{name}: {key} must be >= 1, got {value}")
        if num_classes < 1:
            raise UserError(f"{name}: num_classes must be >= 1, got {num_classes}")
        if final_dim < 4 or final_dim % 4:
            raise UserError(f"{name}: final_dim must be a positive multiple of 4, got {final_dim}")
        self.name = name
        self.in_chans = in_chans
        self.layers = nn.ModuleList(
            WaveBlock(mult=mult, ff_channel=ff_channel, final_dim=final_dim, dropout=dropout, upsample=upsample,
                      upsample_mode=upsample_mode) for _ in range(depth))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(final_dim, num_classes))
        if initial_conv == "strided":
            self.conv = nn.Sequential(nn.Conv2d(in_chans, final_dim // 2, 3, stride, 1),
                                      nn.Conv2d(final_dim // 2, final_dim, 3, stride, 1))
        else:
            self.conv = nn.Sequential(nn.Conv2d(in_chans, final_dim // 4, 3, 1, 1),
                                      nn.Conv2d(final_dim // 4, final_dim // 2, 3, 1, 1),
                                      nn.Conv2d(final_dim // 2, final_dim, patch_size, patch_size),
                                      nn.GELU(), nn.BatchNorm2d(final_dim))

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != self.in_chans:
            raise UserError(f"{self.name}: expected input (B, {self.in_chans}, H, W), got {tuple(img.shape)}")
        x = self.conv(img)
        for block in self.layers:
            x = block(x) + x
        return x

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(img))


@register_model(family="wavemix", paper=_PAPER, input_shape=(3, 32, 32))
def wavemix_lite(**kwargs: Any) -> WaveMix:
    """WaveMix Lite-64/6 for CIFAR-10 (520,106 parameters at 10 classes); any keyword of :class:`WaveMix` overrides."""
    config: dict[str, Any] = dict(num_classes=10, depth=6, mult=2, ff_channel=64, final_dim=64, dropout=0.5,
                                  initial_conv="strided", stride=1, upsample="convtranspose", name="wavemix_lite")
    return WaveMix(**{**config, **kwargs})

"""WaveMix's wavelet token mixer (the level-1 "Waveblock").

Paper: Jeevan, Viswanathan, A S & Sethi, "WaveMix: A Resource-efficient Neural Network for Image Analysis",
arXiv 2205.14375, 2022 (WaveMix-Lite). Names follow pranavphoenix/WaveMix: ``reduction`` and ``feedforward``
as in ``wavemix/__init__.py`` ``Level1Waveblock`` (the pip package's block) and
``Image_Classification/WaveMixV3.py`` ``Waveblock``, so their checkpoints load.

The block maps ``(B, C, H, W) -> (B, C, H, W)``:

1. ``reduction``: 1x1 conv ``C -> C/4``;
2. one-level Haar DWT (:mod:`archlab.zoo.layers.wavelets`), ``[LL, LH, HL, HH]`` concatenated as in the
   reference (all LL channels first, then the three detail bands of each channel) -> ``C`` channels at half
   resolution; this is the only spatial mixing, and it is parameter-free and lossless;
3. ``feedforward``: 1x1 conv ``C -> C * mult`` -> GELU -> Dropout, then back to full resolution by one of
   - ``"pixelshuffle"`` (WaveMixV3): ``PixelShuffle(2)`` -> 3x3 conv ``C * mult / 4 -> C``;
   - ``"convtranspose"`` (the package's ``Level1Waveblock``, WaveMix-Lite): 1x1 conv ``C * mult -> ff_channel``
     -> ``ConvTranspose2d(ff_channel, C, 4, stride 2, padding 1)``;
   - ``"upsample"``: 1x1 conv ``C * mult -> C`` -> parameter-free ``Upsample(2)``. The reference README's
     smallest WaveMix-Lite counts (8/10: 3,566; 32/7: 37,058 parameters) are exactly this block; the
     interpolation mode is not in the public code (unverified), hence ``upsample_mode`` (default bilinear);
   then BatchNorm.

The residual ``x + block(x)`` lives outside (in the WaveMix model, or the MetaFormer block).

Odd map sizes: the reference reshapes with ``h // 2`` and fails on odd maps. Here the reduced map is padded
with one zero row/column at the bottom/right (what the reference's DWT does in ``mode="zero"``), the block
runs at the even size, and the output is cropped back to ``(H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.wavelets import HaarDWT2d

__all__ = ["UPSAMPLINGS", "WaveBlock", "create_wavemix"]

UPSAMPLINGS = ("pixelshuffle", "convtranspose", "upsample")
_PAPER = "WaveMix: A Resource-efficient Neural Network for Image Analysis (Jeevan et al., arXiv 2022)"


class WaveBlock(nn.Module):
    """The level-1 WaveMix block on a ``(B, final_dim, H, W)`` map (without its residual)."""

    def __init__(self, *, mult: int = 2, ff_channel: int = 16, final_dim: int = 16, dropout: float = 0.5,
                 upsample: str = "convtranspose", upsample_mode: str = "bilinear") -> None:
        super().__init__()
        if upsample not in UPSAMPLINGS:
            raise UserError(f"wavemix: unknown upsample {upsample!r}; known: {', '.join(UPSAMPLINGS)}")
        if final_dim < 4 or final_dim % 4:
            raise UserError(f"wavemix: final_dim must be a positive multiple of 4 (the DWT takes C/4 channels to "
                            f"4 bands), got {final_dim}")
        if mult < 1 or (upsample == "pixelshuffle" and final_dim * mult % 4):
            raise UserError(f"wavemix: mult must be >= 1 (and final_dim * mult divisible by 4 for pixelshuffle); "
                            f"got mult {mult} for final_dim {final_dim}")
        if ff_channel < 1:
            raise UserError(f"wavemix: ff_channel must be >= 1, got {ff_channel}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"wavemix: dropout must be in [0, 1), got {dropout}")
        self.final_dim = final_dim
        hidden = final_dim * mult
        layers: list[nn.Module] = [nn.Conv2d(final_dim, hidden, 1), nn.GELU(), nn.Dropout(dropout)]
        if upsample == "pixelshuffle":
            layers += [nn.PixelShuffle(2), nn.Conv2d(hidden // 4, final_dim, 3, 1, 1)]
        elif upsample == "convtranspose":
            layers += [nn.Conv2d(hidden, ff_channel, 1),
                       nn.ConvTranspose2d(ff_channel, final_dim, 4, stride=2, padding=1)]
        else:
            layers += [nn.Conv2d(hidden, final_dim, 1), nn.Upsample(scale_factor=2, mode=upsample_mode)]
        layers.append(nn.BatchNorm2d(final_dim))
        self.feedforward = nn.Sequential(*layers)
        self.reduction = nn.Conv2d(final_dim, final_dim // 4, 1)
        self.dwt = HaarDWT2d(final_dim // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.final_dim:
            raise UserError(f"wavemix: expected input (B, {self.final_dim}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        ll, highs = self.dwt(self.reduction(x))  # pads odd sizes with a zero row/column
        bands = torch.cat([ll, highs.flatten(1, 2)], dim=1)
        out = self.feedforward(bands)
        return out[..., :height, :width]


@register_mixer("wavemix", layout="image", paper=_PAPER)
def create_wavemix(dim: int, *, resolution: tuple[int, int] | None = None, mult: int = 4, dropout: float = 0.5,
                   upsample: str = "pixelshuffle", ff_channel: int | None = None,
                   upsample_mode: str = "bilinear") -> WaveBlock:
    """WaveMix mixer for ``dim`` channels (a multiple of 4); ``resolution`` is not needed (any size works).

    Defaults are WaveMixV3's block (``mult`` 4, dropout 0.5, PixelShuffle then 3x3 conv); ``ff_channel``
    (for ``upsample="convtranspose"``) defaults to ``dim``.
    """
    return WaveBlock(mult=mult, ff_channel=dim if ff_channel is None else ff_channel, final_dim=dim,
                     dropout=dropout, upsample=upsample, upsample_mode=upsample_mode)

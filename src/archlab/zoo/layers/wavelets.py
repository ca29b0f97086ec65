"""The one-level 2-D Haar discrete wavelet transform, analysis and synthesis, as fixed stride-2 convolutions.

Used by WaveMix (Jeevan & Sethi, "WaveMix: A Resource-efficient Neural Network for Image Analysis", arXiv
2205.14375, 2022). The reference (pranavphoenix/WaveMix ``wavemix/__init__.py``, a copy of pytorch_wavelets'
``DWTForward(J=1, wave="db1", mode="zero")``) filters rows then columns with PyWavelets' db1 filters; for the
Haar wavelet that separable cascade is one depthwise 2x2 convolution of stride 2 with four fixed filters, which
is what is computed here (no PyWavelets needed). Output layout follows the reference: ``(ll, highs)`` with
``ll`` of shape ``(B, C, H/2, W/2)`` and ``highs`` of shape ``(B, C, 3, H/2, W/2)``, the three detail bands in
pytorch_wavelets' order (LH, HL, HH). For an input block ``[[a, b], [c, d]]`` (rows, then columns):

- ``LL = (a + b + c + d) / 2`` (average),
- ``LH = (a + b - c - d) / 2`` (low-pass along width, high-pass along height: horizontal edges),
- ``HL = (a - b + c - d) / 2`` (high-pass along width: vertical edges),
- ``HH = (a - b - c + d) / 2`` (diagonal).

The four filters are orthonormal, so the transform preserves energy and its transpose (a stride-2 transposed
convolution with the same filters) is its exact inverse. Odd sizes are padded with one zero row/column at the
bottom/right, as the reference's ``mode="zero"`` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError

__all__ = ["HaarDWT2d", "HaarIDWT2d", "haar_dwt2d", "haar_filters", "haar_idwt2d"]

# (band, row offset, column offset), bands in the reference's order LL, LH, HL, HH.
_HAAR = (
    ((1.0, 1.0), (1.0, 1.0)),
    ((1.0, 1.0), (-1.0, -1.0)),
    ((1.0, -1.0), (1.0, -1.0)),
    ((1.0, -1.0), (-1.0, 1.0)),
)


def haar_filters(channels: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The depthwise analysis kernel ``(4 * channels, 1, 2, 2)``: for channel c, rows 4c..4c+3 are LL, LH, HL, HH."""
    base = torch.tensor(_HAAR, dtype=dtype, device=device) * 0.5
    return base.unsqueeze(1).repeat(channels, 1, 1, 1)


def haar_dwt2d(x: torch.Tensor, filters: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-level Haar DWT of ``(B, C, H, W)``: ``(ll (B, C, h, w), highs (B, C, 3, h, w))``, ``h = ceil(H / 2)``.

    ``filters`` is :func:`haar_filters` for ``C`` channels; pass a stored copy (as :class:`HaarDWT2d` does) so
    that exporters see a constant kernel.
    """
    if x.ndim != 4:
        raise UserError(f"haar_dwt2d: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    if filters is None:
        filters = haar_filters(channels, dtype=x.dtype, device=x.device)
    elif filters.shape[0] != 4 * channels:
        raise UserError(f"haar_dwt2d: filters are for {filters.shape[0] // 4} channels, the input has {channels}")
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    bands = F.conv2d(x, filters, stride=2, groups=channels)
    bands = bands.reshape(batch, channels, 4, bands.shape[-2], bands.shape[-1])
    return bands[:, :, 0], bands[:, :, 1:]


def haar_idwt2d(ll: torch.Tensor, highs: torch.Tensor, filters: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`haar_dwt2d`: ``(B, C, 2h, 2w)`` (crop it if the forward transform padded an odd size)."""
    if ll.ndim != 4 or highs.ndim != 5 or highs.shape[2] != 3 or highs.shape[:2] != ll.shape[:2] \
            or highs.shape[-2:] != ll.shape[-2:]:
        raise UserError(f"haar_idwt2d: expected ll (B, C, h, w) and highs (B, C, 3, h, w), got "
                         f"{tuple(ll.shape)} and {tuple(highs.shape)}")
    batch, channels, height, width = ll.shape
    if filters is None:
        filters = haar_filters(channels, dtype=ll.dtype, device=ll.device)
    elif filters.shape[0] != 4 * channels:
        raise UserError(f"haar_idwt2d: filters are for {filters.shape[0] // 4} channels, the bands have {channels}")
    bands = torch.cat([ll.unsqueeze(2), highs], dim=2).reshape(batch, 4 * channels, height, width)
    # The filters are orthonormal, so the adjoint of the analysis convolution is its inverse.
    return F.conv_transpose2d(bands, filters, stride=2, groups=channels)


class HaarDWT2d(nn.Module):
    """Module form of :func:`haar_dwt2d` for ``channels`` input channels.

    The kernel is a non-persistent buffer: it follows ``.to()`` and is a constant for ONNX export, yet adds
    nothing to the ``state_dict``, so reference checkpoints (which hold no wavelet filters) still load.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filters", haar_filters(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return haar_dwt2d(x, self.filters.to(x.dtype))


class HaarIDWT2d(nn.Module):
    """Module form of :func:`haar_idwt2d` for ``channels`` channels per band."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filters", haar_filters(channels), persistent=False)

    def forward(self, ll: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        return haar_idwt2d(ll, highs, self.filters.to(ll.dtype))

"""RaftMLP's serial vertical-channel then horizontal-channel token mixer.

Paper: Tatsunami & Taki, "RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?",
ACCV 2022 (arXiv 2108.04384). Names follow okojoalg/raft-mlp ``libs/modules.py`` ``PermutedBlock`` (``norm``
with its LayerNorm at index 1, ``fn`` = Linear -> GELU -> Dropout -> Linear -> Dropout, ``drop``) and
``ChannelBlock``, so RaftMLP checkpoints load (see :mod:`archlab.zoo.models.raftmlp`).

The ``C`` channels are split into ``C / r`` rafts of ``r`` channels; in the reference's channel order
``c = i * (C / r) + j`` raft ``j`` holds channels ``j, j + C/r, ..., j + (r-1) C/r``.

- Vertical-channel mixer: for every raft ``j`` and column ``w``, one MLP (shared by all rafts and columns)
  mixes the ``r * H`` values of that raft along that column, ``x + fn(LN(x))``. It never mixes columns, so it
  commutes with any permutation of the columns.
- Horizontal-channel mixer: the same along each row, over ``r * W`` values.

The reference keeps tokens as ``(B, rows, features)`` sequences; here the same arithmetic runs on ``(B, C, H,
W)`` maps with reshapes, and the LayerNorm sees the channels in the reference's ``(C/r, r)`` order so its weights
are interchangeable. Both MLPs are sized for one resolution ``(H, W)``. At any other input size the map is
resized (bicubic, as the reference's ``RaftShrink``/``RaftExpansion`` do) to that resolution, mixed, and
resized back.

As a MetaFormer token mixer (``"raftmlp"``) the module returns ``mix(x) - x``: the two sub-blocks carry their
own residuals (as in the reference), and the MetaFormer block adds ``x`` back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.drop import DropPath

__all__ = ["ChannelBlock", "PermutedBlock", "RaftTokenMixer", "create_raftmlp", "default_raft_size", "resize"]

_PAPER = ("RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality? "
          "(Tatsunami & Taki, ACCV 2022)")
AXES = ("vertical", "horizontal")


def _mlp(dim: int, expansion_factor: float, dropout: float) -> nn.Sequential:
    hidden = int(dim * expansion_factor)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                         nn.Dropout(dropout))


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0.0 else nn.Identity()


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a ``(B, C, H, W)`` map (the reference's choice for other resolutions); no-op if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


class PermutedBlock(nn.Module):
    """``x + drop(fn(LN(x)))`` where ``fn`` mixes one raft along one spatial axis; ``(B, C, H, W)`` in and out.

    Args:
        spatial_dim: the length of the mixed axis (``H`` for ``"vertical"``, ``W`` for ``"horizontal"``).
        channels: ``C``, divisible by ``raft_size``.
        raft_size: ``r``, channels mixed together with the spatial axis.
    """

    def __init__(self, spatial_dim: int, channels: int, raft_size: int, expansion_factor: float = 2,
                 dropout: float = 0.0, drop_path_rate: float = 0.0, axis: str = "vertical") -> None:
        super().__init__()
        if axis not in AXES:
            raise UserError(f"raftmlp: axis must be one of {AXES}, got {axis!r}")
        if raft_size < 1 or channels % raft_size:
            raise UserError(f"raftmlp: channels {channels} are not divisible by raft_size {raft_size}")
        self.axis = axis
        self.spatial_dim = spatial_dim
        self.channels = channels
        self.raft_size = raft_size
        # Indices 0 and 2 hold the reference's rearrangements (done in forward here), so the LayerNorm keeps
        # its checkpoint name ``norm.1``.
        self.norm = nn.Sequential(nn.Identity(), nn.LayerNorm(channels), nn.Identity())
        self.fn = _mlp(spatial_dim * raft_size, expansion_factor, dropout)
        self.drop = _drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        length = height if self.axis == "vertical" else width
        if channels != self.channels or length != self.spatial_dim:
            side = "H" if self.axis == "vertical" else "W"
            raise UserError(f"raftmlp: {self.axis} mixer built for C={self.channels}, {side}={self.spatial_dim}; "
                            f"got input {tuple(x.shape)}")
        r, g = self.raft_size, channels // self.raft_size
        # (B, H, W, C/r, r): the channel order of the reference's LayerNorm over "(c1 c2)".
        u = x.reshape(batch, r, g, height, width).permute(0, 3, 4, 2, 1).reshape(batch, height, width, channels)
        u = self.norm[1](u).reshape(batch, height, width, g, r)
        if self.axis == "vertical":
            u = u.permute(0, 3, 2, 4, 1).reshape(batch, g, width, r * height)  # rows (raft, w), features (r, h)
            v = self.fn(u).reshape(batch, g, width, r, height).permute(0, 3, 1, 4, 2)
        else:
            u = u.permute(0, 3, 1, 4, 2).reshape(batch, g, height, r * width)  # rows (raft, h), features (r, w)
            v = self.fn(u).reshape(batch, g, height, r, width).permute(0, 3, 1, 2, 4)
        return x + self.drop(v.reshape(batch, channels, height, width))


class ChannelBlock(nn.Module):
    """``x + drop(fn(LN(x)))`` over the channels of every pixel of a ``(B, C, H, W)`` map."""

    def __init__(self, dim: int, expansion_factor: float = 4, dropout: float = 0.0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = _mlp(dim, expansion_factor, dropout)
        self.drop = _drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.permute(0, 2, 3, 1)
        return x + self.drop(self.fn(self.norm(tokens))).permute(0, 3, 1, 2)


class RaftTokenMixer(nn.Module):
    """Vertical-channel then horizontal-channel mixing at ``resolution``; returns ``mixed - x`` (see module doc)."""

    def __init__(self, dim: int, resolution: tuple[int, int], raft_size: int = 4, expansion_factor: float = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.vertical = PermutedBlock(self.resolution[0], dim, raft_size, expansion_factor, dropout, axis="vertical")
        self.horizontal = PermutedBlock(self.resolution[1], dim, raft_size, expansion_factor, dropout,
                                        axis="horizontal")

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """The reference's two token-mixing sub-blocks, residuals included, at any input size."""
        size = tuple(x.shape[-2:])
        y = self.horizontal(self.vertical(resize(x, self.resolution)))
        return resize(y, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x) - x


def default_raft_size(dim: int, raft_size: int = 4) -> int:
    """``raft_size`` if it divides ``dim``, otherwise the largest smaller size that does."""
    size = max(1, min(raft_size, dim))
    while dim % size:
        size -= 1
    return size


@register_mixer("raftmlp", layout="image", paper=_PAPER)
def create_raftmlp(dim: int, *, resolution: tuple[int, int] | None = None, raft_size: int = 4,
                   expansion_factor: float = 2, dropout: float = 0.0) -> RaftTokenMixer:
    """RaftMLP token mixer for a ``resolution = (H, W)`` map (required; other sizes are resized to it).

    ``raft_size`` 4 (the single-level RaftMLP's) is lowered to the largest divisor of ``dim`` below it;
    ``expansion_factor`` is the reference's ``token_expansion_factor``.
    """
    if resolution is None:
        raise UserError("raftmlp: needs resolution=(H, W), the map size its MLPs are built for")
    if len(resolution) != 2 or min(resolution) < 1:
        raise UserError(f"raftmlp: resolution must be (H, W) with H, W >= 1, got {resolution}")
    if raft_size < 1 or expansion_factor <= 0:
        raise UserError(f"raftmlp: raft_size must be >= 1 and expansion_factor > 0, got {raft_size}, "
                        f"{expansion_factor}")
    return RaftTokenMixer(dim, resolution, default_raft_size(dim, raft_size), expansion_factor, dropout)

"""ConvFormer's depthwise-separable convolution token mixer.

Paper: Yu et al., "MetaFormer Baselines for Vision", 2022. Names follow sail-sg/metaformer
``metaformer_baselines.py`` class ``SepConv`` (``pwconv1``, ``act1``, ``dwconv``, ``act2``, ``pwconv2``), with
the reference's defaults: expansion ratio 2, kernel 7, no biases, StarReLU after ``pwconv1``. The reference
works on channels-last ``(B, H, W, C)`` tensors; this mixer takes the zoo's ``(B, C, H, W)`` image layout and
permutes inside, so the weights (and checkpoints) are the same.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.mlp import StarReLU

__all__ = ["SepConv", "create_sepconv"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"starrelu": StarReLU, "gelu": nn.GELU, "relu": nn.ReLU}


class SepConv(nn.Module):
    """Inverted separable convolution: pointwise expand -> act -> depthwise ``k x k`` -> pointwise project."""

    def __init__(self, dim: int, expansion_ratio: float = 2, kernel_size: int = 7, bias: bool = False,
                 act: str = "starrelu") -> None:
        super().__init__()
        if act not in _ACTIVATIONS:
            raise UserError(f"sepconv: unknown act {act!r}; known: {', '.join(_ACTIVATIONS)}")
        med_channels = int(expansion_ratio * dim)
        self.pwconv1 = nn.Linear(dim, med_channels, bias=bias)
        self.act1 = _ACTIVATIONS[act]()
        self.dwconv = nn.Conv2d(med_channels, med_channels, kernel_size=kernel_size, padding=kernel_size // 2,
                                groups=med_channels, bias=bias)
        self.act2 = nn.Identity()
        self.pwconv2 = nn.Linear(med_channels, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pwconv1(x.permute(0, 2, 3, 1)))
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act2(x))
        return x.permute(0, 3, 1, 2)


@register_mixer("sepconv", layout="image", paper="MetaFormer Baselines for Vision (Yu et al., 2022)")
def create_sepconv(dim: int, *, resolution: tuple[int, int] | None = None, expansion_ratio: float = 2,
                   kernel_size: int = 7, bias: bool = False, act: str = "starrelu") -> SepConv:
    """Separable-convolution mixer; ``act`` is ``"starrelu"`` (the reference's) or ``"gelu"``/``"relu"``."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise UserError(f"sepconv: kernel_size must be a positive odd integer, got {kernel_size}")
    if int(expansion_ratio * dim) < 1:
        raise UserError(f"sepconv: expansion_ratio {expansion_ratio} leaves no channels for dim {dim}")
    return SepConv(dim, expansion_ratio=expansion_ratio, kernel_size=kernel_size, bias=bias, act=act)

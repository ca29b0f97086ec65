"""UniRepLKNet's Dilated Reparam Block as a token mixer for MetaFormer spaces.

Paper: Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud,
Time-Series and Image Recognition", CVPR 2024. The mixer is
:class:`archlab.zoo.layers.dilated_reparam.DilatedReparamBlock` itself (names follow AILab-CVC/UniRepLKNet
``unireplknet.py``): a depthwise ``KxK`` conv plus dilated small-kernel branches, each followed by BN, which
merge into one ``KxK`` depthwise conv for deployment.

Kernel rule: on an ``H x W`` map two pixels are at most ``max(H, W) - 1`` apart, so a kernel wider than
``2 max(H, W) - 1`` has taps that only ever see zero padding. The mixer uses the largest supported K (3, 5,
..., capped at ``max_kernel_size``, 13 as in UniRepLKNet's stages) with ``K <= 2 max(H, W) - 1``: 13 for
maps of 7x7 and larger, 7 for 4x4, 3 for 2x2 and 1x1 (where the block has no dilated branch). Without a
resolution, ``max_kernel_size`` is used.
"""

from __future__ import annotations

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.dilated_reparam import DILATED_BRANCHES, DilatedReparamBlock

__all__ = ["create_dilated_reparam", "kernel_size_for_resolution"]


def kernel_size_for_resolution(resolution: tuple[int, int] | None, max_kernel_size: int = 13) -> int:
    """The largest supported kernel ``<= max_kernel_size`` that is no wider than ``2 max(H, W) - 1``."""
    if max_kernel_size not in DILATED_BRANCHES:
        raise UserError(f"dilated_reparam: max_kernel_size must be one of {sorted(DILATED_BRANCHES)}, "
                        f"got {max_kernel_size}")
    if resolution is None:
        return max_kernel_size
    if len(resolution) != 2 or min(resolution) < 1:
        raise UserError(f"dilated_reparam: resolution must be (H, W) of positive sizes, got {resolution}")
    limit = 2 * max(resolution) - 1
    fitting = [k for k in DILATED_BRANCHES if k <= min(limit, max_kernel_size)]
    return max(fitting) if fitting else min(DILATED_BRANCHES)


@register_mixer("dilated_reparam", layout="image",
                paper="UniRepLKNet: A Universal Perception Large-Kernel ConvNet (Ding et al., CVPR 2024)")
def create_dilated_reparam(dim: int, *, resolution: tuple[int, int] | None = None, kernel_size: int | None = None,
                           max_kernel_size: int = 13) -> DilatedReparamBlock:
    """Dilated Reparam depthwise conv over ``dim`` channels; ``kernel_size`` overrides the resolution rule."""
    if kernel_size is None:
        kernel_size = kernel_size_for_resolution(resolution, max_kernel_size)
    return DilatedReparamBlock(dim, kernel_size)

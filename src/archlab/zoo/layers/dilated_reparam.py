"""UniRepLKNet's Dilated Reparam Block, its merge into one large depthwise kernel, and an ERF probe.

Papers:

- Ding, Zhang, Ge, Zhao, Song, Yue, Shan, "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio,
  Video, Point Cloud, Time-Series and Image Recognition", CVPR 2024;
- Ding et al., "Scaling Up Your Kernels: Large Kernel Design in ConvNets towards Universal Representations",
  TPAMI 2025 (the journal extension; same code), whose effective-receptive-field (ERF) analysis
  :func:`effective_receptive_field` reproduces.

Names follow AILab-CVC/UniRepLKNet ``unireplknet.py`` (``DilatedReparamBlock`` with ``lk_origin``,
``origin_bn``, ``dil_conv_k{k}_{r}``, ``dil_bn_k{k}_{r}``, ``kernel_sizes``, ``dilates``), so the reference's
training and deploy checkpoints load with a plain ``load_state_dict``.

In training form the block is ``BN(DW KxK(x)) + sum_i BN_i(DW k_i x k_i, dilation r_i (x))``; every dilated
branch sees a ``r_i (k_i - 1) + 1`` window, no larger than K. Because BN in eval mode is affine and a dilated
kernel equals a dense kernel with zeros inserted between its taps, the whole block is one ``KxK`` depthwise
convolution with a bias: :meth:`DilatedReparamBlock.merge_dilated_branches` performs that fold (deploy form).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError

__all__ = [
    "DILATED_BRANCHES",
    "DilatedReparamBlock",
    "dilated_to_dense",
    "effective_receptive_field",
    "erf_mass_outside",
    "fuse_bn",
    "merge_dilated_into_large_kernel",
]

# kernel size K -> (branch kernel sizes k_i, dilations r_i), the reference's defaults ("not tuned carefully").
# K = 3 is an archlab extension: no dilated branch fits a 3x3 window, so the block is BN(DW 3x3) alone, which
# lets the same module serve maps too small for a 5x5 kernel.
DILATED_BRANCHES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    3: ((), ()),
    5: ((3, 3), (1, 2)),
    7: ((5, 3, 3), (1, 2, 3)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
}


def fuse_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of the conv equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    conv_bias = 0.0 if conv.bias is None else conv.bias
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return conv.weight * scale.reshape(-1, 1, 1, 1), bn.bias + (conv_bias - bn.running_mean) * scale


def dilated_to_dense(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """The ``r (k - 1) + 1`` dense kernel with ``r - 1`` zeros between taps: equal to ``kernel`` at dilation r."""
    out_ch, in_ch, kh, kw = kernel.shape
    dense = kernel.new_zeros(out_ch, in_ch, dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    dense[:, :, ::dilation, ::dilation] = kernel
    return dense


def merge_dilated_into_large_kernel(large_kernel: torch.Tensor, dilated_kernel: torch.Tensor,
                                    dilation: int) -> torch.Tensor:
    """``large_kernel`` plus the dense form of ``dilated_kernel`` zero-padded to the same (centred) size."""
    dense = dilated_to_dense(dilated_kernel, dilation)
    pad = large_kernel.size(2) // 2 - dense.size(2) // 2
    if pad < 0:
        raise ValueError(f"a dilated {dilated_kernel.size(2)}x{dilated_kernel.size(2)} kernel at dilation "
                         f"{dilation} spans {dense.size(2)} pixels, more than the {large_kernel.size(2)}-kernel")
    return large_kernel + F.pad(dense, [pad] * 4)


class DilatedReparamBlock(nn.Module):
    """Depthwise large-kernel conv with parallel dilated small-kernel branches, on ``(B, C, H, W)`` maps.

    Args:
        channels: input = output channels (every conv is depthwise).
        kernel_size: K, one of :data:`DILATED_BRANCHES`.
        deploy: build the merged form directly (one ``KxK`` depthwise conv with bias), e.g. to load a
            reparameterised checkpoint.
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool = False) -> None:
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise UserError(f"dilated_reparam: kernel_size must be one of {sorted(DILATED_BRANCHES)}, "
                            f"got {kernel_size}")
        if channels < 1:
            raise UserError(f"dilated_reparam: channels must be >= 1, got {channels}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.kernel_sizes, self.dilates = (list(t) for t in DILATED_BRANCHES[kernel_size])
        self.lk_origin = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                                   bias=deploy)
        if not deploy:
            self.origin_bn = nn.BatchNorm2d(channels)
            for k, r in zip(self.kernel_sizes, self.dilates, strict=True):
                # padding (r (k-1) + 1) // 2 keeps the map size: the dilated window is odd-sized and centred.
                setattr(self, f"dil_conv_k{k}_{r}", nn.Conv2d(channels, channels, k, padding=(r * (k - 1) + 1) // 2,
                                                              dilation=r, groups=channels, bias=False))
                setattr(self, f"dil_bn_k{k}_{r}", nn.BatchNorm2d(channels))

    @property
    def deployed(self) -> bool:
        return not hasattr(self, "origin_bn")

    def branches(self) -> list[tuple[int, nn.Conv2d, nn.BatchNorm2d]]:
        """``(dilation, conv, bn)`` of each dilated branch (empty once merged)."""
        if self.deployed:
            return []
        return [(r, getattr(self, f"dil_conv_k{k}_{r}"), getattr(self, f"dil_bn_k{k}_{r}"))
                for k, r in zip(self.kernel_sizes, self.dilates, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) != self.channels:
            raise UserError(f"dilated_reparam: expected input (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if self.deployed:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for _, conv, bn in self.branches():
            out = out + bn(conv(x))
        return out

    @torch.no_grad()
    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the single ``KxK`` depthwise conv equal to this block in eval mode."""
        if self.deployed:
            bias = self.lk_origin.bias if self.lk_origin.bias is not None else torch.zeros_like(
                self.lk_origin.weight[:, 0, 0, 0])
            return self.lk_origin.weight.clone(), bias.clone()
        weight, bias = fuse_bn(self.lk_origin, self.origin_bn)
        for r, conv, bn in self.branches():
            branch_w, branch_b = fuse_bn(conv, bn)
            weight = merge_dilated_into_large_kernel(weight, branch_w, r)
            bias = bias + branch_b
        return weight, bias

    @torch.no_grad()
    def merge_dilated_branches(self) -> None:
        """Replace the branches and BNs by one ``KxK`` depthwise conv with bias (the deploy form), in place."""
        if self.deployed:
            return
        weight, bias = self.merged_kernel()
        channels = weight.size(0)
        merged = nn.Conv2d(channels, channels, self.kernel_size, padding=self.kernel_size // 2, groups=channels,
                           bias=True).to(weight.device, weight.dtype)
        merged.weight.copy_(weight)
        merged.bias.copy_(bias)
        self.lk_origin = merged
        del self.origin_bn
        for k, r in zip(self.kernel_sizes, self.dilates, strict=True):
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")

    def reparameterize(self) -> None:
        """Alias of :meth:`merge_dilated_branches` (the name timm's ``reparameterize_model`` looks for)."""
        self.merge_dilated_branches()


def effective_receptive_field(model: Callable[[torch.Tensor], torch.Tensor], input_shape: Sequence[int], *,
                              num_samples: int = 8, seed: int = 0) -> torch.Tensor:
    """The ERF of ``model`` at the centre of its output map, as an ``(H, W)`` map summing to 1.

    Following the ERF analysis of RepLKNet / "Scaling Up Your Kernels" (after Luo et al., 2016): for inputs
    ``x`` of ``input_shape = (C, H, W)`` (standard normal here; the papers use real images), take the gradient
    of the centre pixel of the output (summed over channels) with respect to ``x``, and average ``|grad|`` over
    input channels and samples. ``model`` is run as given (call ``.eval()`` first to freeze BN statistics).
    """
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UserError(f"effective_receptive_field: input_shape must be (C, H, W), got {tuple(input_shape)}")
    if num_samples < 1:
        raise UserError(f"effective_receptive_field: num_samples must be >= 1, got {num_samples}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, *input_shape, generator=gen).requires_grad_(True)
    out = model(x)
    if out.dim() != 4:
        raise UserError(f"effective_receptive_field: the model must return (B, C, H, W) maps, got {tuple(out.shape)}")
    # Samples are independent, so one backward of the summed centre pixels gives every sample's gradient.
    out[:, :, out.size(2) // 2, out.size(3) // 2].sum().backward()
    erf = x.grad.abs().mean(dim=(0, 1))
    total = erf.sum()
    if total <= 0:
        raise UserError("effective_receptive_field: the centre output does not depend on the input")
    return erf / total


def erf_mass_outside(erf: torch.Tensor, radius: int) -> float:
    """Fraction of an ERF map's mass farther than ``radius`` pixels (Chebyshev distance) from its centre."""
    if erf.dim() != 2:
        raise UserError(f"erf_mass_outside: expected an (H, W) map, got shape {tuple(erf.shape)}")
    height, width = erf.shape
    rows = (torch.arange(height) - height // 2).abs()
    cols = (torch.arange(width) - width // 2).abs()
    outside = torch.maximum(rows[:, None], cols[None, :]) > radius
    return float(erf[outside].sum() / erf.sum())

"""UniRepLKNet: a large-kernel ConvNet built of Dilated Reparam Blocks.

Paper: Ding, Zhang, Ge, Zhao, Song, Yue, Shan, "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for
Audio, Video, Point Cloud, Time-Series and Image Recognition", CVPR 2024 (journal version: "Scaling Up Your
Kernels: Large Kernel Design in ConvNets towards Universal Representations", TPAMI 2025).

Names and structure follow AILab-CVC/UniRepLKNet ``unireplknet.py`` (``UniRepLKNet`` with
``downsample_layers``, ``stages``, ``norm``, ``head``; ``UniRepLKNetBlock`` with ``dwconv``, ``norm``, ``se``
(``down``, ``up``), ``pwconv1``, ``act`` (GELU then GRN with ``gamma``/``beta``), ``pwconv2``, ``gamma``), down
to the ``nn.Sequential`` indices, so the released ImageNet checkpoints load with a plain ``load_state_dict``
(training form) and reparameterised ones into a model built with ``deploy=True``.

A block is ``x + gamma * BN(Linear(GRN(GELU(Linear_4x(SE(BN(DW(x))))))))`` where DW is a Dilated Reparam Block
for kernels >= 7 and a plain depthwise conv for 3 and 5. :meth:`UniRepLKNetBlock.reparameterize` folds, in
eval mode, the dilated branches and every BN into the convs/linears, the GRN bias into the last linear, and
the layer scale into that linear too, leaving the same function with fewer layers.

Archlab extensions (defaults reproduce the reference): any number of stages (``depths``/``dims`` of equal
length, ``kernel_sizes`` required when the depths have no published default) and ``stem_strides`` so that
8x8 digits are not reduced to 2x2 by the stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.dilated_reparam import DILATED_BRANCHES, DilatedReparamBlock
from archlab.zoo.layers.drop import DropPath
from archlab.zoo.layers.norms import LayerNorm2d

__all__ = ["GRNwithNHWC", "SEBlock", "UniRepLKNet", "UniRepLKNetBlock", "default_kernel_sizes"]

_PAPER = ("UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, Time-Series "
          "and Image Recognition (Ding et al., CVPR 2024)")


class GRNwithNHWC(nn.Module):
    """Global Response Normalisation (ConvNeXt V2) on channels-last ``(B, H, W, C)`` maps."""

    def __init__(self, dim: int, use_bias: bool = True) -> None:
        super().__init__()
        self.use_bias = use_bias
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        if use_bias:
            self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        out = (self.gamma * nx + 1) * x
        return out + self.beta if self.use_bias else out


class NCHWtoNHWC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class NHWCtoNCHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class SEBlock(nn.Module):
    """Squeeze-and-excitation on ``(B, C, H, W)``: ``x * sigmoid(up(relu(down(avgpool(x)))))``."""

    def __init__(self, input_channels: int, internal_neurons: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(input_channels, internal_neurons, kernel_size=1, bias=True)
        self.up = nn.Conv2d(internal_neurons, input_channels, kernel_size=1, bias=True)
        self.nonlinear = nn.ReLU()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs.mean(dim=(2, 3), keepdim=True)
        return inputs * torch.sigmoid(self.up(self.nonlinear(self.down(x))))


def _fold_bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return scale, bn.bias - bn.running_mean * scale


class UniRepLKNetBlock(nn.Module):
    """One UniRepLKNet block on ``(B, C, H, W)``; ``kernel_size`` 0 (no DW conv), 3, 5, or a Dilated Reparam K."""

    def __init__(self, dim: int, kernel_size: int, drop_path: float = 0.0,
                 layer_scale_init_value: float | None = 1e-6, deploy: bool = False, ffn_factor: float = 4) -> None:
        super().__init__()
        if dim < 4:
            raise UserError(f"unireplknet block: dim must be >= 4 (the SE block has dim // 4 neurons), got {dim}")
        if kernel_size == 0:
            self.dwconv: nn.Module = nn.Identity()
        elif kernel_size >= 7:
            if kernel_size not in DILATED_BRANCHES:
                raise UserError(f"unireplknet block: kernel_size must be 0, 3, 5 or one of "
                                f"{sorted(k for k in DILATED_BRANCHES if k >= 7)}, got {kernel_size}")
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy)
        elif kernel_size in (3, 5):
            self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=deploy)
        else:
            raise UserError(f"unireplknet block: kernel_size must be 0, 3, 5 or >= 7, got {kernel_size}")
        self.norm = nn.Identity() if deploy or kernel_size == 0 else nn.BatchNorm2d(dim)
        self.se = SEBlock(dim, dim // 4)
        ffn_dim = int(ffn_factor * dim)
        self.pwconv1 = nn.Sequential(NCHWtoNHWC(), nn.Linear(dim, ffn_dim))
        self.act = nn.Sequential(nn.GELU(), GRNwithNHWC(ffn_dim, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim), NHWCtoNCHW())
        else:
            # The reference has no bias here: the BN after it provides one.
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim, bias=False), NHWCtoNCHW(), nn.BatchNorm2d(dim))
        if not deploy and layer_scale_init_value is not None and layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def compute_residual(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma.view(1, -1, 1, 1) * y
        return self.drop_path(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.compute_residual(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold, for eval mode, branches/BNs/GRN bias/layer scale into the convs and linears (in place)."""
        if isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.merge_dilated_branches()
        if isinstance(self.norm, nn.BatchNorm2d):
            scale, shift = _fold_bn_scale_shift(self.norm)
            conv = self.dwconv.lk_origin if isinstance(self.dwconv, DilatedReparamBlock) else self.dwconv
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                               groups=conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            old_bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            folded.bias.copy_(old_bias * scale + shift)
            if isinstance(self.dwconv, DilatedReparamBlock):
                self.dwconv.lk_origin = folded
            else:
                self.dwconv = folded
            self.norm = nn.Identity()
        final_scale = self.gamma.detach() if self.gamma is not None else None
        self.gamma = None
        grn = self.act[1]
        if len(self.pwconv2) == 3:
            linear, bn = self.pwconv2[0], self.pwconv2[2]
            # GRN's bias beta passes through the linear as W @ beta; the BN then scales and shifts per channel.
            bias = linear.bias.detach().clone() if linear.bias is not None else torch.zeros_like(bn.running_mean)
            if grn.use_bias:
                bias = bias + linear.weight @ grn.beta.reshape(-1)
                del grn.beta
                grn.use_bias = False
            scale, shift = _fold_bn_scale_shift(bn)
            weight, bias = linear.weight * scale.view(-1, 1), bias * scale + shift
            if final_scale is not None:
                weight, bias = weight * final_scale.view(-1, 1), bias * final_scale
            new_linear = nn.Linear(linear.in_features, linear.out_features, bias=True).to(weight.device,
                                                                                          weight.dtype)
            new_linear.weight.copy_(weight)
            new_linear.bias.copy_(bias)
            self.pwconv2 = nn.Sequential(new_linear, self.pwconv2[1])
        elif final_scale is not None:  # already deployed linear but a layer scale was kept: fold it alone
            linear = self.pwconv2[0]
            linear.weight.mul_(final_scale.view(-1, 1))
            linear.bias.mul_(final_scale)


# Default per-block kernel sizes of the reference, keyed by the stage depths.
_AFP_DEPTHS, _N_DEPTHS, _T_DEPTHS, _SBLXL_DEPTHS = (2, 2, 6, 2), (2, 2, 8, 2), (3, 3, 18, 3), (3, 3, 27, 3)
_DEFAULT_KERNEL_SIZES: dict[tuple[int, ...], tuple[tuple[int, ...], ...]] = {
    _AFP_DEPTHS: ((3, 3), (13, 13), (13,) * 6, (13, 13)),
    _N_DEPTHS: ((3, 3), (13, 13), (13,) * 8, (13, 13)),
    _T_DEPTHS: ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13)),
    _SBLXL_DEPTHS: ((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13)),
}


def default_kernel_sizes(depths: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """The reference's per-block kernel sizes for published ``depths``."""
    key = tuple(depths)
    if key not in _DEFAULT_KERNEL_SIZES:
        raise UserError(f"unireplknet: no default kernel sizes for depths {list(depths)}; pass kernel_sizes, "
                        f"e.g. ((3, 3), (13, 13), (13,) * 6, (13, 13))")
    return _DEFAULT_KERNEL_SIZES[key]


class UniRepLKNet(nn.Module):
    """UniRepLKNet classifier on ``(B, in_chans, H, W)`` images.

    Args:
        depths, dims: blocks and channels per stage (the reference has 4 stages).
        kernel_sizes: per stage, one kernel size per block; ``None`` uses the reference's default for ``depths``.
        layer_scale_init_value: initial layer scale ``gamma`` (1e-6 in the reference).
        head_init_scale: multiplies the initial classifier weights and bias.
        deploy: build the reparameterised structure (to load converted checkpoints).
        stem_strides: strides of the stem's two 3x3 convs (``(2, 2)`` in the reference).
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, depths: Sequence[int] = _SBLXL_DEPTHS,
                 dims: Sequence[int] = (96, 192, 384, 768), drop_path_rate: float = 0.0,
                 layer_scale_init_value: float | None = 1e-6, head_init_scale: float = 1.0,
                 kernel_sizes: Sequence[Sequence[int]] | None = None, deploy: bool = False,
                 stem_strides: Sequence[int] = (2, 2)) -> None:
        super().__init__()
        depths, dims = tuple(int(d) for d in depths), tuple(int(d) for d in dims)
        if not depths or len(depths) != len(dims) or min(depths) < 1 or min(dims) < 1:
            raise UserError(f"unireplknet: depths and dims must be equally long lists of positive integers, got "
                            f"{list(depths)} and {list(dims)}")
        if dims[0] < 2:
            raise UserError(f"unireplknet: dims[0] must be >= 2 (the stem halves it), got {dims[0]}")
        kernel_sizes = default_kernel_sizes(depths) if kernel_sizes is None else kernel_sizes
        if len(kernel_sizes) != len(depths) or any(len(k) != d for k, d in zip(kernel_sizes, depths, strict=True)):
            raise UserError(f"unireplknet: kernel_sizes must give one kernel per block, {list(depths)} per stage")
        if len(stem_strides) != 2 or min(stem_strides) < 1:
            raise UserError(f"unireplknet: stem_strides must be two positive integers, got {list(stem_strides)}")
        if in_chans < 1 or num_classes < 0:
            raise UserError(f"unireplknet: bad in_chans {in_chans} or num_classes {num_classes}")
        self.in_chans, self.num_classes = in_chans, num_classes

        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also under a meta device
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=stem_strides[0], padding=1),
            LayerNorm2d(dims[0] // 2, eps=1e-6),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=stem_strides[1], padding=1),
            LayerNorm2d(dims[0], eps=1e-6))])
        for i in range(len(dims) - 1):
            self.downsample_layers.append(nn.Sequential(
                nn.Conv2d(dims[i], dims[i + 1], kernel_size=3, stride=2, padding=1),
                LayerNorm2d(dims[i + 1], eps=1e-6)))
        self.stages = nn.ModuleList()
        cur = 0
        for i, depth in enumerate(depths):
            self.stages.append(nn.Sequential(*[
                UniRepLKNetBlock(dims[i], int(kernel_sizes[i][j]), drop_path=rates[cur + j],
                                 layer_scale_init_value=layer_scale_init_value, deploy=deploy)
                for j in range(depth)]))
            cur += depth
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(head_init_scale)
                self.head.bias.mul_(head_init_scale)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) != self.in_chans:
            raise UserError(f"unireplknet: expected input (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.forward_features(x).mean(dim=(-2, -1)))
        return self.head(x)

    def reparameterize_unireplknet(self) -> None:
        """Convert every block to its inference structure in place (same eval-mode outputs)."""
        for m in self.modules():
            if isinstance(m, UniRepLKNetBlock):
                m.reparameterize()


def _unireplknet(depths: tuple[int, ...], dims: tuple[int, ...], **kwargs: Any) -> UniRepLKNet:
    return UniRepLKNet(**{"depths": depths, "dims": dims, **kwargs})


@register_model(family="unireplknet", paper=_PAPER, input_shape=(3, 224, 224))
def unireplknet_a(**kwargs: Any) -> UniRepLKNet:
    """UniRepLKNet-A (4.4M parameters in the reference README)."""
    return _unireplknet(_AFP_DEPTHS, (40, 80, 160, 320), **kwargs)


@register_model(family="unireplknet", paper=_PAPER, input_shape=(3, 224, 224))
def unireplknet_f(**kwargs: Any) -> UniRepLKNet:
    """UniRepLKNet-F (6.2M parameters)."""
    return _unireplknet(_AFP_DEPTHS, (48, 96, 192, 384), **kwargs)


@register_model(family="unireplknet", paper=_PAPER, input_shape=(3, 224, 224))
def unireplknet_p(**kwargs: Any) -> UniRepLKNet:
    """UniRepLKNet-P (10.7M parameters)."""
    return _unireplknet(_AFP_DEPTHS, (64, 128, 256, 512), **kwargs)


@register_model(family="unireplknet", paper=_PAPER, input_shape=(3, 224, 224))
def unireplknet_n(**kwargs: Any) -> UniRepLKNet:
    """UniRepLKNet-N (18.3M parameters)."""
    return _unireplknet(_N_DEPTHS, (80, 160, 320, 640), **kwargs)


@register_model(family="unireplknet", paper=_PAPER, input_shape=(3, 224, 224))
def unireplknet_t(**kwargs: Any) -> UniRepLKNet:
    """UniRepLKNet-T (31M parameters)."""
    return _unireplknet(_T_DEPTHS, (80, 160, 320, 640), **kwargs)


@register_model(family="unireplknet", paper=_PAPER, input_shape=(3, 224, 224))
def unireplknet_s(**kwargs: Any) -> UniRepLKNet:
    """UniRepLKNet-S (56M parameters)."""
    return _unireplknet(_SBLXL_DEPTHS, (96, 192, 384, 768), **kwargs)

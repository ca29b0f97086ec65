"""sharpDARTS' operations: SharpSepConv and its flood / choke / dilated variants.

Paper: Hundt, Jain and Hager, "sharpDARTS: Faster and More Accurate Differentiable Architecture Search", 2019
(arXiv:1903.09900). Names and shapes follow the reference, ahundt/sharpDARTS ``cnn/operations.py``:
``SharpSepConv`` is ReLU → depthwise k×k (stride, dilation) → 1×1 to ``c_mid`` → BN → ReLU → depthwise k×k
(stride 1, undilated) → 1×1 to ``C_out`` → BN, with ``c_mid = C_out * C_mid_mult`` ("flood": ×4) or a fixed
``C_mid`` ("choke": 32). Its ``op`` is an ``nn.Sequential`` whose indices match the reference's, so its weights
load by name. The primitives (``PRIMITIVES``, the reference's order) are factories ``(C_in, C_out, stride, affine,
track_running_stats)`` as NAS-Bench-201's cell takes them; pooling is followed by an affine-free BatchNorm as in
the reference's search ``MixedOp``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["PRIMITIVES", "SHARP_OPS", "SharpSepConv"]


class SharpSepConv(nn.Module):
    def __init__(self, C_in: int, C_out: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, affine: bool = True, C_mid_mult: float = 1, C_mid: int | None = None,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        c_mid = C_mid if C_mid is not None else int(C_out * C_mid_mult)
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C_in,
                      bias=False),
            nn.Conv2d(C_in, c_mid, 1, bias=False),
            nn.BatchNorm2d(c_mid, affine=affine, track_running_stats=track_running_stats),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_mid, c_mid, kernel_size, padding=(kernel_size - 1) // 2, groups=c_mid, bias=False),
            nn.Conv2d(c_mid, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x):
        return self.op(x)


def _pool(C_in: int, C_out: int, stride: int, affine: bool, track: bool) -> nn.Module:
    if C_in != C_out:
        raise ValueError(f"max_pool_3x3 keeps the channels ({C_in} -> {C_out} asked)")
    return nn.Sequential(nn.MaxPool2d(3, stride=stride, padding=1),
                         nn.BatchNorm2d(C_out, affine=False, track_running_stats=track))


def _sharp(kernel: int, dilation: int = 1, mult: float = 1, mid: int | None = None) -> Callable[..., nn.Module]:
    padding = dilation * (kernel - 1) // 2

    def make(C_in: int, C_out: int, stride: int, affine: bool = True, track: bool = True) -> nn.Module:
        return SharpSepConv(C_in, C_out, kernel, stride, padding, dilation, affine, C_mid_mult=mult, C_mid=mid,
                            track_running_stats=track)

    return make


def _none(C_in: int, C_out: int, stride: int, affine: bool = True, track: bool = True) -> nn.Module:
    from archlab.zoo.models.nb201 import OPS

    return OPS["none"](C_in, C_out, stride, affine, track)


def _skip(C_in: int, C_out: int, stride: int, affine: bool = True, track: bool = True) -> nn.Module:
    from archlab.zoo.models.nb201 import OPS

    return OPS["skip_connect"](C_in, C_out, stride, affine, track)


SHARP_OPS: dict[str, Callable[..., nn.Module]] = {
    "none": _none,
    "max_pool_3x3": _pool,
    "skip_connect": _skip,
    "sep_conv_3x3": _sharp(3),
    "dil_conv_3x3": _sharp(3, dilation=2),
    "flood_conv_3x3": _sharp(3, mult=4),
    "dil_flood_conv_3x3": _sharp(3, dilation=2, mult=4),
    "choke_conv_3x3": _sharp(3, mid=32),
    "dil_choke_conv_3x3": _sharp(3, dilation=2, mid=32),
}
#: sharpDARTS' search primitives (``genotypes.PRIMITIVES``), in the reference's order
PRIMITIVES = tuple(SHARP_OPS)

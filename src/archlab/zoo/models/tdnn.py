"""EfficientTDNN: a dynamic ECAPA-style TDNN supernet whose subnets are extracted as static models.

Paper: Wang, Wei, Tao, Han, Zhou and Wu (Rui Wang et al.), "EfficientTDNN: Efficient Architecture Search for
Speaker Recognition", IEEE/ACM Transactions on Audio, Speech, and Language Processing, 2022. Structure, defaults
and parameter names follow mechanicalsea/sugar ``sugar/models/dynamictdnn.py`` (``DynamicTDNN`` and its blocks)
and ``sugar/modules/dynamicarch.py`` (``DynamicConv1d``, ``DynamicBatchNorm1d``, ``DynamicLinear``), so the
reference's supernet checkpoints load with a plain ``load_state_dict``.

The network (input ``(B, in_feats, T)`` filterbanks, output ``(B, out_embeds)`` speaker embeddings):
``layer1`` (conv-ReLU-BN) -> ``blocks`` (SE-Res2Net dilated TDNN blocks, dilation 2, 3, ...; each block's output
is added to the sum of all earlier outputs, a dense residual) -> ``catconv`` over the concatenated block outputs
-> ``pooling`` (attentive statistics: channel-wise attention over time, weighted mean and standard deviation) ->
``bnpool`` -> ``linear`` -> ``bnembed``.

Every layer can run a *subnet* of itself (:meth:`DynamicTDNN.set_active`): fewer blocks (``depth``), fewer
channels (``width``: the first ``c`` channels of ``layer1`` and the block inputs/outputs, and the first
``c / scale`` channels of every Res2Net split inside a block), smaller kernels (``kernel``: the centre of the
large kernel times a learned transform, ``k53`` for 5 -> 3 and ``k31`` for 3 -> 1, as in Once-for-All) and a
narrower ``catconv``. :meth:`DynamicTDNN.extract_subnet` copies the active weights into a static network of that
size whose outputs equal the supernet's under the same setting.

The paper's search (progressive supernet training, the ``ArchCoder`` encoding, the MLP accuracy predictor and the
evolutionary search under a MACs budget) is :mod:`archlab.search.oneshot.efficient_tdnn`; its latency table
(``TDNNLatency``) is not implemented. :meth:`DynamicTDNN.sample_active` draws a random subnet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model

__all__ = [
    "DynamicAttentiveStatsPool",
    "DynamicBatchNorm1d",
    "DynamicConv1d",
    "DynamicConv1dReLUBN",
    "DynamicLinear",
    "DynamicRes2Conv1dReLUBN",
    "DynamicSELayer",
    "DynamicSERes2DilatedTDNNBlock",
    "DynamicTDNN",
    "ecapa_tdnn",
    "ecapa_tdnn_tiny",
    "make_divisible",
    "tdnn8m2g",
    "tdnn26m7g",
]

_PAPER = "EfficientTDNN: Efficient Architecture Search for Speaker Recognition (Wang et al., IEEE/ACM TASLP 2022)"
KERNELS = (1, 3, 5, 7)

# A channel selection: None (all), an int k (the first k), or a LongTensor of indices.
Select = int | torch.Tensor | None


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor``, never below 90 % of ``v`` (MobileNet's rule, as the reference)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _pick(t: torch.Tensor, dim: int, sel: Select) -> torch.Tensor:
    if sel is None:
        return t
    if isinstance(sel, int):
        return t.narrow(dim, 0, sel)
    return t.index_select(dim, sel.to(t.device))


def _size(sel: Select, full: int) -> int:
    if sel is None:
        return full
    return sel if isinstance(sel, int) else int(sel.numel())


class DynamicConv1d(nn.Module):
    """``conv`` (bias-free, "same" padding) whose input/output channels and kernel can shrink.

    A kernel ``k`` smaller than the full one is the centre ``k + 2`` taps of the next larger active kernel
    multiplied by the learned ``(k, k)`` matrix (``k75``, ``k53``, ``k31``, identity at initialisation).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 dilation: int = 1, groups: int = 1) -> None:
        super().__init__()
        if kernel_size not in KERNELS:
            raise UserError(f"tdnn: kernel sizes must be one of {KERNELS}, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, ((kernel_size - 1) // 2) * dilation,
                              dilation, groups, bias=False)
        for big, name in ((5, "k75"), (3, "k53"), (1, "k31")):
            if kernel_size > big:
                self.register_parameter(name, nn.Parameter(torch.eye(big)))
            else:
                self.register_parameter(name, None)
        self.active_in: Select = None
        self.active_out: Select = None
        self.active_kernel_size = kernel_size

    def set_active(self, in_channels: Select = None, out_channels: Select = None,
                   kernel_size: int | None = None) -> None:
        self.active_in, self.active_out = in_channels, out_channels
        self.active_kernel_size = self.kernel_size if kernel_size is None else kernel_size

    def _is_full(self) -> bool:
        return (self.active_kernel_size == self.kernel_size and _size(self.active_in, self.in_channels)
                == self.in_channels and _size(self.active_out, self.out_channels) == self.out_channels)

    @property
    def weight(self) -> torch.Tensor:
        w = _pick(_pick(self.conv.weight, 1, self.active_in), 0, self.active_out)
        for big, small, mat in ((7, 5, self.k75), (5, 3, self.k53), (3, 1, self.k31)):
            if self.kernel_size >= big and self.active_kernel_size <= small:
                w = w[:, :, 1:-1] @ mat
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._is_full():
            return self.conv(x)
        padding = ((self.active_kernel_size - 1) // 2) * self.conv.dilation[0]
        return F.conv1d(x, self.weight, None, self.conv.stride, padding, self.conv.dilation, self.conv.groups)

    @torch.no_grad()
    def export_to(self, static: DynamicConv1d) -> None:
        static.conv.weight.copy_(self.weight)
        # the smaller transforms still serve the static module's own subnets
        for name in ("k75", "k53", "k31"):
            if getattr(static, name) is not None:
                getattr(static, name).copy_(getattr(self, name))


class DynamicBatchNorm1d(nn.Module):
    """``bn`` over a selection of its channels (statistics and affine parameters of those channels)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.bn = nn.BatchNorm1d(num_features)
        self.active: Select = None

    def set_active(self, features: Select = None) -> None:
        self.active = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _size(self.active, self.num_features) == self.num_features:
            return self.bn(x)
        bn, sel = self.bn, self.active
        # narrowed buffers are views, so training updates reach the full running statistics; indexed ones are
        # copies and are written back below
        mean, var = _pick(bn.running_mean, 0, sel), _pick(bn.running_var, 0, sel)
        if bn.training:
            bn.num_batches_tracked.add_(1)
        out = F.batch_norm(x, mean, var, _pick(bn.weight, 0, sel), _pick(bn.bias, 0, sel), bn.training,
                           bn.momentum, bn.eps)
        if bn.training and isinstance(sel, torch.Tensor):
            with torch.no_grad():
                bn.running_mean.index_copy_(0, sel, mean)
                bn.running_var.index_copy_(0, sel, var)
        return out

    @torch.no_grad()
    def export_to(self, static: DynamicBatchNorm1d) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(static.bn, name).copy_(_pick(getattr(self.bn, name), 0, self.active))
        static.bn.num_batches_tracked.copy_(self.bn.num_batches_tracked)


class DynamicLinear(nn.Module):
    """``linear`` over a selection of its input and output features."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.linear = nn.Linear(in_features, out_features, bias)
        self.active_in: Select = None
        self.active_out: Select = None

    def set_active(self, in_features: Select = None, out_features: Select = None) -> None:
        self.active_in, self.active_out = in_features, out_features

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = _pick(_pick(self.linear.weight, 1, self.active_in), 0, self.active_out)
        b = None if self.linear.bias is None else _pick(self.linear.bias, 0, self.active_out)
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, *self.weight_bias())

    @torch.no_grad()
    def export_to(self, static: DynamicLinear) -> None:
        w, b = self.weight_bias()
        static.linear.weight.copy_(w)
        if b is not None:
            static.linear.bias.copy_(b)


class DynamicSELayer(nn.Module):
    """Squeeze-excitation over time: ``x * sigmoid(expand(relu(reduce(mean_t x))))``."""

    def __init__(self, in_channels: int, reduction: int = 4) -> None:
        super().__init__()
        if in_channels % reduction:
            raise UserError(f"tdnn: SE channels {in_channels} must be divisible by its reduction {reduction}")
        self.in_channels, self.reduction = in_channels, reduction
        self.reduce = DynamicLinear(in_channels, in_channels // reduction)
        self.expand = DynamicLinear(in_channels // reduction, in_channels)
        self.sigmoid = nn.Sigmoid()

    def set_active(self, channels: int) -> None:
        self.reduce.set_active(channels, channels // self.reduction)
        self.expand.set_active(channels // self.reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sigmoid(self.expand(F.relu(self.reduce(x.mean(dim=2)))))
        return x * s[:, :, None]


class DynamicConv1dReLUBN(nn.Module):
    """``bn(relu(conv(x)))`` (the reference's order: BatchNorm after the ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv = DynamicConv1d(in_channels, out_channels, kernel_size, stride, dilation)
        self.bn = DynamicBatchNorm1d(out_channels)

    def set_active(self, in_channels: Select = None, out_channels: Select = None,
                   kernel_size: int | None = None) -> None:
        self.conv.set_active(in_channels, out_channels, kernel_size)
        self.bn.set_active(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class DynamicRes2Conv1dReLUBN(nn.Module):
    """Res2Net split: ``scale`` groups of ``width`` channels; group ``i`` (but the last) is convolved after adding
    the previous group's output, and the last group passes through."""

    def __init__(self, channels: int, scale: int = 8, kernel_size: int = 1, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        if channels % scale:
            raise UserError(f"tdnn: Res2Net channels {channels} must be divisible by scale {scale}")
        self.scale = scale
        self.nums = scale if scale == 1 else scale - 1
        self.width = channels // scale
        self.convs = nn.ModuleList(
            nn.Sequential(
                OrderedDict(conv=DynamicConv1d(self.width, self.width, kernel_size, stride, dilation), relu=nn.ReLU(),
                            bn=DynamicBatchNorm1d(self.width)))
            for _ in range(self.nums))
        self.active_width = self.width

    def set_active(self, width: int | None = None, kernel_size: int | None = None) -> None:
        self.active_width = self.width if width is None else width
        for m in self.convs:
            m.conv.set_active(self.active_width, self.active_width, kernel_size)
            m.bn.set_active(self.active_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spx = torch.split(x, self.active_width, 1)
        out, sp = [], None
        for i in range(self.nums):
            sp = self.convs[i](spx[i] if sp is None else spx[i] + sp)
            out.append(sp)
        if self.scale > 1:
            out.append(spx[self.nums])
        return torch.cat(out, dim=1)


class DynamicSERes2DilatedTDNNBlock(nn.Module):
    """``first_conv`` (1x1) -> ``resconv`` (dilated Res2Net) -> ``last_conv`` (1x1) -> ``se``."""

    def __init__(self, channels: int, mid_channels: int, kernel_size: int, dilation: int, scale: int = 8) -> None:
        super().__init__()
        self.channels, self.mid_channels, self.scale = channels, mid_channels, scale
        self.first_conv = DynamicConv1dReLUBN(channels, mid_channels)
        self.resconv = DynamicRes2Conv1dReLUBN(mid_channels, scale, kernel_size, dilation=dilation)
        self.last_conv = DynamicConv1dReLUBN(mid_channels, channels)
        self.se = DynamicSELayer(channels)

    def set_active(self, channels: int, mid_channels: int, kernel_size: int) -> None:
        width = mid_channels // self.scale
        # the first `width` channels of every Res2Net group, so the split stays aligned
        mid = torch.arange(self.mid_channels).view(self.scale, -1)[:, :width].flatten()
        self.first_conv.set_active(channels, mid, None)
        self.resconv.set_active(width, kernel_size)
        self.last_conv.set_active(mid, channels, None)
        self.se.set_active(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.last_conv(self.resconv(self.first_conv(x))))


class DynamicAttentiveStatsPool(nn.Module):
    """Attentive statistics pooling: ``alpha = softmax_t(linear2(tanh(linear1(x))))`` per channel; returns
    ``[sum_t alpha x, sqrt(sum_t alpha x^2 - mean^2)]`` (the reference's bias-free 1x1 convolutions)."""

    def __init__(self, in_dim: int, bottleneck_dim: int = 128) -> None:
        super().__init__()
        self.in_dim, self.bottleneck_dim = in_dim, bottleneck_dim
        self.linear1 = DynamicConv1d(in_dim, bottleneck_dim)
        self.linear2 = DynamicConv1d(bottleneck_dim, in_dim)
        self.tanh = nn.Tanh()
        self.softmax = nn.Softmax(2)

    def set_active(self, in_channels: int) -> None:
        self.linear1.set_active(in_channels, None, None)
        self.linear2.set_active(None, in_channels, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.softmax(self.linear2(self.tanh(self.linear1(x))))
        mean = torch.sum(alpha * x, dim=2)
        residuals = torch.sum(alpha * x ** 2, dim=2) - mean ** 2
        return torch.cat([mean, torch.sqrt(residuals.clamp(min=1e-9))], dim=1)


def _per_position(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) < n:
            raise UserError(f"tdnn: {name} needs {n} entries (layer1 and each active block), got {list(value)}")
        return list(value[:n])
    return [value] * n


class DynamicTDNN(nn.Module):
    """The EfficientTDNN supernet (also a static model when never shrunk): ``(B, in_feats, T) -> (B, out_embeds)``.

    ``channels`` / ``kernel_sizes``: one value or ``num_blocks + 1`` values (``layer1`` and block in/out channels
    first, then each block's middle channels; ``layer1``'s kernel first, then each block's Res2Net kernel).
    ``num_classes`` adds a ``classifier`` on the embedding (the reference trains with a separate AAM-softmax head).
    """

    def __init__(self, in_feats: int = 80, out_embeds: int = 192, num_blocks: int = 3,
                 channels: int | Sequence[int] = 512, kernel_sizes: int | Sequence[int] = 5,
                 catconv_channels: int = 1536, bottleneck_dim: int = 128, scale: int = 8,
                 num_classes: int | None = None) -> None:
        super().__init__()
        if num_blocks < 1 or min(in_feats, out_embeds, catconv_channels, bottleneck_dim, scale) < 1:
            raise UserError("tdnn: num_blocks, in_feats, out_embeds, catconv_channels, bottleneck_dim and scale must "
                            "be positive")
        self.channels = [int(c) for c in _per_position(channels, num_blocks + 1, "channels")]
        self.kernel_sizes = [int(k) for k in _per_position(kernel_sizes, num_blocks + 1, "kernel_sizes")]
        if len(self.channels) != num_blocks + 1 or len(self.kernel_sizes) != num_blocks + 1:
            raise UserError(f"tdnn: channels and kernel_sizes need {num_blocks + 1} entries each")
        self.in_feats, self.out_embeds, self.num_blocks = in_feats, out_embeds, num_blocks
        self.catconv_channels, self.bottleneck_dim, self.scale = catconv_channels, bottleneck_dim, scale
        self.num_classes = num_classes
        self.layer1 = DynamicConv1dReLUBN(in_feats, self.channels[0], kernel_size=self.kernel_sizes[0])
        self.blocks = nn.ModuleList(
            DynamicSERes2DilatedTDNNBlock(self.channels[0], self.channels[i + 1], self.kernel_sizes[i + 1], i + 2,
                                          scale)
            for i in range(num_blocks))
        self.catconv = DynamicConv1d(self.channels[0] * num_blocks, catconv_channels)
        self.pooling = DynamicAttentiveStatsPool(catconv_channels, bottleneck_dim)
        self.bnpool = DynamicBatchNorm1d(catconv_channels * 2)
        self.linear = DynamicLinear(catconv_channels * 2, out_embeds)
        self.bnembed = nn.BatchNorm1d(out_embeds)
        self.classifier = nn.Linear(out_embeds, num_classes) if num_classes else None
        self.active_depth = num_blocks
        self.active_channels = list(self.channels)
        self.active_kernels = list(self.kernel_sizes)
        self.active_catconv_channels = catconv_channels

    @property
    def config(self) -> tuple[int, list[int], list[int], int]:
        """The active ``(depth, channels, kernels, catconv_channels)``, as the reference's ``config``."""
        return self.active_depth, list(self.active_channels), list(self.active_kernels), self.active_catconv_channels

    def set_active(self, depth: int | None = None, width: int | float | Sequence[int | float] | None = None,
                   kernel: int | Sequence[int] | None = None, catconv: int | float | None = None) -> None:
        """Run the subnet with ``depth`` blocks, ``width`` channels (per position, or one value; a float is a
        ratio of the full width rounded to a multiple of 8), ``kernel`` sizes and ``catconv`` channels.

        None keeps the full value. Raises :class:`UserError` for a setting outside the supernet.
        """
        depth = self.num_blocks if depth is None else int(depth)
        if not 1 <= depth <= self.num_blocks:
            raise UserError(f"tdnn: depth must be in 1..{self.num_blocks}, got {depth}")
        n = depth + 1
        widths = [full if w is None else make_divisible(w * full) if isinstance(w, float) else int(w)
                  for w, full in zip(_per_position(width, n, "width"), self.channels[:n], strict=True)]
        kernels = [full if k is None else int(k) for k, full in zip(_per_position(kernel, n, "kernel"),
                                                                   self.kernel_sizes[:n], strict=True)]
        cat = self.catconv_channels if catconv is None else (
            make_divisible(catconv * self.catconv_channels) if isinstance(catconv, float) else int(catconv))
        for i, (w, full) in enumerate(zip(widths, self.channels[:n], strict=True)):
            multiple = self.blocks[0].se.reduction if i == 0 else self.scale
            if not 0 < w <= full or w % multiple:
                raise UserError(f"tdnn: width {i} must be a multiple of {multiple} in 1..{full}, got {w}")
        for i, (k, full) in enumerate(zip(kernels, self.kernel_sizes[:n], strict=True)):
            if k not in KERNELS or k > full:
                raise UserError(f"tdnn: kernel {i} must be an odd size in {KERNELS} up to {full}, got {k}")
        if not 0 < cat <= self.catconv_channels:
            raise UserError(f"tdnn: catconv channels must be in 1..{self.catconv_channels}, got {cat}")
        self.active_depth, self.active_channels, self.active_kernels = depth, widths, kernels
        self.active_catconv_channels = cat

        c0 = widths[0]
        self.layer1.set_active(None, c0, kernels[0])
        for i in range(depth):
            self.blocks[i].set_active(c0, widths[i + 1], kernels[i + 1])
        cat_in = torch.arange(self.channels[0] * self.num_blocks).view(self.num_blocks, -1)[:depth, :c0].flatten()
        self.catconv.set_active(cat_in, cat, None)
        self.pooling.set_active(cat)
        pooled = torch.arange(self.catconv_channels * 2).view(2, -1)[:, :cat].flatten()
        self.bnpool.set_active(pooled)
        self.linear.set_active(pooled, None)

    def sample_active(self, generator: torch.Generator | None = None,
                      ratios: Sequence[float] = (0.25, 0.35, 0.5, 0.75, 1.0), kernels: Sequence[int] = (1, 3, 5),
                      depths: Sequence[int] = (-2, -1, 0)) -> tuple[int, list[int], list[int], int]:
        """Activate a random subnet of the reference's search space (``depths`` relative to ``num_blocks``)."""
        def choice(options: Sequence[Any]) -> Any:
            return options[int(torch.randint(len(options), (1,), generator=generator))]

        depth = max(1, self.num_blocks + choice(depths))
        widths = [choice([make_divisible(r * c) for r in ratios]) for c in self.channels[:depth + 1]]
        widths[0] = min(widths[0], self.channels[0])
        ks = [choice([k for k in kernels if k <= full] or [full]) for full in self.kernel_sizes[:depth + 1]]
        cat = choice([make_divisible(r * self.catconv_channels) for r in ratios])
        widths = [min(w, c) for w, c in zip(widths, self.channels[:depth + 1], strict=True)]
        self.set_active(depth, widths, ks, min(cat, self.catconv_channels))
        return self.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_feats or not x.is_floating_point():
            raise UserError(f"tdnn: expected float features (B, {self.in_feats}, T), got {tuple(x.shape)} {x.dtype}")
        out = self.layer1(x)
        cat_out, sum_out = [], out
        for i in range(self.active_depth):
            out = self.blocks[i](out) + sum_out
            cat_out.append(out)
            sum_out = sum_out + out
        out = F.relu(self.catconv(torch.cat(cat_out, dim=1)))
        out = self.bnembed(self.linear(self.bnpool(self.pooling(out))))
        return out if self.classifier is None else self.classifier(out)

    def extract_subnet(self) -> DynamicTDNN:
        """A static network of the active size holding the active weights (same outputs, same training mode)."""
        depth, channels, kernels, cat = self.config
        sub = DynamicTDNN(self.in_feats, self.out_embeds, depth, channels, kernels, cat, self.bottleneck_dim,
                          self.scale, self.num_classes)
        sub = sub.to(device=self.layer1.conv.conv.weight.device, dtype=self.layer1.conv.conv.weight.dtype)
        own = dict(self.named_modules())
        for name, module in sub.named_modules():
            if isinstance(module, (DynamicConv1d, DynamicBatchNorm1d, DynamicLinear)):
                own[name].export_to(module)
        sub.bnembed.load_state_dict(self.bnembed.state_dict())
        if self.classifier is not None:
            sub.classifier.load_state_dict(self.classifier.state_dict())
        return sub.train(self.training)


def _tdnn(defaults: dict[str, Any], kwargs: dict[str, Any]) -> DynamicTDNN:
    return DynamicTDNN(**{**defaults, **kwargs})


@register_model(family="tdnn", paper=_PAPER, input_shape=(80, 300))
def ecapa_tdnn_tiny(**kwargs: Any) -> DynamicTDNN:
    """A small ECAPA-style TDNN (3 blocks of 64 channels, kernels 5/3/3/3, 192 pooled channels)."""
    return _tdnn(dict(in_feats=80, out_embeds=64, num_blocks=3, channels=64, kernel_sizes=[5, 3, 3, 3],
                      catconv_channels=192, bottleneck_dim=32), kwargs)


@register_model(family="tdnn", paper=_PAPER, input_shape=(80, 300))
def ecapa_tdnn(**kwargs: Any) -> DynamicTDNN:
    """ECAPA-TDNN (C=512) as the reference's ``ecapa_tdnn()``: 3 blocks, kernels 5/3/3/3, catconv 1536."""
    return _tdnn(dict(in_feats=80, out_embeds=192, num_blocks=3, channels=512, kernel_sizes=[5, 3, 3, 3],
                      catconv_channels=1536), kwargs)


@register_model(family="tdnn", paper=_PAPER, input_shape=(80, 300))
def tdnn8m2g(**kwargs: Any) -> DynamicTDNN:
    """The paper's supernet (reference ``tdnn8m2g``): 4 blocks of 512 channels, kernels 5, catconv 1536."""
    return _tdnn(dict(in_feats=80, out_embeds=192, num_blocks=4, channels=512, kernel_sizes=5,
                      catconv_channels=1536), kwargs)


@register_model(family="tdnn", paper=_PAPER, input_shape=(80, 300))
def tdnn26m7g(**kwargs: Any) -> DynamicTDNN:
    """The reference's largest configuration (``tdnn26m7g``): 5 blocks of 1024 channels, kernels 5."""
    return _tdnn(dict(in_feats=80, out_embeds=192, num_blocks=5, channels=1024, kernel_sizes=5,
                      catconv_channels=1536), kwargs)

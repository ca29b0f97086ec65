"""The NAS-Bench-201 network: a stem, three stages of ``N`` identical searched cells, ResNet blocks between them.

Paper: Dong and Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search", ICLR 2020.
Names and structure follow the reference implementation, D-X-Y/AutoDL-Projects (as shipped in NATS-Bench's
``xautodl``): ``TinyNetwork`` (``xautodl/models/cell_infers/tiny_network.py``), ``InferCell``
(``cell_infers/cells.py``) and the operations ``ReLUConvBN``, ``ResNetBasicblock``, ``POOLING`` (here
:class:`Pooling`), ``Identity``, ``Zero`` and ``FactorizedReduce`` of ``xautodl/models/cell_operations.py``, with
the same module names, so parameter names match the reference's state dicts.

- ``stem``: 3x3 convolution (no bias) to ``C`` channels, BatchNorm.
- ``cells``: ``N`` cells at ``C`` channels, a :class:`ResNetBasicblock` of stride 2 to ``2C``, ``N`` cells at
  ``2C``, another block to ``4C``, ``N`` cells at ``4C`` (``C=16``, ``N=5`` in the benchmark).
- a cell (:class:`InferCell`) has four nodes; node ``j`` is the sum of one operation on each earlier node and the
  last node is the output. The operations (:data:`OPS`): ``none`` (:class:`Zero`: the input times 0),
  ``skip_connect`` (:class:`Identity`), ``nor_conv_1x1`` / ``nor_conv_3x3`` (:class:`ReLUConvBN`: ReLU, a
  convolution with no bias, BatchNorm) and ``avg_pool_3x3`` (:class:`Pooling`: 3x3 average pooling, padding 1,
  not counting the padding; a 1x1 ReLUConvBN first only if the channel count changes, never inside a cell).
- ``lastact`` (BatchNorm, ReLU), ``global_pooling``, ``classifier`` (Linear).

BatchNorms are affine and track running statistics, as in the benchmark's inference networks. Parameters:
73,306 for a cell with no convolution and 1,531,546 for the all-``nor_conv_3x3`` cell on 10 classes, the
benchmark's smallest and largest CIFAR-10 networks (0.073306 and 1.531546 MB in its API).

Two departures, neither changing parameters or outputs: ``forward`` returns the logits only (the reference
returns ``(features, logits)``), and ``lastact``'s ReLU is not in-place. ``in_chans`` (the reference fixes 3)
lets the network take images of other channel counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from archlab.errors import SpaceError, UserError
from archlab.space.nb201 import BEST_CIFAR10, EDGES, arch_ops, format_arch_str
from archlab.zoo._registry import register_model

__all__ = ["OPS", "FactorizedReduce", "Identity", "InferCell", "Pooling", "ReLUConvBN", "ResNetBasicblock",
           "TinyNetwork", "Zero", "nb201"]

_PAPER = "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search (Dong & Yang, ICLR 2020)"


class ReLUConvBN(nn.Module):
    """ReLU, a convolution (bias only when the BatchNorm is not affine, as in the reference), BatchNorm."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=not affine),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResNetBasicblock(nn.Module):
    """The reduction block between stages: two 3x3 ReLUConvBNs (the first strided) plus a shortcut.

    The shortcut is a 2x2 average pool then a 1x1 convolution (no bias, no norm) at stride 2, a 1x1 ReLUConvBN
    when only the channel count changes, else the input itself.
    """

    def __init__(self, inplanes: int, planes: int, stride: int, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise UserError(f"ResNetBasicblock: stride must be 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(inplanes, planes, 3, stride, 1, 1, affine, track_running_stats)
        self.conv_b = ReLUConvBN(planes, planes, 3, 1, 1, 1, affine, track_running_stats)
        if stride == 2:
            self.downsample: nn.Module | None = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=1, padding=0, bias=False),
            )
        elif inplanes != planes:
            self.downsample = ReLUConvBN(inplanes, planes, 1, 1, 0, 1, affine, track_running_stats)
        else:
            self.downsample = None
        self.in_dim = inplanes
        self.out_dim = planes
        self.stride = stride

    def extra_repr(self) -> str:
        return f"inC={self.in_dim}, outC={self.out_dim}, stride={self.stride}"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.conv_b(self.conv_a(inputs))
        residual = inputs if self.downsample is None else self.downsample(inputs)
        return residual + out


class Pooling(nn.Module):
    """3x3 average (or max) pooling, padding 1; a 1x1 ReLUConvBN first when the channel count changes."""

    def __init__(self, C_in: int, C_out: int, stride: int, mode: str = "avg", affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        self.preprocess = (None if C_in == C_out
                           else ReLUConvBN(C_in, C_out, 1, 1, 0, 1, affine, track_running_stats))
        if mode == "avg":
            self.op: nn.Module = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        elif mode == "max":
            self.op = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            raise UserError(f"Pooling: mode must be 'avg' or 'max', got {mode!r}")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs if self.preprocess is None else self.preprocess(inputs)
        return self.op(x)


class Identity(nn.Module):
    """``skip_connect`` inside a cell: the input unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FactorizedReduce(nn.Module):
    """``skip_connect`` where the shape changes (never inside an NB201 cell): ReLU, 1x1 convolution(s), BatchNorm.

    At stride 2, two 1x1 convolutions of stride 2 (the second on the input shifted by one pixel) fill half the
    channels each, as in the reference.
    """

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.C_in = C_in
        self.C_out = C_out
        self.relu = nn.ReLU(inplace=False)
        if stride == 2:
            C_outs = [C_out // 2, C_out - C_out // 2]
            self.convs = nn.ModuleList(nn.Conv2d(C_in, c, 1, stride=stride, padding=0, bias=not affine)
                                       for c in C_outs)
            self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0)
        elif stride == 1:
            self.conv = nn.Conv2d(C_in, C_out, 1, stride=stride, padding=0, bias=not affine)
        else:
            raise UserError(f"FactorizedReduce: stride must be 1 or 2, got {stride}")
        self.bn = nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats)

    def extra_repr(self) -> str:
        return f"C_in={self.C_in}, C_out={self.C_out}, stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = self.relu(x)
            y = self.pad(x)
            out = torch.cat([self.convs[0](x), self.convs[1](y[:, :, 1:, 1:])], dim=1)
        else:
            out = self.conv(x)
        return self.bn(out)


class Zero(nn.Module):
    """``none``: zeros of the output's shape (the input times 0 when the shape is kept, as in the reference)."""

    def __init__(self, C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_in = C_in
        self.C_out = C_out
        self.stride = stride
        self.is_zero = True

    def extra_repr(self) -> str:
        return f"C_in={self.C_in}, C_out={self.C_out}, stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.C_in == self.C_out:
            return x.mul(0.0) if self.stride == 1 else x[:, :, ::self.stride, ::self.stride].mul(0.0)
        shape = list(x.shape)
        shape[1] = self.C_out
        if self.stride != 1:  # the reference keeps the input's size here; only strided none needs this
            shape[2] = -(-shape[2] // self.stride)
            shape[3] = -(-shape[3] // self.stride)
        return x.new_zeros(shape)


_Op = Callable[[int, int, int, bool, bool], nn.Module]
# name -> factory(C_in, C_out, stride, affine, track_running_stats), as the reference's OPS
OPS: dict[str, _Op] = {
    "none": lambda C_in, C_out, stride, affine, track: Zero(C_in, C_out, stride),
    "skip_connect": lambda C_in, C_out, stride, affine, track: (
        Identity() if stride == 1 and C_in == C_out
        else FactorizedReduce(C_in, C_out, stride, affine, track)),  # never in an NB201 cell
    "nor_conv_1x1": lambda C_in, C_out, stride, affine, track: ReLUConvBN(C_in, C_out, 1, stride, 0, 1, affine,
                                                                          track),
    "nor_conv_3x3": lambda C_in, C_out, stride, affine, track: ReLUConvBN(C_in, C_out, 3, stride, 1, 1, affine,
                                                                          track),
    "avg_pool_3x3": lambda C_in, C_out, stride, affine, track: Pooling(C_in, C_out, stride, "avg", affine, track),
}


def _genotype(ops: Sequence[str]) -> tuple[tuple[tuple[str, int], ...], ...]:
    """The reference's genotype of six operations: per node, its ``(op, input)`` pairs."""
    nodes: list[list[tuple[str, int]]] = [[] for _ in range(3)]
    for (_, j, i), op in zip(EDGES, ops, strict=True):
        nodes[j - 1].append((op, i))
    return tuple(tuple(node) for node in nodes)


def _cell_str(names: Sequence[str]) -> str:
    """The cell string of six operation names; the names joined by ``|`` when some are not NB201's (mixed)."""
    try:
        return format_arch_str(names)
    except SpaceError:
        return "|".join(names)


class InferCell(nn.Module):
    """An NB201 cell: node ``j`` sums ``layers[k](nodes[i])`` over its inputs; the last node is the output.

    ``genotype`` is any cell form :func:`archlab.space.nb201.arch_ops` takes (usually the cell string).
    ``node_IN[j-1]`` lists node ``j``'s input nodes and ``node_IX[j-1]`` the matching indices into ``layers``.
    Edges from the cell's input map ``C_in`` to ``C_out`` channels at ``stride``; the others keep ``C_out``.

    ``operations``, when given, are the six edges' factories ``(C_in, C_out, stride, affine, track_running_stats)
    -> nn.Module`` in :data:`~archlab.space.nb201.EDGES` order, used instead of :data:`OPS` (the ``nb201`` space
    decodes its edges to such factories, and a supernet to mixed ones); ``genotype`` is then ignored.
    """

    def __init__(self, genotype: str | Mapping[str, Any] | Sequence[Any] | None, C_in: int, C_out: int,
                 stride: int = 1, affine: bool = True, track_running_stats: bool = True,
                 operations: Sequence[Callable[..., nn.Module]] | None = None) -> None:
        super().__init__()
        if operations is not None:
            operations = tuple(operations)
            if len(operations) != len(EDGES) or not all(callable(op) for op in operations):
                raise UserError(f"InferCell: operations must be {len(EDGES)} factories, got {operations!r}")
            self.ops = tuple(getattr(op, "__name__", type(op).__name__) for op in operations)
        else:
            self.ops = arch_ops(genotype)
            operations = tuple(OPS[op] for op in self.ops)
        self.genotype = _genotype(self.ops)
        self.layers = nn.ModuleList()
        self.node_IN: list[list[int]] = []
        self.node_IX: list[list[int]] = []
        for node in self.genotype:
            cur_index, cur_innod = [], []
            for _, op_in in node:
                make = operations[len(self.layers)]  # EDGES lists the edges node by node, as the loop meets them
                if op_in == 0:
                    layer = make(C_in, C_out, stride, affine, track_running_stats)
                else:
                    layer = make(C_out, C_out, 1, affine, track_running_stats)
                cur_index.append(len(self.layers))
                cur_innod.append(op_in)
                self.layers.append(layer)
            self.node_IX.append(cur_index)
            self.node_IN.append(cur_innod)
        self.nodes = len(self.genotype) + 1
        self.in_dim = C_in
        self.out_dim = C_out

    def extra_repr(self) -> str:
        return f"nodes={self.nodes}, inC={self.in_dim}, outC={self.out_dim}, {_cell_str(self.ops)}"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        nodes = [inputs]
        for node_layers, node_innods in zip(self.node_IX, self.node_IN, strict=True):
            out = self.layers[node_layers[0]](nodes[node_innods[0]])
            for k, i in zip(node_layers[1:], node_innods[1:], strict=True):
                out = out + self.layers[k](nodes[i])
            nodes.append(out)
        return nodes[-1]


class TinyNetwork(nn.Module):
    """The NAS-Bench-201 macro network around one cell ``genotype`` (see the module docstring)."""

    def __init__(self, C: int, N: int, genotype: str | Mapping[str, Any] | Sequence[Any] | None, num_classes: int,
                 in_chans: int = 3, operations: Sequence[Callable[..., nn.Module]] | None = None) -> None:
        super().__init__()
        if C < 1 or N < 1 or num_classes < 1 or in_chans < 1:
            raise UserError(f"nb201: C, N, num_classes and in_chans must be >= 1, got {C}, {N}, {num_classes}, "
                            f"{in_chans}")
        self._C = C
        self._layerN = N
        self.stem = nn.Sequential(nn.Conv2d(in_chans, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
        layer_channels = [C] * N + [C * 2] + [C * 2] * N + [C * 4] + [C * 4] * N
        layer_reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
        C_prev = C
        self.cells = nn.ModuleList()
        for C_curr, reduction in zip(layer_channels, layer_reductions, strict=True):
            cell = (ResNetBasicblock(C_prev, C_curr, 2, True) if reduction
                    else InferCell(genotype, C_prev, C_curr, 1, operations=operations))
            self.cells.append(cell)
            C_prev = cell.out_dim
        self._Layer = len(self.cells)
        self.arch_str = _cell_str(self.cells[0].ops)
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU())
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def extra_repr(self) -> str:
        return f"C={self._C}, N={self._layerN}, L={self._Layer}, arch={self.arch_str}"

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The pooled features before the classifier, ``(B, 4C)`` (the reference's first output)."""
        feature = self.stem(inputs)
        for cell in self.cells:
            feature = cell(feature)
        out = self.global_pooling(self.lastact(feature))
        return out.flatten(1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(inputs))


@register_model(name="nb201", family="nb201", paper=_PAPER, input_shape=(3, 32, 32))
def nb201(arch_str: str | Mapping[str, Any] | Sequence[Any] = BEST_CIFAR10, *, C: int = 16, N: int = 5,
          num_classes: int = 10, in_chans: int = 3, operations: Sequence[Callable[..., nn.Module]] | None = None,
          **kwargs: Any) -> TinyNetwork:
    """The NB201 network of one cell: ``arch_str`` is a cell string or a genotype (any form
    :func:`archlab.space.nb201.arch_ops` takes); by default the cell with the best CIFAR-10 test accuracy.
    ``operations`` (six edge factories, see :class:`InferCell`) replace ``arch_str`` when given."""
    if kwargs:
        raise UserError(f"nb201: unknown argument(s) {sorted(kwargs)}")
    return TinyNetwork(C, N, arch_str, num_classes, in_chans=in_chans, operations=operations)

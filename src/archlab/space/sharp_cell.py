"""The ``sharp_cell`` space: NAS-Bench-201's cell and network with sharpDARTS' nine primitives on every edge.

sharpDARTS (Hundt, Jain and Hager, 2019; reference ahundt/sharpDARTS) searches DARTS' cell with its own primitives
(``genotypes.PRIMITIVES``: none, max_pool_3x3, skip_connect, and SharpSepConv in plain, dilated, flood and choke
forms; :mod:`archlab.zoo.layers.sharp_ops`). This space puts them in the NB201 topology, six edges of nine
operations (9^6 = 531,441 cells), so the sharpDARTS method (:func:`archlab.search.oneshot.sharpdarts`) runs on
its own operations with the same network skeleton, training code and supernet as the ``nb201`` space. Its cells
are written like NB201's (``|sep_conv_3x3~0|+|...``) but are not in NAS-Bench-201's table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archlab.errors import SpaceError
from archlab.space._nodes import Bound, choice
from archlab.space._predefined import register_space
from archlab.space._space import Space
from archlab.space.nb201 import EDGES

__all__ = ["SHARP_OPERATIONS", "sharp_cell_space"]

#: sharpDARTS' primitives, in the reference's order (:data:`archlab.zoo.layers.sharp_ops.PRIMITIVES`)
SHARP_OPERATIONS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3", "flood_conv_3x3",
                    "dil_flood_conv_3x3", "choke_conv_3x3", "dil_choke_conv_3x3")


def _operation(C_in: int, C_out: int, stride: int, affine: bool = True, track_running_stats: bool = True, *,
               op: str) -> Any:
    from archlab.zoo.layers.sharp_ops import SHARP_OPS

    return SHARP_OPS[op](C_in, C_out, stride, affine, track_running_stats)


_FACTORIES = tuple(Bound(op, _operation, {"op": op}) for op in SHARP_OPERATIONS)


class SharpCellSpace(Space):
    """Six edge fields of sharpDARTS' operations, with NB201's cell string."""

    def ops(self, arch: Any) -> tuple[str, ...]:
        tree = self._own(arch)
        return tuple(tree[f] for f, _, _ in EDGES)

    def to_string(self, arch: Any) -> str:
        a, b, c, d, e, f = self.ops(arch)
        return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"

    def from_string(self, text: str) -> Any:
        nodes = [n for n in text.strip().split("+")]
        ops = [tok.rsplit("~", 1)[0] for node in nodes for tok in node.strip("|").split("|") if tok]
        if len(ops) != len(EDGES) or any(op not in SHARP_OPERATIONS for op in ops):
            raise SpaceError(f"a sharp_cell is {len(EDGES)} operations of {list(SHARP_OPERATIONS)}, got {text!r}")
        return self.validate({f: op for (f, _, _), op in zip(EDGES, ops, strict=True)})


@register_space("sharp_cell")
def sharp_cell_space(*, input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10, C: int = 16,
                     N: int = 5) -> SharpCellSpace:
    """NB201's network (``C`` channels, ``N`` cells a stage) with sharpDARTS' operations on the cell's edges."""
    if len(input_shape) != 3:
        raise SpaceError(f"the sharp_cell space takes images (C, H, W), got input shape {tuple(input_shape)}")
    in_chans = input_shape[0]

    def build(arch: Mapping[str, Any]):
        from archlab import zoo

        return zoo.create_model("nb201", operations=[arch[f] for f, _, _ in EDGES], C=C, N=N,
                                num_classes=num_classes, in_chans=in_chans)

    space = SharpCellSpace(build, name="sharp_cell", **{f: choice(list(_FACTORIES)) for f, _, _ in EDGES})
    space.spec = {"C": C, "N": N}
    return space

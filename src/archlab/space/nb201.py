"""The ``nb201`` space: the NAS-Bench-201 cell, six edges of five operations each (5^6 = 15,625 cells).

Paper: Dong and Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search", ICLR 2020.
Names and conventions follow the reference code, D-X-Y/AutoDL-Projects: the operation list ``NAS_BENCH_201``
(``xautodl/models/cell_operations.py``), the cell string of ``Structure.tostr`` / ``str2structure``
(``xautodl/models/cell_searchs/genotypes.py``) and the benchmark's numbering of cells (``generate_meta_info`` in
``exps/NAS-Bench-201/main.py``). The network a cell builds is the zoo model ``nb201``
(:mod:`archlab.zoo.models.nb201`).

A cell has four nodes; node ``j`` (1..3) sums one operation applied to each earlier node ``i``: the edge
``j<-i``. Field names cannot hold ``<``, so the space names the edge ``j<-i`` ``edge_j_i``:

=========  ========  ==========================
field      edge      place in the cell string
=========  ========  ==========================
edge_1_0   1<-0      ``|op~0|+ ...`` (node 1)
edge_2_0   2<-0      ``+|op~0|op~1|+`` (node 2)
edge_2_1   2<-1
edge_3_0   3<-0      ``+|op~0|op~1|op~2|`` (node 3)
edge_3_1   3<-1
edge_3_2   3<-2
=========  ========  ==========================

each a ``choice`` of :data:`OPERATIONS` (``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``,
``avg_pool_3x3``). The genotype of an edge is the operation's name; it decodes to the operation's factory
(:data:`OPERATION_FACTORIES`, a :class:`~archlab.space.Bound` named after the operation), so the same declaration
builds a network (``space.build``) and a supernet (``space.supernet``). The space is an :class:`NB201Space`,
which adds the benchmark's codec to :class:`Space`:
``to_string(arch)`` / ``from_string(text)`` convert to and from the cell string
``|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|``, and ``index(arch)`` /
``from_index(i)`` to and from the benchmark's index of the cell.

The index is NAS-Bench-201's own (the API's ``query_index_by_arch``, and the row order of its tables): the
benchmark lists all cells in ``Structure.gen_all`` order (edges in the order of the table above, the first the
most significant digit, each digit an operation's position in :data:`OPERATIONS`), then shuffles that list with
Python's ``random.seed(88); random.shuffle(archs)``; a cell's index is its place in the shuffled list.
:func:`arch_index` replays that shuffle (it gives the reference's own checks: index 0 is
``|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|``, and
likewise indices 9 and 123), and agrees with the ``index`` and ``arch_str`` columns of every row of the
shared ``nb201_robot.csv`` table (tests/space/test_nb201.py).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from archlab.errors import SpaceError
from archlab.space._arch import Arch
from archlab.space._nodes import Bound, choice
from archlab.space._predefined import register_space
from archlab.space._space import Space

__all__ = [
    "BEST_CIFAR10",
    "EDGES",
    "NB201Space",
    "NUM_ARCHS",
    "OPERATIONS",
    "OPERATION_FACTORIES",
    "arch_index",
    "arch_ops",
    "format_arch_str",
    "nb201_space",
    "ops_at",
    "parse_arch_str",
]

OPERATIONS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # NAS_BENCH_201's order
# (field, to node, from node), in the order the cell string lists the edges
EDGES = (("edge_1_0", 1, 0), ("edge_2_0", 2, 0), ("edge_2_1", 2, 1),
         ("edge_3_0", 3, 0), ("edge_3_1", 3, 1), ("edge_3_2", 3, 2))
NUM_NODES = 4
NUM_ARCHS = len(OPERATIONS) ** len(EDGES)
SHUFFLE_SEED = 88  # generate_meta_info: ``random.seed(88)  # please do not change this line for reproducibility``
# the cell with the best 200-epoch CIFAR-10 test accuracy in the benchmark (94.37 %, index 6111)
BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"

_FORMAT = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|"


def _operation(C_in: int, C_out: int, stride: int, affine: bool = True, track_running_stats: bool = True, *,
               op: str) -> Any:
    """The zoo's module of operation ``op`` (:data:`archlab.zoo.models.nb201.OPS`); imported when called, so the
    space needs no torch to be declared."""
    from archlab import zoo

    return zoo.models.nb201.OPS[op](C_in, C_out, stride, affine, track_running_stats)


# what an edge decodes to: ``factory(C_in, C_out, stride, affine, track_running_stats) -> nn.Module``
OPERATION_FACTORIES = tuple(Bound(op, _operation, {"op": op}) for op in OPERATIONS)
_OP_CODE = {op: i for i, op in enumerate(OPERATIONS)}
_EXAMPLE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def parse_arch_str(text: str) -> tuple[str, ...]:
    """The six operations of an NB201 cell string, in :data:`EDGES` order; :class:`SpaceError` if malformed.

    The string is the reference's ``Structure.tostr()``: one ``|op~i|...|`` group per node, joined by ``+``,
    each node listing its inputs 0, 1, ... in order, e.g. ``|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+...``.
    """
    if not isinstance(text, str):
        raise SpaceError(f"an NB201 cell string is a str, got {type(text).__name__}")

    def bad(why: str) -> SpaceError:
        return SpaceError(f"malformed NB201 cell string {text!r}: {why} (expected the form {_EXAMPLE!r})")

    nodes = text.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise bad(f"{len(nodes)} node(s) joined by '+', a cell has {NUM_NODES - 1}")
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or node[0] != "|" or node[-1] != "|":
            raise bad(f"node {j} ({node!r}) must start and end with '|'")
        inputs = node[1:-1].split("|")
        if len(inputs) != j:
            raise bad(f"node {j} must have {j} input(s), one from each earlier node, has {len(inputs)}")
        for i, item in enumerate(inputs):
            op, sep, source = item.partition("~")
            if not sep or source != str(i):
                raise bad(f"node {j}'s input {i} must be written 'op~{i}', got {item!r}")
            if op not in _OP_CODE:
                raise bad(f"unknown operation {op!r}; NB201's are {list(OPERATIONS)}")
            ops.append(op)
    return tuple(ops)


def format_arch_str(ops: Sequence[str]) -> str:
    """The NB201 cell string of six operations given in :data:`EDGES` order."""
    ops = tuple(ops)
    if len(ops) != len(EDGES) or any(not isinstance(op, str) or op not in _OP_CODE for op in ops):
        raise SpaceError(f"an NB201 cell is {len(EDGES)} operations of {list(OPERATIONS)}, got {list(ops)}")
    return _FORMAT.format(*ops)


def arch_ops(arch: str | Mapping[str, Any] | Sequence[Any]) -> tuple[str, ...]:
    """The six operations (in :data:`EDGES` order) of a cell given in any of the forms NB201 code uses.

    Accepted: a cell string; a mapping with the fields ``edge_1_0`` ... ``edge_3_2`` (an arch of the ``nb201``
    space); six operation names; or the reference's genotype, three nodes of ``(op, input)`` pairs such as
    ``((("nor_conv_3x3", 0),), (("none", 0), ("nor_conv_3x3", 1)), ...)`` (inputs of a node in any order, each
    earlier node exactly once).
    """
    if isinstance(arch, str):
        return parse_arch_str(arch)
    if isinstance(arch, Mapping):
        fields = [f for f, _, _ in EDGES]
        if set(arch) != set(fields):
            raise SpaceError(f"an NB201 cell mapping has exactly the fields {fields}, got {list(arch)}")
        return parse_arch_str(format_arch_str([arch[f] for f in fields]))
    if isinstance(arch, Sequence) and len(arch) == len(EDGES) and all(isinstance(op, str) for op in arch):
        return parse_arch_str(format_arch_str(arch))
    if isinstance(arch, Sequence) and len(arch) == NUM_NODES - 1:
        ops: list[str] = []
        for j, node in enumerate(arch, start=1):
            try:
                pairs = {int(i): op for op, i in node}
            except (TypeError, ValueError):
                raise SpaceError(f"NB201 genotype node {j} must be (op, input) pairs, got {node!r}") from None
            if sorted(pairs) != list(range(j)) or len(node) != j:
                raise SpaceError(f"NB201 genotype node {j} needs one input from each of nodes 0..{j - 1}, "
                                 f"got {node!r}")
            ops.extend(pairs[i] for i in range(j))
        return parse_arch_str(format_arch_str(ops))
    raise SpaceError(f"not an NB201 cell (a cell string, an nb201 arch, 6 operations or a genotype): {arch!r}")


def _code(ops: Sequence[str]) -> int:
    """The cell's place in ``Structure.gen_all`` order: base 5, the first edge the most significant digit."""
    code = 0
    for op in ops:
        code = code * len(OPERATIONS) + _OP_CODE[op]
    return code


@functools.cache
def _orders() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(gen_all code of each index, index of each gen_all code): generate_meta_info's seeded shuffle."""
    codes = list(range(NUM_ARCHS))
    random.Random(SHUFFLE_SEED).shuffle(codes)  # the same draws as ``random.seed(88); random.shuffle(archs)``
    index = [0] * NUM_ARCHS
    for i, c in enumerate(codes):
        index[c] = i
    return tuple(codes), tuple(index)


def arch_index(arch: str | Mapping[str, Any] | Sequence[Any]) -> int:
    """The NAS-Bench-201 index of a cell (any form :func:`arch_ops` takes)."""
    return _orders()[1][_code(arch_ops(arch))]


def ops_at(index: int) -> tuple[str, ...]:
    """The six operations of the cell with NAS-Bench-201 index ``index``."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_ARCHS:
        raise SpaceError(f"an NB201 index is an int in [0, {NUM_ARCHS}), got {index!r}")
    code = _orders()[0][index]
    ops = []
    for _ in EDGES:
        code, digit = divmod(code, len(OPERATIONS))
        ops.append(OPERATIONS[digit])
    return tuple(reversed(ops))


class NB201Space(Space):
    """The ``nb201`` space: a :class:`Space` of the six edge fields, plus the benchmark's codec.

    ``to_string`` / ``from_string`` convert to and from the cell string, ``index`` / ``from_index`` to and from
    the NAS-Bench-201 index (the row of the benchmark's tables).
    """

    def __init__(self, build: Callable[[Mapping[str, Any]], Any] | None = None, /, *, name: str = "nb201") -> None:
        super().__init__(build, name=name, **{f: choice(list(OPERATION_FACTORIES)) for f, _, _ in EDGES})

    def ops(self, arch: Arch | Mapping[str, Any]) -> tuple[str, ...]:
        """The six operations of ``arch``, in :data:`EDGES` order."""
        tree = self._own(arch)
        return tuple(tree[f] for f, _, _ in EDGES)

    def to_string(self, arch: Arch | Mapping[str, Any]) -> str:
        """The NB201 cell string of ``arch``."""
        return _FORMAT.format(*self.ops(arch))

    def from_string(self, text: str) -> Arch:
        """The arch of an NB201 cell string; :class:`SpaceError` when the string is malformed."""
        return self._arch(parse_arch_str(text))

    def index(self, arch: Arch | Mapping[str, Any]) -> int:
        """The NAS-Bench-201 index of ``arch`` (see the module docstring)."""
        return _orders()[1][_code(self.ops(arch))]

    def from_index(self, index: int) -> Arch:
        """The arch whose NAS-Bench-201 index is ``index``."""
        return self._arch(ops_at(index))

    def _arch(self, ops: Sequence[str]) -> Arch:
        return self.validate({f: op for (f, _, _), op in zip(EDGES, ops, strict=True)})


@register_space("nb201")
def nb201_space(*, input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10, C: int = 16,
                N: int = 5) -> NB201Space:
    """The NAS-Bench-201 space; an arch builds the zoo's ``nb201`` network (``C`` channels, ``N`` cells a stage)."""
    if len(input_shape) != 3:
        raise SpaceError(f"the nb201 space takes images (C, H, W), got input shape {tuple(input_shape)}")
    in_chans = input_shape[0]

    def build(arch: Mapping[str, Any]):
        from archlab import zoo

        return zoo.create_model("nb201", operations=[arch[f] for f, _, _ in EDGES], C=C, N=N,
                                num_classes=num_classes, in_chans=in_chans)

    space = NB201Space(build)
    space.spec = {"C": C, "N": N}  # the network's size, made explicit (see create_space)
    return space

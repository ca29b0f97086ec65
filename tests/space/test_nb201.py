"""The ``nb201`` space and network: the cell-string codec, the benchmark's index, parameter counts, forward."""

from __future__ import annotations

import csv

import pytest
import torch

from archlab import zoo
from archlab.errors import SpaceError, UserError
from archlab.space import create_space, list_spaces
from archlab.space.nb201 import (
    BEST_CIFAR10,
    EDGES,
    NUM_ARCHS,
    OPERATIONS,
    arch_index,
    arch_ops,
    format_arch_str,
    ops_at,
    parse_arch_str,
)
from archlab.zoo.models.nb201 import OPS, FactorizedReduce, Pooling, TinyNetwork, Zero

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_POOL = "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"
ALL_C1 = "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|"
ALL_C3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
# index 9930: the best CIFAR-100 cell, and the cell RoBoT's NB201 runs end on (94.36 / 73.51 / 46.34)
BEST_CIFAR100 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
# exps/NAS-Bench-201/main.py (generate_meta_info) asserts these entries of its shuffled list
pytestmark = pytest.mark.usefixtures("one_thread")  # small convolutions: a second thread only adds overhead

REFERENCE_INDICES = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    9: "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    123: "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|",
}


@pytest.fixture(scope="module")
def space():
    return create_space("nb201", input_shape=(3, 32, 32), num_classes=10)


def test_registered_and_spec(space):
    from archlab.bench import NB201_OPERATIONS

    assert OPERATIONS == NB201_OPERATIONS  # the synthetic table's operations are the same, in the same order
    assert "nb201" in list_spaces()
    assert "nb201" in zoo.list_models()
    assert [f for f, _, _ in EDGES] == ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]
    assert list(space.root.fields) == [f for f, _, _ in EDGES]
    assert space.size() == NUM_ARCHS == 15_625
    assert space.spec == {"name": "nb201", "input_shape": [3, 32, 32], "num_classes": 10, "C": 16, "N": 5}
    again = create_space(**space.spec)
    assert again.fingerprint() == space.fingerprint()
    assert [(d.path, tuple(d.options)) for d in space.decisions()] == [(f, OPERATIONS) for f, _, _ in EDGES]


def test_every_cell_round_trips(space):
    """string <-> arch <-> index for all 15,625 cells, and the index is a bijection onto 0..15624."""
    seen = set()
    for arch in space.enumerate():
        text = space.to_string(arch)
        assert space.from_string(text) == arch
        assert parse_arch_str(text) == space.ops(arch)
        assert format_arch_str(space.ops(arch)) == text
        i = space.index(arch)
        assert space.from_index(i) == arch
        assert arch_index(text) == i
        seen.add(i)
    assert seen == set(range(NUM_ARCHS))


def test_index_follows_the_reference_shuffle(space):
    for i, text in REFERENCE_INDICES.items():
        assert space.to_string(space.from_index(i)) == text
        assert space.index(space.from_string(text)) == i
        assert format_arch_str(ops_at(i)) == text
    assert arch_index(BEST_CIFAR10) == 6111  # data/README.md: best CIFAR-10 test accuracy, index 6111
    assert arch_index(BEST_CIFAR100) == 9930


def test_index_agrees_with_the_benchmark_table(space, shared_data):
    path = shared_data / "nb201_robot.csv"
    if not path.exists():
        pytest.fail(f"{path} is missing from ARCHLAB_DATA")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == NUM_ARCHS
    for row in rows:
        i = int(row["index"])
        assert space.to_string(space.from_index(i)) == row["arch_str"]
        assert space.index(space.from_string(row["arch_str"])) == i
    best = max(rows, key=lambda r: float(r["cifar10_test_acc_200ep"]))
    assert best["arch_str"] == BEST_CIFAR10


@pytest.mark.parametrize("text", [
    "",
    "|nor_conv_3x3~0|",
    ALL_C3[:-1],
    ALL_C3 + "+|none~0|",
    ALL_C3.replace("nor_conv_3x3~1|+", "nor_conv_3x3~2|+", 1),
    ALL_C3.replace("|nor_conv_3x3~0|+", "|conv~0|+", 1),
    ALL_C3.replace("~0|+|", "-0|+|", 1),
    "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    " " + ALL_C3,
])
def test_malformed_strings_raise(space, text):
    with pytest.raises(SpaceError, match="NB201"):
        space.from_string(text)


def test_bad_values_raise(space):
    for bad in (-1, NUM_ARCHS, True, 1.0):
        with pytest.raises(SpaceError):
            space.from_index(bad)
    with pytest.raises(SpaceError):
        space.from_string(None)
    with pytest.raises(SpaceError):
        space.index({f: "nor_conv_5x5" for f, _, _ in EDGES})
    with pytest.raises(SpaceError):
        space.to_string({"edge_1_0": "none"})
    with pytest.raises(UserError):
        zoo.create_model("nb201", arch_str="|none~0|")


def test_cell_forms():
    ops = parse_arch_str(RESNET)
    genotype = ((("nor_conv_3x3", 0),), (("none", 0), ("nor_conv_3x3", 1)),
                (("skip_connect", 0), ("none", 1), ("skip_connect", 2)))
    reordered = (genotype[0], genotype[1][::-1], genotype[2][::-1])
    mapping = {f: op for (f, _, _), op in zip(EDGES, ops, strict=True)}
    for form in (RESNET, ops, list(ops), genotype, reordered, mapping):
        assert arch_ops(form) == ops
    for bad in ((("nor_conv_3x3", 0),), ops[:5], {"edge_1_0": "none"}, 3, (("a", "b"),) * 3):
        with pytest.raises(SpaceError):
            arch_ops(bad)


def nb201_params(text: str, C: int = 16, N: int = 5, num_classes: int = 10, in_chans: int = 3) -> int:
    """The reference network's parameter count, summed by hand from its modules."""
    per_op = {"none": lambda c: 0, "skip_connect": lambda c: 0, "avg_pool_3x3": lambda c: 0,
              "nor_conv_1x1": lambda c: c * c + 2 * c,  # ReLU, 1x1 conv (no bias), affine BN
              "nor_conv_3x3": lambda c: 9 * c * c + 2 * c}  # ReLU, 3x3 conv (no bias), affine BN

    def cell(c: int) -> int:
        return sum(per_op[op](c) for op in parse_arch_str(text))

    def reduction(ci: int, co: int) -> int:  # conv_a 3x3 + BN, conv_b 3x3 + BN, avg-pool + 1x1 conv shortcut
        return 9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co

    stem = 9 * in_chans * C + 2 * C
    head = 2 * 4 * C + 4 * C * num_classes + num_classes  # lastact BN, classifier
    return (stem + N * (cell(C) + cell(2 * C) + cell(4 * C)) + reduction(C, 2 * C) + reduction(2 * C, 4 * C)
            + head)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("text", [ALL_NONE, ALL_SKIP, ALL_POOL, ALL_C1, ALL_C3, BEST_CIFAR10, BEST_CIFAR100, RESNET,
                                  REFERENCE_INDICES[0]])
def test_parameter_count_matches_the_formula(text):
    assert n_params(zoo.create_model("nb201", arch_str=text)) == nb201_params(text)


def test_parameter_counts_of_other_sizes():
    assert n_params(TinyNetwork(8, 1, BEST_CIFAR10, 7, in_chans=1)) == nb201_params(BEST_CIFAR10, 8, 1, 7, 1)
    assert n_params(zoo.create_model("nb201", arch_str=ALL_C1, C=12, N=2, num_classes=100)) == nb201_params(
        ALL_C1, 12, 2, 100)


def test_published_extremes():
    """The NB201 API's smallest and largest CIFAR-10 / CIFAR-100 networks: 0.073306 / 1.531546 MB and
    0.079156 / 1.537396 MB of parameters."""
    assert nb201_params(ALL_NONE) == n_params(zoo.create_model("nb201", arch_str=ALL_NONE)) == 73_306
    assert n_params(zoo.create_model("nb201", arch_str=ALL_C3)) == 1_531_546
    assert n_params(zoo.create_model("nb201", arch_str=ALL_SKIP, num_classes=100)) == 79_156
    assert n_params(zoo.create_model("nb201", arch_str=ALL_C3, num_classes=100)) == 1_537_396


def test_forward_shape_and_structure(space):
    torch.manual_seed(0)
    model = zoo.create_model("nb201")
    assert model.arch_str == BEST_CIFAR10
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    keys = set(model.state_dict())  # the reference's module names
    assert {"stem.0.weight", "cells.0.layers.0.op.1.weight", "cells.5.conv_a.op.1.weight",
            "cells.5.downsample.1.weight", "lastact.0.weight", "classifier.weight"} <= keys
    assert len(model.cells) == 17
    built = space.build(space.from_string(RESNET))
    assert built.arch_str == RESNET and n_params(built) == nb201_params(RESNET)
    gray = create_space("nb201", input_shape=(1, 16, 16), num_classes=3, C=8, N=1)
    assert gray.build(gray.sample(seed=0))(torch.randn(2, 1, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize("text", [ALL_NONE, "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|none~2|"])
def test_a_blocked_cell_ignores_its_input(text):
    torch.manual_seed(0)
    model = zoo.create_model("nb201", arch_str=text, C=8, N=2)
    x, y = torch.randn(2, 3, 32, 32), 5 * torch.randn(2, 3, 32, 32)
    for mode in (True, False):
        model.train(mode)
        with torch.no_grad():
            assert torch.equal(model(x), model(y))
    other = zoo.create_model("nb201", arch_str=ALL_SKIP, C=8, N=2).eval()
    with torch.no_grad():
        assert not torch.equal(other(x), other(y))


def test_operations():
    x = torch.randn(2, 4, 9, 9)
    assert set(OPS) == set(OPERATIONS)
    assert OPS["skip_connect"](4, 4, 1, True, True)(x) is x
    assert isinstance(OPS["skip_connect"](4, 8, 2, True, True), FactorizedReduce)
    assert OPS["skip_connect"](4, 8, 2, True, True)(x).shape == (2, 8, 5, 5)
    assert torch.equal(Zero(4, 4, 1)(x), torch.zeros_like(x))
    assert Zero(4, 4, 2)(x).shape == (2, 4, 5, 5)
    assert Zero(4, 6, 2)(x).shape == (2, 6, 5, 5)
    pool = OPS["avg_pool_3x3"](4, 4, 1, True, True)
    assert isinstance(pool, Pooling) and pool.preprocess is None and n_params(pool) == 0
    assert pool(x).shape == x.shape
    assert n_params(OPS["avg_pool_3x3"](4, 8, 1, True, True)) == 4 * 8 + 2 * 8
    for name, k in (("nor_conv_1x1", 1), ("nor_conv_3x3", 3)):
        op = OPS[name](4, 4, 1, True, True)
        assert op(x).shape == x.shape and n_params(op) == k * k * 16 + 8

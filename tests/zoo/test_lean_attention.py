"""Lean Attention: any uneven split of the KV cache, and the stream-K work partition, give full softmax
attention; merge is associative and commutative with the empty range as identity; the partition gives equal work
that crosses head boundaries and covers every key once; bad splits are reported."""

from __future__ import annotations

import random

import pytest
import torch

from archlab.errors import UserError
from archlab.zoo.layers.lean_attention import (
    Partial,
    empty_partial,
    finalize,
    lean_attention,
    lean_decode,
    merge,
    partial_attention,
    partition_work,
)


def _qkv(batch: int = 2, heads: int = 3, n: int = 97, d: int = 16, dv: int = 12, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, d, generator=gen, dtype=torch.float64) * 2  # peaked softmax
    k = torch.randn(batch, heads, n, d, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, heads, n, dv, generator=gen, dtype=torch.float64)
    return q, k, v


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    scores = (k @ q.unsqueeze(-1)).squeeze(-1) / q.shape[-1] ** 0.5
    return (scores.softmax(-1).unsqueeze(-2) @ v).squeeze(-2)


def test_reference_equals_torch_sdpa() -> None:
    q, k, v = _qkv()
    sdpa = torch.nn.functional.scaled_dot_product_attention(q.unsqueeze(-2), k, v).squeeze(-2)
    torch.testing.assert_close(_reference(q, k, v), sdpa, rtol=0, atol=1e-12)


def test_random_uneven_splits_equal_full_attention() -> None:
    q, k, v = _qkv()
    expected = _reference(q, k, v)
    rng = random.Random(0)
    for _ in range(20):
        n_splits = rng.randint(0, 20)
        splits = sorted(rng.sample(range(1, 97), n_splits))
        torch.testing.assert_close(lean_attention(q, k, v, splits), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(lean_attention(q, k, v, list(range(1, 97))), expected, rtol=0, atol=1e-6)


def test_partials_merged_in_any_order_and_grouping() -> None:
    q, k, v = _qkv()
    expected = _reference(q, k, v)
    bounds = [0, 3, 4, 40, 41, 90, 97]
    parts = [partial_attention(q, k[..., a:b, :], v[..., a:b, :]) for a, b in zip(bounds, bounds[1:], strict=False)]
    rng = random.Random(1)
    for _ in range(10):
        order = parts[:]
        rng.shuffle(order)
        while len(order) > 1:  # merge random neighbours: a random tree
            i = rng.randrange(len(order) - 1)
            order[i:i + 2] = [merge(order[i], order[i + 1])]
        torch.testing.assert_close(finalize(order[0]), expected, rtol=0, atol=1e-6)


def _random_partial(gen: torch.Generator, shape=(5, 4), dv: int = 7) -> Partial:
    m = torch.randn(shape, generator=gen, dtype=torch.float64) * 5
    l = torch.rand(shape, generator=gen, dtype=torch.float64) * 10 + 0.1  # noqa: E741
    o = torch.randn(*shape, dv, generator=gen, dtype=torch.float64)
    return Partial(m, l, o)


def _assert_partials_close(a: Partial, b: Partial) -> None:
    assert torch.equal(a.m, b.m)
    torch.testing.assert_close(a.l, b.l, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.o, b.o, rtol=1e-12, atol=1e-12)


def test_merge_is_associative_and_commutative_with_identity() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b, c = (_random_partial(gen) for _ in range(3))
        _assert_partials_close(merge(merge(a, b), c), merge(a, merge(b, c)))
        _assert_partials_close(merge(a, b), merge(b, a))
        empty = empty_partial((5, 4), 7, dtype=torch.float64)
        _assert_partials_close(merge(a, empty), a)
        _assert_partials_close(merge(empty, a), a)
    both_empty = merge(empty, empty)
    assert torch.isneginf(both_empty.m).all() and not both_empty.l.any() and not both_empty.o.isnan().any()


def test_merge_equals_partial_of_the_union() -> None:
    q, k, v = _qkv(n=30)
    whole = partial_attention(q, k, v)
    merged = merge(partial_attention(q, k[..., :11, :], v[..., :11, :]),
                   partial_attention(q, k[..., 11:, :], v[..., 11:, :]))
    _assert_partials_close(merged, whole)


@pytest.mark.parametrize("heads, n, units, tile", [(6, 100, 4, 1), (3, 97, 8, 8), (5, 33, 7, 4), (1, 10, 3, 1),
                                                   (12, 64, 5, 16)])
def test_partition_is_equal_work_covering_every_key_once(heads: int, n: int, units: int, tile: int) -> None:
    parts = partition_work(heads, n, units, tile)
    assert [u.index for u in parts] == list(range(units))
    covered = torch.zeros(heads, n, dtype=torch.long)
    tiles = []
    for unit in parts:
        n_tiles = 0
        for head, lo, hi in unit.segments:
            assert 0 <= lo < hi <= n and lo % tile == 0
            covered[head, lo:hi] += 1
            n_tiles += -(-(hi - lo) // tile)
        tiles.append(n_tiles)
        heads_of_unit = [s.head for s in unit.segments]
        assert heads_of_unit == sorted(set(heads_of_unit))
    assert torch.equal(covered, torch.ones_like(covered))
    assert max(tiles) - min(tiles) <= 1 and sum(tiles) == heads * -(-n // tile)


def test_partition_crosses_head_boundaries() -> None:
    # 3 heads of 10 tiles over 4 units: 7 or 8 tiles each, so unit 1 ends head 0 and starts head 1
    parts = partition_work(3, 10, 4)
    assert [u.work for u in parts] == [7, 8, 7, 8]
    assert parts[1].segments == ((0, 7, 10), (1, 0, 5))
    assert parts[3].segments == ((2, 2, 10),)


@pytest.mark.parametrize("units, tile", [(1, 1), (4, 1), (5, 8), (13, 4), (6 * 97, 1)])
def test_lean_decode_equals_full_attention(units: int, tile: int) -> None:
    q, k, v = _qkv()
    torch.testing.assert_close(lean_decode(q, k, v, units, tile), _reference(q, k, v), rtol=0, atol=1e-6)


def test_float32_close_to_float64() -> None:
    q, k, v = _qkv()
    out = lean_attention(q.float(), k.float(), v.float(), [5, 50, 51])
    torch.testing.assert_close(out.double(), _reference(q, k, v), rtol=0, atol=1e-4)


def test_invalid_splits_and_shapes_are_user_errors() -> None:
    q, k, v = _qkv(n=10)
    for bad in ([0], [10], [3, 3], [5, 2], [11], [-1]):
        with pytest.raises(UserError, match="split points"):
            lean_attention(q, k, v, bad)
    with pytest.raises(UserError, match="expected q"):
        lean_attention(q, k[..., :8], v)
    with pytest.raises(UserError, match="empty"):
        lean_attention(q, k[..., :0, :], v[..., :0, :])
    with pytest.raises(UserError, match="at least one tile"):
        partition_work(2, 3, 7)
    with pytest.raises(UserError, match="n_units"):
        partition_work(2, 3, 0)

"""Generated sequence tasks: every label re-derived from its input, determinism, disjoint splits, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.data import Dataset, list_datasets, load_dataset
from archlab.data.synthetic import (
    LISTOPS_TOKENS,
    associative_recall,
    evaluate_listops,
    listops,
    listops_to_text,
    multiquery_recall_batch,
    selective_copying,
    selective_copying_batch,
)
from archlab.errors import DataError

SMALL = {"n_train": 300, "n_val": 60, "n_test": 60}


def splits(data: Dataset):
    return [(data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)]


def rows(x: torch.Tensor) -> list[bytes]:
    return [r.tobytes() for r in x.numpy()]


def assert_identical(a: Dataset, b: Dataset) -> None:
    for (xa, ya), (xb, yb) in zip(splits(a), splits(b), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def assert_disjoint(data: Dataset) -> None:
    keys = [rows(x) for x, _ in splits(data)]
    assert all(len(set(k)) == len(k) for k in keys), "an example is repeated within a split"
    train, val, test = (set(k) for k in keys)
    assert not train & val and not train & test and not val & test


def assert_in_bounds(data: Dataset) -> None:
    for x, y in splits(data):
        assert x.dtype == torch.int64 and y.dtype == torch.int64
        assert 0 <= int(x.min()) and int(x.max()) < data.vocab_size
        assert 0 <= int(y.min()) and int(y.max()) < data.num_classes


@pytest.fixture(scope="module")
def copying() -> Dataset:
    return selective_copying(length=64, n_memorize=8, vocab=10, seed=3, **SMALL)


@pytest.fixture(scope="module")
def recall() -> Dataset:
    return associative_recall(length=48, n_pairs=6, vocab=40, seed=3, **SMALL)


@pytest.fixture(scope="module")
def ops() -> Dataset:
    return listops(max_depth=5, max_length=64, max_args=4, min_length=8, seed=3, **SMALL)


# --------------------------------------------------------------------------------------------- selective copying


def test_selective_copying_labels_rederived_from_inputs(copying: Dataset) -> None:
    vocab, m = 10, 8
    assert copying.vocab_size == vocab + m and copying.input_shape == (64,)
    assert copying.classes == tuple(str(t) for t in range(1, vocab - 1))
    for x, y in splits(copying):
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            context, query = row[:-1], row[-1]
            memorised = [t for t in context if t != 0]
            assert len(memorised) == m and all(1 <= t <= vocab - 2 for t in memorised)
            k = query - vocab
            assert 0 <= k < m
            assert copying.classes[label] == str(memorised[k])
    # every query index and every memorisable token occurs: the task is not degenerate
    assert set((copying.x_train[:, -1] - vocab).tolist()) == set(range(m))
    assert set(copying.y_train.tolist()) == set(range(vocab - 2))


def test_selective_copying_batch_is_the_s4_layout() -> None:
    length, m, vocab = 40, 6, 12
    x, y = selective_copying_batch(50, length=length, n_memorize=m, vocab=vocab, seed=1)
    assert x.shape == (50, length) and y.shape == (50, m) and x.dtype == y.dtype == torch.int64
    assert torch.all(x[:, length - m :] == vocab - 1)  # the markers
    context = x[:, : length - m]
    assert torch.all((context == 0) | ((context >= 1) & (context <= vocab - 2)))
    for row, target in zip(context.tolist(), y.tolist(), strict=True):
        assert [t for t in row if t != 0] == target  # the memorised tokens, in order of appearance
    again, _ = selective_copying_batch(50, length=length, n_memorize=m, vocab=vocab, seed=1)
    other, _ = selective_copying_batch(50, length=length, n_memorize=m, vocab=vocab, seed=2)
    assert torch.equal(x, again) and not torch.equal(x, other)
    # the scattered positions differ between examples (variable=True), not always the first m places
    assert len({tuple((r != 0).nonzero().flatten().tolist()) for r in context}) > 40


# -------------------------------------------------------------------------------------------- associative recall


def test_associative_recall_labels_rederived_from_inputs(recall: Dataset) -> None:
    vocab, p = 40, 6
    half = vocab // 2
    assert recall.vocab_size == vocab and recall.num_classes == vocab - half
    for x, y in splits(recall):
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            keys, values = row[0 : 2 * p : 2], row[1 : 2 * p : 2]
            assert len(set(keys)) == p and all(1 <= k < half for k in keys)
            assert len(set(values)) == p and all(half <= v < vocab for v in values)
            query = row[-1]
            assert keys.count(query) == 1
            assert not set(row[2 * p : -1]) & set(keys)  # the query key occurs only in its pair and at the end
            assert recall.classes[label] == str(values[keys.index(query)])


def test_associative_recall_filler() -> None:
    noise = associative_recall(length=30, n_pairs=4, vocab=24, random_filler=False, seed=0, **SMALL)
    assert torch.all(noise.x_train[:, 8:-1] == 0)
    filled = associative_recall(length=30, n_pairs=4, vocab=24, seed=0, **SMALL)
    counts = np.zeros(24)
    expected = np.zeros(24)
    for row in filled.x_train.tolist():
        keys, filler = set(row[0:8:2]), row[8:-1]
        assert not set(filler) & keys
        counts += np.bincount(filler, minlength=24)
        # uniform over the 20 tokens that are not this row's keys (noise and values included)
        expected += np.array([0.0 if t in keys else len(filler) / 20 for t in range(24)])
    assert np.all(np.abs(counts - expected) < 0.2 * expected)


# ------------------------------------------------------------------------------------------------------ ListOps


def test_multiquery_recall_batch_answers_rederived_from_inputs() -> None:
    length, pairs, vocab = 40, 5, 24
    x, y = multiquery_recall_batch(30, length=length, n_pairs=pairs, vocab=vocab, seed=4)
    assert x.shape == y.shape == (30, length) and x.dtype == y.dtype == torch.int64
    half = vocab // 2
    for row, target in zip(x.tolist(), y.tolist(), strict=True):
        keys, values = row[0:2 * pairs:2], row[1:2 * pairs:2]
        assert len(set(keys)) == pairs and all(1 <= k < half for k in keys)
        assert len(set(values)) == pairs and all(half <= v < vocab for v in values)
        table = dict(zip(keys, values, strict=True))
        asked = [p for p, t in enumerate(target) if t != -100]
        # every key asked once, after the pairs, answered by its own value, which the next input repeats
        assert sorted(row[p] for p in asked) == sorted(keys)
        assert all(p >= 2 * pairs and (p - 2 * pairs) % 2 == 0 for p in asked)
        assert all(target[p] == table[row[p]] == row[p + 1] for p in asked)
        # the query region holds nothing but the asked pairs and noise
        answered = {p for p in asked} | {p + 1 for p in asked}
        assert all(row[p] == 0 for p in range(2 * pairs, length) if p not in answered)
    # deterministic under the seed; a Generator continues its stream
    x2, y2 = multiquery_recall_batch(30, length=length, n_pairs=pairs, vocab=vocab, seed=4)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    rng = np.random.default_rng(4)
    a, _ = multiquery_recall_batch(5, length=length, n_pairs=pairs, vocab=vocab, seed=rng)
    b, _ = multiquery_recall_batch(5, length=length, n_pairs=pairs, vocab=vocab, seed=rng)
    assert not torch.equal(a, b)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_pairs": 12, "vocab": 24}, "exceeds the 11 distinct keys"),
    ({"n_pairs": 5, "length": 19}, "need length >= 20"),
    ({"n_pairs": 0}, "n_pairs must be an integer >= 1"),
])
def test_multiquery_recall_batch_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        multiquery_recall_batch(4, **kwargs)


def test_evaluate_listops_by_hand() -> None:
    ids = {t: i for i, t in enumerate(LISTOPS_TOKENS)}

    def enc(text: str) -> list[int]:
        return [ids[t] for t in text.split()]

    # the example of the LRA paper, and one of each operator worked out by hand
    assert evaluate_listops(enc("[MAX 2 9 [MIN 4 7 ] 0 ]")) == 9
    assert evaluate_listops(enc("[SM 3 8 9 ]")) == 0  # 20 % 10
    assert evaluate_listops(enc("[MED 1 2 3 4 ]")) == 2  # median 2.5, truncated
    assert evaluate_listops(enc("[MED 7 1 5 ]")) == 5
    assert evaluate_listops(enc("[MIN [SM 9 9 ] [MAX 1 3 ] ]")) == 3  # min(8, 3)
    assert evaluate_listops([0, 0] + enc("[MAX 4 6 ]") + [0]) == 6  # padding is ignored
    assert listops_to_text([0] + enc("[MAX 2 9 ]")) == "[MAX 2 9 ]"
    for bad in ("[MAX 2 9", "[MAX ]", "2 ]", "[MAX 1 2 ] 3"):
        with pytest.raises(DataError):
            evaluate_listops(enc(bad))
    with pytest.raises(DataError):
        evaluate_listops([99])


def test_listops_labels_rederived_and_padding(ops: Dataset) -> None:
    assert ops.vocab_size == len(LISTOPS_TOKENS) and ops.classes == tuple(str(d) for d in range(10))
    for x, y in splits(ops):
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            assert evaluate_listops(row) == label
            n = sum(t != 0 for t in row)
            assert 8 <= n <= 64
            assert all(t == 0 for t in row[: 64 - n]) and all(t != 0 for t in row[64 - n :])  # left padding
    assert len(set(ops.y_train.tolist())) == 10
    right = listops(max_depth=5, max_length=64, max_args=4, min_length=8, padding="right", seed=3, **SMALL)
    for row in right.x_train.tolist():
        n = sum(t != 0 for t in row)
        assert all(t != 0 for t in row[:n]) and all(t == 0 for t in row[n:])
    # the same expressions, only moved
    assert [listops_to_text(r) for r in right.x_train] == [listops_to_text(r) for r in ops.x_train]


# ------------------------------------------------------------------------------------------------------- common


@pytest.mark.parametrize("fixture", ["copying", "recall", "ops"])
def test_bounds_disjoint_and_sizes(fixture: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(fixture)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (300, 60, 60)
    assert data.mean == () and data.std == () and data.input_dtype == "long"
    assert_in_bounds(data)
    assert_disjoint(data)


@pytest.mark.parametrize("make", [
    lambda **kw: selective_copying(length=64, n_memorize=8, vocab=10, **kw),
    lambda **kw: associative_recall(length=48, n_pairs=6, vocab=40, **kw),
    lambda **kw: listops(max_depth=5, max_length=64, max_args=4, min_length=8, **kw),
], ids=["copying", "recall", "listops"])
def test_seed_determinism_and_split_streams(make) -> None:
    a = make(seed=7, **SMALL)
    assert_identical(a, make(seed=7, **SMALL))
    b = make(seed=8, **SMALL)
    assert not torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_test, b.x_test)
    # validation and test come from their own streams: a larger training split leaves them unchanged
    c = make(seed=7, n_train=500, n_val=60, n_test=60)
    assert torch.equal(a.x_val, c.x_val) and torch.equal(a.x_test, c.x_test)
    assert torch.equal(a.x_train, c.x_train[:300])


def test_too_small_task_cannot_fill_distinct_splits() -> None:
    # 2 keys x 3 values x query choice: at most a dozen distinct inputs exist
    with pytest.raises(DataError, match="distinct"):
        associative_recall(length=3, n_pairs=1, vocab=6, n_train=20, n_val=2, n_test=2)


@pytest.mark.parametrize("call", [
    lambda: selective_copying(length=10, n_memorize=12),            # n_memorize > length
    lambda: selective_copying(length=16, n_memorize=16),            # no room for the query token
    lambda: selective_copying_batch(4, length=20, n_memorize=11),   # markers + context exceed length
    lambda: selective_copying(vocab=3),                             # no two memorisable tokens
    lambda: selective_copying(n_memorize=0),
    lambda: selective_copying(n_train=0),
    lambda: associative_recall(n_pairs=40, vocab=64),               # only 31 distinct keys
    lambda: associative_recall(length=16, n_pairs=8),               # pairs + query exceed length
    lambda: associative_recall(vocab=5),
    lambda: listops(min_length=100, max_length=50),
    lambda: listops(max_depth=2, max_args=2, min_length=10),        # deepest tree has 4 tokens
    lambda: listops(padding="middle"),
    lambda: listops(max_depth=1.5),
])
def test_bad_parameters_raise(call) -> None:
    with pytest.raises(DataError):
        call()


def test_builtin_names() -> None:
    assert {"selective-copying", "associative-recall", "listops"} <= set(list_datasets())
    data = load_dataset("selective-copying", seed=0)
    assert data.input_shape == (256,) and data.vocab_size == 16 + 16 and data.name == "selective-copying"
    assert len(data.y_train) >= 1000
    assert_identical(data, selective_copying(seed=0))
    recall = load_dataset("associative_recall", seed=1)
    assert recall.input_shape == (256,) and recall.vocab_size == 64
    with pytest.raises(DataError, match="fixed split sizes"):
        load_dataset("listops", val_fraction=0.1)
    assert np.isin(recall.x_train[:, -1].numpy(), recall.x_train[:, 0:16:2].numpy()).all()

"""Generated sequence tasks with fixed seeds: selective copying, associative recall and ListOps.

Every task returns a :class:`~archlab.data.Dataset` of int64 token ids ``(N, L)`` with ``vocab_size`` set and
one class label per example, so that any sequence classifier can be trained and compared on it:

- :func:`selective_copying` — Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
  COLM 2024, §4.1.1. The token layout follows ``torch_copying_data(L, M, A, variable=True)`` in
  state-spaces/s4 ``src/dataloaders/datasets/copying.py``: token 0 is noise, ``1 .. A-2`` are the tokens to
  memorise, ``A-1`` is the marker. The raw sequence-output form is :func:`selective_copying_batch`.
- :func:`associative_recall` — the single-query form of multi-query associative recall (Arora, Eyuboglu et
  al., "Zoology: Measuring and Improving Recall in Efficient Language Models", ICLR 2024; keys from the lower
  half of the vocabulary and values from the upper half as in HazyResearch/zoology
  ``zoology/data/multiquery_ar.py``), which is also the induction-head task of Fu, Dao et al., "Hungry Hungry
  Hippos", ICLR 2023. Its multi-query sequence-output form, Zoology's MQAR, is :func:`multiquery_recall_batch`.
- :func:`listops` — Nangia & Bowman, "ListOps: A Diagnostic Dataset for Latent Tree Learning", NAACL SRW
  2018, as generated for Tay et al., "Long Range Arena", ICLR 2021 (google-research/long-range-arena
  ``lra_benchmarks/data/listops.py``: operators ``[MIN [MAX [MED [SM``, ``VALUE_P = 0.25``, 2 to
  ``max_args`` arguments, the median truncated to an integer, the sum taken modulo 10).

Splits. Each split comes from its own random stream (``numpy.random.SeedSequence(seed, spawn_key=(split,))``),
test first, then validation, then training; an example already drawn for an earlier split (or earlier in the
same split) is drawn again, so the three splits never share an example and the validation and test sets do
not change when ``n_train`` does (a larger ``n_train`` extends the smaller training split: examples are drawn in
fixed chunks of 256). The same arguments always give identical tensors.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch

from archlab.data._dataset import Dataset
from archlab.data._registry import register_dataset
from archlab.errors import DataError

__all__ = [
    "LISTOPS_TOKENS",
    "associative_recall",
    "evaluate_listops",
    "listops",
    "listops_to_text",
    "multiquery_recall_batch",
    "selective_copying",
    "selective_copying_batch",
]

_SPLITS = ("train", "val", "test")
_CHUNK = 256  # examples drawn at a time
# A generator of a batch of examples: (n, rng) -> (x (n, L) int64, y (n,) int64).
_Maker = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _check_int(task: str, name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{task}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _split_rng(seed: int, split: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(split,)))


def _distinct_splits(
    task: str, make: _Maker, sizes: dict[str, int], seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Draw each split from its own stream, dropping any example already drawn (test, then val, then train)."""
    seen: set[bytes] = set()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for index in (2, 1, 0):
        split = _SPLITS[index]
        want, rng = sizes[split], _split_rng(seed, index)
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        have = 0
        # give up once a whole chunk adds nothing new: the task has (almost) no unseen examples left
        while have < want:
            # fixed-size chunks: a split's first examples do not depend on how many are asked for
            x, y = make(_CHUNK, rng)
            keep = []
            for i, row in enumerate(x):
                key = row.tobytes()
                if key not in seen:
                    seen.add(key)
                    keep.append(i)
                    if have + len(keep) == want:
                        break
            if not keep:
                break
            xs.append(x[keep])
            ys.append(y[keep])
            have += len(keep)
        if have < want:
            raise DataError(f"{task}: could not draw {sum(sizes.values())} distinct examples "
                            "(the task is too small for the split sizes: lengthen it or ask for fewer)")
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    return out


def _token_dataset(
    name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[str], vocab_size: int
) -> Dataset:
    tensors = {}
    for split, (x, y) in splits.items():
        tensors[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
        tensors[f"y_{split}"] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return Dataset(name=name, classes=tuple(classes), mean=(), std=(), vocab_size=vocab_size, **tensors)


def _sizes(task: str, n_train: int, n_val: int, n_test: int) -> dict[str, int]:
    return {"train": _check_int(task, "n_train", n_train, 1), "val": _check_int(task, "n_val", n_val, 1),
            "test": _check_int(task, "n_test", n_test, 1)}


# ------------------------------------------------------------------------------------------- selective copying


def _check_copying(task: str, length: int, n_memorize: int, vocab: int, context: int) -> None:
    _check_int(task, "n_memorize", n_memorize, 1)
    # noise (0), at least two memorisable tokens (else nothing to classify), the marker (vocab - 1)
    _check_int(task, "vocab", vocab, 4)
    _check_int(task, "length", length, 2)
    if n_memorize > context:
        raise DataError(f"{task}: n_memorize ({n_memorize}) must fit in the {context} context positions "
                        f"that length={length} leaves")


def _scatter(n: int, context: int, n_memorize: int, vocab: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``context`` noise tokens with ``n_memorize`` tokens in ``1..vocab-2`` at random places."""
    tokens = rng.integers(1, vocab - 1, size=(n, n_memorize))
    # the first n_memorize entries of a random permutation, sorted: distinct positions in increasing order
    places = np.sort(np.argsort(rng.random((n, context)), axis=1)[:, :n_memorize], axis=1)
    region = np.zeros((n, context), dtype=np.int64)
    np.put_along_axis(region, places, tokens, axis=1)
    return region, tokens


def selective_copying_batch(
    n: int, *, length: int = 256, n_memorize: int = 16, vocab: int = 16, seed: int | np.random.Generator = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` raw selective-copying examples for sequence-output training: ``(x (n, length), y (n, n_memorize))``.

    ``x`` is ``length - n_memorize`` context tokens — noise ``0`` with ``n_memorize`` tokens drawn uniformly from
    ``1 .. vocab-2`` at distinct random positions — followed by ``n_memorize`` marker tokens ``vocab - 1``;
    ``y`` is the memorised tokens in order of appearance (the model is meant to emit ``y[:, k]`` at marker
    ``k``). This is s4's ``torch_copying_data(L=length - 2 * n_memorize, M=n_memorize, A=vocab,
    variable=True)``; token ids lie in ``[0, vocab)``. ``seed`` is an int or a ``numpy.random.Generator``.
    """
    task = "selective_copying_batch"
    _check_int(task, "n", n, 1)
    _check_copying(task, length, n_memorize, vocab, length - n_memorize)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    region, tokens = _scatter(n, length - n_memorize, n_memorize, vocab, rng)
    x = np.concatenate([region, np.full((n, n_memorize), vocab - 1, dtype=np.int64)], axis=1)
    return torch.from_numpy(x), torch.from_numpy(tokens.astype(np.int64))


@register_dataset("selective-copying", kind="fixed")
def selective_copying(
    length: int = 256,
    n_memorize: int = 16,
    vocab: int = 16,
    *,
    n_train: int = 4000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Dataset:
    """Selective copying as classification of one queried position (built-in name ``selective-copying``).

    Each input has ``length`` tokens: ``length - 1`` context tokens laid out as in
    :func:`selective_copying_batch` (noise ``0``, ``n_memorize`` tokens from ``1 .. vocab-2`` at random
    positions), then one query token ``vocab + k`` asking for the k-th memorised token (``k`` uniform in
    ``0 .. n_memorize-1``). The label is that token's index among the memorisable tokens, ``token - 1``
    (``classes[label]`` is the token id as a string). ``vocab_size`` is ``vocab + n_memorize``: the query
    tokens extend the task's vocabulary, the marker ``vocab - 1`` is not used by this form.
    """
    task = "selective_copying"
    sizes = _sizes(task, n_train, n_val, n_test)
    _check_copying(task, length, n_memorize, vocab, length - 1)

    def make(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        region, tokens = _scatter(n, length - 1, n_memorize, vocab, rng)
        k = rng.integers(0, n_memorize, size=n)
        x = np.concatenate([region, (vocab + k)[:, None]], axis=1)
        return x, tokens[np.arange(n), k] - 1

    splits = _distinct_splits(task, make, sizes, seed)
    classes = [str(t) for t in range(1, vocab - 1)]
    return _token_dataset("selective-copying", splits, classes, vocab + n_memorize)


# ------------------------------------------------------------------------------------------- associative recall


def _check_pairs(task: str, n_pairs: int, vocab: int) -> int:
    """Check a recall task's pair count against its vocabulary; return ``vocab // 2`` (the first value id)."""
    _check_int(task, "n_pairs", n_pairs, 1)
    _check_int(task, "vocab", vocab, 6)
    half = vocab // 2
    if n_pairs > half - 1:
        raise DataError(f"{task}: n_pairs ({n_pairs}) exceeds the {half - 1} distinct keys that vocab={vocab} "
                        f"offers (keys are 1..{half - 1})")
    return half


def _draw_pairs(n: int, n_pairs: int, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``n_pairs`` distinct keys from ``1 .. vocab//2 - 1`` and distinct values from ``vocab//2 ..
    vocab-1`` (Zoology's split of the vocabulary)."""
    half = vocab // 2
    keys = 1 + np.argsort(rng.random((n, half - 1)), axis=1)[:, :n_pairs]
    values = half + np.argsort(rng.random((n, vocab - half)), axis=1)[:, :n_pairs]
    return keys, values


@register_dataset("associative-recall", kind="fixed")
def associative_recall(
    length: int = 256,
    n_pairs: int = 8,
    vocab: int = 64,
    *,
    random_filler: bool = True,
    n_train: int = 4000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Dataset:
    """Associative recall (induction heads) with one query (built-in name ``associative-recall``).

    Each input has ``length`` tokens: ``n_pairs`` key-value pairs ``k_1 v_1 .. k_P v_P`` (distinct keys from
    ``1 .. vocab//2 - 1``, distinct values from ``vocab//2 .. vocab-1``, as in Zoology), then filler, then one
    query key ``k_i`` (chosen uniformly) in the last position. The label is the index of its value ``v_i``
    among the values, ``v_i - vocab // 2`` (``classes[label]`` is the value's token id as a string).

    Filler is noise ``0`` when ``random_filler`` is false. When true (Zoology's ``random_non_queries``) it is
    drawn uniformly from the vocabulary *minus this example's keys* — a departure from Zoology, which draws
    from the whole vocabulary: here the query key occurs exactly twice, so the label is always well defined.
    """
    task = "associative_recall"
    sizes = _sizes(task, n_train, n_val, n_test)
    half = _check_pairs(task, n_pairs, vocab)
    _check_int(task, "length", length, 3)
    if 2 * n_pairs + 1 > length:
        raise DataError(f"{task}: {n_pairs} pairs and a query need length >= {2 * n_pairs + 1}, got {length}")

    def make(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        keys, values = _draw_pairs(n, n_pairs, vocab, rng)
        which = rng.integers(0, n_pairs, size=n)
        filler_len = length - 2 * n_pairs - 1
        if random_filler:
            # uniform over the vocab - n_pairs tokens that are not keys: draw an index among them, then step
            # it past each excluded key in increasing order
            filler = rng.integers(0, vocab - n_pairs, size=(n, filler_len))
            for key in np.sort(keys, axis=1).T:
                filler += filler >= key[:, None]
        else:
            filler = np.zeros((n, filler_len), dtype=np.int64)
        x = np.empty((n, length), dtype=np.int64)
        x[:, 0 : 2 * n_pairs : 2] = keys
        x[:, 1 : 2 * n_pairs : 2] = values
        x[:, 2 * n_pairs : length - 1] = filler
        rows = np.arange(n)
        x[:, -1] = keys[rows, which]
        return x, values[rows, which] - half

    splits = _distinct_splits(task, make, sizes, seed)
    return _token_dataset("associative-recall", splits, [str(v) for v in range(half, vocab)], vocab)


def multiquery_recall_batch(
    n: int, *, length: int = 256, n_pairs: int = 16, vocab: int = 64, seed: int | np.random.Generator = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` multi-query associative recall examples (Zoology's MQAR) for sequence-output training: ``(x, y)``.

    ``x`` ``(n, length)``: ``n_pairs`` key-value pairs ``k_1 v_1 .. k_P v_P`` (distinct keys from
    ``1 .. vocab//2 - 1``, distinct values from ``vocab//2 .. vocab-1``), then a query region of noise ``0`` in
    which every key is asked once, in random order, at a random even offset ``p`` after the pairs: ``x[p]`` is
    the key and, as in Zoology's ``multiquery_ar`` (the LM view: the answer is the next token), ``x[p + 1]`` is
    its value. ``y`` ``(n, length)`` is ``-100`` (ignored) except ``y[p] = v``: the model must emit the value
    where the key is asked, having seen the pair once, up to ``length`` tokens earlier. Chance is
    ``1 / (vocab - vocab // 2)``. ``seed`` is an int or a ``numpy.random.Generator``.
    """
    task = "multiquery_recall_batch"
    _check_int(task, "n", n, 1)
    _check_pairs(task, n_pairs, vocab)
    _check_int(task, "length", length, 4)
    slots = (length - 2 * n_pairs) // 2  # query slots: even offsets after the pairs, room for the key and value
    if slots < n_pairs:
        raise DataError(f"{task}: {n_pairs} pairs and {n_pairs} queries need length >= {4 * n_pairs}, got {length}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    keys, values = _draw_pairs(n, n_pairs, vocab, rng)
    x = np.zeros((n, length), dtype=np.int64)
    y = np.full((n, length), -100, dtype=np.int64)
    x[:, 0 : 2 * n_pairs : 2] = keys
    x[:, 1 : 2 * n_pairs : 2] = values
    where = 2 * n_pairs + 2 * np.argsort(rng.random((n, slots)), axis=1)[:, :n_pairs]  # distinct query slots
    order = np.argsort(rng.random((n, n_pairs)), axis=1)  # which pair each slot asks for
    rows = np.arange(n)[:, None]
    asked_keys, asked_values = keys[rows, order], values[rows, order]
    x[rows, where] = asked_keys
    x[rows, where + 1] = asked_values
    y[rows, where] = asked_values
    return torch.from_numpy(x), torch.from_numpy(y)


# ------------------------------------------------------------------------------------------------------ ListOps

# Token ids: 0 is padding, 1..10 the digits 0..9, then the closing bracket and the four operators.
LISTOPS_TOKENS = ("<pad>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "]", "[MIN", "[MAX", "[MED", "[SM")
_PAD, _CLOSE = 0, 11
_OPERATORS = (12, 13, 14, 15)
_VALUE_P = 0.25  # the probability that a node above max_depth is a leaf (LRA's VALUE_P)


def _reduce(op: int, args: list[int]) -> int:
    if op == 12:
        return min(args)
    if op == 13:
        return max(args)
    if op == 14:
        # LRA: int(np.median(args)); the values are non-negative, so int() is floor
        return int(np.median(args))
    return sum(args) % 10


def _listops_tree(rng: random.Random, depth: int, max_depth: int, max_args: int,
                  out: list[int], budget: int) -> int:
    """Append one random subtree's tokens to ``out`` and return its value (stops early past ``budget``)."""
    if depth >= max_depth or rng.random() > _VALUE_P:
        value = rng.randrange(10)
        out.append(1 + value)
        return value
    op = _OPERATORS[rng.randrange(4)]
    out.append(op)
    args = []
    for _ in range(rng.randrange(2, max_args + 1)):
        if len(out) > budget:  # already too long: the caller rejects it, no need to finish the tree
            return -1
        args.append(_listops_tree(rng, depth + 1, max_depth, max_args, out, budget))
    out.append(_CLOSE)
    return _reduce(op, args)


def evaluate_listops(tokens: Sequence[int] | torch.Tensor | np.ndarray) -> int:
    """The value (0-9) of one ListOps expression given as token ids (padding ``0`` anywhere is ignored).

    A stack evaluator, independent of the generator's tree walk, so it can check every label. Raises
    :class:`~archlab.errors.DataError` on a malformed expression.
    """
    ids = [int(t) for t in (tokens.tolist() if hasattr(tokens, "tolist") else tokens)]
    stack: list[list[int]] = []  # each frame: [operator, arg, arg, ...]
    result: int | None = None
    for t in ids:
        if t == _PAD:
            continue
        if result is not None:
            raise DataError("evaluate_listops: tokens after the end of the expression")
        if t in _OPERATORS:
            stack.append([t])
        elif 1 <= t <= 10 or t == _CLOSE:
            if t == _CLOSE:
                if not stack or len(stack[-1]) < 2:
                    raise DataError("evaluate_listops: ']' closes no operator or one without arguments")
                frame = stack.pop()
                value = _reduce(frame[0], frame[1:])
            else:
                value = t - 1
            if stack:
                stack[-1].append(value)
            else:
                result = value
        else:
            raise DataError(f"evaluate_listops: token {t} is not a ListOps token id (0..{len(LISTOPS_TOKENS) - 1})")
    if result is None or stack:
        raise DataError("evaluate_listops: the expression is incomplete")
    return result


def listops_to_text(tokens: Sequence[int] | torch.Tensor | np.ndarray) -> str:
    """The expression as LRA writes it without parentheses, e.g. ``[MAX 2 9 [MIN 4 7 ] 0 ]``."""
    ids = tokens.tolist() if hasattr(tokens, "tolist") else tokens
    return " ".join(LISTOPS_TOKENS[int(t)] for t in ids if int(t) != _PAD)


@register_dataset("listops", kind="fixed")
def listops(
    max_depth: int = 6,
    max_length: int = 128,
    *,
    max_args: int = 5,
    min_length: int = 16,
    padding: str = "left",
    n_train: int = 4000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Dataset:
    """ListOps-style nested expressions over digits 0-9 (built-in name ``listops``); the label is the value.

    Trees are drawn as in LRA (root at depth 1; a node is a leaf digit with probability 0.75, or always at
    ``max_depth``; an operator node has 2..``max_args`` arguments) and kept when their token count lies in
    ``[min_length, max_length]``. Tokens are :data:`LISTOPS_TOKENS` (LRA's tokens without its parentheses,
    which carry no information); every input is padded with ``0`` to ``max_length``. ``padding="left"``
    (default) puts the padding first so that a causal model's last position has read the whole expression;
    ``"right"`` pads at the end as LRA does. LRA's full task is ``max_depth=10, max_args=10,
    min_length=500, max_length=2000``; the defaults here are a small version a laptop trains in minutes.
    """
    task = "listops"
    sizes = _sizes(task, n_train, n_val, n_test)
    _check_int(task, "max_depth", max_depth, 2)
    _check_int(task, "max_args", max_args, 2)
    _check_int(task, "min_length", min_length, 4)
    _check_int(task, "max_length", max_length, 4)
    if min_length > max_length:
        raise DataError(f"{task}: min_length ({min_length}) exceeds max_length ({max_length})")
    if padding not in ("left", "right"):
        raise DataError(f"{task}: padding must be 'left' or 'right', got {padding!r}")
    # the longest tree: every node an operator with max_args arguments down to max_depth
    longest = max_args ** (max_depth - 1) + 2 * sum(max_args ** d for d in range(max_depth - 1))
    if longest < min_length:
        raise DataError(f"{task}: no tree with max_depth={max_depth}, max_args={max_args} reaches "
                        f"min_length={min_length} tokens (at most {longest})")

    def make(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((n, max_length), dtype=np.int64)
        y = np.empty(n, dtype=np.int64)
        found = 0
        # Python's Mersenne Twister (seeded from the split's stream) is ~20x cheaper per draw than numpy's
        # Generator for one value at a time, and its randrange/random sequences are stable across versions
        tree_rng = random.Random(int(rng.integers(0, 2**63)))
        for _ in range(2000 * n):
            tokens: list[int] = []
            value = _listops_tree(tree_rng, 1, max_depth, max_args, tokens, max_length)
            if min_length <= len(tokens) <= max_length:
                if padding == "left":
                    x[found, max_length - len(tokens) :] = tokens
                else:
                    x[found, : len(tokens)] = tokens
                y[found] = value
                found += 1
                if found == n:
                    break
        if found < n:
            raise DataError(f"{task}: trees of {min_length}..{max_length} tokens are too rare with "
                            f"max_depth={max_depth}, max_args={max_args}; widen the length range")
        return x, y

    splits = _distinct_splits(task, make, sizes, seed)
    return _token_dataset("listops", splits, [str(d) for d in range(10)], len(LISTOPS_TOKENS))

"""Character-level text corpora for language modelling: tiny Shakespeare and a user's own text file.

tiny Shakespeare is the 1,115,394-character corpus of Karpathy's char-rnn (``data/tinyshakespeare/input.txt``),
as nanoGPT's ``data/shakespeare_char/prepare.py`` uses it: the vocabulary is the sorted set of distinct
characters (65 of them) and ids index into it. nanoGPT splits the text 90/10 into train/val; archlab also
needs a test split, so the rule here is contiguous: the first ``1 - val_fraction - test_fraction`` of the
characters (90 % by default) are training, the next ``val_fraction`` (5 %) validation, the last
``test_fraction`` (5 %) test. nanoGPT's validation text is thus archlab's validation followed by its test.

The built-in name ``tinyshakespeare`` is looked up as ``tinyshakespeare.txt`` (or ``tinyshakespeare/input.txt``)
in ``data_dir``, then ``$ARCHLAB_DATA``, then the cache (``$XDG_CACHE_HOME/archlab``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from archlab.data._download import cache_dir
from archlab.data.builtin import env_data_dir, unique_paths
from archlab.errors import DataError

__all__ = ["CharCorpus", "char_corpus_search_path", "load_char_corpus", "random_windows"]

BUILTIN_CORPORA = ("tinyshakespeare",)
_CANDIDATES = ("tinyshakespeare.txt", "tinyshakespeare/input.txt")


@dataclass(frozen=True, eq=False)
class CharCorpus:
    """A character corpus split into contiguous train / validation / test id tensors (1-D int64).

    ``vocab`` is the sorted string of the distinct characters of the whole text; a character's id is its index
    in ``vocab``. Compares by identity (it holds tensors).
    """

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    vocab: str

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters."""
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """The int64 ids of ``text``; a character outside the vocabulary raises :class:`DataError`."""
        index = {c: i for i, c in enumerate(self.vocab)}
        try:
            return torch.tensor([index[c] for c in text], dtype=torch.int64)
        except KeyError as e:
            raise DataError(f"corpus {self.name!r}: character {e.args[0]!r} is not in its vocabulary") from None

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """The text of a 1-D sequence of ids."""
        values = np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else list(ids), dtype=np.int64)
        if values.ndim != 1 or (values.size and not 0 <= values.min() <= values.max() < len(self.vocab)):
            raise DataError(f"corpus {self.name!r}: ids must be a 1-D sequence in [0, {len(self.vocab)})")
        codes = np.frombuffer(self.vocab.encode("utf-32-le"), dtype="<u4")
        return codes[values].tobytes().decode("utf-32-le")

    def describe(self) -> dict:
        """A JSON-serialisable summary: name, split sizes in characters, vocabulary size."""
        return {"name": self.name, "sizes": {"train": len(self.train), "val": len(self.val),
                                             "test": len(self.test)}, "vocab_size": self.vocab_size}

    def __repr__(self) -> str:
        d = self.describe()
        return f"CharCorpus(name={self.name!r}, sizes={d['sizes']}, vocab_size={self.vocab_size})"


def char_corpus_search_path(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ``tinyshakespeare.txt``, in order."""
    return unique_paths([Path(data_dir) if data_dir is not None else None, env_data_dir(), cache_dir()])


def _find_builtin(name: str, data_dir: str | os.PathLike | None) -> Path:
    searched = char_corpus_search_path(data_dir)
    for folder in searched:
        for candidate in _CANDIDATES:
            if (folder / candidate).is_file():
                return folder / candidate
    raise DataError(f"{name} not found: looked for {' or '.join(_CANDIDATES)} in "
                    f"{', '.join(str(p) for p in searched)}; set ARCHLAB_DATA or pass data_dir "
                    "(the text is karpathy/char-rnn's data/tinyshakespeare/input.txt)")


def load_char_corpus(
    path: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> CharCorpus:
    """Read a UTF-8 text file (default: the built-in ``tinyshakespeare``) as a contiguous 90/5/5 char corpus.

    ``path`` is a file, or the built-in name ``tinyshakespeare`` (also what ``None`` means). Of ``n``
    characters, training is ``[0, floor(n (1 - val - test)))``, validation runs up to ``floor(n (1 - test))``
    and test is the rest (fractions taken as exact decimals). With the defaults the training boundary is
    nanoGPT's ``int(n * 0.9)``.
    """
    for what, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < float(value) < 1.0:
            raise DataError(f"load_char_corpus: {what} must be strictly between 0 and 1, got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"load_char_corpus: val_fraction + test_fraction must be below 1, "
                        f"got {val_fraction + test_fraction}")
    text_path = os.fspath(path) if path is not None else BUILTIN_CORPORA[0]
    if text_path.strip().lower() in BUILTIN_CORPORA and not Path(text_path).is_file():
        name = text_path.strip().lower()
        file = _find_builtin(name, data_dir)
    else:
        file = Path(text_path)
        name = file.stem
        if not file.is_file():
            raise DataError(f"text corpus {file} does not exist (built-in corpora: {', '.join(BUILTIN_CORPORA)})")
    try:
        # newline="" keeps "\r\n" as two characters: the ids then round-trip the file exactly
        with open(file, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read text corpus {file}: {e}") from e
    n = len(text)
    # exact decimal arithmetic: 1 - 0.05 - 0.05 in floats is 0.8999999999999999, which would move the boundary
    val_q, test_q = Fraction(repr(float(val_fraction))), Fraction(repr(float(test_fraction)))
    n_train = math.floor(n * (1 - val_q - test_q))
    n_val = math.floor(n * (1 - test_q)) - n_train
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 2:
        raise DataError(f"text corpus {file} has {n} characters: too few for non-empty train/val/test splits "
                        "of at least two characters each")
    # code points through numpy: a million characters take milliseconds instead of a Python loop's second
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    vocab_codes = np.unique(codes)  # sorted code points, i.e. sorted(set(text))
    vocab = vocab_codes.astype("<u4").tobytes().decode("utf-32-le")
    ids = torch.from_numpy(np.searchsorted(vocab_codes, codes).astype(np.int64))
    return CharCorpus(name=name, train=ids[:n_train].clone(), val=ids[n_train : n_train + n_val].clone(),
                      test=ids[n_train + n_val :].clone(), vocab=vocab)


def random_windows(
    ids: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of a 1-D id tensor as next-character pairs ``(x, y)``, each ``(B, T)``.

    ``x[b] = ids[i : i + T]`` and ``y[b] = ids[i + 1 : i + T + 1]`` with ``i`` uniform in
    ``[0, len(ids) - T - 1]`` (nanoGPT's ``get_batch``), drawn with ``generator``.
    """
    if ids.ndim != 1 or ids.dtype != torch.int64:
        raise DataError(f"random_windows: ids must be a 1-D int64 tensor, got {ids.dtype} of shape "
                        f"{tuple(ids.shape)}")
    if block_size < 1 or batch_size < 1:
        raise DataError(f"random_windows: block_size and batch_size must be >= 1, got {block_size}, {batch_size}")
    if len(ids) < block_size + 1:
        raise DataError(f"random_windows: {len(ids)} ids are too few for windows of {block_size} + 1")
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
    offsets = starts[:, None] + torch.arange(block_size + 1)
    chunks = ids[offsets]
    return chunks[:, :-1].clone(), chunks[:, 1:].clone()

"""Character corpora: tiny Shakespeare's real file, the contiguous split rule, round trips, next-char windows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from archlab.data import CharCorpus, load_char_corpus, load_dataset, random_windows
from archlab.errors import DataError


def whole(corpus: CharCorpus) -> str:
    return corpus.decode(torch.cat([corpus.train, corpus.val, corpus.test]))


def test_tinyshakespeare_real_file(shared_data: Path) -> None:
    text = (shared_data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    corpus = load_char_corpus(data_dir=shared_data)
    n = len(text)
    assert n == 1_115_394
    assert corpus.vocab_size == 65 == len(set(text)) and corpus.vocab == "".join(sorted(set(text)))
    assert corpus.name == "tinyshakespeare"
    # nanoGPT's shakespeare_char boundary int(n * 0.9) for training; validation and test share the rest
    assert len(corpus.train) == int(n * 0.9) == 1_003_854
    assert len(corpus.val) == math.floor(n * 0.95) - int(n * 0.9)
    assert len(corpus.train) + len(corpus.val) + len(corpus.test) == n
    assert whole(corpus) == text
    assert corpus.decode(corpus.train[:14]) == "First Citizen:"
    # $ARCHLAB_DATA is searched when no data_dir is given (the fixture's folder is ARCHLAB_DATA)
    assert torch.equal(load_char_corpus("tinyshakespeare").test, corpus.test)


def test_contiguous_split_rule_and_round_trip(tmp_path: Path) -> None:
    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(180)) + "Z\r\n\u00e9!"  # 185 characters
    path = tmp_path / "small.txt"
    path.write_bytes(text.encode("utf-8"))
    corpus = load_char_corpus(path)
    assert corpus.name == "small"
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (166, 9, 10)  # floor(166.5), floor(175.75)
    assert corpus.decode(corpus.train) == text[:166]
    assert corpus.decode(corpus.val) == text[166:175]
    assert corpus.decode(corpus.test) == text[175:]  # "\r\n" kept as two characters
    assert corpus.vocab == "".join(sorted(set(text)))
    sample = "Zz\u00e9ab\r\n!"
    assert corpus.decode(corpus.encode(sample)) == sample
    assert corpus.encode("ab").tolist() == [corpus.vocab.index("a"), corpus.vocab.index("b")]
    with pytest.raises(DataError, match="not in its vocabulary"):
        corpus.encode("?")
    with pytest.raises(DataError):
        corpus.decode([corpus.vocab_size])
    other = load_char_corpus(path, val_fraction=0.2, test_fraction=0.1)
    assert (len(other.train), len(other.val), len(other.test)) == (129, 37, 19)  # floor(129.5), floor(166.5)


def test_random_windows_are_shifted_by_one() -> None:
    ids = torch.arange(1000, dtype=torch.int64) * 3
    x, y = random_windows(ids, 16, 32, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (32, 16) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    starts = x[:, 0] // 3
    for b in range(32):
        s = int(starts[b])
        assert torch.equal(x[b], ids[s : s + 16]) and torch.equal(y[b], ids[s + 1 : s + 17])
    again, _ = random_windows(ids, 16, 32, torch.Generator().manual_seed(0))
    other, _ = random_windows(ids, 16, 32, torch.Generator().manual_seed(1))
    assert torch.equal(x, again) and not torch.equal(x, other)
    # the last window that fits is reachable: 17 ids give exactly one window
    x1, y1 = random_windows(ids[:17], 16, 4)
    assert torch.equal(x1[0], ids[:16]) and torch.equal(y1[0], ids[1:17])
    with pytest.raises(DataError):
        random_windows(ids[:16], 16, 4)
    with pytest.raises(DataError):
        random_windows(ids.view(10, 100), 4, 4)
    with pytest.raises(DataError):
        random_windows(ids.float(), 4, 4)


def test_missing_and_bad_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="tinyshakespeare not found: looked for") as err:
        load_char_corpus(data_dir=tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value) and "cache" in str(err.value)
    with pytest.raises(DataError, match="does not exist"):
        load_char_corpus(tmp_path / "nope.txt")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abcdefghij", encoding="utf-8")
    with pytest.raises(DataError, match="too few"):
        load_char_corpus(tiny)
    with pytest.raises(DataError, match="below 1"):
        load_char_corpus(tiny, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match="between 0 and 1"):
        load_char_corpus(tiny, val_fraction=0.0)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9" * 50)
    with pytest.raises(DataError, match="cannot read"):
        load_char_corpus(tmp_path / "latin1.txt")
    with pytest.raises(DataError, match="load_char_corpus"):
        load_dataset("tinyshakespeare")
    # a folder layout as in char-rnn (tinyshakespeare/input.txt) is found too
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("To be, or not to be: " * 10, encoding="utf-8")
    assert whole(load_char_corpus(data_dir=tmp_path)) == "To be, or not to be: " * 10

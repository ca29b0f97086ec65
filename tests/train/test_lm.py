"""LM training and evaluation: bits per char are exact for known models and cover every token once, a tiny model
learns a repetitive text, training is deterministic under its seed, the schedule warms up and decays, and step
decoding is timed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab import zoo
from archlab.errors import UserError
from archlab.train.lm import LMResult, decode_tokens_per_s, evaluate_bpc, evaluate_lm_loss, train_lm


class _Uniform(nn.Module):
    """Zero logits: every token has probability 1 / V."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*x.shape, self.vocab) + 0 * self.dummy


class _Bigram(nn.Module):
    """Logits depend on the current token only, so the loss does not depend on where windows are cut."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x)


class _LastOnly(_Bigram):
    """A classifier-shaped output ``(B, V)``: not a language model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, -1]


def _corpus(tmp_path, text: str) -> tuple[torch.Tensor, list[str]]:
    path = tmp_path / "input.txt"
    path.write_text(text)
    chars = sorted(set(path.read_text()))
    return torch.tensor([chars.index(c) for c in path.read_text()], dtype=torch.int64), chars


def test_a_uniform_model_scores_log2_vocab_bits_per_char():
    ids = torch.randint(0, 13, (1001,), generator=torch.Generator().manual_seed(0))
    for block in (7, 64, 2000):  # a tail window, and a split shorter than one window
        assert evaluate_bpc(_Uniform(13), ids, block, batch_size=5) == pytest.approx(math.log2(13), rel=1e-6)


def test_windows_cover_every_token_exactly_once():
    torch.manual_seed(0)
    model = _Bigram(9)
    ids = torch.randint(0, 9, (503,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        direct = F.cross_entropy(model(ids[:-1]), ids[1:], reduction="mean").item()  # all 502 predictions
    for block, batch in ((10, 4), (501, 1), (64, 32)):
        assert evaluate_lm_loss(model, ids, block, batch) == pytest.approx(direct, rel=1e-6)
    # max_tokens evaluates only the beginning of the split
    with torch.no_grad():
        head = F.cross_entropy(model(ids[:99]), ids[1:100]).item()
    assert evaluate_lm_loss(model, ids, 16, max_tokens=100) == pytest.approx(head, rel=1e-6)
    assert model.training  # the mode is restored


def _tiny_lm(vocab: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return zoo.create_model("sequence_lm", dim=32, depth=2, mixer="lmu", vocab_size=vocab, mlp_ratio=2,
                            norm="layernorm", seq_len=32)


def test_a_tiny_model_learns_a_repetitive_text(tmp_path, one_thread):
    ids, chars = _corpus(tmp_path, "the quick brown fox jumps over the lazy dog. " * 60)
    split = int(0.9 * len(ids))
    model = _tiny_lm(len(chars))
    before = evaluate_bpc(model, ids[split:], 32)
    result = train_lm(model, ids[:split], ids[split:], block_size=32, batch_size=16, steps=60, lr=1e-2, seed=0)
    assert isinstance(result, LMResult) and result.steps == 60
    assert before > 3.0  # about log2(28) untrained
    assert result.val_bpc < 1.0, result
    assert result.val_bpc == pytest.approx(result.val_loss / math.log(2))
    assert result.val_bpc == pytest.approx(evaluate_bpc(model, ids[split:], 32), rel=1e-5)
    assert result.train_tokens_per_s > 0 and result.curve[-1]["step"] == 60


def test_training_is_deterministic_under_its_seed(one_thread):
    ids = torch.randint(0, 7, (400,), generator=torch.Generator().manual_seed(0))
    runs = []
    for seed in (0, 0, 1):
        seen: list[dict[str, float]] = []
        result = train_lm(_tiny_lm(7), ids[:300], ids[300:], block_size=16, batch_size=4, steps=6, lr=3e-3,
                          seed=seed, log_every=1, on_step=seen.append)
        assert [p["step"] for p in seen] == list(range(1, 7))
        runs.append(([p["loss"] for p in result.curve], result.val_loss))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]  # another seed draws other windows


def test_the_schedule_warms_up_then_decays_to_zero():
    ids = torch.randint(0, 5, (200,), generator=torch.Generator().manual_seed(0))
    seen: list[dict[str, float]] = []
    train_lm(_Bigram(5), ids[:150], ids[150:], block_size=8, batch_size=2, steps=40, lr=0.1, warmup=0.1,
             seed=0, on_step=seen.append)
    lrs = [p["lr"] for p in seen]
    peak = lrs.index(max(lrs))
    assert 0 < peak <= 5 and max(lrs) == pytest.approx(0.1, rel=0.02)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:], strict=False))
    assert lrs[-1] < 0.01 * 0.1


def test_max_seconds_stops_training():
    ids = torch.randint(0, 5, (200,), generator=torch.Generator().manual_seed(0))
    result = train_lm(_Bigram(5), ids[:150], ids[150:], block_size=8, batch_size=2, max_seconds=0.3, seed=0)
    assert 1 <= result.steps and 0.3 <= result.seconds < 5.0


def test_decoding_speed_is_measured_on_one_thread():
    model = _tiny_lm(11)
    threads = torch.get_num_threads()
    rate = decode_tokens_per_s(model, prompt_len=8, n_new=16)
    assert math.isfinite(rate) and rate > 0
    assert torch.get_num_threads() == threads and model.training
    with pytest.raises(UserError, match="no step"):
        decode_tokens_per_s(_Bigram(5), 4, 4, vocab_size=5)


def test_bad_inputs_raise_user_errors():
    ids = torch.randint(0, 5, (200,))
    model = _Bigram(5)
    with pytest.raises(UserError, match="1-D int64"):
        train_lm(model, ids[None], ids, block_size=8, steps=1)
    with pytest.raises(UserError, match="1-D int64"):
        evaluate_bpc(model, ids.float(), 8)
    with pytest.raises(UserError, match="steps or max_seconds"):
        train_lm(model, ids, ids, block_size=8)
    with pytest.raises(UserError, match="at least 9 are needed"):
        train_lm(model, ids[:8], ids, block_size=8, steps=1)
    with pytest.raises(UserError, match=r"logits \(B, L, V\)"):
        evaluate_bpc(_LastOnly(5), ids, 8)

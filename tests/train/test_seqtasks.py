"""Sequence-output tasks: answers scored only where they are asked, a curriculum trains every length in order,
a tiny model learns selective copying from the generated stream, the recall profile tells recall from
elimination, and bad input gets a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from archlab import zoo
from archlab.data import multiquery_recall_batch, selective_copying_batch
from archlab.errors import UserError
from archlab.train.seqtasks import evaluate_task, predict, recall_profile, train_on_task


class _Echo(nn.Module):
    """Predicts the next input token: right exactly where MQAR's answer is repeated after its key."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nxt = torch.cat([x[:, 1:], x[:, :1]], dim=1)  # looks ahead: an oracle, not a causal model
        return nn.functional.one_hot(nxt, self.vocab).float() + 0 * self.dummy


def test_evaluate_task_scores_only_the_answer_positions() -> None:
    x, y = multiquery_recall_batch(20, length=32, n_pairs=4, vocab=16, seed=0)
    assert evaluate_task(_Echo(16), x, y, batch_size=7) == (1.0, 1.0)
    # break the first answer of the first 5 sequences: 5 of 80 answers wrong, 5 of 20 sequences
    y = y.clone()
    for i in range(5):
        p = int((y[i] != -100).nonzero()[0])
        y[i, p] = (y[i, p] + 1 - 8) % 8 + 8
    token, whole = evaluate_task(_Echo(16), x, y)
    assert token == pytest.approx(75 / 80) and whole == pytest.approx(15 / 20)


def _eliminate(y: torch.Tensor, choose) -> torch.Tensor:
    """Predictions that answer each query with ``choose(values not asked yet, values asked before)``."""
    pred = torch.zeros_like(y)
    for b in range(len(y)):
        where = (y[b] != -100).nonzero().flatten().tolist()
        values = y[b, where].tolist()
        for k, p in enumerate(where):
            pred[b, p] = choose(values[k:], values[:k])
    return pred


def test_recall_profile_tells_recall_from_elimination() -> None:
    x, y = multiquery_recall_batch(3000, length=64, n_pairs=8, vocab=64, seed=0)
    # the echo oracle recalls every answer
    recall = recall_profile(predict(_Echo(64), x, batch_size=512), y)
    assert recall["accuracy_by_query"] == [1.0] * 8 and recall["among_unasked"] == 1.0
    # answering with the smallest value not asked yet: always among the unasked, right as often as a uniform
    # guess among them (the order of asking is random), 1/8 for the first query up to 1 for the last
    eliminate = recall_profile(_eliminate(y, lambda unasked, asked: min(unasked)), y)
    assert eliminate["among_unasked"] == 1.0
    assert eliminate["elimination_accuracy"] == pytest.approx([1 / (8 - k) for k in range(8)])
    np.testing.assert_allclose(eliminate["accuracy_by_query"], eliminate["elimination_accuracy"], atol=0.03)
    # the evaluation's token accuracy is the mean over query positions when every sequence asks 8
    token, _ = evaluate_task(_Echo(64), x[:50], y[:50])
    assert token == pytest.approx(np.mean(recall_profile(predict(_Echo(64), x[:50]), y[:50])["accuracy_by_query"]))
    # repeating the previous answer (the first query: a value never in the sequence) is never among the unasked
    repeat = recall_profile(_eliminate(y, lambda unasked, asked: asked[-1] if asked else 0), y)
    assert repeat["among_unasked"] == 0.0 and repeat["accuracy_by_query"] == [0.0] * 8
    with pytest.raises(UserError, match="one shape"):
        recall_profile(y[:, :10], y)
    uneven = y.clone()
    uneven[0, (uneven[0] != -100).nonzero()[0]] = -100
    with pytest.raises(UserError, match="same number of answers"):
        recall_profile(y, uneven)
    twice = torch.tensor([[5, -100, 5]])
    with pytest.raises(UserError, match="each value once"):
        recall_profile(twice, twice)
    with pytest.raises(UserError, match="expected ids"):
        predict(_Echo(64), x[0])


def test_a_block_of_answers_belongs_to_the_last_positions() -> None:
    x = torch.tensor([[3, 1, 2, 5]])
    # targets for positions 2 and 3: the echo predicts x[3] = 5 there, then wraps round to x[0] = 3
    assert evaluate_task(_Echo(6), x, torch.tensor([[5, 3]])) == (1.0, 1.0)
    assert evaluate_task(_Echo(6), x, torch.tensor([[5, 2]])) == (0.5, 0.0)


def test_a_tiny_model_learns_selective_copying_with_a_length_curriculum() -> None:
    torch.manual_seed(0)
    vocab, m = 6, 3

    def make(n: int, rng: np.random.Generator, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return selective_copying_batch(n, length=length, n_memorize=m, vocab=vocab, seed=rng)

    model = zoo.create_model("sequence_lm", dim=32, depth=1, mixer="lstm", vocab_size=vocab, mlp_ratio=2.0,
                             norm="layernorm")
    x_test, y_test = selective_copying_batch(200, length=16, n_memorize=m, vocab=vocab, seed=99)
    before, _ = evaluate_task(model, x_test, y_test)
    result = train_on_task(model, make, lengths=[8, 16], steps=300, batch_size=32, lr=1e-2, seed=0)
    after, _ = evaluate_task(model, x_test, y_test)
    assert result.steps == 300 and result.steps_per_length == {8: 150, 16: 150}
    assert list(result.steps_per_length) == [8, 16]  # in curriculum order
    assert result.train_tokens_per_s > 0
    # chance is 1/4 (tokens 1..4); the trained LSTM copies most of them
    assert before < 0.4 and after > 0.8, (before, after)


def test_training_is_deterministic_under_its_seed() -> None:
    def make(n: int, rng: np.random.Generator, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return multiquery_recall_batch(n, length=length, n_pairs=2, vocab=12, seed=rng)

    losses = []
    for _ in range(2):
        torch.manual_seed(1)
        model = zoo.create_model("sequence_lm", dim=16, depth=1, mixer="gla", vocab_size=12, mlp_ratio=0.0)
        losses.append([p["loss"] for p in train_on_task(model, make, lengths=16, steps=6, batch_size=4, seed=3,
                                                        log_every=1).curve])
    assert losses[0] == losses[1] and len(losses[0]) == 6


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lengths": []}, "lengths must be"),
    ({"lengths": [8, 0]}, "lengths must be"),
    ({"lengths": 8, "steps": None}, "give steps or max_seconds"),
    ({"lengths": 8, "steps": 0}, "need steps >= 1"),
])
def test_train_on_task_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"steps": 2} | kwargs
    with pytest.raises(UserError, match=match):
        train_on_task(_Echo(6), lambda n, rng, length: (torch.zeros(n, length, dtype=torch.long),) * 2, **args)


def test_evaluate_task_rejects_mismatched_targets() -> None:
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(UserError, match="expected ids"):
        evaluate_task(_Echo(6), x, torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(UserError, match="no answer position"):
        evaluate_task(_Echo(6), x, torch.full((2, 4), -100))

"""MOHAWK: shared weights are copied exactly, the teacher's hidden states are its layer inputs, each stage lowers its
own objective, stages 1 and 2 bring the student's outputs closer to the teacher's than a fresh mixer, kept attention
layers equal the teacher's, the teacher is left as it was, and bad pairs are reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.compress import (
    distilled_layers,
    hidden_state_alignment_loss,
    knowledge_distillation_loss,
    matrix_orientation_loss,
    mohawk_distill,
    teacher_hidden_states,
    transfer_weights,
)
from archlab.errors import UserError
from archlab.train.lm import fit_token_targets
from archlab.zoo import create_model

DIM, VOCAB, LENGTH = 32, 16, 24
ATTENTION = {"mixer": "causal_attention", "head_dim": 16}
SSD = {"mixer": "ssd", "head_dim": 16, "d_state": 16}


def _lm(mixers: list[dict], seed: int = 0):
    torch.manual_seed(seed)
    return create_model("sequence_lm", dim=DIM, layers=mixers, vocab_size=VOCAB, mlp_ratio=2.0,
                        tie_embeddings=False)


SUCCESSORS = np.random.default_rng(0).integers(0, VOCAB, size=(VOCAB, VOCAB, 2))


def _markov(n: int, seed: int) -> torch.Tensor:
    """Sequences of a second-order Markov chain: each pair of tokens has two equally likely successors."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, LENGTH), dtype=np.int64)
    x[:, :2] = rng.integers(0, VOCAB, size=(n, 2))
    for t in range(2, LENGTH):
        x[:, t] = SUCCESSORS[x[:, t - 2], x[:, t - 1], rng.integers(0, 2, size=n)]
    return torch.from_numpy(x)


@pytest.fixture(scope="module")
def teacher():
    """A 2-layer attention LM trained briefly on the Markov chain, so that its attention has structure."""
    model = _lm([ATTENTION, ATTENTION])
    counter = iter(range(10**6))

    def sample(progress: float):
        x = _markov(32, next(counter))
        y = torch.cat([x[:, 1:], torch.full((x.shape[0], 1), -100)], dim=1)
        return x, y

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit_token_targets(model, sample, steps=250, max_seconds=None, lr=1e-2, weight_decay=0.0)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _batches(step: int) -> torch.Tensor:
    return _markov(16, 1_000 + step)


HELD_OUT = _markov(64, 99)


def test_transfer_copies_everything_but_the_distilled_mixers(teacher) -> None:
    student = _lm([SSD, SSD], seed=1)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    copied = transfer_weights(teacher, student)
    assert copied and not any(".mixer." in name for name in copied)
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for name, value in student_state.items():
        if ".mixer." in name:
            assert torch.equal(value, before[name]), name  # the new mixers keep their own initialisation
        else:
            assert name in copied and torch.equal(value, teacher_state[name]), name
    assert set(copied) == {k for k in teacher_state if ".mixer." not in k}


def test_hidden_states_are_the_layer_inputs(teacher) -> None:
    ids = HELD_OUT[:4]
    hidden = teacher_hidden_states(teacher, ids)
    assert len(hidden) == 2 and hidden[0].shape == (4, LENGTH, DIM)
    torch.testing.assert_close(hidden[0], teacher.backbone.embedding(ids))
    with torch.no_grad():
        last = teacher.backbone.layers[1](hidden[1])
        logits = teacher.lm_head(teacher.backbone.norm_f(last))
    torch.testing.assert_close(logits, teacher(ids))


def test_stage_losses_are_zero_for_the_teacher_against_itself(teacher) -> None:
    """A kept attention layer is not distilled; the end-to-end KL of the teacher against itself is zero."""
    assert distilled_layers(teacher, teacher) == []
    with torch.no_grad():
        logits = teacher(HELD_OUT)
    assert knowledge_distillation_loss(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert matrix_orientation_loss(teacher, teacher, HELD_OUT).item() == 0.0


@pytest.mark.parametrize("stage, loss_fn", [(0, matrix_orientation_loss), (1, hidden_state_alignment_loss)])
def test_each_layerwise_stage_lowers_its_objective(teacher, stage: int, loss_fn, one_thread) -> None:
    student = _lm([SSD, SSD], seed=1)
    transfer_weights(teacher, student)
    with torch.no_grad():
        before = loss_fn(teacher, student, HELD_OUT).item()
    steps = [0, 0, 0]
    steps[stage] = 60
    result = mohawk_distill(teacher, student, _batches, steps=steps, lr=1e-2)
    with torch.no_grad():
        after = loss_fn(teacher, student, HELD_OUT).item()
    assert after < 0.6 * before, (before, after)
    assert list(result.steps.values()) == [60]


def test_stages_one_and_two_bring_the_student_to_the_teacher(teacher, one_thread) -> None:
    """After stages 1 and 2 the student's next-token distributions are closer to the teacher's than those of the
    same student with only the shared weights copied: the layer-wise stages transfer what attention does."""
    def kl(student) -> float:
        with torch.no_grad():
            return knowledge_distillation_loss(student(HELD_OUT), teacher(HELD_OUT)).item()

    copied_only = _lm([SSD, SSD], seed=1)
    transfer_weights(teacher, copied_only)
    aligned = _lm([SSD, SSD], seed=1)
    mohawk_distill(teacher, aligned, _batches, steps=(60, 60, 0), lr=1e-2)
    assert kl(aligned) < 0.6 * kl(copied_only), (kl(aligned), kl(copied_only))


def test_all_three_stages_then_the_student_predicts_like_the_teacher(teacher, one_thread) -> None:
    copied_only = _lm([SSD, SSD], seed=1)
    transfer_weights(teacher, copied_only)
    student = _lm([SSD, SSD], seed=1)
    result = mohawk_distill(teacher, student, _batches, steps=(30, 30, 60), lr=(1e-2, 1e-2, 3e-3), log_every=10)
    assert list(result.steps) == ["matrix_orientation", "hidden_state_alignment", "knowledge_distillation"]
    curve = result.curves["knowledge_distillation"]
    assert [k for k, _ in curve] == [10, 20, 30, 40, 50, 60]
    with torch.no_grad():
        target = teacher(HELD_OUT)
        before = knowledge_distillation_loss(copied_only(HELD_OUT), target).item()
        after = knowledge_distillation_loss(student(HELD_OUT), target).item()
    assert after < 0.25 * before, (before, after)


def test_a_hybrid_keeps_the_teachers_attention_layer(teacher) -> None:
    student = _lm([ATTENTION, SSD], seed=1)
    assert distilled_layers(teacher, student) == [1]
    transfer_weights(teacher, student)
    hidden = teacher_hidden_states(teacher, HELD_OUT[:4])
    with torch.no_grad():
        torch.testing.assert_close(student.backbone.layers[0](hidden[0]), hidden[1])


def test_the_teacher_is_left_as_it_was(teacher) -> None:
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher.backbone.embedding.weight.requires_grad_(False)  # a frozen parameter stays frozen
    try:
        mohawk_distill(teacher, _lm([SSD, SSD], seed=2), _batches, steps=(2, 2, 2))
        assert all(torch.equal(v, state[k]) for k, v in teacher.state_dict().items())
        flags = {name: p.requires_grad for name, p in teacher.named_parameters()}
        assert flags.pop("backbone.embedding.weight") is False and all(flags.values())
        assert not teacher.training
    finally:
        teacher.backbone.embedding.weight.requires_grad_(True)


def test_bad_pairs_and_arguments_are_reported(teacher) -> None:
    with pytest.raises(UserError, match="heads"):
        transfer_weights(teacher, _lm([{**SSD, "head_dim": 8}, SSD]))
    with pytest.raises(UserError, match="same width, depth"):
        transfer_weights(teacher, _lm([SSD]))
    with pytest.raises(UserError, match="must use causal_attention"):
        distilled_layers(_lm([SSD, SSD]), _lm([SSD, SSD]))
    with pytest.raises(UserError, match="ssd .distilled. or the teacher's mixer"):
        distilled_layers(teacher, _lm([{"mixer": "gla"}, SSD]))
    with pytest.raises(UserError, match="sequence language model"):
        distilled_layers(teacher, torch.nn.Linear(2, 2))
    with pytest.raises(UserError, match="three counts"):
        mohawk_distill(teacher, _lm([SSD, SSD]), _batches, steps=(1, 2))
    with pytest.raises(UserError, match="positive rate"):
        mohawk_distill(teacher, _lm([SSD, SSD]), _batches, lr=(1e-3, 0.0, 1e-3))
    with pytest.raises(UserError, match="no ssd layer"):
        mohawk_distill(teacher, _lm([ATTENTION, ATTENTION]), _batches, steps=(1, 0, 0))

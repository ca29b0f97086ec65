"""N2N: the reward formula, weight inheritance, the two policies, and a short removal stage on digits that finds a
smaller child close to the teacher."""

from __future__ import annotations

import pytest
import torch

from archlab.compress.n2n import (
    SHRINK_LOOKUP,
    LayerSpec,
    RemovalPolicy,
    ShrinkPolicy,
    SpecNet,
    describe,
    inherit_weights,
    n2n_stage,
    reward,
)
from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.train import TrainConfig, evaluate, train_model

TEACHER = [LayerSpec("conv", 32), LayerSpec("conv", 32), LayerSpec("conv", 64, stride=2), LayerSpec("conv", 64),
           LayerSpec("conv", 64), LayerSpec("conv", 128, stride=2), LayerSpec("fc", 128), LayerSpec("fc", 64)]


def test_the_reward_is_relative_accuracy_times_c_2_minus_c():
    assert reward(0.9, 1.0, 25, 100) == pytest.approx(0.9 * 0.75 * 1.25)
    assert reward(0.5, 0.5, 100, 100) == 0.0  # no compression, no reward
    assert reward(1.0, 1.0, 0, 100) == pytest.approx(1.0)  # the limit: all of it removed at equal accuracy


def test_a_child_with_every_layer_whole_inherits_the_teacher_exactly():
    torch.manual_seed(0)
    teacher = SpecNet(TEACHER, 1, 10).eval()
    child = SpecNet(TEACHER, 1, 10).eval()
    inherit_weights(child, teacher, list(range(len(TEACHER))))
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(child(x), teacher(x), atol=1e-6)
    # a shrunk child keeps the teacher's first channels
    small = [LayerSpec(s.kind, max(1, s.out // 2), s.kernel, s.stride) for s in TEACHER]
    shrunk = SpecNet(small, 1, 10)
    inherit_weights(shrunk, teacher, list(range(len(TEACHER))))
    assert torch.equal(shrunk.layers[1][0].weight, teacher.layers[1][0].weight[:16, :16])
    with pytest.raises(UserError, match="before fully connected"):
        SpecNet([LayerSpec("fc", 8), LayerSpec("conv", 8)], 1, 10)


def test_the_policies_sample_one_action_per_layer_with_a_differentiable_log_probability():
    desc = torch.stack([describe(s, 128) for s in TEACHER])
    for policy, n_actions in ((RemovalPolicy(), 2), (ShrinkPolicy(), len(SHRINK_LOOKUP))):
        actions, logp = policy.sample(desc)
        assert len(actions) == len(TEACHER) and all(0 <= a < n_actions for a in actions)
        logp.backward()
        assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)


def test_a_short_removal_stage_finds_a_smaller_child_close_to_the_teacher():
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    teacher = SpecNet(TEACHER, 1, 10)
    train_model(teacher, data.x_train, data.y_train, data.x_val, data.y_val, TrainConfig(epochs=15, patience=None))
    acc_t = evaluate(teacher, data.x_val, data.y_val)[1]
    params_t = sum(p.numel() for p in teacher.parameters())
    result = n2n_stage("removal", teacher, teacher, data.x_train, data.y_train, data.x_val, data.y_val,
                       episodes=4, rollouts=3, kd_epochs=3, seed=0)
    assert len(result.mean_rewards) == 4 and result.children
    assert result.params < params_t and result.accuracy >= acc_t - 0.05
    assert result.reward == pytest.approx(reward(result.accuracy, acc_t, result.params, params_t))
    assert all(c["reward"] <= result.reward for c in result.children)
    assert evaluate(result.model, data.x_val, data.y_val)[1] == pytest.approx(result.accuracy)
    with pytest.raises(UserError, match="stage must be"):
        n2n_stage("pruning", teacher, teacher, data.x_train, data.y_train, data.x_val, data.y_val)

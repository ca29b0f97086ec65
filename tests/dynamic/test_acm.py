"""Adaptive Computation Modules: the gated forward at a uniform choice equals the cumulative forward, the gate labels
follow the reference's rule, and an ACM-ised digits ViT at half its FFN compute keeps its accuracy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.data import load_dataset
from archlab.dynamic.acm import (
    ACM,
    AdaptiveComputationMLP,
    acmize,
    distill_learners,
    drop_teachers,
    end_to_end,
    ffn_cost,
    gate_labels,
    set_mode,
    train_gates,
)
from archlab.errors import UserError
from archlab.train import TrainConfig, evaluate, train_model
from archlab.zoo.models.vit import VisionTransformer


def test_the_gated_forward_at_a_uniform_choice_equals_the_cumulative_forward():
    torch.manual_seed(0)
    mlp = AdaptiveComputationMLP(12, 32, num_blocks=4)
    x = torch.randn(3, 5, 12)
    ys = mlp.forward_all(x)
    assert ys.shape == (5, 3, 5, 12) and torch.equal(ys[0], torch.zeros_like(ys[0]))
    for k in range(5):
        gated = mlp.forward_gated(x, torch.full((3, 5), k))
        assert torch.allclose(gated, ys[k], atol=1e-6), k
    # per-token choices: each token gets its own cumulative output
    choices = torch.randint(0, 5, (3, 5))
    mixed = mlp.forward_gated(x, choices)
    expect = torch.gather(ys, 0, choices[None, ..., None].expand(1, 3, 5, 12))[0]
    assert torch.allclose(mixed, expect, atol=1e-6)
    # the last learner by hand
    manual = sum(F.gelu(x @ mlp.w1[i] + mlp.b1[i]) @ mlp.w2[i] for i in range(4))
    assert torch.allclose(ys[4], manual, atol=1e-6)
    with pytest.raises(UserError, match="do not split"):
        AdaptiveComputationMLP(4, 30, num_blocks=4)


def test_gate_labels_take_the_first_k_where_one_more_learner_helps_less_than_1_2x():
    target = torch.zeros(1, 3)
    # errors (squared norms) for k = 1..4 of three tokens
    errs = torch.tensor([[8.0, 4.0, 3.9, 1.0],    # 8/4 = 2 >= 1.2, 4/3.9 < 1.2 -> k = 2
                         [2.0, 1.9, 1.0, 0.5],    # 2/1.9 < 1.2 -> k = 1
                         [16.0, 8.0, 4.0, 2.0]])  # never below 1.2 -> k = N = 4
    ys = torch.zeros(5, 3, 1)
    ys[1:, :, 0] = errs.T.sqrt()
    assert gate_labels(ys, target.T).tolist() == [2, 1, 4]


def tiny_vit(mlp_ratio: float = 4.0) -> VisionTransformer:
    return VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                             num_heads=2, mlp_ratio=mlp_ratio)


def test_acmize_keeps_the_original_and_refuses_models_without_mlps():
    torch.manual_seed(0)
    vit = tiny_vit()
    x = torch.randn(4, 1, 8, 8)
    before = vit(x)
    modules = acmize(vit, num_blocks=4)
    assert len(modules) == 2 and all(isinstance(m, ACM) for m in modules)
    set_mode(vit, "original")
    assert torch.allclose(vit(x), before, atol=1e-6)
    set_mode(vit, 2)
    vit(x)
    assert ffn_cost(vit) == pytest.approx(0.5)
    drop_teachers(vit)
    with pytest.raises(UserError, match="drop_teachers removed"):
        set_mode(vit, "distill")
        vit(x)
    with pytest.raises(UserError, match="no MLP"):
        acmize(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_an_acm_vit_at_half_its_ffn_compute_keeps_its_accuracy_and_beats_a_half_width_vit():
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(epochs=40, batch_size=32, lr=3e-3, patience=None)
    torch.manual_seed(0)
    vit = tiny_vit()
    train_model(vit, data.x_train, data.y_train, data.x_val, data.y_val, cfg)
    full_acc = evaluate(vit, data.x_test, data.y_test)[1]
    torch.manual_seed(0)
    half = tiny_vit(mlp_ratio=2.0)  # the static model with half the FFN compute
    train_model(half, data.x_train, data.y_train, data.x_val, data.y_val, cfg)
    half_acc = evaluate(half, data.x_test, data.y_test)[1]

    torch.manual_seed(0)
    acmize(vit, num_blocks=4)
    distill_learners(vit, data.x_train, epochs=20, lr=3e-3)
    train_gates(vit, data.x_train, epochs=3)
    end_to_end(vit, data.x_train, data.y_train, target_cost=0.5, epochs=10, lr=3e-4)
    drop_teachers(vit)
    vit.eval()
    with torch.no_grad():
        acm_acc = (vit(data.x_test).argmax(1) == data.y_test).float().mean().item()
        cost = ffn_cost(vit)
    assert cost <= 0.55, cost
    assert acm_acc >= 0.98 * full_acc, (acm_acc, full_acc)
    assert acm_acc > half_acc, (acm_acc, half_acc)

"""NViT: the materialised network equals the masked one, the latency table behaves, the group saliency ranks groups
as zeroing them really hurts (Spearman > 0.7), and pruning reaches its latency target."""

from __future__ import annotations

import random

import pytest
import torch
from scipy.stats import spearmanr

from archlab.compress.nvit import (
    GroupSaliency,
    LatencyTable,
    Masks,
    apply_masks,
    materialize,
    prune,
    true_loss_increase,
    uniform_masks,
)
from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.train import TrainConfig, evaluate, train_model
from archlab.zoo.models.vit import VisionTransformer


def tiny() -> VisionTransformer:
    return VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4,
                             num_heads=4, mlp_ratio=4)


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    vit = tiny()
    train_model(vit, data.x_train, data.y_train, data.x_val, data.y_val, TrainConfig(epochs=30, patience=None))
    return data, vit.eval()


def test_the_materialised_network_equals_the_masked_one():
    torch.manual_seed(0)
    vit = tiny().eval()
    masks = Masks.full(vit, 16)
    rng = random.Random(0)
    for b in range(4):
        for h in rng.sample(range(4), 2):
            masks.heads[b][h] = False
        for g in rng.sample(range(16), 9):
            masks.mlp[b][g] = False
    masks.heads[2] = [False] * 4  # a block with no head left
    masks.mlp[1] = [False] * 16  # and one with no MLP unit left
    masked = tiny().eval()
    masked.load_state_dict(vit.state_dict())
    apply_masks(masked, masks)
    small = materialize(vit, masks).eval()
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(small(x), masked(x), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in vit.parameters())
    full = materialize(vit, Masks.full(vit, 16)).eval()
    assert torch.allclose(full(x), vit(x), atol=1e-5)
    with pytest.raises(UserError, match="not a multiple of group_size"):
        Masks.full(vit, 48)  # 256 hidden units


def test_the_latency_table_grows_with_width(trained):
    _, vit = trained
    table = LatencyTable(vit, 16, repeats=10, batch_size=64)
    assert table.block(4, 256) > table.block(2, 256) > table.block(0, 0)
    assert table.block(4, 256) > table.block(4, 128) > table.block(4, 0)
    full = Masks.full(vit, 16)
    assert table.network(full) > table.network(uniform_masks(vit, table, 0.5, 16))
    assert table.network(uniform_masks(vit, table, 0.5, 16)) <= 0.5 * table.network(full)


def test_group_saliency_ranks_groups_by_the_loss_increase_of_zeroing_them(trained):
    data, vit = trained
    masks = Masks.full(vit, 16)
    saliency = GroupSaliency(vit, masks)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        idx = torch.randint(0, len(data.x_train), (64,), generator=gen)
        vit.zero_grad()
        torch.nn.functional.cross_entropy(vit(data.x_train[idx]), data.y_train[idx]).backward()
        saliency.update()
    vit.zero_grad()
    keys = random.Random(0).sample(masks.groups(), 50)
    truth = true_loss_increase(vit, masks, keys, data.x_train, data.y_train)
    rho = spearmanr([saliency.scores[k] for k in keys], truth).statistic
    assert rho > 0.7, rho


def test_pruning_reaches_its_latency_target_and_keeps_most_accuracy(trained):
    data, vit = trained
    table = LatencyTable(vit, 16, repeats=10, batch_size=64)
    result = prune(vit, data.x_train, data.y_train, target=0.5, group_size=16, table=table, interval=5,
                   per_step=2, max_steps=2000)
    assert result.predicted_latency <= 0.5 * table.network(Masks.full(vit, 16)) + 1e-9
    assert result.steps < 2000 and result.history[-1]["latency_ms"] == pytest.approx(result.predicted_latency)
    small = result.model
    train_model(small, data.x_train, data.y_train, data.x_val, data.y_val, TrainConfig(epochs=10, lr=1e-3,
                                                                                        patience=None))
    assert evaluate(small, data.x_test, data.y_test)[1] >= 0.9 * evaluate(vit, data.x_test, data.y_test)[1]
    with pytest.raises(UserError, match="target must be in"):
        prune(vit, data.x_train, data.y_train, target=1.5, table=table, group_size=16)

"""Discrete key-value bottleneck: nearest-key fetching, EMA keys, k-means, only fetched values change in a step, and
less forgetting than a linear probe in class-incremental digits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.train import fit
from archlab.zoo.layers.kv_bottleneck import BottleneckedEncoder, KeyValueBottleneck, kmeans, values_optimizer


def test_each_codebook_fetches_the_value_of_its_nearest_key():
    torch.manual_seed(0)
    kv = KeyValueBottleneck(3, 5, 4, 2).freeze_keys()
    x = torch.randn(7, 3, 4)
    out = kv(x)
    for b in range(7):
        for c in range(3):
            j = ((kv.keys[c] - x[b, c]) ** 2).sum(-1).argmin()
            assert torch.equal(out[b, c], kv.values[c, j])
    with pytest.raises(UserError, match=r"expected inputs \(\.\.\., 3, 4\)"):
        kv(torch.randn(7, 4, 3))


def test_a_step_changes_only_the_fetched_values():
    torch.manual_seed(1)
    kv = KeyValueBottleneck(4, 16, 3, 5).freeze_keys()
    before = kv.values.detach().clone()
    opt = values_optimizer(kv, lr=0.5)
    out = kv(torch.randn(6, 4, 3))
    F.cross_entropy(out.mean(1), torch.randint(0, 5, (6,))).backward()
    opt.step()
    fetched = torch.zeros(4, 16, dtype=torch.bool)
    fetched[torch.arange(4).expand(6, 4), kv.last_indices] = True
    changed = (kv.values.detach() != before).any(-1)
    assert changed[fetched].all() and not changed[~fetched].any()
    assert 0 < fetched.sum() < fetched.numel()


def test_kmeans_finds_separated_blobs_and_ema_keys_follow_their_inputs():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = (centres[:, None] + 0.1 * torch.randn(3, 50, 2, generator=g)).reshape(1, 150, 2)
    found, sizes = kmeans(pts, 3, iters=10, generator=g)
    assert sorted(sizes[0].tolist()) == [50, 50, 50]
    assert torch.cdist(found[0], centres).min(0).values.max() < 0.1
    kv = KeyValueBottleneck(1, 3, 2, 1, decay=0.5)
    kv.init_keys(pts.reshape(150, 1, 2), generator=g)
    shifted = pts.reshape(150, 1, 2) + torch.tensor([1.0, 1.0])
    kv.train()
    for _ in range(30):
        kv(shifted)
    assert torch.cdist(kv.keys[0], centres + 1).min(0).values.max() < 0.1
    kv.freeze_keys()
    keys = kv.keys.clone()
    kv(pts.reshape(150, 1, 2))
    assert torch.equal(kv.keys, keys)


def class_incremental(model: nn.Module, data, tasks, optimizer, epochs: int) -> float:
    x, y = data.x_train.flatten(1), data.y_train
    for classes in tasks:
        mask = (y[:, None] == torch.tensor(classes)).any(1)
        xs, ys = x[mask], y[mask]
        batches = [(xs[i:i + 32], ys[i:i + 32]) for i in range(0, len(xs), 32)]
        fit(model, batches, lambda m, b: F.cross_entropy(m(b[0]), b[1]), epochs=epochs, optimizer=optimizer,
            warmup=0.0, seed=0)
    model.eval()
    with torch.no_grad():
        return (model(data.x_test.flatten(1)).argmax(1) == data.y_test).float().mean().item()


def test_the_bottleneck_forgets_less_than_a_linear_probe_on_class_incremental_digits():
    data = load_dataset("digits", seed=0)
    tasks = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    torch.manual_seed(0)
    probe = nn.Linear(64, 10)
    probe_acc = class_incremental(probe, data, tasks, lambda p: torch.optim.SGD(p, lr=0.05), epochs=5)
    model = BottleneckedEncoder(nn.Identity(), 64, num_codebooks=32, key_value_pairs_per_codebook=64, dim_keys=8,
                                dim_values=10, seed=0)
    model.init_keys(data.x_train.flatten(1), generator=torch.Generator().manual_seed(0))  # no labels used
    model.bottleneck.freeze_keys()
    kv_acc = class_incremental(model, data, tasks, lambda p: values_optimizer(model, lr=50.0), epochs=5)
    assert probe_acc < 0.35, probe_acc  # it forgot all but the last task
    assert kv_acc >= 2 * probe_acc, (kv_acc, probe_acc)


def test_bad_configurations_are_refused():
    with pytest.raises(UserError, match="chunking 64 features"):
        BottleneckedEncoder(nn.Identity(), 64, 5, 8, 8, 10, splitting_mode="chunk")
    with pytest.raises(UserError, match="unknown splitting_mode"):
        BottleneckedEncoder(nn.Identity(), 64, 5, 8, 8, 10, splitting_mode="hash")
    with pytest.raises(UserError, match="needs out_features"):
        BottleneckedEncoder(nn.Identity(), 64, 5, 8, 8, 10, decoder="linear")

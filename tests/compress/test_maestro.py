"""Maestro: the SVD start is exact, ordered dropout and compaction agree, a linear autoencoder trained with ordered
dropout finds PCA's nested subspaces, and a digits MLP at half rank keeps its accuracy better than SVD truncation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from archlab.compress.maestro import (
    MaestroLinear,
    decompose,
    maestro_layers,
    set_fraction,
    svd_truncate,
    train_maestro,
)
from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.train import TrainConfig, evaluate, train_model


def test_the_svd_start_computes_what_the_layer_did_and_truncation_is_eckart_young():
    torch.manual_seed(0)
    linear = nn.Linear(12, 7)
    x = torch.randn(5, 12)
    layer = MaestroLinear.decompose(linear)
    assert torch.allclose(layer(x), linear(x), atol=1e-5)
    s = torch.linalg.svdvals(linear.weight.detach())
    for k in (1, 3, 6):
        v_t, u = MaestroLinear.decompose(linear, rank=k).factors()
        err = torch.linalg.matrix_norm(linear.weight.detach() - u @ v_t)
        assert err.item() == pytest.approx(s[k:].norm().item(), rel=1e-4)
        # ordered dropout at p keeps the same leading components as a rank-k decomposition
        v_p, u_p = layer.factors(k / 7)
        assert torch.allclose(u_p @ v_p, u @ v_t, atol=1e-5)


def test_compact_modules_compute_the_layer_at_its_fraction():
    torch.manual_seed(1)
    layer = MaestroLinear(40, 30)
    x = torch.randn(4, 40)
    for p in (0.1, 0.5, 1.0):
        small = layer.compact(p)
        assert torch.allclose(small(x), layer(x, p), atol=1e-5)
        k = layer.width(p)
        params = sum(t.numel() for t in small.parameters())
        assert params == min(k * 70, 40 * 30) + 30
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        layer(x, 0.0)


def test_shrinking_drops_dead_components_without_changing_the_output():
    torch.manual_seed(2)
    layer = MaestroLinear(10, 8)
    with torch.no_grad():
        layer.in_network.weight[[2, 5]] = 0.0
    x = torch.randn(3, 10)
    before = layer(x)
    assert layer.shrink(1e-5) == 6
    assert layer.importance()[[2, 5]].eq(0).all() and not layer.keep[[2, 5]].any()
    assert torch.allclose(layer(x), before, atol=1e-6)
    assert torch.allclose(layer.compact()(x), before, atol=1e-5)
    with torch.no_grad():
        layer.in_network.weight.zero_()
    assert layer.shrink(1e-5) == 1  # never below one component


def principal_angles_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    qa, _ = torch.linalg.qr(a)
    qb, _ = torch.linalg.qr(b)
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def test_a_linear_autoencoder_with_ordered_dropout_recovers_pca_nested_subspaces():
    g = torch.Generator().manual_seed(0)
    d = 8
    eig = torch.tensor([9.0, 6.0, 4.0, 2.5, 1.5, 0.8, 0.4, 0.2])
    rot, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    x = (torch.randn(4000, d, generator=g) * eig.sqrt()) @ rot.T
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, d, bias=False))
    decompose(model, svd_init=False)
    train_maestro(model, x, x, epochs=200, batch_size=32, lr=1e-2, lasso=0.0, shrink_threshold=0.0, loss="mse")
    layer = maestro_layers(model)[0]
    pcs = torch.linalg.eigh(x.T @ x / len(x)).eigenvectors.flip(1)  # by decreasing variance
    for k in range(1, 5):
        enc = layer.in_network.weight.detach()[:k].T  # the first k encoder directions
        dec = layer.out_network.weight.detach()[:, :k]
        assert principal_angles_deg(enc, pcs[:, :k]).max() < 5.0, k
        assert principal_angles_deg(dec, pcs[:, :k]).max() < 5.0, k


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def test_a_half_rank_maestro_mlp_keeps_its_accuracy_better_than_svd_truncation():
    """From the plain MLP's SVD, 20 epochs of ordered-dropout training (no group lasso, so 50 % of the components
    is 50 % of the original rank); the baseline is the plain MLP's SVD truncation at the same ranks."""
    data = load_dataset("digits", seed=0)
    x, y = data.x_train.flatten(1), data.y_train
    xv, yv = data.x_val.flatten(1), data.y_val
    torch.manual_seed(0)
    plain = mlp()
    train_model(plain, x, y, xv, yv, TrainConfig(epochs=30, batch_size=32, patience=None))
    full_acc = evaluate(plain, xv, yv)[1]
    svd_acc = {f: evaluate(svd_truncate(copy.deepcopy(plain), f, skip=("5",)), xv, yv)[1] for f in (0.5, 0.1)}

    torch.manual_seed(0)
    model = decompose(copy.deepcopy(plain), skip=("5",))  # the 10-way head stays whole
    result = train_maestro(model, x, y, epochs=20, batch_size=32, lr=1e-3, lasso=0.0, shrink_threshold=0.0, seed=0)
    assert result.ranks == [64, 128]
    acc = {}
    for f in (0.5, 0.1):
        set_fraction(model, f)
        acc[f] = evaluate(model, xv, yv)[1]
    assert sum(layer.width() for layer in maestro_layers(model)) == math.ceil(0.1 * 64) + math.ceil(0.1 * 128)
    assert acc[0.5] >= 0.98 * full_acc, (acc, full_acc)
    assert acc[0.5] > svd_acc[0.5] and acc[0.1] > svd_acc[0.1], (acc, svd_acc)


def test_decompose_needs_a_linear_layer():
    with pytest.raises(UserError, match="no nn.Linear"):
        decompose(nn.Sequential(nn.ReLU()))
    with pytest.raises(UserError, match="decompose it first"):
        train_maestro(nn.Sequential(nn.Linear(2, 2)), torch.randn(4, 2), torch.zeros(4, dtype=torch.long))

"""Each zero-cost proxy against a hand computation of its published definition (float64 tiny networks)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.proxies import epe_nas, fisher, grad_norm, grasp, l2_norm, plain, snip, synflow, zen

K = 1e-5


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()


def batch(n: int = 6, d: int = 4, classes: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.arange(n) % classes


def mlp_by_hand(model, x, y):
    """Forward and backward of mean cross-entropy through Linear-ReLU-Linear, written out."""
    w1, b1, w2, b2 = (t.detach() for t in (model[0].weight, model[0].bias, model[2].weight, model[2].bias))
    h = x @ w1.t() + b1
    a = h.clamp_min(0)
    z = a @ w2.t() + b2
    dz = (torch.softmax(z, 1) - F.one_hot(y, z.shape[1]).double()) / len(y)
    dh = (dz @ w2) * (h > 0).double()
    return {"w1": w1, "w2": w2, "g1": dh.t() @ x, "g2": dz.t() @ a, "h": h, "dh": dh, "z": z, "dz": dz}


def test_snip_grad_norm_plain_l2_norm_of_a_two_layer_mlp():
    model, (x, y) = mlp(), batch()
    r = mlp_by_hand(model, x, y)
    pairs = [(r["w1"], r["g1"]), (r["w2"], r["g2"])]
    assert snip(model, x, y) == pytest.approx(sum((w * g).abs().sum() for w, g in pairs).item(), rel=1e-9)
    assert grad_norm(model, x, y) == pytest.approx(sum(g.norm() for _, g in pairs).item(), rel=1e-9)
    assert plain(model, x, y) == pytest.approx(sum((w * g).sum() for w, g in pairs).item(), rel=1e-9)
    assert l2_norm(model) == pytest.approx((r["w1"].norm() + r["w2"].norm()).item(), rel=1e-12)


def test_fisher_of_a_two_layer_mlp():
    model, (x, y) = mlp(2), batch()
    r = mlp_by_hand(model, x, y)
    # per output channel ½ mean_n (a·∂L/∂a)², broadcast over the layer's fan-in (4 for layer 1, 3 for layer 2)
    layer1 = 0.5 * (r["h"] * r["dh"]).pow(2).mean(0).sum() * 4
    layer2 = 0.5 * (r["z"] * r["dz"]).pow(2).mean(0).sum() * 3
    assert fisher(model, x, y) == pytest.approx((layer1 + layer2).item(), rel=1e-9)


def test_grasp_of_a_linear_classifier_is_minus_theta_hessian_gradient():
    torch.manual_seed(3)
    model = nn.Linear(4, 3).double()
    x, y = batch(n=5, classes=3)
    w = model.weight.detach()
    p = torch.softmax(x @ w.t() + model.bias.detach(), 1)
    g = (p - F.one_hot(y, 3).double()).t() @ x / len(y)
    # H_W g = 1/N Σ_n [(diag p_n − p_n p_nᵀ)(g x_n)] x_nᵀ: the Hessian of softmax cross-entropy in W, times g
    hg = sum(torch.outer((torch.diag(p[n]) - torch.outer(p[n], p[n])) @ (g @ x[n]), x[n]) for n in range(5)) / 5
    expected = -(w * hg).sum().item()
    assert expected != 0
    assert grasp(model, x, y) == pytest.approx(expected, rel=1e-9)


def test_synflow_treats_batchnorm_as_the_identity():
    torch.manual_seed(4)
    plain_net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    with_bn = nn.Sequential(plain_net[0], nn.BatchNorm1d(5), nn.ReLU(), plain_net[2])
    with torch.no_grad():
        with_bn[1].running_var.fill_(7.0)  # ignored: the reference's ``synflow`` copies the net with bn=False
    x = torch.randn(3, 4)
    assert synflow(with_bn, x) == synflow(plain_net, x) > 0


def test_epe_nas_of_a_linear_model_has_its_closed_form():
    # a linear model gives every input the same Jacobian: each class's correlation matrix is all ones
    model = nn.Linear(4, 3).double()
    x, y = batch(n=7, classes=3)
    sizes = [int((y == c).sum()) for c in range(3)]
    assert epe_nas(model, x, y) == pytest.approx(sum(m * m * math.log(1 + K) for m in sizes), rel=1e-9)


def test_epe_nas_with_more_than_100_classes_compares_the_classes():
    model = nn.Linear(4, 101).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 3])  # classes 2 and 3 have one input each: skipped, as in the reference
    s = [3 * math.log(1 + K), 2 * math.log(1 + K)]  # m² log(1+k) / m
    expected = sum(abs(a - b) for a in s for b in s) / len(s)
    assert epe_nas(model, x, y) == pytest.approx(expected, rel=1e-9)


def test_epe_nas_sees_distinct_per_class_jacobians():
    x, y = batch(n=8, classes=2)
    identical = epe_nas(nn.Linear(4, 2).double(), x, y)
    distinct = epe_nas(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)).double(), x, y)
    assert identical == pytest.approx(2 * 16 * math.log(1 + K))
    assert distinct > 100 * identical  # uncorrelated Jacobians: log(|ρ| + k) far from 0


def test_zen_of_a_linear_model_scales_with_the_perturbation():
    # f(x) − f(x + γε) = −γ W ε: log Δ grows by exactly log 2 when γ doubles (same seeded draws)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.Linear(5, 3, bias=False))
    x = torch.randn(4, 2, 3)
    assert zen(model, x, mixup_gamma=0.02) - zen(model, x, mixup_gamma=0.01) == pytest.approx(math.log(2), abs=1e-5)


def test_zen_ignores_the_models_weights_and_adds_the_batchnorm_term():
    def net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 5, bias=False), nn.BatchNorm1d(5), nn.Linear(5, 2)).double()

    x = torch.randn(3, 4, dtype=torch.float64)
    assert zen(net(0), x, seed=7, repeat=2) == zen(net(1), x, seed=7, repeat=2)  # weights are redrawn
    # by hand, repeat=1: the draws in the reference's order, BatchNorm in train mode, f = the last Linear's input
    gen = torch.Generator().manual_seed(7)
    w1 = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    torch.randn(2, 5, generator=gen, dtype=torch.float64)  # the head's weight: not on the path to f
    x1, x2 = (torch.randn(16, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    running_var, feats = torch.ones(5, dtype=torch.float64), []
    for inp in (x1, x1 + 0.01 * x2):
        h = inp @ w1.t()
        feats.append((h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5))
        running_var = 0.9 * running_var + 0.1 * h.var(0, unbiased=True)
    delta = (feats[0] - feats[1]).abs().sum(1).mean()
    expected = math.log(delta.item()) + math.log(math.sqrt(running_var.mean().item()))
    assert zen(net(0), x, seed=7, repeat=1) == pytest.approx(expected, rel=1e-9)

"""Zero-cost proxies against their definitions, computed by hand on networks where they have closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.errors import UserError
from archlab.proxies import (
    PROXIES,
    ProxyScorer,
    compute_proxies,
    grad_norm,
    jacob_cov,
    naswot,
    snip,
    synflow,
    vote_scores,
)
from archlab.space import Space, choice


def relu_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def test_naswot_is_the_log_determinant_of_the_hamming_kernel():
    model = relu_mlp()
    x = torch.randn(7, 1, 2, 3)
    h1 = model[1](model[0](x))
    h2 = model[3](torch.relu(h1))
    codes = torch.cat([(h1 > 0), (h2 > 0)], dim=1).double()
    n_units = codes.shape[1]
    hamming = torch.cdist(codes, codes, p=1)
    expected = torch.linalg.slogdet(n_units - hamming)[1].item()
    assert naswot(model, x) == pytest.approx(expected, rel=1e-12)


def test_synflow_of_a_bias_free_linear_network_is_depth_times_the_output():
    # R(θ) = 1ᵀ|W3||W2||W1|1 is homogeneous of degree 1 in each of the 3 layers, so Σ θ ∂R/∂θ = 3R (Euler)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.Linear(5, 4, bias=False),
                          nn.Linear(4, 3, bias=False))
    w1, w2, w3 = (model[i].weight.detach().abs().double() for i in (1, 2, 3))
    r = (w3 @ w2 @ w1 @ torch.ones(6, dtype=torch.float64)).sum().item()
    assert synflow(model, torch.randn(2, 1, 2, 3)) == pytest.approx(3 * r, rel=1e-12)  # the raw sum, as published


def test_snip_and_grad_norm_equal_the_hand_computed_gradient_of_the_weights_only():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    w, b = model[1].weight.detach(), model[1].bias.detach()
    p = torch.softmax(x.flatten(1) @ w.t() + b, dim=1)
    delta = (p - torch.nn.functional.one_hot(y, 3).float()) / len(y)  # ∂ mean CE / ∂ logits
    gw, gb = delta.t() @ x.flatten(1), delta.sum(0)
    # the references score conv/linear weights only: the bias's gradient gb counts nowhere
    assert gb.abs().sum() > 0
    assert snip(model, x, y) == pytest.approx((w * gw).abs().sum().item(), rel=1e-5)
    assert grad_norm(model, x, y) == pytest.approx(gw.norm().item(), rel=1e-5)


def test_jacob_cov_of_a_linear_model_has_its_closed_form():
    # every input has the same Jacobian, so the correlation matrix is all ones: eigenvalues n, 0, ..., 0
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    n, k = 6, 1e-5
    expected = -((math.log(n + k) + 1 / (n + k)) + (n - 1) * (math.log(k) + 1 / k))
    assert jacob_cov(model, torch.randn(n, 1, 2, 2)) == pytest.approx(expected, rel=1e-6)


def test_proxies_leave_weights_and_mode_unchanged():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.GELU(), nn.Flatten(),
                          nn.Linear(4 * 16, 3))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = compute_proxies(model, torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,)))
    assert set(scores) == set(PROXIES)
    assert all(math.isfinite(v) for v in scores.values())
    # conv 4x4x(1*9)x4 multiply-adds + linear 64x3, at 2 FLOPs per multiply-add
    assert scores["flops"] == 2 * (16 * 9 * 4 + 64 * 3)
    assert scores["params"] == sum(p.numel() for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_proxy_scorer_is_deterministic_and_checks_names():
    space = Space(lambda a: nn.Sequential(nn.Flatten(), nn.Linear(4, a["width"]), nn.ReLU(),
                                          nn.Linear(a["width"], 3)),
                  width=choice([2, 8, 32]))
    x, y = torch.randn(100, 1, 2, 2), torch.randint(0, 3, (100,))
    archs = list(space.enumerate())
    first = [ProxyScorer(space, x, y)(a) for a in archs]
    assert first == [ProxyScorer(space, x, y)(a) for a in archs]
    naswot_scores = [s[0] for s in first]
    assert naswot_scores == sorted(naswot_scores)  # more units, more distinct activation patterns
    with pytest.raises(UserError, match="unknown proxy"):
        ProxyScorer(space, x, y, names=("naswot", "no-such-proxy"))
    # a leading "-" ranks smaller values higher: the cheapest arch scores highest on "-flops"
    costs = [ProxyScorer(space, x, y, names=("flops", "-flops"))(a) for a in archs]
    assert [c[1] for c in costs] == [-c[0] for c in costs]
    assert costs[0][0] < costs[1][0] < costs[2][0]


class _TokensInBatch(nn.Module):
    """Folds its 3 tokens into the batch before the activation, as attention and MLP mixers do: (B*N, C)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act, self.head = nn.Linear(4, 5), nn.ReLU(), nn.Linear(15, 2)

    def forward(self, x):
        b = len(x)
        h = self.act(self.fc(x.reshape(b * 3, 4)))
        return self.head(h.reshape(b, 15))


def test_naswot_regroups_activations_whose_tokens_are_folded_into_the_batch():
    torch.manual_seed(0)
    model = _TokensInBatch().double()
    x = torch.randn(6, 12, dtype=torch.float64)
    codes = (model.fc(x.reshape(18, 4)) > 0).reshape(6, 15).double()
    k = codes @ codes.t() + (1 - codes) @ (1 - codes).t()
    sign, logdet = torch.linalg.slogdet(k)
    expected = float(logdet) if sign > 0 else -math.inf
    scores = compute_proxies(model, x, torch.zeros(6, dtype=torch.long), ["nwot", "snip"])
    assert scores["nwot"] == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(scores["snip"])


def test_the_search_warmup_scores_archs_with_tokens_folded_into_the_batch():
    from archlab.data import load_dataset
    from archlab.space import create_space

    data = load_dataset("digits", seed=0)
    space = create_space("metaformer", input_shape=data.input_shape, num_classes=data.num_classes,
                         mixers=["fit"])  # FiT's GELU sees (B*N, C)
    scorer = ProxyScorer(space, data.x_train, data.y_train, names=("naswot", "snip", "-flops"))
    for seed in range(3):
        values = scorer(space.sample(seed=seed))
        assert len(values) == 3 and all(math.isfinite(v) for v in values[1:])


def test_vote_scores_are_the_pairwise_majority_counted_per_arch():
    rng = np.random.default_rng(0)
    rows = [{"a": float(a), "b": float(b), "c": float(c)} for a, b, c in rng.integers(0, 4, size=(40, 3))]
    rows[3]["b"] = float("nan")  # no vote for this one
    rows[5]["a"] = rows[6]["a"] = float("inf")  # inf against inf is a tie

    def margin(r, s):
        return sum(np.sign(np.nan_to_num(r[k] - s[k], nan=0.0)) for k in "abc")

    ok = [r for r in rows if not any(np.isnan(r[k]) for k in "abc")]
    brute = [sum(1.0 if margin(r, s) > 0 else 0.5 if margin(r, s) == 0 else 0.0 for s in ok if s is not r)
             if r in ok else np.nan for r in rows]
    got = vote_scores(rows, ("a", "b", "c"))
    np.testing.assert_array_equal(got, brute)
    # a vote of one proxy with itself ranks like that proxy; the ranks are a permutation's when there are no ties
    distinct = [{"a": float(v), "b": float(v)} for v in rng.permutation(25)]
    assert list(np.argsort(vote_scores(distinct, ("a", "b")))) == list(np.argsort([r["a"] for r in distinct]))
    with pytest.raises(UserError, match="at least two"):
        vote_scores(rows, ("a",))
    with pytest.raises(UserError, match="no column for proxy zz"):
        vote_scores(rows, ("a", "zz"))

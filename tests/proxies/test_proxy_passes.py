"""The proxies' contract: shared passes equal single ones, no side effects, determinism, NaN on failure."""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.proxies import PROXIES, compute_proxies, grad_norm, grasp, l2_norm, plain, snip


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
                         nn.Flatten(), nn.Linear(4 * 16, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))


def data(n: int = 8):
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 1, 4, 4, generator=g), torch.arange(n) % 3


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_the_shared_pass_equals_each_proxy_on_its_own_bit_for_bit():
    model, (x, y) = cnn(), data()
    together = compute_proxies(model, x, y, seed=3)
    for name, proxy in PROXIES.items():
        assert same(together[name], proxy(model, x, y, seed=3)), name
    assert compute_proxies(model, x, y, ["snip", "grasp"], seed=3) == {k: together[k] for k in ("snip", "grasp")}


def test_proxies_are_deterministic_and_the_seed_draws_the_dropout_masks():
    model, (x, y) = cnn(), data()
    first = compute_proxies(model, x, y, seed=0)
    assert all(same(first[k], v) for k, v in compute_proxies(model, x, y, seed=0).items())
    assert snip(model, x, y, seed=0) != snip(model, x, y, seed=1)


def test_compute_proxies_leaves_weights_modes_flags_grads_and_the_rng_alone():
    model, (x, y) = cnn(), data()
    model.eval()
    model[3].train()  # a mixed mode must come back as it was, module by module
    model[0].weight.requires_grad_(False)
    model[5].weight.grad = torch.full_like(model[5].weight, 2.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    scores = compute_proxies(model, x, y)
    assert all(math.isfinite(v) for v in scores.values())
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # BatchNorm running stats included
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(model[5].weight.grad, torch.full_like(model[5].weight, 2.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "5.weight")


class Scaled(nn.Module):
    """Linear → ×s → ReLU → Linear, with s a free parameter (on the gradient path) or a buffer (off it)."""

    def __init__(self, free: bool) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)
        self.norm = nn.LayerNorm(5, elementwise_affine=free)
        if free:
            self.s = nn.Parameter(torch.ones(5))
        else:
            self.register_buffer("s", torch.ones(5))

    def forward(self, x):
        return self.b(torch.relu(self.norm(self.a(x) * self.s)))


def test_scores_sum_over_conv_and_linear_weights_only():
    x, y = torch.randn(6, 4), torch.arange(6) % 3
    free, fixed = Scaled(free=True), Scaled(free=False)
    assert sum(p.numel() for p in free.parameters()) > sum(p.numel() for p in fixed.parameters())
    for proxy in (snip, grad_norm, plain, grasp, l2_norm):
        assert proxy(free, x, y) == proxy(fixed, x, y) != 0, proxy.__name__
    # what the old all-parameter sum gave differs: the free scale and LayerNorm have gradients of their own
    free.zero_grad()
    nn.functional.cross_entropy(free(x), y).backward()
    assert free.s.grad.abs().sum() > 0


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.emb, self.head = nn.Embedding(10, 6), nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))

    def forward(self, tokens):
        return self.head(self.emb(tokens).mean(1))


def test_a_failing_proxy_is_nan_and_the_others_are_still_computed():
    tokens, y = torch.randint(0, 10, (8, 5), generator=torch.Generator().manual_seed(8)), torch.arange(8) % 3
    errors: dict[str, str] = {}
    scores = compute_proxies(TokenModel(), tokens, y, errors=errors)
    failing = {"jacob_cov", "epe_nas", "zen"}  # no input Jacobian and no Gaussian input for token ids
    assert {k for k, v in scores.items() if math.isnan(v)} == failing == set(errors)
    assert all(math.isfinite(v) for k, v in scores.items() if k not in failing | {"naswot", "nwot"})
    # an output cross-entropy cannot use: the gradient proxies fail, the data-only ones do not
    torch.manual_seed(9)
    wide = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3))
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(10))
    bad = compute_proxies(wide, x, torch.arange(6) + 10)  # labels out of range
    assert all(math.isnan(bad[k]) for k in ("snip", "grad_norm", "plain", "fisher", "grasp"))
    assert all(math.isfinite(bad[k]) for k in ("naswot", "jacob_cov", "synflow", "l2_norm", "params"))

"""EfficientTDNN's search on the dynamic TDNN supernet: the encoding ignores what a subnet does not use, MACs grow
with the subnet, progressive training teaches its subnets, the predictor ranks held-out subnets, and the
evolutionary pick at a MACs budget is within budget and at least as good as uniform scaling."""

from __future__ import annotations

import random

import pytest
import torch
from scipy.stats import spearmanr

from archlab.data.speakers import synthetic_speakers
from archlab.errors import UserError
from archlab.search.oneshot.efficient_tdnn import (
    AccuracyPredictor,
    Subnet,
    TDNNSubnets,
    evolve,
    progressive_train,
    subnet_accuracy,
    subnet_macs,
    uniform_subnet,
)
from archlab.zoo.models.tdnn import DynamicTDNN


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_supernet(num_classes: int = 6) -> DynamicTDNN:
    torch.manual_seed(0)
    return DynamicTDNN(in_feats=16, out_embeds=24, num_blocks=3, channels=32, kernel_sizes=[5, 5, 5, 5],
                       catconv_channels=64, bottleneck_dim=16, scale=4, num_classes=num_classes)


def speakers(n: int, classes: int, seed: int):
    x, y = synthetic_speakers(n, classes, seed=seed)
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def test_the_encoding_ignores_unused_positions_and_separates_used_ones():
    subnets = TDNNSubnets(tiny_supernet())
    rng = random.Random(0)
    shallow = Subnet(1, (1.0, 0.5, 0.25, 0.75), (5, 3, 1, 5), 0.5)
    same_used = Subnet(1, (1.0, 0.5, 1.0, 1.0), (5, 3, 5, 3), 0.5)
    assert subnets.encode(shallow) == subnets.encode(same_used)
    deeper = Subnet(2, shallow.ratios, shallow.kernels, 0.5)
    assert subnets.encode(deeper) != subnets.encode(shallow)
    lengths = {len(subnets.encode(subnets.sample(rng))) for _ in range(20)}
    assert len(lengths) == 1
    with pytest.raises(UserError, match="depths"):
        TDNNSubnets(tiny_supernet(), depths=[4])


def test_activated_subnets_match_their_extraction_and_macs_grow_with_width():
    net = tiny_supernet().eval()
    subnets = TDNNSubnets(net)
    x = torch.randn(3, 16, 40)
    rng = random.Random(1)
    for _ in range(4):
        s = subnets.sample(rng)
        subnets.activate(s)
        static = net.extract_subnet().eval()
        assert torch.allclose(static(x), net(x), atol=1e-5)
    macs = [subnet_macs(subnets, Subnet(3, (r,) * 4, (5,) * 4, r), 40) for r in subnets.ratios]
    assert macs == sorted(macs) and macs[0] < macs[-1] / 4
    assert net.config == subnets.supernet.config  # measuring MACs leaves the active subnet alone
    budget = (macs[1] + macs[2]) // 2
    uniform = uniform_subnet(subnets, lambda s: subnet_macs(subnets, s, 40), budget)
    assert uniform.ratios[0] == subnets.ratios[1]


def test_progressive_training_teaches_subnets_and_the_search_beats_uniform_scaling():
    classes = 6
    train, val = speakers(384, classes, seed=1), speakers(256, classes, seed=2)
    net = tiny_supernet(classes)
    subnets = progressive_train(net, train, epochs=12, lr=3e-3, seed=0)
    assert net.config == (3, [32] * 4, [5] * 4, 64)
    full = subnet_accuracy(subnets, subnets.largest(), train, val)
    assert full > 0.6  # chance is 1/6
    rng = random.Random(3)
    measured = []
    for _ in range(90):
        s = subnets.sample(rng)
        measured.append((s, subnet_accuracy(subnets, s, train, val)))
    small = min(measured, key=lambda m: subnet_macs(subnets, m[0], 40))
    assert small[1] > 0.3  # even the small subnets learned: the supernet trained them, not only the full one
    fit_on, held_out = measured[:40], measured[40:]
    x = torch.tensor([subnets.encode(s) for s, _ in fit_on])
    predictor = AccuracyPredictor(x.shape[1]).fit(x, torch.tensor([a for _, a in fit_on]), seed=0)
    with torch.no_grad():
        predicted = predictor(torch.tensor([subnets.encode(s) for s, _ in held_out])).tolist()
    rho = spearmanr(predicted, [a for _, a in held_out]).statistic
    assert rho > 0.5, rho

    def macs(s):
        return subnet_macs(subnets, s, 40)

    budget = sorted(macs(s) for s, _ in measured)[len(measured) // 3]

    def fitness(s):
        with torch.no_grad():
            return float(predictor(torch.tensor([subnets.encode(s)])))

    best, _ = evolve(subnets, fitness, macs, budget, population=16, generations=4, seed=0)
    assert macs(best) <= budget
    uniform = uniform_subnet(subnets, macs, budget)
    assert subnet_accuracy(subnets, best, train, val) >= subnet_accuracy(subnets, uniform, train, val) - 0.05

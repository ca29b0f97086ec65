"""ViT-ResNAS's search: sub-networks drawn, mutated and crossed stay valid, multi-architectural training teaches the
sub-networks, and evolution under a MACs budget finds one within budget that beats the typical random one."""

from __future__ import annotations

import random
import statistics

import pytest
import torch

from archlab.errors import UserError
from archlab.search.oneshot.evolution_finder import evolve
from archlab.search.oneshot.vit_resnas import ViTSubnets, subnet_accuracy, subnet_macs, train_supernet
from archlab.zoo.models.vit_resnas import SubArch, ViTResNAS


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_vit() -> ViTResNAS:
    torch.manual_seed(0)
    return ViTResNAS(img_size=16, patch_size=4, in_chans=1, num_classes=4, embed_dims=(16, 32), depths=(1, 1),
                     num_heads=(2, 4), head_dim=8, mlp_hidden=(32, 64))


def task(n: int, seed: int):
    gen = torch.Generator().manual_seed(7)
    means = torch.randn(4, 1, 16, 16, generator=gen)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=gen)
    x = means[y] + 0.8 * torch.randn(n, 1, 16, 16, generator=gen)
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def test_sampled_mutated_and_crossed_subnets_are_valid():
    model = tiny_vit()
    subnets = ViTSubnets(model)
    rng = random.Random(0)
    x = torch.randn(2, 1, 16, 16)
    for _ in range(20):
        a, b = subnets.sample(rng), subnets.sample(rng)
        for child in (a, subnets.mutate(a, rng, 0.5), subnets.crossover(a, b, rng)):
            assert list(child.embed_dims) == sorted(child.embed_dims)
            assert model(x, archs=[child]).shape == (2, 4)
    a = subnets.sample(rng)
    assert subnets.mutate(a, rng, 0.0) == a
    child = subnets.crossover(a, subnets.largest(), rng)
    assert all(c in (p, q) for c, p, q in zip(child.mlp_hidden, a.mlp_hidden, subnets.largest().mlp_hidden,
                                                strict=True))
    with pytest.raises(UserError, match="fractions"):
        ViTSubnets(model, ratios=(0.0, 1.0))


def test_multi_arch_training_and_evolution_under_macs():
    model = tiny_vit()
    train, val = task(512, 1), task(256, 2)
    subnets = train_supernet(model, train, epochs=8, archs_per_batch=4, lr=3e-3, seed=0)
    assert subnet_accuracy(model, subnets.largest(), val) > 0.6  # chance is 0.25
    smallest = SubArch(tuple(o[0] for o in subnets.embed), tuple(o[0] for o in subnets.heads),
                       tuple(o[0] for o in subnets.mlp))
    assert subnet_accuracy(model, smallest, val) > 0.4  # trained too, not only the full network
    rng = random.Random(5)
    pool = [subnets.sample(rng) for _ in range(30)]
    macs = {a: subnet_macs(model, a) for a in pool}
    assert subnet_macs(model, smallest) < subnet_macs(model, subnets.largest())
    budget = statistics.median(macs.values())
    feasible = [a for a in pool if macs[a] <= budget]
    typical = statistics.median(subnet_accuracy(model, a, val) for a in feasible)
    best, fitness = evolve(subnets, lambda a: subnet_accuracy(model, a, val), lambda a: subnet_macs(model, a),
                           budget, population=12, generations=3, seed=0)
    assert subnet_macs(model, best) <= budget
    assert fitness == pytest.approx(subnet_accuracy(model, best, val))
    assert fitness >= typical

"""Once-for-All's elastic supernet: the identity kernel transform is the centre crop, channel re-sorting leaves the
function unchanged, extracted subnets equal the supernet under the same setting, and progressive shrinking trains
the subnets with the full network as teacher."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from archlab.errors import UserError
from archlab.search.oneshot.ofa import STAGES, DynamicDepthwiseConv, OFANet, OFASubnets, sort_channels
from archlab.search.oneshot.progressive import progressive_shrinking
from archlab.search.oneshot.spos import recalibrate_batchnorm


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_ofa(**kw) -> OFANet:
    torch.manual_seed(0)
    cfg = dict(in_chans=1, num_classes=4, stem_channels=8, stages=((8, 2, 1), (16, 2, 2)), head_channels=16,
               kernel_sizes=(3, 5, 7), expand_ratios=(2, 3, 4))
    return OFANet(**{**cfg, **kw})


def randomise(net: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and affine terms, so that a lost or misplaced channel shows."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(1 + 0.3 * torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen))
    return net


def test_the_identity_kernel_transform_is_the_centre_crop_and_a_learned_one_changes_it():
    conv = DynamicDepthwiseConv(6, (3, 5, 7))
    w = conv.conv.weight
    assert torch.equal(conv.active_filter(6, 7), w)
    assert torch.allclose(conv.active_filter(6, 5), w[:, :, 1:6, 1:6])
    assert torch.allclose(conv.active_filter(4, 3), w[:4, :, 2:5, 2:5])
    assert sorted(n for n, _ in conv.named_parameters()) == ["5to3_matrix", "7to5_matrix", "conv.weight"]
    with torch.no_grad():
        getattr(conv, "7to5_matrix").add_(0.1 * torch.randn(25, 25))
    assert not torch.allclose(conv.active_filter(6, 5), w[:, :, 1:6, 1:6])
    with pytest.raises(UserError, match="odd"):
        DynamicDepthwiseConv(4, (2, 3))


@pytest.mark.parametrize("training", [False, True])
def test_channel_re_sorting_leaves_the_network_unchanged(training):
    net = randomise(tiny_ofa())
    x = torch.randn(4, 1, 12, 12)
    net.train(training)
    before = net(x).detach()
    sort_channels(net)
    assert torch.allclose(net(x), before, atol=1e-5)
    for block in net.blocks:
        importance = block.point_linear.conv.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])


def test_extracted_subnets_equal_the_supernet_under_the_same_setting():
    net = randomise(tiny_ofa())
    subnets = OFASubnets(net)
    x = torch.randn(3, 1, 12, 12)
    rng = random.Random(0)
    for _ in range(5):
        s = subnets.sample(rng)
        subnets.activate(s)
        for training in (False, True):
            net.train(training)
            sub = subnets.extract(s).train(training)
            assert torch.allclose(sub(x), net(x), atol=1e-5), (s, training)
        assert sum(p.numel() for p in sub.parameters()) <= sum(p.numel() for p in net.parameters())
    with pytest.raises(UserError, match="depth"):
        subnets.activate(type(s)((9, 1), s.kernels, s.expands))


def test_progressive_shrinking_trains_the_subnets_with_the_full_network_teaching():
    gen = torch.Generator().manual_seed(3)
    means = torch.randn(4, 1, 12, 12, generator=gen)
    y = torch.randint(0, 4, (256,), generator=gen)
    x = means[y] + 0.7 * torch.randn(256, 1, 12, 12, generator=gen)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    net = tiny_ofa()
    subnets = progressive_shrinking(OFASubnets(net), batches, stages=STAGES, epochs=8, lr=3e-3, seed=0)
    assert net.runtime_depth == [2, 2]
    net.eval()
    rng = random.Random(1)
    for _ in range(3):
        s = subnets.sample(rng)
        sub = recalibrate_batchnorm(subnets.extract(s), batches).eval()  # OFA's set_running_statistics
        with torch.no_grad():
            acc = float((sub(x).argmax(-1) == y).float().mean())
        assert acc > 0.6, (s, acc)  # chance is 0.25

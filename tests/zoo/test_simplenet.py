"""SimpleNet: published parameter counts, the reference's layer layout, global max-pooling, input checks, and a
short training run on digits upsampled to 32x32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab import zoo
from archlab.errors import UserError

# Published counts: 5.48M (Coderx7/SimpleNet_Pytorch README, CIFAR-10 table), 310K and 460K (Coderx7/SimpleNet
# README, "Slimmed version results", table 6). All at 10 classes.
PUBLISHED = {"simplenet_cifar_310k": 310_000, "simplenet_cifar_460k": 460_000, "simplenet_cifar_5m": 5_480_000}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_within_one_percent_of_published(name: str) -> None:
    n = _count(zoo.create_model(name, num_classes=10))
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.01, n


def test_pytorch_port_kernel_layout_of_460k() -> None:
    # A regression pin derived from the layer list, not a published count: the port's list (1x1 at layers
    # 13-14, 3x3 last) has 2 * 96 * 96 * 8 fewer weights in layers 13-14 and
    # 96 * 100 * 8 more in the last layer than the Caffe layout: 456,446 - 147,456 + 76,800 = 385,790.
    assert _count(zoo.create_model("simplenet_cifar_460k", kernels="pytorch")) == 385_790
    with pytest.raises(UserError, match="kernels"):
        zoo.create_model("simplenet_cifar_460k", kernels="other")


def test_layer_layout_follows_the_reference_sequential() -> None:
    # From cifar/models/simplenet.py: a conv layer is Conv-BN-ReLU plus Dropout2d when its rate is not None; a pool
    # is MaxPool-Dropout2d. 310k: C C C C(None) P C C C(None) P C C(None) P C C1 C1(None) P C(None).
    code = {nn.Conv2d: "C", nn.BatchNorm2d: "B", nn.ReLU: "R", nn.Dropout2d: "D", nn.MaxPool2d: "P"}
    model = zoo.create_model("simplenet_cifar_310k")
    layout = "".join(code[type(m)] for m in model.features)
    assert layout == "CBRD" * 3 + "CBR" + "PD" + "CBRD" * 2 + "CBR" + "PD" + "CBRD" + "CBR" + "PD" + \
        "CBRD" * 2 + "CBR" + "PD" + "CBR"
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 32, 32, 32, 32, 32, 64, 64, 64, 128, 256, 64, 64]
    assert [c.kernel_size[0] for c in convs] == [3] * 10 + [1, 1, 3]
    assert all(c.padding == (1, 1) for c in convs)  # the reference pads the 1x1 convolutions too
    bn = model.features[1]
    assert (bn.eps, bn.momentum) == (1e-5, 0.05)
    assert model.classifier.in_features == 64


def test_forward_is_global_max_pool_then_linear() -> None:
    torch.manual_seed(0)
    model = zoo.create_model("simplenet_cifar_310k", num_classes=7, in_chans=1).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        feats = model.features(x)
        expected = model.classifier(feats.flatten(2).max(-1).values)
        torch.testing.assert_close(model(x), expected)
    assert expected.shape == (3, 7)


def test_drop_rates_and_bad_input() -> None:
    model = zoo.create_model("simplenet_cifar_5m", drop_rates={0: 0.25, 4: 0.1})
    assert model.features[3].p == 0.25  # conv 0's Dropout2d
    pool_drop = [m for m in model.features if isinstance(m, nn.Dropout2d)]
    assert any(m.p == 0.1 for m in pool_drop)
    with pytest.raises(UserError, match="drop_rates"):
        zoo.create_model("simplenet_cifar_5m", drop_rates={0: 1.5})
    small = zoo.create_model("simplenet_cifar_310k")
    with pytest.raises(UserError, match=r"simplenet_cifar_310k: expected input \(B, 3, H, W\) with H, W >= 8"):
        small(torch.randn(1, 3, 4, 4))
    with pytest.raises(UserError, match=r"got \(1, 1, 32, 32\)"):
        small(torch.randn(1, 1, 32, 32))


@pytest.mark.slow
def test_trains_on_digits_upsampled_to_32() -> None:
    from archlab.data import load_dataset

    data = load_dataset("digits", seed=0)

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)

    torch.manual_seed(0)
    # Half-width 310k SimpleNet (about 80k parameters) keeps this CPU run short.
    model = zoo.create_model("simplenet_cifar_310k", num_classes=10, in_chans=1, scale=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_train, y_train = up(data.x_train), data.y_train
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(up(data.x_test)).argmax(1) == data.y_test).float().mean().item()
    assert accuracy >= 0.97, accuracy

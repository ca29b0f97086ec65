"""The ``image`` space (the default of an image search) and its StageNet: the textbook CNN and a small ResNet are
points of it, each equal to the network written by hand; the first stage holds only convolutional families; the
resolutions, the spec round trip and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.errors import SpaceError, UserError
from archlab.space import create_space
from archlab.study import SearchConfig
from archlab.zoo import create_model
from archlab.zoo.models.stagenet import CONV_BLOCKS, stage_resolutions

TEXTBOOK = {"stem_stride": 1, "first": {"block": "conv", "depth": 2, "width": 32},
            "rest": [{"block": "conv", "depth": 2, "width": 64}, {"block": "conv", "depth": 1, "width": 128}],
            "mlp_ratio": 2}
RESNET = {"stem_stride": 1, "first": {"block": "residual", "depth": 2, "width": 16},
          "rest": [{"block": "residual", "depth": 2, "width": 32}, {"block": "residual", "depth": 2, "width": 64}],
          "mlp_ratio": 2}


def textbook_by_hand(in_chans: int) -> nn.Module:
    """The 50-line CNN a user writes: conv-BN-ReLU 32, 32, pool, 64, 64, pool, 128, global average pool, linear."""
    layers: list[nn.Module] = []
    c = in_chans
    for w in (32, 32, "pool", 64, 64, "pool", 128):
        if w == "pool":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


def copy_in_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s parameters and buffers into ``dst``'s, matched by order and shape."""
    a, b = list(src.state_dict().values()), dst.state_dict()
    assert len(a) == len(b)
    dst.load_state_dict({k: v.clone() for k, v in zip(b, a, strict=True)})


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_the_textbook_cnn_is_an_arch_of_the_default_space(shape):
    space = create_space(SearchConfig().space, input_shape=shape, num_classes=10)
    arch = space.validate(TEXTBOOK)
    model, hand = space.build(arch), textbook_by_hand(shape[0])
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in hand.parameters())
    copy_in_order(hand, model)
    x = torch.randn(6, *shape)
    for mode in (True, False):
        model.train(mode), hand.train(mode)
        torch.testing.assert_close(model(x), hand(x), rtol=1e-5, atol=1e-5)
    if shape[0] == 1:
        assert sum(p.numel() for p in model.parameters()) == 140_458


class _Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def test_a_small_resnet_is_an_arch_and_equals_the_cifar_resnet():
    space = create_space("image", input_shape=(3, 32, 32), num_classes=10)
    model = space.build(space.validate(RESNET))
    hand = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         _Basic(16, 16, 1), _Basic(16, 16, 1), _Basic(16, 32, 2), _Basic(32, 32, 1),
                         _Basic(32, 64, 2), _Basic(64, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    copy_in_order(hand, model)
    x = torch.randn(4, 3, 32, 32)
    model.eval(), hand.eval()
    torch.testing.assert_close(model(x), hand(x), rtol=1e-5, atol=1e-5)


def test_first_stage_holds_convolutional_families_and_later_stages_the_mixers():
    space = create_space("image", input_shape=(1, 28, 28), num_classes=10)
    decisions = {d.path: d for d in space.decisions()}
    first = set(decisions["first.block"].options)
    assert first <= set(CONV_BLOCKS) | {"sepconv"} and {"conv", "residual"} <= first
    rest = [d for p, d in decisions.items() if p.startswith("rest") and p.endswith("block")]
    assert rest and {"attention", "pooling", "conv"} <= set(rest[0].options)
    assert set(decisions["stem_stride"].options) == {1, 2}
    for seed in range(12):  # every sampled arch builds and classifies, its maps as the resolutions say
        arch = space.sample(seed)
        model = space.build(arch).eval()
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        res = stage_resolutions((28, 28), arch["stem_stride"], 1 + len(arch["rest"]))
        assert model.resolutions == res and min(res[-1]) >= 1


def test_stage_resolutions_and_spec_round_trip():
    assert stage_resolutions((28, 28), 1, 3) == [(28, 28), (14, 14), (7, 7)]
    assert stage_resolutions((32, 32), 2, 3) == [(16, 16), (8, 8), (4, 4)]
    space = create_space("image", input_shape=(3, 32, 32), num_classes=10, mixers=["pooling", "attention"])
    again = create_space(**space.spec)
    assert again.fingerprint() == space.fingerprint()
    rest = [d for d in space.decisions() if d.path.startswith("rest") and d.path.endswith("block")][0]
    assert set(rest.options) == set(CONV_BLOCKS) | {"pooling", "attention"}
    assert "sepconv" not in [d for d in space.decisions() if d.path == "first.block"][0].options  # restricted


def test_bad_input_is_named():
    with pytest.raises(SpaceError, match="images"):
        create_space("image", input_shape=(64,), num_classes=2)
    with pytest.raises(UserError, match="unknown mixer"):
        create_space("image", input_shape=(1, 28, 28), num_classes=10, mixers=["nope"])
    with pytest.raises(UserError, match="unknown mixer"):
        create_model("stagenet", stages=[{"block": "nope", "depth": 1, "width": 8}], image_size=8)
    with pytest.raises(UserError, match="exactly the keys"):
        create_model("stagenet", stages=[{"block": "conv", "depth": 1}])
    with pytest.raises(UserError, match="stem_stride"):
        create_model("stagenet", stem_stride=3)

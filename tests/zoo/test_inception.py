"""Inception-v4 / Inception-ResNet-v2: timm parity (counts, names, strict load, equal outputs), the scaled residual
block's formula, the residual-scale configuration, input checks, and the paper's residual-scaling observation on a
small, deep Inception-ResNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.models.inception import Block8, Block17, Block35, InceptionResnetV2


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_bn_stats(state: dict[str, torch.Tensor], seed: int = 0) -> None:
    # Fresh BatchNorms are identities in eval mode; random statistics make the output comparison cover them too.
    gen = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=gen) * 1.5 + 0.5)
        elif key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("name, params", [("inception_v4", 42_679_816), ("inception_resnet_v2", 55_843_464)])
def test_matches_timm_exactly(name: str, params: int, timm) -> None:
    torch.manual_seed(0)
    ours, theirs = zoo.create_model(name), timm.create_model(name, pretrained=False)
    assert _count(ours) == _count(theirs) == params
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    state = theirs.state_dict()
    _randomise_bn_stats(state)
    ours.load_state_dict(state, strict=True)
    ours.eval()
    theirs.eval()
    x = torch.randn(1, 3, 299, 299, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (1, 1000)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("block_cls", [Block35, Block17, Block8])
def test_residual_block_is_relu_of_x_plus_scaled_projection(block_cls) -> None:
    torch.manual_seed(0)
    block = block_cls(scale=0.17, in_chs=24, width=0.125).eval()
    x = torch.randn(2, 24, 7, 7)
    with torch.no_grad():
        branches = [block.branch0(x), block.branch1(x)] + ([block.branch2(x)] if hasattr(block, "branch2") else [])
        residual = block.conv2d(torch.cat(branches, 1))
        expected = F.relu(x + 0.17 * residual)
        torch.testing.assert_close(block(x), expected)
        # scale 0 leaves only the shortcut; without the activation the block is affine (negative values survive).
        block.scale = 0.0
        torch.testing.assert_close(block(x), F.relu(x))
        block.scale, block.activate = 1.0, False
        out = block(x)
        torch.testing.assert_close(out, x + residual)
        assert (out < 0).any()


def test_residual_scales_and_depths_are_configurable() -> None:
    model = InceptionResnetV2(num_classes=10, scales=(0.3, 0.25, 0.05), depths=(2, 3, 1))
    assert [b.scale for b in model.repeat] == [0.3, 0.3]
    assert [b.scale for b in model.repeat_1] == [0.25] * 3
    assert [b.scale for b in model.repeat_2] == [0.05]
    # The closing Block8 is unscaled and linear, feeding conv2d_7b's own BN+ReLU (as in the reference).
    assert model.block8.scale == 1.0 and model.block8.activate is False
    assert all(b.activate for b in [*model.repeat, *model.repeat_1, *model.repeat_2])
    with pytest.raises(UserError, match="inception_resnet_v2: scales"):
        InceptionResnetV2(scales=(0.1, 0.2))


def test_published_configuration_of_inception_resnet_v2() -> None:
    model = zoo.create_model("inception_resnet_v2", num_classes=0)
    assert (len(model.repeat), len(model.repeat_1), len(model.repeat_2)) == (10, 20, 9)
    assert {b.scale for b in model.repeat} == {0.17}
    assert {b.scale for b in model.repeat_1} == {0.10}
    assert {b.scale for b in model.repeat_2} == {0.20}
    assert isinstance(model.classif, torch.nn.Identity)


def test_input_checks_name_model_and_expected_shape() -> None:
    model = InceptionResnetV2(num_classes=10, depths=(0, 0, 0))
    # 75 is the smallest size that survives the stem's valid convolutions and the three stride-2 reductions.
    with pytest.raises(UserError, match=r"inception_resnet_v2: expected input \(B, 3, H, W\) with H, W >= 75"):
        model(torch.randn(1, 3, 74, 299))
    with pytest.raises(UserError, match=r"got \(1, 1, 299, 299\)"):
        model(torch.randn(1, 1, 299, 299))
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 75, 75)).shape == (1, 10)
    with pytest.raises(UserError, match="inception_v4: num_classes"):
        zoo.create_model("inception_v4", num_classes=-1)


def test_residual_scaling_keeps_a_deep_stack_near_its_input() -> None:
    """Why the paper scales residuals: each unscaled branch adds its full output to the stream, so a deep stack
    drifts far from its input at initialisation; scaled by 0.2 the stack stays close to it. (The training
    experiment itself, SGD at lr 1.0 on digits, is too slow for a CPU test; its numbers are in the report.)"""
    x = torch.relu(torch.randn(8, 32, 8, 8, generator=torch.Generator().manual_seed(0)))

    def relative_change(scale: float) -> float:
        torch.manual_seed(0)  # the same weights for both scales
        stack = torch.nn.Sequential(*[Block35(scale=scale, in_chs=32, width=0.25) for _ in range(16)])
        with torch.no_grad():
            return ((stack(x) - x).norm() / x.norm()).item()

    scaled, unscaled = relative_change(0.2), relative_change(1.0)
    assert unscaled > 3 * scaled, (scaled, unscaled)

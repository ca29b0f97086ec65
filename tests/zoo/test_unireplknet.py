"""UniRepLKNet (MAP #48) and the ERF analysis of "Scaling Up Your Kernels" (MAP #56).

Re-parameterisation must not change the function: the Dilated Reparam Block against its merged KxK conv for
every supported K, a whole block and a whole model against their deploy forms (with random BN statistics so
that the folds are really exercised). The published configurations have the reference's structure and
parameter counts; a tiny model learns digits; the ERF probe gives the known answer of linear box stacks (a
discrete Gaussian of variance n·2/3) and sees wider for a K=13 stack than a 3x3 stack.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.layers.dilated_reparam import (
    DILATED_BRANCHES,
    DilatedReparamBlock,
    dilated_to_dense,
    effective_receptive_field,
    erf_mass_outside,
)
from archlab.zoo.mixers.dilated_reparam import kernel_size_for_resolution
from archlab.zoo.models.unireplknet import UniRepLKNet, UniRepLKNetBlock


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial parameters and BN running statistics everywhere (BN defaults would make folds trivial)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if "weight" in name else 0.2))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


@pytest.mark.parametrize("kernel_size", sorted(DILATED_BRANCHES))
def test_dilated_reparam_block_equals_merged_conv(kernel_size: int) -> None:
    block = DilatedReparamBlock(6, kernel_size)
    _randomise(block, seed=kernel_size)
    block.eval()
    x = torch.randn(2, 6, 19, 17)  # odd, non-square, larger than every kernel's reach
    expected = block(x)
    branch_count = len(block.branches())
    assert branch_count == len(DILATED_BRANCHES[kernel_size][0])
    block.merge_dilated_branches()
    assert block.deployed and sorted(n for n, _ in block.named_parameters()) == ["lk_origin.bias",
                                                                                 "lk_origin.weight"]
    assert block.lk_origin.kernel_size == (kernel_size, kernel_size)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    # the same function also on a map smaller than the kernel (padding everywhere)
    small = torch.randn(3, 6, 2, 3)
    fresh = DilatedReparamBlock(6, kernel_size)
    _randomise(fresh, seed=kernel_size)
    fresh.eval()
    before = fresh(small)
    fresh.reparameterize()
    torch.testing.assert_close(fresh(small), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,r", [(3, 2), (3, 5), (5, 3), (7, 2)])
def test_zero_inserted_kernel_equals_dilated_conv(k: int, r: int) -> None:
    kernel, x = torch.randn(4, 1, k, k), torch.randn(1, 4, 23, 23)
    dense = dilated_to_dense(kernel, r)
    assert dense.shape[-1] == r * (k - 1) + 1
    dilated = F.conv2d(x, kernel, padding=r * (k - 1) // 2, dilation=r, groups=4)
    torch.testing.assert_close(F.conv2d(x, dense, padding=dense.shape[-1] // 2, groups=4), dilated,
                               rtol=1e-5, atol=1e-5)


def test_dilated_reparam_rejects_bad_config_and_input() -> None:
    with pytest.raises(UserError, match="kernel_size"):
        DilatedReparamBlock(8, 4)
    with pytest.raises(UserError, match=r"expected input \(B, 8, H, W\)"):
        DilatedReparamBlock(8, 7)(torch.randn(2, 5, 8, 8))
    with pytest.raises(UserError, match="kernel_size"):
        UniRepLKNetBlock(16, 6)
    with pytest.raises(UserError, match="no default kernel sizes"):
        UniRepLKNet(depths=(1, 1), dims=(16, 32))
    with pytest.raises(UserError, match=r"expected input \(B, 3, H, W\)"):
        zoo.create_model("unireplknet_a", num_classes=10)(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize("kernel_size", [0, 3, 5, 7, 13])
def test_block_reparameterize_keeps_the_function(kernel_size: int) -> None:
    block = UniRepLKNetBlock(8, kernel_size)
    _randomise(block, seed=kernel_size + 100)
    block.eval()
    x = torch.randn(2, 8, 9, 11)
    expected = block(x)
    block.reparameterize()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert block.gamma is None and not block.act[1].use_bias
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    # the converted weights are exactly the reference's deploy structure
    deploy = UniRepLKNetBlock(8, kernel_size, deploy=True)
    deploy.load_state_dict(block.state_dict(), strict=True)
    torch.testing.assert_close(deploy.eval()(x), expected, rtol=1e-5, atol=1e-5)


def test_model_reparameterize_and_deploy_checkpoint() -> None:
    kwargs = dict(in_chans=3, num_classes=7, depths=(1, 1, 2, 1), dims=(16, 24, 32, 48),
                  kernel_sizes=((3,), (13,), (13, 3), (7,)))
    torch.manual_seed(0)
    model = UniRepLKNet(**kwargs)
    _randomise(model, seed=7)
    model.eval()
    x = torch.randn(2, 3, 64, 48)
    expected = model(x)
    model.reparameterize_unireplknet()
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    deploy = UniRepLKNet(**kwargs, deploy=True)
    deploy.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(deploy.eval()(x), expected, rtol=1e-5, atol=1e-5)


# deploy-form parameter counts of the reference README (M, one decimal); the training form adds the branches
README_PARAMS_M = {"unireplknet_a": 4.4, "unireplknet_f": 6.2, "unireplknet_p": 10.7, "unireplknet_n": 18.3}


# the larger two are given in whole millions there (ImageNet-1K, 224)
README_PARAMS_WHOLE_M = {"unireplknet_t": 31, "unireplknet_s": 56}


@pytest.mark.parametrize("name", sorted(README_PARAMS_M) + sorted(README_PARAMS_WHOLE_M))
def test_published_sizes_match_reference_parameter_counts(name: str) -> None:
    with torch.device("meta"):  # as `archlab zoo list` builds them: no memory, no initialisation
        model = zoo.create_model(name, deploy=True)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    if name in README_PARAMS_M:
        assert round(count, 1) == README_PARAMS_M[name]
    else:
        assert round(count) == README_PARAMS_WHOLE_M[name]


def test_training_form_state_dict_names_follow_reference() -> None:
    keys = set(zoo.create_model("unireplknet_a").state_dict())
    # stem, a 3x3 block of stage 0, a K=13 Dilated Reparam block of stage 2, GRN and the final BN of a block
    for key in ["downsample_layers.0.0.weight", "downsample_layers.0.1.weight", "downsample_layers.0.3.weight",
                "downsample_layers.3.0.weight", "stages.0.0.dwconv.weight", "stages.0.0.norm.running_var",
                "stages.2.5.dwconv.lk_origin.weight", "stages.2.5.dwconv.origin_bn.weight",
                "stages.2.5.dwconv.dil_conv_k7_2.weight", "stages.2.5.dwconv.dil_bn_k3_5.running_mean",
                "stages.1.0.se.down.weight", "stages.1.0.se.up.bias", "stages.1.0.pwconv1.1.weight",
                "stages.1.0.act.1.gamma", "stages.1.0.act.1.beta", "stages.1.0.pwconv2.0.weight",
                "stages.1.0.pwconv2.2.running_mean", "stages.1.0.gamma", "norm.weight", "head.bias"]:
        assert key in keys, key
    assert "stages.1.0.pwconv2.0.bias" not in keys  # the BN after it carries the bias
    assert zoo.model_info("unireplknet_a")["family"] == "unireplknet"


@pytest.mark.parametrize("size,expected", [((1, 1), 3), ((2, 2), 3), ((3, 3), 5), ((4, 4), 7), ((7, 7), 13),
                                           ((8, 8), 13), ((14, 14), 13), ((2, 5), 9), (None, 13)])
def test_mixer_kernel_rule(size, expected) -> None:
    assert kernel_size_for_resolution(size) == expected
    # a kernel never exceeds 2 * max(H, W) - 1 except the smallest one
    if size is not None:
        assert expected <= max(3, 2 * max(size) - 1)


def test_mixer_builds_for_every_space_width_and_map() -> None:
    for dim in (16, 24, 32, 48, 64, 96, 128):
        for size in [(8, 8), (4, 4), (2, 2), (14, 14), (7, 7), (1, 1), (5, 3)]:
            mixer = zoo.create_mixer("dilated_reparam", dim, resolution=size)
            assert mixer(torch.randn(2, dim, *size)).shape == (2, dim, *size)
    assert zoo.get_mixer_spec("dilated_reparam").layout == "image"
    assert zoo.create_mixer("dilated_reparam", 16, resolution=(8, 8), kernel_size=5).kernel_size == 5


@pytest.mark.slow
def test_tiny_unireplknet_learns_digits() -> None:
    from archlab.data import load_dataset
    from archlab.train import TrainConfig, evaluate, train_model

    d = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    # stride-1 stem keeps the 8x8 digits at 8x8, then 4x4: K=13 and K=7 Dilated Reparam blocks
    model = UniRepLKNet(in_chans=1, num_classes=10, depths=(1, 1), dims=(24, 48), kernel_sizes=((13,), (7,)),
                        stem_strides=(1, 1), layer_scale_init_value=1.0)
    train_model(model, d.x_train, d.y_train, d.x_val, d.y_val, TrainConfig(epochs=8, lr=3e-3, seed=0, patience=None))
    _, acc = evaluate(model, d.x_test, d.y_test)
    assert acc >= 0.9, acc
    model.eval()
    logits = model(d.x_test)
    model.reparameterize_unireplknet()
    torch.testing.assert_close(model(d.x_test), logits, rtol=1e-4, atol=1e-4)


def _stack(kernel_size: int, depth: int) -> nn.Module:
    return nn.Sequential(*[DilatedReparamBlock(4, kernel_size) for _ in range(depth)]).eval()


def _box_stack(depth: int, channels: int = 2) -> nn.Module:
    convs = [nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False) for _ in range(depth)]
    for conv in convs:
        nn.init.ones_(conv.weight)
    return nn.Sequential(*convs).eval()


def test_erf_probe_gives_the_known_answer_of_linear_stacks() -> None:
    """Known answers (Luo et al., 2016, the analysis the ERF probe follows): for a linear stack the ERF is the
    absolute composed kernel. ``n`` 3x3 box filters compose to the outer product of the coefficients of
    ``(1 + z + z^2)^n``, a discrete Gaussian whose variance per axis is ``n * 2/3``: it grows as ``sqrt(n)``, not
    as ``n``. One tap at offset (dy, dx) moves the ERF to the centre plus that offset (cross-correlation)."""
    depth, size = 5, 31
    erf = effective_receptive_field(_box_stack(depth), (2, size, size), num_samples=2).double()
    coeffs = torch.tensor([1.0], dtype=torch.float64)
    for _ in range(depth):
        coeffs = torch.nn.functional.conv1d(coeffs.view(1, 1, -1), torch.ones(1, 1, 3, dtype=torch.float64),
                                            padding=2).flatten()
    line = torch.zeros(size, dtype=torch.float64)
    line[size // 2 - depth: size // 2 + depth + 1] = coeffs
    expected = torch.outer(line, line)
    torch.testing.assert_close(erf, expected / expected.sum(), rtol=1e-5, atol=1e-7)
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    variance = float((erf.sum(1) * offsets**2).sum())
    assert abs(variance - depth * 2 / 3) < 1e-4, variance
    conv = nn.Conv2d(1, 1, 5, padding=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 4, 1] = -2.0  # tap at (dy, dx) = (+2, -1) from the kernel's centre
    erf = effective_receptive_field(conv, (1, 9, 9), num_samples=1)
    assert erf[4 + 2, 4 - 1] == 1.0 and erf.sum() == 1.0


def test_erf_of_large_kernels_reaches_further_than_a_3x3_stack() -> None:
    torch.manual_seed(0)
    depth, radius = 3, 2
    erf_large = effective_receptive_field(_stack(13, depth), (4, 41, 41), num_samples=4)
    erf_small = effective_receptive_field(_stack(3, depth), (4, 41, 41), num_samples=4)
    assert erf_large.shape == (41, 41) and abs(float(erf_large.sum()) - 1.0) < 1e-5
    # the probe's geometry: nothing beyond the theoretical receptive field (depth * (K - 1) / 2)
    assert erf_mass_outside(erf_small, depth) < 1e-7
    assert erf_mass_outside(erf_large, depth * 6) < 1e-7
    assert erf_mass_outside(erf_small, depth - 1) > 0.0
    # equal depth, K=13: far more of the gradient comes from beyond radius 2 than for 3x3 kernels
    outside_large, outside_small = erf_mass_outside(erf_large, radius), erf_mass_outside(erf_small, radius)
    assert outside_large > outside_small + 0.2, (outside_large, outside_small)

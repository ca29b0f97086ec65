"""Activator: the gating unit against its formula, the bag-of-patches invariance, names, and a tiny run."""

from __future__ import annotations

import math

import pytest
import torch

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.mixers.activator import ActivatorGatingUnit
from archlab.zoo.models.activator import ActivatorBlock


def _randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


def _layer_norm(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = z.mean(-1, keepdim=True)
    var = (z - mean).square().mean(-1, keepdim=True)  # biased, as LayerNorm
    return (z - mean) / torch.sqrt(var + eps) * weight + bias


def _gelu(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))


def test_gating_unit_equals_the_glu_formula_with_one_shared_layer_norm():
    torch.manual_seed(0)
    agu = ActivatorGatingUnit(6, 10).double()
    _randomise(agu)
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in agu.modules()) == 1
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    w1, b1 = agu.proj_1.weight, agu.proj_1.bias
    w2, b2 = agu.proj_2.weight, agu.proj_2.bias
    w3, b3 = agu.proj_3.weight, agu.proj_3.bias
    gamma, beta = agu.norm.weight, agu.norm.bias
    u = _layer_norm(_gelu(x @ w1.T + b1), gamma, beta)
    v = _layer_norm(x @ w2.T + b2, gamma, beta)
    torch.testing.assert_close(agu(x), (u * v) @ w3.T + b3)


@pytest.mark.parametrize("ffn", [True, False])
def test_block_uses_one_norm_before_both_branches(ffn):
    torch.manual_seed(0)
    block = ActivatorBlock(8, 16, dropout=0.0, ffn=ffn).double().eval()
    _randomise(block)
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    norm = block.norm
    expected = x + block.actgu(_layer_norm(x, norm.weight, norm.bias))
    if ffn:
        expected = expected + block.ffn(_layer_norm(expected, norm.weight, norm.bias))
    else:
        assert block.ffn is None
    torch.testing.assert_close(block(x), expected)


def _shuffle_patches(x: torch.Tensor, patch: int, order: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    gh, gw = height // patch, width // patch
    patches = x.reshape(batch, channels, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(
        batch, gh * gw, channels, patch, patch)
    patches = patches[:, order].reshape(batch, gh, gw, channels, patch, patch)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def test_logits_do_not_change_when_patches_are_shuffled():
    # No positional embedding and no token mixing: the patch model is a function of the bag of patches.
    torch.manual_seed(0)
    model = zoo.create_model("activator_cifar", d_model=32, d_ffn=64, num_layers=2).eval()
    x = torch.randn(3, 3, 32, 32)
    order = torch.randperm(64)
    shuffled = _shuffle_patches(x, 4, order)
    assert not torch.equal(shuffled, x)
    torch.testing.assert_close(model(shuffled), model(x), atol=1e-5, rtol=1e-5)
    # ...but moving pixels within a patch changes the patch embedding, so this is not a vacuous check
    flipped = x.reshape(3, 3, 8, 4, 8, 4).flip(3).reshape(3, 3, 32, 32)
    assert not torch.allclose(model(flipped), model(x), atol=1e-4)


def test_mixer_does_not_mix_tokens():
    torch.manual_seed(0)
    mixer = zoo.create_mixer("activator", 16).eval()
    x = torch.randn(2, 16, 5, 7)
    y = x.clone()
    y[:, :, 2, 3] += torch.randn(2, 16)
    delta = (mixer(y) - mixer(x)).abs().sum(dim=(0, 1))
    assert delta[2, 3] > 0
    delta[2, 3] = 0
    assert delta.max() == 0
    torch.testing.assert_close(mixer(x), mixer.actgu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_state_dict_names_and_counts_follow_the_reference():
    """The names are the reference's. The counts are a regression pin of the layer shapes written out by hand (the
    reference's d=256, f=512 and 4 blocks), not a published number: they fail when a layer changes shape."""
    model = zoo.create_model("activator_cifar")
    block_keys = {k.split(".", 2)[2] for k in model.state_dict() if k.startswith("model.0.")}
    assert block_keys == {"norm.weight", "norm.bias", "actgu.proj_1.weight", "actgu.proj_1.bias",
                          "actgu.proj_2.weight", "actgu.proj_2.bias", "actgu.proj_3.weight", "actgu.proj_3.bias",
                          "actgu.norm.weight", "actgu.norm.bias", "ffn.net.0.weight", "ffn.net.0.bias",
                          "ffn.net.3.weight", "ffn.net.3.bias"}
    assert {k.split(".")[0] for k in model.state_dict()} == {"patcher", "model", "classifier"}
    d, f = 256, 512
    agu = 2 * (d * f + f) + f * d + d + 2 * f
    ffn = d * f + f + f * d + d
    stem, head = 3 * d * 16 + d, d * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == stem + 4 * (2 * d + agu + ffn) + head == 2_650_890
    only_glu = zoo.create_model("activator_only_geglu_cifar")
    assert sum(p.numel() for p in only_glu.parameters()) == stem + 4 * (2 * d + agu) + head == 1_599_242


def test_bad_configuration_and_input_raise_user_errors():
    with pytest.raises(UserError, match=r"activator_cifar: expected input \(B, 3, H, W\) with H and W multiples of 4"):
        zoo.create_model("activator_cifar")(torch.randn(1, 3, 30, 32))
    with pytest.raises(UserError, match="activator: expected input"):
        zoo.create_mixer("activator", 16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(UserError, match="d_model must be >= 1"):
        zoo.create_model("activator_cifar", d_model=0)


def test_tiny_patch_model_learns_digits():
    from archlab.data import load_dataset
    from archlab.train import TrainConfig, evaluate, train_model

    d = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = zoo.create_model("activator_cifar", in_channels=1, patch_size=4, d_model=32, d_ffn=64, num_layers=2,
                             dropout=0.0)
    train_model(model, d.x_train, d.y_train, d.x_val, d.y_val,
                TrainConfig(epochs=10, batch_size=32, lr=3e-3, seed=0, patience=None))
    _, test_acc = evaluate(model, d.x_test, d.y_test)
    assert test_acc >= 0.85, test_acc

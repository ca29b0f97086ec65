"""ViT/DeiT: timm parity (parameter counts, state-dict layout, strict load, equal eval outputs), the class token
and positions wired as in the paper, bad input as user errors, and a tiny ViT learning digits."""

from __future__ import annotations

import pytest
import torch

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.models.vit import VisionTransformer

VITS = ["vit_tiny_patch16_224", "vit_small_patch16_224", "deit_tiny_patch16_224", "deit_small_patch16_224"]


def _layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> None:
    # move every parameter off the init both libraries share (zero biases, unit norms), so that a swapped or
    # ignored weight would change the output
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _tiny(**kwargs) -> VisionTransformer:
    config = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=4)
    return VisionTransformer(**{**config, **kwargs})


def test_registered_configurations() -> None:
    assert set(VITS) <= set(zoo.list_models("*_patch16_224"))
    for name in VITS:
        assert zoo.model_info(name)["family"] == "vit"


@pytest.mark.parametrize("name", VITS)
def test_parameter_count_and_layout_equal_timms(name: str, timm) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours, theirs = zoo.create_model(name), timm.create_model(name)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert _layout(ours) == _layout(theirs)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_tiny_models_load_timm_weights_and_match_its_outputs(name: str, timm) -> None:
    torch.manual_seed(0)
    theirs = timm.create_model(name).eval()
    _perturb(theirs, seed=1)
    ours = zoo.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["vit_small_patch16_224", "deit_small_patch16_224"])
def test_small_models_load_timm_weights_and_match_its_outputs(name: str, timm) -> None:
    # the full width and head count with 2 of the 12 blocks, to keep the test fast; full-depth layout is above
    torch.manual_seed(0)
    theirs = timm.create_model(name, depth=2).eval()
    _perturb(theirs, seed=1)
    ours = zoo.create_model(name, depth=2).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_tiny_configuration_matches_timm_with_the_same_overrides(timm) -> None:
    # the small-image configuration the zoo uses for digits, against timm built with the same overrides
    overrides = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=4)
    theirs = timm.create_model("vit_tiny_patch16_224", **overrides).eval()
    _perturb(theirs, seed=2)
    ours = zoo.create_model("vit_tiny_patch16_224", **overrides).eval()
    assert _layout(ours) == _layout(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_class_token_and_positions() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()
    _perturb(model)
    assert model.pos_embed.shape == (1, 17, 32)  # 16 patches + the class token
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (3, 17, 32)
        # the head reads the class token's final state (index 0), nothing else
        torch.testing.assert_close(model(x), model.head(features[:, 0]))
        # without positions, attention and the MLP are permutation-equivariant, so shuffling the patches (whole
        # 2 x 2 blocks) leaves the class token unchanged; with positions it does not
        shuffled = x.reshape(3, 1, 4, 2, 4, 2).flip(2).reshape(3, 1, 8, 8)
        assert not torch.allclose(model(x), model(shuffled), atol=1e-4)
        model.pos_embed.zero_()
        torch.testing.assert_close(model(x), model(shuffled), atol=1e-5, rtol=1e-5)


def test_bad_input_and_configuration_raise_user_errors() -> None:
    model = zoo.create_model("vit_tiny_patch16_224", depth=1)
    expected = r"expected input \(B, 3, 224, 224\), got"
    with pytest.raises(UserError, match=rf"vit_tiny_patch16_224: {expected} \(2, 3, 32, 32\)"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(UserError, match=rf"deit_small_patch16_224: {expected} \(224, 224\)"):
        zoo.create_model("deit_small_patch16_224", depth=1)(torch.randn(224, 224))
    with pytest.raises(UserError, match="vit_small_patch16_224: embed_dim 100 is not divisible by num_heads 6"):
        zoo.create_model("vit_small_patch16_224", embed_dim=100)
    with pytest.raises(UserError, match="patch_size"):
        _tiny(patch_size=3)
    with pytest.raises(UserError, match="img_size"):
        _tiny(img_size=(8, 8, 8))
    with pytest.raises(UserError, match="rates"):
        _tiny(drop_path_rate=1.5)


@pytest.mark.slow
def test_tiny_vit_learns_digits() -> None:
    from archlab.data import load_dataset
    from archlab.train import TrainConfig, evaluate, train_model

    d = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = _tiny(embed_dim=64, mlp_ratio=2.0)
    cfg = TrainConfig(epochs=30, batch_size=32, lr=2e-3, seed=0, patience=None)  # 93.6 % measured
    train_model(model, d.x_train, d.y_train, d.x_val, d.y_val, cfg)
    _, test_acc = evaluate(model, d.x_test, d.y_test)
    assert test_acc >= 0.9, f"tiny ViT: {test_acc:.4f} test accuracy on digits"

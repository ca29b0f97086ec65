"""MetaFormer / PoolFormer: every mixer plugs in, the block matches its formula, PoolFormer matches the
reference's parameter count and names, bad arguments are reported, and a tiny model learns digits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.zoo import create_model, list_mixers
from archlab.zoo.models.metaformer import MetaFormer, MetaFormerBlock, default_stem


def _two_stages(mixer: str, widths: tuple[int, int] = (16, 32)) -> list[dict]:
    return [{"mixer": mixer, "depth": 1, "width": width} for width in widths]


@pytest.mark.parametrize("mixer", list_mixers())
def test_every_mixer_builds_and_trains_in_a_metaformer(mixer: str) -> None:
    torch.manual_seed(0)
    model = create_model("metaformer", stages=_two_stages(mixer), in_chans=1, num_classes=10,
                         image_size=(8, 8))
    x = torch.randn(4, 1, 8, 8)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(4)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_mixed_stages_and_resolutions_reach_the_mixers() -> None:
    stages = [{"mixer": "sepconv", "depth": 1, "width": 8}, {"mixer": "mlp", "depth": 2, "width": 16},
              {"mixer": "attention", "depth": 1, "width": 32}]
    model = create_model("metaformer", stages=stages, in_chans=1, num_classes=10, image_size=(28, 28))
    assert model.resolutions == [(14, 14), (7, 7), (4, 4)]
    assert model.network[2][1].token_mixer.num_tokens == 49
    assert [type(m).__name__ for m in model.network] == ["Sequential", "PatchEmbed", "Sequential",
                                                          "PatchEmbed", "Sequential"]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_default_stem() -> None:
    assert default_stem((8, 8)) == (3, 1, 1)
    assert default_stem((28, 28)) == (3, 2, 1)
    assert default_stem((32, 64)) == (3, 2, 1)
    assert default_stem((224, 224)) == (7, 4, 2)


@pytest.mark.parametrize("mixer", ["attention", "mlp"])
def test_block_with_sequence_mixer_matches_its_formula(mixer: str) -> None:
    torch.manual_seed(0)
    model = create_model("metaformer", stages=_two_stages(mixer), image_size=(6, 10), in_chans=2,
                         num_classes=3, layer_scale_init_value=0.5)
    block: MetaFormerBlock = model.network[0][0]
    with torch.no_grad():
        block.layer_scale_1.normal_()
        block.layer_scale_2.normal_()
    x = torch.randn(2, 16, 6, 10)
    # Tokens are the pixels in row-major order, built here pixel by pixel.
    h = block.norm1(x)
    tokens = torch.stack([h[:, :, r, c] for r in range(6) for c in range(10)], dim=1)
    mixed = block.token_mixer(tokens).transpose(1, 2).reshape(2, 16, 6, 10)
    torch.testing.assert_close(block.mix_tokens(h), mixed)
    y = x + block.layer_scale_1[:, None, None] * mixed
    y = y + block.layer_scale_2[:, None, None] * block.mlp(block.norm2(y))
    torch.testing.assert_close(block(x), y)


def test_pooling_model_is_poolformer() -> None:
    torch.manual_seed(0)
    model = create_model("metaformer", stages=_two_stages("pooling"), image_size=(8, 8), in_chans=1,
                         num_classes=4, layer_scale_init_value=1.0)
    block = model.network[0][0]
    x = torch.randn(2, 16, 8, 8)
    h = block.norm1(x)
    y = x + (F.avg_pool2d(h, 3, 1, 1, count_include_pad=False) - h)
    y = y + block.mlp(block.norm2(y))
    torch.testing.assert_close(block(x), y)
    # As in the reference, the final norm comes before global average pooling and the head.
    images = torch.randn(2, 1, 8, 8)
    h = model.patch_embed(images)
    for module in model.network:
        h = module(h)
    torch.testing.assert_close(model(images), model.head(model.norm(h).mean(dim=(-2, -1))))


def test_layer_scale_and_drop_path() -> None:
    torch.manual_seed(0)
    model = create_model("metaformer", stages=_two_stages("pooling"), image_size=(8, 8), in_chans=1,
                         num_classes=4, drop_path_rate=0.5)
    block = model.network[2][0]
    assert torch.equal(block.layer_scale_1, torch.full((32,), 1e-5))
    assert block.drop_path.drop_prob == pytest.approx(0.5)  # last block gets the full rate
    assert isinstance(model.network[0][0].drop_path, torch.nn.Identity)  # first block none
    x = torch.randn(8, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    no_scale = create_model("metaformer", stages=_two_stages("pooling"), image_size=(8, 8),
                            layer_scale_init_value=None)
    assert no_scale.network[0][0].layer_scale_1 is None


def test_mixer_kwargs_reach_the_factory() -> None:
    stages = [{"mixer": "attention", "depth": 1, "width": 32}, {"mixer": "sepconv", "depth": 1, "width": 32}]
    model = create_model("metaformer", stages=stages, image_size=(8, 8),
                         mixer_kwargs={"attention": {"head_dim": 8}, "sepconv": {"kernel_size": 3}})
    assert model.network[0][0].token_mixer.num_heads == 4
    assert model.network[2][0].token_mixer.dwconv.kernel_size == (3, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(depths=[1, 1], dims=[8], token_mixers=["pooling", "pooling"]), "one entry per stage"),
    (dict(depths=[1], dims=[8], token_mixers=["conv9"]), "unknown mixer 'conv9'"),
    (dict(depths=[1], dims=[8], token_mixers=["pooling"], norm="rms"), "unknown norm 'rms'"),
    (dict(depths=[0], dims=[8], token_mixers=["pooling"]), "depths"),
    (dict(depths=[1], dims=[8], token_mixers=["pooling"], mlp_ratios=[4, 4]), "mlp_ratios"),
    (dict(depths=[1], dims=[8], token_mixers=["pooling"], image_size=(8, 0)), "image_size"),
    (dict(depths=[1] * 4, dims=[8] * 4, token_mixers=["pooling"] * 4, image_size=8, in_patch_size=3,
          in_stride=1, in_pad=1, down_pad=0), "stage 3 would have resolution 0x0"),
    (dict(depths=[1], dims=[8], token_mixers=["attention"], mixer_kwargs={"attention": {"heads": 2}}),
     "mixer 'attention'"),
    (dict(depths=[1], dims=[8], token_mixers=["pooling"], mixer_kwargs={"atention": {}}), "atention"),
])
def test_bad_arguments_are_user_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        MetaFormer(**kwargs)


@pytest.mark.parametrize("stages, message", [
    ([], "non-empty"),
    ([{"mixer": "pooling", "depth": 1}], "lacks width"),
    ([{"mixer": "pooling", "depth": 1, "width": 8, "heads": 2}], "unknown keys heads"),
    (["pooling"], "must be a dict"),
])
def test_bad_stages_are_user_errors(stages: list, message: str) -> None:
    with pytest.raises(UserError, match=message):
        create_model("metaformer", stages=stages, image_size=(8, 8))
    with pytest.raises(UserError, match="stages"):
        create_model("metaformer", image_size=(8, 8))


def test_poolformer_s12_matches_reference() -> None:
    model = create_model("poolformer_s12")
    assert sum(p.numel() for p in model.parameters()) == 11_915_176  # timm / sail-sg/poolformer
    assert model.resolutions == [(56, 56), (28, 28), (14, 14), (7, 7)]
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # A sample of the reference checkpoint's keys and shapes.
    assert shapes["patch_embed.proj.weight"] == (64, 3, 7, 7)
    assert shapes["network.0.1.layer_scale_1"] == (64,)
    assert shapes["network.0.1.mlp.fc1.weight"] == (256, 64, 1, 1)
    assert shapes["network.1.proj.weight"] == (128, 64, 3, 3)
    assert shapes["network.4.5.norm2.weight"] == (320,)
    assert shapes["network.6.1.mlp.fc2.bias"] == (512,)
    assert shapes["norm.weight"] == (512,) and shapes["head.weight"] == (1000, 512)
    assert len(shapes) == 2 + 12 * 10 + 3 * 2 + 4  # stem, blocks, downsamplings, norm + head
    assert model.network[4][0].layer_scale_1[0].item() == pytest.approx(1e-5)


@pytest.mark.parametrize("name, millions, layer_scale", [
    ("poolformer_s24", 21.39, 1e-5), ("poolformer_s36", 30.86, 1e-6),
    ("poolformer_m36", 56.17, 1e-6), ("poolformer_m48", 73.47, 1e-6),
])
def test_poolformer_configs(name: str, millions: float, layer_scale: float) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = create_model(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions
    assert model.network[0][0].layer_scale_1.shape[0] in (64, 96)
    with torch.device("meta"):
        small = create_model(name, num_classes=10, in_chans=1, image_size=64)
    assert small.head.out_features == 10 and small.resolutions[-1] == (2, 2)


def test_tiny_poolformer_learns_digits(one_thread: None) -> None:
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x))
    test, train = perm[: len(x) // 5], perm[len(x) // 5:]
    stages = [{"mixer": "pooling", "depth": 1, "width": 32}, {"mixer": "pooling", "depth": 1, "width": 64}]
    model = create_model("metaformer", stages=stages, in_chans=1, num_classes=10, image_size=(8, 8))
    epochs, batch = 10, 64
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2,
                                                   total_steps=epochs * -(-len(train) // batch))
    for _ in range(epochs):
        model.train()
        order = train[torch.randperm(len(train))]
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(dim=1) == y[test]).float().mean().item()
    assert accuracy >= 0.90, accuracy


def test_a_stage_may_give_one_mixer_per_block():
    from archlab.errors import UserError
    from archlab.zoo.mixers import Attention, SepConv
    from archlab.zoo.models.metaformer import MetaFormer

    model = MetaFormer.from_stages([{"mixers": ["sepconv", "sepconv", "attention"], "depth": 3, "width": 16},
                                    {"mixer": "attention", "depth": 1, "width": 32}],
                                   in_chans=1, num_classes=10, image_size=8)
    kinds = [type(block.token_mixer) for block in model.network[0]]
    assert kinds == [SepConv, SepConv, Attention]
    assert [b.layout for b in model.network[0]] == ["image", "image", "sequence"]
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(UserError, match="one per block"):
        MetaFormer.from_stages([{"mixers": ["sepconv"], "depth": 2, "width": 16}], image_size=8)
    with pytest.raises(UserError, match="exactly one of"):
        MetaFormer.from_stages([{"mixer": "sepconv", "mixers": ["sepconv"], "depth": 1, "width": 16}],
                               image_size=8)


def test_structured_mixer_init_survives_the_generic_linear_init():
    from archlab.zoo.mixers.gpsa import GPSA

    model = MetaFormer.from_stages([{"mixer": "gpsa", "depth": 1, "width": 32}], in_chans=1, num_classes=10,
                                   image_size=8)
    gpsas = [m for m in model.modules() if isinstance(m, GPSA)]
    assert gpsas
    for m in gpsas:
        assert torch.equal(m.v.weight, torch.eye(m.v.weight.shape[0]))  # ConViT's local init: V = identity

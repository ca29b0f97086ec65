"""ConViT and its GPSA mixer: relative positions, the local init (each head's positional argmax is its offset),
GPSA reducing to MHSA when gated to content, the image mixer, timm parity, bad input, and (slow) ConViT beating an
equal-size ViT on 10 % of digits."""

from __future__ import annotations

import math

import pytest
import torch

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.mixers.attention import Attention
from archlab.zoo.mixers.gpsa import GPSA, GPSAMixer, relative_positions
from archlab.zoo.models.convit import ConVit

CONVITS = ["convit_tiny", "convit_small", "convit_base"]


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def _perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> None:
    # every parameter moved off its structured init (identity values, offset grid, equal gates, unit norms)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def test_relative_positions_are_column_and_row_offsets() -> None:
    height, width = 3, 5  # not square: the reference only builds square grids, archlab any H x W
    rel = relative_positions((height, width))
    assert rel.shape == (1, 15, 15, 3)
    for n in range(15):
        for m in range(15):
            dx, dy = m % width - n % width, m // width - n // width
            assert rel[0, n, m].tolist() == [dx, dy, dx * dx + dy * dy]


def test_relative_positions_equal_the_reference_construction_on_square_grids() -> None:
    side = 4
    # the reference's get_rel_indices: column offsets tiled, row offsets repeated per block
    ind = torch.arange(side).view(1, -1) - torch.arange(side).view(-1, 1)
    indx = ind.repeat(side, side)
    indy = ind.repeat_interleave(side, dim=0).repeat_interleave(side, dim=1)
    expected = torch.stack((indx, indy, indx ** 2 + indy ** 2), dim=-1).float().unsqueeze(0)
    assert torch.equal(relative_positions((side, side)), expected)


def _argmax_set(row: torch.Tensor, width: int) -> set[tuple[int, int]]:
    top = row.max()
    return {(int(j) % width, int(j) // width) for j in torch.nonzero(row >= top - 1e-6 * top).flatten()}


@pytest.mark.parametrize("num_heads", [9, 16, 4, 6])
def test_each_heads_positional_argmax_is_its_offset_at_init(num_heads: int) -> None:
    torch.manual_seed(0)
    grid = (9, 9)
    gpsa = GPSA(num_heads * 8, num_heads=num_heads, grid_size=grid)
    pos = gpsa.positional_attention()  # (H, N, N)
    k = math.isqrt(num_heads)
    offsets = gpsa.head_offsets()
    assert len(offsets) == k * k
    # on a sqrt(H) x sqrt(H) grid of offsets centred on the query, all distinct
    assert len(set(offsets)) == k * k and sum(dx for dx, _ in offsets) == 0 and sum(dy for _, dy in offsets) == 0
    query = (4, 4)  # (x, y) in the middle, so every offset stays inside the map
    n = query[1] * grid[1] + query[0]
    for head, (dx, dy) in enumerate(offsets):
        got = _argmax_set(pos[head, n], grid[1])
        if k % 2:  # integer offsets: one patch
            expected = {(query[0] + int(dx), query[1] + int(dy))}
        else:  # half-integer offsets: the 2 x 2 patches around the offset tie (reference behaviour)
            expected = {(query[0] + math.floor(dx) + a, query[1] + math.floor(dy) + b) for a in (0, 1) for b in (0, 1)}
        assert got == expected, f"head {head} offset {(dx, dy)}"
    assert torch.equal(gpsa.v.weight, torch.eye(num_heads * 8))  # values start as the identity
    # heads beyond the square grid keep a random (near-uniform) positional attention, as in the reference
    for head in range(k * k, num_heads):
        assert pos[head, n].max() < 2.0 / pos.shape[-1]


def test_locality_strength_sharpens_the_initial_positional_attention() -> None:
    masses = []
    for alpha in (0.5, 1.0, 2.0):
        gpsa = GPSA(72, num_heads=9, grid_size=(7, 7), locality_strength=alpha)
        masses.append(gpsa.positional_attention()[4, 24].max().item())  # centre head, centre query
    assert masses[0] < masses[1] < masses[2]
    # alpha = 1: softmax of -|delta|^2 over the 7 x 7 map, derived: 1 / sum_{x,y in -3..3} exp(-(x^2 + y^2))
    expected = 1.0 / sum(math.exp(-(x * x + y * y)) for x in range(-3, 4) for y in range(-3, 4))
    assert masses[1] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("num_heads", [1, 4, 6])
def test_gpsa_gated_to_content_equals_mhsa_with_the_same_weights(num_heads: int) -> None:
    torch.manual_seed(0)
    dim = 12 * num_heads
    gpsa = GPSA(dim, num_heads=num_heads, qkv_bias=True, grid_size=(5, 5))
    _randomise(gpsa)
    with torch.no_grad():
        gpsa.gating_param.fill_(-1e4)  # sigma = 0: all weight on the content attention
    mhsa = Attention(dim, num_heads=num_heads, qkv_bias=True, fused=False)
    with torch.no_grad():
        mhsa.qkv.weight.copy_(torch.cat((gpsa.qk.weight, gpsa.v.weight)))
        mhsa.qkv.bias.copy_(torch.cat((gpsa.qk.bias, gpsa.v.bias)))
        mhsa.proj.load_state_dict(gpsa.proj.state_dict())
    x = torch.randn(3, 25, dim)
    torch.testing.assert_close(gpsa(x), mhsa(x), atol=1e-5, rtol=1e-5)


def test_gpsa_gated_to_position_ignores_queries_and_keys() -> None:
    torch.manual_seed(0)
    gpsa = GPSA(32, num_heads=4, grid_size=(4, 4))
    _randomise(gpsa)
    with torch.no_grad():
        gpsa.gating_param.fill_(1e4)  # sigma = 1: a pure, input-independent positional attention
    x = torch.randn(2, 16, 32)
    v = gpsa.v(x).reshape(2, 16, 4, 8).transpose(1, 2)
    expected = gpsa.proj((gpsa.positional_attention() @ v).transpose(1, 2).reshape(2, 16, 32))
    out = gpsa(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        gpsa.qk.weight.mul_(-3.0)
    torch.testing.assert_close(gpsa(x), out, atol=1e-6, rtol=1e-6)


def test_gated_attention_is_a_row_stochastic_mix() -> None:
    torch.manual_seed(0)
    gpsa = GPSA(32, num_heads=4, grid_size=(3, 3))
    _randomise(gpsa)
    attn = gpsa.get_attention(torch.randn(2, 9, 32))
    assert attn.shape == (2, 4, 9, 9) and (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 9))


@pytest.mark.parametrize("dim", [16, 24, 32, 48, 64, 96, 128])
@pytest.mark.parametrize("size", [(8, 8), (7, 7), (4, 4), (2, 2), (3, 5)])
def test_gpsa_mixer_is_gpsa_over_the_maps_pixels(dim: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    mixer = zoo.create_mixer("gpsa", dim, resolution=size)
    assert isinstance(mixer, GPSAMixer) and dim % mixer.num_heads == 0
    x = torch.randn(2, dim, *size)
    out = mixer(x)
    assert out.shape == x.shape
    tokens = GPSA.forward(mixer, x.flatten(2).transpose(1, 2))
    torch.testing.assert_close(out, tokens.transpose(1, 2).reshape(x.shape))


def test_gpsa_mixer_heads_follow_head_dim_and_rebuild_for_a_new_map() -> None:
    assert [zoo.create_mixer("gpsa", d).num_heads for d in (16, 32, 64, 128)] == [1, 2, 4, 8]
    assert zoo.create_mixer("gpsa", 64, head_dim=8).num_heads == 8
    mixer = zoo.create_mixer("gpsa", 32, resolution=(4, 4))
    _randomise(mixer)
    x = torch.randn(1, 32, 6, 3)
    out = mixer(x)
    assert mixer.grid_size == (6, 3)
    fresh = GPSA(32, num_heads=mixer.num_heads, grid_size=(6, 3))
    fresh.load_state_dict(mixer.state_dict())
    torch.testing.assert_close(out, fresh(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape))


def test_gpsa_bad_input_and_configuration_raise_user_errors() -> None:
    with pytest.raises(UserError, match="gpsa: dim 30 is not divisible by num_heads 4"):
        zoo.create_mixer("gpsa", 30, num_heads=4)
    with pytest.raises(UserError, match="head_dim"):
        zoo.create_mixer("gpsa", 32, head_dim=0)
    mixer = zoo.create_mixer("gpsa", 32, resolution=(4, 4))
    with pytest.raises(UserError, match=r"gpsa: expected input \(B, 32, H, W\), got \(2, 16, 4, 4\)"):
        mixer(torch.randn(2, 16, 4, 4))
    with pytest.raises(UserError, match="not a square number"):
        GPSA(32, num_heads=4)(torch.randn(1, 12, 32))


def test_convit_forward_and_gpsa_block_placement() -> None:
    torch.manual_seed(0)
    model = ConVit(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=8, depth=3, num_heads=4,
                   local_up_to_layer=2)
    assert [type(b.attn).__name__ for b in model.blocks] == ["GPSA", "GPSA", "Attention"]
    assert model.embed_dim == 32 and model.pos_embed.shape == (1, 16, 32)
    # the model's own init must leave GPSA's local init in place (the generic Linear init runs first)
    for block in model.blocks[:2]:
        assert torch.equal(block.attn.v.weight, torch.eye(32))
        assert block.attn.pos_proj.weight[:, 2].tolist() == [-1.0] * 4
    features = model.forward_features(torch.randn(2, 1, 8, 8))
    assert features.shape == (2, 17, 32)  # the class token joins before the first MHSA block
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    # all blocks GPSA: no class token ever joins, the head pools the patches
    local = ConVit(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=8, depth=2, num_heads=4,
                   local_up_to_layer=2)
    assert local.forward_features(torch.randn(2, 1, 8, 8)).shape == (2, 16, 32)
    assert local(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_convit_bad_input_and_configuration_raise_user_errors() -> None:
    model = zoo.create_model("convit_tiny", depth=1, local_up_to_layer=1)
    with pytest.raises(UserError, match=r"convit_tiny: expected input \(B, 3, 224, 224\), got \(2, 3, 32, 32\)"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(UserError, match="convit_small: local_up_to_layer must be in"):
        zoo.create_model("convit_small", depth=4)
    with pytest.raises(UserError, match="patch_size"):
        ConVit(img_size=10, patch_size=4, embed_dim=8, num_heads=4)


def _layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", CONVITS)
def test_convit_parameter_count_and_layout_equal_timms(name: str, timm) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours, theirs = zoo.create_model(name), timm.create_model(name)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert _layout(ours) == _layout(theirs)


def _assert_same_outputs(ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor) -> None:
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_convit_tiny_loads_timm_weights_and_matches_its_outputs(timm) -> None:
    torch.manual_seed(0)
    theirs = timm.create_model("convit_tiny")
    _perturb(theirs, seed=1)  # off the structured init both share, so a mixed-up name would show
    _assert_same_outputs(zoo.create_model("convit_tiny"), theirs, torch.randn(2, 3, 224, 224))


@pytest.mark.parametrize("name", ["convit_small", "convit_base"])
def test_wider_convits_load_timm_weights_and_match_its_outputs(name: str, timm) -> None:
    # the full width and head count (9 and 16 heads) with 2 blocks, one GPSA and one MHSA, to keep the test fast;
    # the full-depth layout is checked above
    torch.manual_seed(0)
    overrides = dict(depth=2, local_up_to_layer=1)
    theirs = timm.create_model(name, **overrides)
    _perturb(theirs, seed=1)
    _assert_same_outputs(zoo.create_model(name, **overrides), theirs, torch.randn(2, 3, 224, 224))


@pytest.mark.slow
def test_convit_beats_an_equal_size_vit_on_a_tenth_of_digits(one_thread: None) -> None:
    from archlab.data import load_dataset

    # equal size: ConViT 4 heads x 16 = width 64 (68,766 parameters) vs ViT width 64, 4 heads (68,810)
    d = load_dataset("digits", seed=0)
    n = len(d.x_train) // 10
    common = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, depth=2, mlp_ratio=2.0, qkv_bias=False)
    accs: dict[str, list[float]] = {"convit": [], "vit": []}
    _train_both(d, n, common, accs)
    convit, vit = (sum(v) / len(v) for v in accs.values())
    # measured (1 thread): convit 0.490/0.429/0.409 (mean 0.443) vs vit 0.276/0.454/0.292 (mean 0.341)
    print(f"10% digits, 3 seeds: convit {accs['convit']} mean {convit:.4f}; vit {accs['vit']} mean {vit:.4f}")
    assert convit > vit


def _train_both(d, n: int, common: dict, accs: dict[str, list[float]]) -> None:
    from archlab.train import TrainConfig, evaluate, train_model

    for seed in range(3):
        for kind in accs:
            torch.manual_seed(seed)
            if kind == "convit":
                model = ConVit(embed_dim=16, num_heads=4, local_up_to_layer=1, **common)
            else:
                model = zoo.create_model("vit_tiny_patch16_224", embed_dim=64, num_heads=4, **common)
            cfg = TrainConfig(epochs=30, batch_size=16, lr=2e-3, seed=seed, patience=None)
            train_model(model, d.x_train[:n], d.y_train[:n], d.x_val, d.y_val, cfg)
            accs[kind].append(evaluate(model, d.x_test, d.y_test)[1])

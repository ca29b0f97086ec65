"""Token mixers and shared layers: each checked against an independent form or an invariant it must hold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo import create_mixer, get_mixer_spec, list_mixers
from archlab.zoo.layers import NORMS, LayerNorm2d, Mlp, StarReLU, create_norm
from archlab.zoo.mixers import Attention


def test_registered_mixers_and_layouts() -> None:
    assert {"attention", "pooling", "sepconv", "mlp"} <= set(list_mixers())
    layouts = {name: get_mixer_spec(name).layout for name in ("attention", "pooling", "sepconv", "mlp")}
    assert layouts == {"attention": "sequence", "pooling": "image", "sepconv": "image", "mlp": "sequence"}
    assert set(list_mixers(layout="image")) >= {"pooling", "sepconv"}
    assert all(get_mixer_spec(n).paper for n in ("attention", "pooling", "sepconv", "mlp"))


# --- pooling ---------------------------------------------------------------------------------------------

def test_pooling_is_zero_on_constant_input_including_borders() -> None:
    mixer = create_mixer("pooling", 4)
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(2, 4, 5, 7).contiguous()
    out = mixer(x)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))
    assert sum(p.numel() for p in mixer.parameters()) == 0


def test_pooling_equals_neighbourhood_mean_minus_centre() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6)
    out = create_mixer("pooling", 2)(x)
    for r, c in [(0, 0), (2, 3), (4, 5), (0, 4)]:
        window = x[:, :, max(0, r - 1):r + 2, max(0, c - 1):c + 2]
        expected = window.mean(dim=(-2, -1)) - x[:, :, r, c]
        torch.testing.assert_close(out[:, :, r, c], expected)


def test_pooling_output_depends_only_on_3x3_neighbourhood() -> None:
    x = torch.randn(1, 1, 7, 7, requires_grad=True)
    out = create_mixer("pooling", 1)(x)
    (grad,) = torch.autograd.grad(out[0, 0, 3, 3], x)
    support = grad[0, 0] != 0
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[2:5, 2:5] = True
    assert torch.equal(support, expected)


def test_pooling_rejects_even_window() -> None:
    with pytest.raises(UserError):
        create_mixer("pooling", 4, pool_size=2)


# --- attention -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim, heads", [(64, 2), (48, 1), (96, 3), (16, 1), (100, 2)])
def test_attention_head_count(dim: int, heads: int) -> None:
    mixer = create_mixer("attention", dim)
    assert mixer.num_heads == heads and mixer.head_dim * heads == dim
    assert mixer.qkv.weight.shape == (3 * dim, dim) and mixer.qkv.bias is None
    assert mixer.proj.weight.shape == (dim, dim)


def test_attention_explicit_heads_must_divide_dim() -> None:
    assert create_mixer("attention", 64, num_heads=4).num_heads == 4
    with pytest.raises(ValueError, match="divisible"):
        create_mixer("attention", 64, num_heads=5)


def test_attention_fused_matches_reference() -> None:
    torch.manual_seed(0)
    mixer: Attention = create_mixer("attention", 64, head_dim=16, qkv_bias=True)
    x = torch.randn(3, 10, 64)
    mixer.fused = True
    fused = mixer(x)
    mixer.fused = False
    reference = mixer(x)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)


def test_attention_matches_torch_multihead_attention() -> None:
    # An independent implementation with the same weights: catches a wrong head split or q/k/v order.
    torch.manual_seed(0)
    dim, heads = 32, 4
    mixer = create_mixer("attention", dim, num_heads=heads, fused=False)
    mha = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(mixer.qkv.weight)
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(mixer.proj.weight)
        mha.out_proj.bias.copy_(mixer.proj.bias)
    x = torch.randn(2, 7, dim)
    expected, _ = mha(x, x, x, need_weights=False)
    torch.testing.assert_close(mixer(x), expected, atol=1e-5, rtol=1e-5)


def test_attention_is_permutation_equivariant() -> None:
    torch.manual_seed(0)
    mixer = create_mixer("attention", 32)
    x = torch.randn(2, 9, 32)
    perm = torch.randperm(9)
    torch.testing.assert_close(mixer(x[:, perm]), mixer(x)[:, perm], atol=1e-5, rtol=1e-5)


# --- MLP-Mixer token MLP ---------------------------------------------------------------------------------

def test_mlp_mixer_shapes_follow_resolution() -> None:
    mixer = create_mixer("mlp", 8, resolution=(3, 4))
    assert mixer.fc1.weight.shape == (24, 12) and mixer.fc2.weight.shape == (12, 24)
    assert create_mixer("mlp", 8, resolution=(1, 1), expansion=0.1).fc1.out_features == 1


def test_mlp_mixer_mixes_globally_and_per_channel() -> None:
    torch.manual_seed(0)
    mixer = create_mixer("mlp", 4, resolution=(4, 4))
    x = torch.randn(1, 16, 4)
    y = x.clone()
    y[0, 0, 0] += 1.0  # first token, channel 0
    delta = (mixer(y) - mixer(x)).abs()
    assert delta[0, 15, 0] > 0  # the farthest token sees it
    assert torch.all(delta[0, :, 1:] == 0)  # other channels do not: the MLP is applied per channel


def test_mlp_mixer_is_not_permutation_equivariant() -> None:
    torch.manual_seed(0)
    mixer = create_mixer("mlp", 4, resolution=(3, 3))
    x = torch.randn(2, 9, 4)
    perm = torch.roll(torch.arange(9), 1)
    assert not torch.allclose(mixer(x[:, perm]), mixer(x)[:, perm], atol=1e-4)


def test_mlp_mixer_needs_resolution_and_matching_length() -> None:
    with pytest.raises(UserError, match="resolution"):
        create_mixer("mlp", 8)
    mixer = create_mixer("mlp", 8, resolution=(2, 2))
    with pytest.raises(UserError, match="4 tokens"):
        mixer(torch.randn(1, 5, 8))


# --- sepconv ---------------------------------------------------------------------------------------------

def test_sepconv_structure_follows_reference() -> None:
    mixer = create_mixer("sepconv", 8)
    assert mixer.pwconv1.weight.shape == (16, 8) and mixer.pwconv1.bias is None
    assert mixer.dwconv.weight.shape == (16, 1, 7, 7) and mixer.dwconv.groups == 16
    assert mixer.pwconv2.weight.shape == (8, 16)
    assert isinstance(mixer.act1, StarReLU)
    assert isinstance(create_mixer("sepconv", 8, act="gelu").act1, nn.GELU)


def test_sepconv_equals_channels_last_reference() -> None:
    torch.manual_seed(0)
    mixer = create_mixer("sepconv", 6, kernel_size=5, act="gelu", bias=True)
    x = torch.randn(2, 6, 9, 8)
    # The reference computes on (B, H, W, C): pointwise Linears, depthwise conv in between.
    h = F.gelu(F.linear(x.permute(0, 2, 3, 1), mixer.pwconv1.weight, mixer.pwconv1.bias))
    h = F.conv2d(h.permute(0, 3, 1, 2), mixer.dwconv.weight, mixer.dwconv.bias, padding=2, groups=12)
    expected = F.linear(h.permute(0, 2, 3, 1), mixer.pwconv2.weight, mixer.pwconv2.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(mixer(x), expected)


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_sepconv_receptive_field_is_kernel_window(kernel_size: int) -> None:
    torch.manual_seed(0)
    mixer = create_mixer("sepconv", 8, kernel_size=kernel_size, act="gelu")
    x = torch.randn(1, 8, 15, 15)
    y = x.clone()
    y[0, :, 7, 7] += 1.0
    changed = (mixer(y) - mixer(x)).abs().amax(dim=1)[0] > 0
    r = kernel_size // 2
    expected = torch.zeros(15, 15, dtype=torch.bool)
    expected[7 - r:8 + r, 7 - r:8 + r] = True
    assert torch.equal(changed, expected)


def test_star_relu() -> None:
    act = StarReLU(scale_value=2.0, bias_value=-0.5)
    x = torch.tensor([-1.0, 0.0, 3.0])
    torch.testing.assert_close(act(x), torch.tensor([-0.5, -0.5, 17.5]))


# --- norms and the channel MLP ---------------------------------------------------------------------------

def test_layernorm_normalises_channels_at_each_pixel() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 16, 3, 5) * 3 + torch.randn(1, 1, 3, 5) * 5  # a different offset at every pixel
    out = create_norm("layernorm", 16)(x)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=1, unbiased=False), torch.ones(2, 3, 5), atol=1e-3, rtol=0)


def test_layernorm2d_matches_poolformer_layernorm_channel() -> None:
    torch.manual_seed(0)
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 6, 4, 4)
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    expected = norm.weight[:, None, None] * (x - u) / torch.sqrt(s + 1e-5) + norm.bias[:, None, None]
    torch.testing.assert_close(norm(x), expected)


def test_groupnorm_normalises_whole_sample() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 4, 4) * 2 + torch.arange(8.0).view(1, 8, 1, 1)
    out = create_norm("groupnorm", 8)(x)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=(1, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    # Per-channel means survive (unlike layernorm at each pixel): the channel offsets are kept.
    assert out.mean(dim=(0, 2, 3)).diff().gt(0).all()


def test_batchnorm_and_unknown_norm() -> None:
    assert isinstance(create_norm("batchnorm", 4), nn.BatchNorm2d)
    assert NORMS == ("groupnorm", "layernorm", "batchnorm")
    with pytest.raises(UserError, match="groupnorm, layernorm, batchnorm"):
        create_norm("rmsnorm", 4)


def test_channel_mlp_is_a_per_pixel_linear_mlp() -> None:
    torch.manual_seed(0)
    mlp = Mlp(6, 24)
    assert [n for n, _ in mlp.named_children()] == ["fc1", "act", "fc2", "drop"]
    x = torch.randn(2, 6, 3, 3)
    h = F.gelu(F.linear(x.permute(0, 2, 3, 1), mlp.fc1.weight[:, :, 0, 0], mlp.fc1.bias))
    expected = F.linear(h, mlp.fc2.weight[:, :, 0, 0], mlp.fc2.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(mlp(x), expected)

"""TokenFormer's Pattention: softmax Pattention is cross-attention to the parameter tokens, the GELU normalisations
hold their invariants, and growing the parameter tokens with zero keys preserves the function."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.mixers.pattention import Pattention, TokenFormerAttention


def test_softmax_pattention_is_cross_attention_to_parameter_tokens() -> None:
    torch.manual_seed(0)
    layer = Pattention(12, 7, 20, norm_activation_type="softmax").double()
    with torch.no_grad():
        layer.key_param_tokens.normal_()  # large scores, so that the softmax is far from uniform
    x = torch.randn(3, 9, 12, dtype=torch.float64)
    keys = layer.key_param_tokens.expand(3, 20, 12)
    values = layer.value_param_tokens.expand(3, 20, 7)
    # the reference's "softmax" is exp / L1 * n: n times standard cross-attention (queries x, scale 1)
    expected = 20 * F.scaled_dot_product_attention(x, keys, values, scale=1.0)
    assert torch.allclose(layer(x), expected, atol=1e-6, rtol=0)


def test_l2_norm_gelu_form_and_scale_invariance() -> None:
    torch.manual_seed(0)
    layer = Pattention(8, 5, 16).double()
    assert layer.norm_activation_type == "l2_norm_gelu"  # the reference's default
    x = torch.randn(4, 8, dtype=torch.float64)
    s = (x @ layer.key_param_tokens.t()).detach()
    rows = [F.gelu(row / math.sqrt(float((row ** 2).sum())) * 4.0) for row in s]  # tau = sqrt(16)
    assert torch.allclose(layer(x), torch.stack(rows) @ layer.value_param_tokens, atol=1e-12)
    # the L2 normalisation of the scores makes the layer blind to the input's scale
    assert torch.allclose(layer(3.7 * x), layer(x), atol=1e-12)


def test_gelu_l2_norm_weights_have_norm_sqrt_n() -> None:
    torch.manual_seed(0)
    layer = Pattention(6, 6, 25, norm_activation_type="gelu_l2_norm").double()
    with torch.no_grad():
        layer.value_param_tokens.copy_(torch.eye(25, 6, dtype=torch.float64))  # read out the first 6 weights
    x = torch.randn(10, 6, dtype=torch.float64)
    theta = F.gelu(x @ layer.key_param_tokens.t())
    theta = theta / theta.norm(dim=-1, keepdim=True) * 5.0
    assert torch.allclose(theta.norm(dim=-1), torch.full((10,), 5.0, dtype=torch.float64))
    assert torch.allclose(layer(x), theta[:, :6], atol=1e-12)


@pytest.mark.parametrize("norm", ["l2_norm_gelu", "gelu_l2_norm"])
def test_growing_with_zero_keys_preserves_the_function(norm: str) -> None:
    torch.manual_seed(0)
    layer = Pattention(16, 16, 32, norm_activation_type=norm)
    x = torch.randn(4, 10, 16)
    before = layer(x)
    layer.grow(64)
    assert layer.key_param_tokens.shape == (64, 16) and layer.value_param_tokens.shape == (64, 16)
    assert torch.equal(layer.key_param_tokens[32:], torch.zeros(32, 16))
    assert layer.value_param_tokens[32:].abs().sum() > 0  # new values are free: zero keys silence them
    assert (layer(x) - before).abs().max() <= 1e-6
    # the grown tokens learn: a gradient reaches the new keys
    layer(x).sum().backward()
    assert layer.key_param_tokens.grad[32:].abs().sum() > 0


def test_growing_with_the_reference_scale_rescales_old_scores_by_sqrt_two() -> None:
    torch.manual_seed(0)
    layer = Pattention(16, 8, 32)
    x = torch.randn(5, 16)
    s = x @ layer.key_param_tokens.t()
    values = layer.value_param_tokens.detach().clone()
    layer.grow(64, keep_scale=False)  # tau = sqrt(64) now: derived output GELU(sqrt(2) * sqrt(32) * s/||s||) V
    expected = F.gelu(s / s.norm(dim=-1, keepdim=True) * math.sqrt(64)) @ values
    assert torch.allclose(layer(x), expected, atol=1e-5)
    preserved = F.gelu(s / s.norm(dim=-1, keepdim=True) * math.sqrt(32)) @ values
    assert (layer(x) - preserved).abs().max() > 1e-3  # the reference's formula does change the function


def test_tokenformer_attention_grows_without_changing_its_output() -> None:
    torch.manual_seed(0)
    mixer = zoo.create_mixer("pattention", 32, resolution=(7, 7))
    assert isinstance(mixer, TokenFormerAttention) and mixer.num_heads == 1
    assert mixer.query.param_token_num == 32 and mixer.proj.param_token_num == 32
    x = torch.randn(2, 32, 7, 7)
    before = mixer(x)
    assert before.shape == x.shape
    mixer.grow(64, 96)
    assert mixer.key.param_token_num == 64 and mixer.proj.param_token_num == 96
    assert (mixer(x) - before).abs().max() <= 1e-6


def test_reference_parameter_names() -> None:
    mixer = zoo.create_mixer("pattention", 64, qkv_slot_num=48, proj_slot_num=80)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {"query.key_param_tokens": (48, 64), "query.value_param_tokens": (48, 64),
                      "key.key_param_tokens": (48, 64), "key.value_param_tokens": (48, 64),
                      "value.key_param_tokens": (48, 64), "value.value_param_tokens": (48, 64),
                      "proj.key_param_tokens": (80, 64), "proj.value_param_tokens": (80, 64)}
    assert mixer.num_heads == 2


def test_bad_configuration_raises_user_error() -> None:
    with pytest.raises(UserError, match="pattention: unknown norm_activation_type 'relu'"):
        zoo.create_mixer("pattention", 32, norm_activation_type="relu")
    with pytest.raises(UserError, match="pattention: dim 30 is not divisible by num_heads 4"):
        zoo.create_mixer("pattention", 30, num_heads=4)
    with pytest.raises(UserError, match="only for the GELU"):
        Pattention(4, 4, 8, norm_activation_type="softmax").grow(16)
    with pytest.raises(UserError, match="fewer"):
        Pattention(4, 4, 8).grow(4)

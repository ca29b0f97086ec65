"""WaveMix: the Haar DWT layer against its definitions, the wavelet block, and WaveMix-Lite's published sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.layers.wavelets import HaarDWT2d, HaarIDWT2d, haar_dwt2d, haar_filters, haar_idwt2d


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 6, 10)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_analysis_then_synthesis_is_exact(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    ll, highs = HaarDWT2d(shape[1])(x)
    assert ll.shape == (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    assert highs.shape == (shape[0], shape[1], 3, shape[2] // 2, shape[3] // 2)
    assert (HaarIDWT2d(shape[1])(ll, highs) - x).abs().max() <= 1e-6


def test_odd_sizes_are_zero_padded_and_invert_after_cropping():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    ll, highs = haar_dwt2d(x)
    assert ll.shape[-2:] == (4, 3)
    padded = F.pad(x, (0, 1, 0, 1))  # one zero column at the right, one zero row at the bottom
    ll_even, highs_even = haar_dwt2d(padded)
    assert torch.equal(ll, ll_even) and torch.equal(highs, highs_even)
    assert (haar_idwt2d(ll, highs)[..., :7, :5] - x).abs().max() <= 1e-12


def test_dwt_equals_per_block_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    ll, highs = haar_dwt2d(x)
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]  # top-left, top-right of every 2x2 block
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]  # bottom-left, bottom-right
    torch.testing.assert_close(ll, (a + b + c + d) / 2)
    torch.testing.assert_close(highs[:, :, 0], (a + b - c - d) / 2)
    torch.testing.assert_close(highs[:, :, 1], (a - b + c - d) / 2)
    torch.testing.assert_close(highs[:, :, 2], (a - b - c + d) / 2)


def _separable_db1(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's path (pytorch_wavelets afb1d): PyWavelets' db1 filters, mirrored, rows then columns."""
    s = 1 / math.sqrt(2)
    dec_lo, dec_hi = [s, s], [-s, s]  # pywt.Wavelet("db1").dec_lo / dec_hi
    channels = x.shape[1]
    h_row = torch.tensor([dec_lo[::-1], dec_hi[::-1]], dtype=x.dtype).reshape(2, 1, 1, 2).repeat(channels, 1, 1, 1)
    lohi = F.conv2d(x, h_row, stride=(1, 2), groups=channels)  # channel 2c: low along width, 2c+1: high
    h_col = h_row.reshape(2 * channels, 1, 2, 1).repeat(2, 1, 1, 1)  # (low, high) for each of the 2C channels
    y = F.conv2d(lohi, h_col, stride=(2, 1), groups=2 * channels)
    y = y.reshape(x.shape[0], channels, 4, y.shape[-2], y.shape[-1])
    return y[:, :, 0], y[:, :, 1:]


def test_dwt_matches_the_reference_separable_cascade_and_band_order():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 6, dtype=torch.float64)
    ll_ref, highs_ref = _separable_db1(x)
    ll, highs = haar_dwt2d(x)
    torch.testing.assert_close(ll, ll_ref)
    torch.testing.assert_close(highs, highs_ref)


def test_transform_is_orthonormal_and_preserves_energy():
    filters = haar_filters(1, dtype=torch.float64).reshape(4, 4)
    torch.testing.assert_close(filters @ filters.T, torch.eye(4, dtype=torch.float64))
    torch.manual_seed(0)
    x = torch.randn(3, 2, 10, 12, dtype=torch.float64)
    ll, highs = haar_dwt2d(x)
    torch.testing.assert_close(ll.square().sum() + highs.square().sum(), x.square().sum())


@pytest.mark.parametrize("size", [(8, 8), (7, 7), (4, 4), (2, 2), (1, 1), (5, 3), (14, 14)])
@pytest.mark.parametrize("upsample", ["pixelshuffle", "convtranspose", "upsample"])
def test_mixer_keeps_shape_at_every_size(size, upsample):
    torch.manual_seed(0)
    mixer = zoo.create_mixer("wavemix", 16, upsample=upsample).eval()
    x = torch.randn(2, 16, *size)
    assert mixer(x).shape == x.shape


def test_odd_map_equals_zero_padded_even_map_cropped():
    torch.manual_seed(0)
    mixer = zoo.create_mixer("wavemix", 24).eval()
    x = torch.randn(2, 24, 7, 7)
    reduced = F.pad(mixer.reduction(x), (0, 1, 0, 1))
    ll, highs = haar_dwt2d(reduced)
    expected = mixer.feedforward(torch.cat([ll, highs.flatten(1, 2)], 1))[..., :7, :7]
    torch.testing.assert_close(mixer(x), expected)


def test_mixer_mixes_tokens_within_its_receptive_field():
    # A change at one pixel must reach its DWT block partner (so the mixer is not per-pixel) and must not
    # reach a pixel far away (the level-1 DWT plus a 3x3 conv only see a few pixels).
    torch.manual_seed(0)
    mixer = zoo.create_mixer("wavemix", 16, dropout=0.0).eval()
    x = torch.randn(1, 16, 8, 8)
    y = x.clone()
    y[..., 2, 2] += 1.0
    delta = (mixer(y) - mixer(x)).abs().sum(1)[0]
    assert delta[3, 3] > 1e-4 and delta[2, 3] > 1e-4
    assert delta[7, 7] == 0


def test_wavemix_lite_parameter_counts_match_the_reference_readme():
    # pranavphoenix/WaveMix README, "Parameter Efficiency" table: Lite-<final_dim>/<depth>.
    assert _n_params(zoo.create_model("wavemix_lite")) == 520_106  # 90 % CIFAR-10, Lite-64/6
    assert _n_params(zoo.create_model("wavemix_lite", final_dim=32, ff_channel=32, depth=7,
                                      upsample="upsample")) == 37_058  # 80 % CIFAR-10, Lite-32/7
    assert _n_params(zoo.create_model("wavemix_lite", final_dim=8, ff_channel=8, depth=5,
                                      in_chans=1)) == 7_156  # 90 % Fashion-MNIST, Lite-8/5
    assert _n_params(zoo.create_model("wavemix_lite", final_dim=8, ff_channel=8, depth=10, upsample="upsample",
                                      in_chans=1)) == 3_566  # 99 % MNIST, Lite-8/10


def test_wavemix_lite_state_dict_uses_the_reference_names():
    model = zoo.create_model("wavemix_lite", depth=1)
    expected = {
        "conv.0.weight": (32, 3, 3, 3), "conv.0.bias": (32,), "conv.1.weight": (64, 32, 3, 3), "conv.1.bias": (64,),
        "layers.0.reduction.weight": (16, 64, 1, 1), "layers.0.reduction.bias": (16,),
        "layers.0.feedforward.0.weight": (128, 64, 1, 1), "layers.0.feedforward.0.bias": (128,),
        "layers.0.feedforward.3.weight": (64, 128, 1, 1), "layers.0.feedforward.3.bias": (64,),
        "layers.0.feedforward.4.weight": (64, 64, 4, 4), "layers.0.feedforward.4.bias": (64,),
        "layers.0.feedforward.5.weight": (64,), "layers.0.feedforward.5.bias": (64,),
        "layers.0.feedforward.5.running_mean": (64,), "layers.0.feedforward.5.running_var": (64,),
        "layers.0.feedforward.5.num_batches_tracked": (),
        "pool.2.weight": (10, 64), "pool.2.bias": (10,),
    }
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_wavemix_lite_forward_matches_explicit_residual_stack():
    torch.manual_seed(0)
    model = zoo.create_model("wavemix_lite", depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    h = model.conv(x)
    for block in model.layers:
        h = h + block(h)
    torch.testing.assert_close(model(x), model.pool[2](h.mean(dim=(-2, -1))))


def test_bad_configuration_and_input_raise_user_errors():
    with pytest.raises(UserError, match="filters are for 3 channels, the input has 2"):
        HaarDWT2d(3)(torch.randn(1, 2, 4, 4))
    with pytest.raises(UserError, match="expected a"):
        haar_dwt2d(torch.randn(2, 4, 4))
    with pytest.raises(UserError, match="multiple of 4"):
        zoo.create_mixer("wavemix", 18)
    with pytest.raises(UserError, match="unknown upsample"):
        zoo.create_mixer("wavemix", 16, upsample="nearest")
    with pytest.raises(UserError, match=r"wavemix: expected input \(B, 16, H, W\)"):
        zoo.create_mixer("wavemix", 16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(UserError, match=r"wavemix_lite: expected input \(B, 3, H, W\), got \(2, 1, 32, 32\)"):
        zoo.create_model("wavemix_lite")(torch.randn(2, 1, 32, 32))
    with pytest.raises(UserError, match="unknown initial_conv"):
        zoo.create_model("wavemix_lite", initial_conv="conv")


def test_tiny_wavemix_lite_learns_digits():
    from archlab.data import load_dataset
    from archlab.train import TrainConfig, evaluate, train_model

    d = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = zoo.create_model("wavemix_lite", in_chans=1, final_dim=16, ff_channel=16, depth=2, dropout=0.0)
    train_model(model, d.x_train, d.y_train, d.x_val, d.y_val,
                TrainConfig(epochs=4, batch_size=32, lr=3e-3, seed=0, patience=None))
    _, test_acc = evaluate(model, d.x_test, d.y_test)
    assert test_acc >= 0.9, test_acc

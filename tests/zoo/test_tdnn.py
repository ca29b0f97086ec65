"""EfficientTDNN supernet: extracted static subnets equal the supernet under the same setting (eval and train),
kernel shrinking, attentive statistics pooling, the reference's parameter names, bad settings, and a tiny run that
tells synthetic "speakers" apart."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.models.tdnn import DynamicAttentiveStatsPool, DynamicConv1d, DynamicTDNN


def _supernet(**kw) -> DynamicTDNN:
    torch.manual_seed(0)
    cfg = dict(in_feats=20, out_embeds=16, num_blocks=3, channels=[32, 64, 64, 64], kernel_sizes=[5, 5, 3, 5],
               catconv_channels=48, bottleneck_dim=12, num_classes=5)
    net = DynamicTDNN(**{**cfg, **kw}).double()
    with torch.no_grad():
        # random weights, kernel transforms and BatchNorm statistics, so every selection matters
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.2) + (1.0 if name.endswith("bn.weight") else 0))
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    return net.eval()


SETTINGS = [
    dict(depth=3),
    dict(depth=2, width=[16, 24, 40], kernel=[3, 1, 3], catconv=24),
    dict(depth=1, width=[8, 8], kernel=[1, 5], catconv=8),
    dict(depth=3, width=0.5, kernel=3, catconv=0.75),
]


@pytest.mark.parametrize("setting", SETTINGS)
def test_extracted_subnet_equals_the_supernet(setting, one_thread) -> None:
    net = _supernet()
    x = torch.randn(3, 20, 37, dtype=torch.float64)
    net.set_active(**setting)
    sub = net.extract_subnet()
    depth, channels, kernels, cat = net.config
    assert len(sub.blocks) == depth and sub.channels == channels and sub.kernel_sizes == kernels
    assert sub.catconv_channels == cat
    assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in net.parameters()) or setting == SETTINGS[0]
    with torch.no_grad():
        assert torch.allclose(sub(x), net(x), atol=1e-6, rtol=0)
        # in training mode too (BatchNorm on batch statistics of the selected channels)
        net.train()
        sub.train()
        assert torch.allclose(sub(x), net(x), atol=1e-6, rtol=0)


def test_full_setting_extracts_the_supernet_itself() -> None:
    net = _supernet()
    net.set_active(depth=2, width=16)
    net.set_active()
    sub = net.extract_subnet()
    ref = net.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in sub.state_dict().items()) and sub.state_dict().keys() == ref.keys()


def test_subnet_of_a_subnet_keeps_the_kernel_transforms(one_thread) -> None:
    net = _supernet()
    x = torch.randn(2, 20, 29, dtype=torch.float64)
    net.set_active(depth=3, width=[32, 32, 32, 32], kernel=[3, 3, 3, 3])
    sub = net.extract_subnet()
    # shrinking the extracted kernel-3 subnet to kernel 1 is shrinking the supernet's kernel 5 to 1
    sub.set_active(kernel=1)
    net.set_active(depth=3, width=[32, 32, 32, 32], kernel=1)
    with torch.no_grad():
        assert torch.allclose(sub(x), net(x), atol=1e-6, rtol=0)


def test_kernel_shrinking_takes_the_centre_through_the_transform() -> None:
    torch.manual_seed(0)
    conv = DynamicConv1d(4, 6, kernel_size=5)
    full = conv.conv.weight.detach()
    conv.set_active(None, None, 3)
    assert torch.equal(conv.weight, full[:, :, 1:-1])  # k53 starts as the identity
    with torch.no_grad():
        conv.k53.copy_(torch.randn(3, 3))
        conv.k31.copy_(torch.randn(1, 1))
    assert torch.allclose(conv.weight, full[:, :, 1:-1] @ conv.k53)
    conv.set_active(2, 3, 1)
    assert torch.allclose(conv.weight, (full[:3, :2, 1:-1] @ conv.k53)[:, :, 1:-1] @ conv.k31)
    x = torch.randn(2, 2, 11)
    assert torch.allclose(conv(x), F.conv1d(x, conv.weight), atol=1e-6)


def test_attentive_stats_pooling_is_mean_and_std_under_uniform_attention() -> None:
    torch.manual_seed(0)
    pool = DynamicAttentiveStatsPool(6, 4).double()
    x = torch.randn(3, 6, 50, dtype=torch.float64)
    with torch.no_grad():
        pool.linear2.conv.weight.zero_()  # equal logits at every step: alpha = 1 / T
        out = pool(x)
    assert torch.allclose(out[:, :6], x.mean(2), atol=1e-12)
    assert torch.allclose(out[:, 6:], x.std(2, unbiased=False), atol=1e-10)
    with torch.no_grad():
        pool.linear2.conv.weight.normal_()
        weighted = pool(x)
    # non-uniform attention moves the statistics away from the plain ones
    assert (weighted[:, :6] - x.mean(2)).abs().max() > 1e-3


def test_random_subnets_of_the_reference_space_extract_exactly(one_thread) -> None:
    net = _supernet()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 20, 23, dtype=torch.float64)
    configs = set()
    for _ in range(4):
        depth, channels, kernels, cat = net.sample_active(gen, ratios=(0.25, 0.5, 0.75, 1.0))
        configs.add((depth, tuple(channels), tuple(kernels), cat))
        assert 1 <= depth <= 3 and all(k <= f for k, f in zip(kernels, net.kernel_sizes[:depth + 1], strict=True))
        with torch.no_grad():
            assert torch.allclose(net.extract_subnet()(x), net(x), atol=1e-6, rtol=0)
    assert len(configs) > 1


def test_registered_models_and_reference_names(one_thread) -> None:
    net = zoo.create_model("ecapa_tdnn_tiny").eval()
    with torch.no_grad():
        assert net(torch.randn(2, 80, 100)).shape == (2, 64)
    big = zoo.create_model("tdnn8m2g")
    assert len(big.blocks) == 4 and big.channels == [512] * 5 and big.catconv_channels == 1536
    keys = set(big.state_dict())
    for key in ["layer1.conv.conv.weight", "layer1.conv.k53", "layer1.bn.bn.running_var",
                "blocks.3.first_conv.conv.conv.weight", "blocks.3.resconv.convs.6.conv.k31",
                "blocks.3.resconv.convs.6.bn.bn.weight", "blocks.0.se.reduce.linear.weight",
                "blocks.0.se.expand.linear.bias", "catconv.conv.weight", "pooling.linear1.conv.weight",
                "pooling.linear2.conv.weight", "bnpool.bn.running_mean", "linear.linear.weight", "bnembed.weight"]:
        assert key in keys
    assert big.blocks[3].resconv.convs[0].conv.conv.dilation == (5,)  # dilations 2, 3, 4, 5


def test_bad_settings_and_input_raise() -> None:
    net = _supernet()
    with pytest.raises(UserError, match="depth"):
        net.set_active(depth=4)
    with pytest.raises(UserError, match="multiple of 8"):
        net.set_active(width=[32, 12, 64, 64])
    with pytest.raises(UserError, match="kernel 2"):
        net.set_active(kernel=[5, 5, 5, 5])  # block 2's full kernel is 3
    with pytest.raises(UserError, match=r"\(B, 20, T\)"):
        net(torch.randn(2, 37, 20, dtype=torch.float64))
    with pytest.raises(UserError, match="kernel sizes"):
        DynamicTDNN(in_feats=8, channels=16, kernel_sizes=4, catconv_channels=16)


def _speakers(n: int, gen: torch.Generator, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-spectrogram features of noisy sinusoid mixtures; each class ("speaker") has its own 3 frequencies."""
    labels = torch.randint(len(freqs), (n,), generator=gen)
    t = torch.arange(2048, dtype=torch.float32)
    f = freqs[labels] * (1 + 0.03 * torch.randn(n, 3, generator=gen))  # per-utterance pitch jitter
    amp = 0.5 + torch.rand(n, 3, 1, generator=gen)
    phase = 2 * torch.pi * torch.rand(n, 3, 1, generator=gen)
    wave = (amp * torch.sin(2 * torch.pi * f[..., None] * t + phase)).sum(1)
    wave = wave + 0.7 * torch.randn(n, 2048, generator=gen)
    spec = torch.stft(wave, n_fft=64, hop_length=32, window=torch.hann_window(64), return_complex=True)
    return torch.log1p(spec.abs()), labels  # (n, 33, 65)


def test_tiny_run_separates_synthetic_speakers(one_thread) -> None:
    gen = torch.Generator().manual_seed(0)
    freqs = 0.05 + 0.4 * torch.rand(4, 3, generator=gen)  # cycles per sample, below Nyquist
    x_train, y_train = _speakers(320, gen, freqs)
    x_test, y_test = _speakers(200, gen, freqs)
    torch.manual_seed(0)
    net = DynamicTDNN(in_feats=33, out_embeds=32, num_blocks=2, channels=32, kernel_sizes=[5, 3, 3],
                      catconv_channels=64, bottleneck_dim=16, scale=4, num_classes=4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(3):
        for i in range(0, 320, 32):
            loss = F.cross_entropy(net(x_train[i:i + 32]), y_train[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(x_test).argmax(1) == y_test).float().mean().item()
    assert acc >= 0.95, acc

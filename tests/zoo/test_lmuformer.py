"""LMUFormer: the parallel (FFT / conv) and recurrent forms of the whole model agree, a truncated input streams to
the prefix of the full output (exactly with the causal embedding, up to the reference's lookahead otherwise),
the names follow zeyuliu1037/LMUFormer and a tiny model learns to classify sinusoid frequencies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.zoo import create_model, list_models
from archlab.zoo._registry import model_info
from archlab.zoo.mixers.lmu import LMU
from archlab.zoo.models.lmuformer import LMUFormer


def _model(dtype=torch.float64, **kw) -> LMUFormer:
    """A tiny LMUFormer in evaluation mode with non-trivial BatchNorm statistics and an LMU input encoding that
    is not almost always zero (the trunc-normal 0.02 init makes u = ReLU(W_u x) tiny)."""
    torch.manual_seed(0)
    model = create_model("lmuformer_tiny", in_channels=3, embed_dims=12, depths=2, **kw).to(dtype).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, LMU):
                m.lmu.W_u.weight.normal_(0, 0.5)
                m.lmu.W_u.bias.fill_(0.5)
                m.lmu.W_h.weight.normal_(0, 0.3)
    return model


def test_registered() -> None:
    assert {"lmuformer", "lmuformer_tiny"} <= set(list_models("lmuformer*"))
    assert model_info("lmuformer")["input_shape"] == (128, 128)
    model = create_model("lmuformer")
    assert model.block[0].attn.lmu.theta == 128.0 and model.block[0].attn.memory_size == 256
    assert model(torch.randn(2, 128, 128)).shape == (2, 35)


def test_names_follow_reference_lmu_rnn_conv1d() -> None:
    model = create_model("lmuformer_tiny", in_channels=5, embed_dims=8, n_conv_layers=4)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    expected = {"patch_embed.rpe_conv.weight": (8, 8, 3), "head.weight": (4, 8), "head.bias": (4,)}
    for i in range(4):
        expected[f"patch_embed.conv_layers.{i}.0.weight"] = (8, 5 if i == 0 else 8, 3)
        for name in ("weight", "bias", "running_mean", "running_var"):
            expected[f"patch_embed.conv_layers.{i}.3.{name}"] = (8,)
    expected.update({
        "block.0.attn.lmu.W_u.weight": (1, 8), "block.0.attn.lmu.W_u.bias": (1,),
        "block.0.attn.lmu.W_h.weight": (8, 16), "block.0.attn.lmu.W_h.bias": (8,),
        "block.0.attn.lmu.A": (8, 8), "block.0.attn.lmu.B": (8, 1),
        "block.0.attn.proj_conv.weight": (8, 8, 1), "block.0.attn.proj_conv.bias": (8,),
        "block.0.mlp.fc1_conv.weight": (16, 8, 1), "block.0.mlp.fc1_conv.bias": (16,),
        "block.0.mlp.fc2_conv.weight": (8, 16, 1), "block.0.mlp.fc2_conv.bias": (8,),
    })
    for bn, width in (("block.0.attn.proj_bn", 8), ("block.0.mlp.fc1_bn", 16), ("block.0.mlp.fc2_bn", 8)):
        for name in ("weight", "bias", "running_mean", "running_var"):
            expected[f"{bn}.{name}"] = (width,)
    assert shapes == expected


@pytest.mark.parametrize("causal_embed", [False, True])
def test_parallel_forms_equal_recurrent(causal_embed: bool) -> None:
    model = _model(causal_embed=causal_embed)
    x = torch.randn(2, 64, 3, dtype=torch.float64)
    with torch.no_grad():
        rec = model(x, mode="recurrent", all_seq=True)
        for mode in ("fft", "conv"):
            torch.testing.assert_close(model(x, mode=mode, all_seq=True), rec, atol=1e-5, rtol=0)
    assert rec.abs().max() > 1e-2  # not a vacuous comparison of zeros


def test_all_seq_ends_at_the_clip_prediction() -> None:
    model = _model()
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, all_seq=True)[:, -1], model(x), atol=1e-12, rtol=0)


def test_causal_embedding_streams_a_truncated_input_exactly() -> None:
    model = _model(causal_embed=True)
    assert model.lookahead == 0
    x = torch.randn(2, 64, 3, dtype=torch.float64)
    with torch.no_grad():
        full = model(x, mode="recurrent", all_seq=True)
        for cut in (1, 17, 40):
            part = model(x[:, :cut], mode="recurrent", all_seq=True)
            torch.testing.assert_close(part, full[:, :cut], atol=1e-12, rtol=0)
        # and the parallel form of the prefix streams the same
        torch.testing.assert_close(model(x[:, :40], mode="fft", all_seq=True), full[:, :40], atol=1e-10, rtol=0)


def test_reference_embedding_streams_up_to_its_lookahead() -> None:
    model = _model()  # centred kernel-3 convolutions: 2 layers + rpe_conv -> 3 frames of lookahead
    assert model.lookahead == 3
    x = torch.randn(2, 64, 3, dtype=torch.float64)
    cut = 30
    with torch.no_grad():
        full = model.forward_features(x)
        part = model.forward_features(x[:, :cut])
    ready = cut - model.lookahead
    torch.testing.assert_close(part[:, :ready], full[:, :ready], atol=1e-12, rtol=0)
    assert (part[:, cut - 1] - full[:, cut - 1]).abs().max() > 1e-6  # the last frame still awaited the future


def test_causal_embedding_is_causal() -> None:
    model = _model(causal_embed=True)
    x = torch.randn(2, 48, 3, dtype=torch.float64)
    with torch.no_grad():
        y = model(x, all_seq=True)
        x2 = x.clone()
        x2[:, 20:] += torch.randn_like(x2[:, 20:])
        y2 = model(x2, all_seq=True)
    torch.testing.assert_close(y2[:, :20], y[:, :20], atol=1e-12, rtol=0)
    assert (y2[:, 20:] - y[:, 20:]).abs().max() > 1e-6


def _sinusoids(n: int, gen: torch.Generator, length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy sinusoids of 2, 4, 6 or 8 cycles per clip with random phase; the label is the frequency."""
    y = torch.randint(0, 4, (n,), generator=gen)
    t = torch.arange(length, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=gen) * 2 * math.pi
    x = torch.sin(2 * math.pi * 2 * (y[:, None] + 1) * t / length + phase)
    return (x + 0.3 * torch.randn(n, length, generator=gen))[..., None], y


# the spiking model learns through the LIF neurons' surrogate gradients, more slowly (chance is 0.25)
@pytest.mark.parametrize("name,target", [("lmuformer_tiny", 0.95), ("spiking_lmuformer_tiny", 0.6)])
def test_tiny_model_learns_sinusoid_frequencies(one_thread, name: str, target: float) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = create_model(name)
    x_train, y_train = _sinusoids(512, gen)
    x_val, y_val = _sinusoids(256, gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        idx = torch.randint(0, 512, (64,), generator=gen)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_val).argmax(-1) == y_val).float().mean().item()
    assert accuracy >= target, accuracy


def _spiking(**kw) -> LMUFormer:
    """A tiny spiking LMUFormer in evaluation mode whose LIF layers all fire sometimes (small BN variances)."""
    torch.manual_seed(0)
    model = create_model("spiking_lmuformer_tiny", in_channels=3, embed_dims=12, depths=2, **kw).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_var.uniform_(0.02, 0.2)
    return model


def test_spiking_model_names_and_spikes() -> None:
    assert {"spiking_lmuformer", "spiking_lmuformer_tiny"} <= set(list_models("spiking_lmuformer*"))
    names = {n for n, _ in create_model("spiking_lmuformer").named_parameters()}
    # the reference's slmu_rnn_ms_conv1d: Conv1d4EBMs, SLMUMs, ConvFFNMs and the head's BN
    assert {"patch_embed.proj_conv.weight", "patch_embed.proj_conv3.weight", "patch_embed.proj_bn3.weight",
            "patch_embed.rpe_conv.weight", "block.0.attn.prev_bn.weight", "block.0.attn.lmu.bn_u.weight",
            "block.0.attn.lmu.bn_m.weight", "block.0.attn.lmu.W_h.weight", "block.0.attn.proj_conv.weight",
            "block.0.mlp.fc1_bn.weight", "block.0.mlp.fc2_conv.weight", "head_bn.weight", "head.weight"} <= names
    assert create_model("spiking_lmuformer").block[0].attn.memory_size == 512  # 2 x dim, as SLMUMs
    model = _spiking()
    x = torch.randn(2, 48, 3, dtype=torch.float64)
    with torch.no_grad():
        features = model.forward_features(x)  # what the head reads: spikes of head_lif
    assert set(features.unique().tolist()) == {0.0, 1.0} and 0.02 < features.mean() < 0.98


def test_spiking_memory_forms_agree_and_the_causal_model_streams() -> None:
    model = _spiking(causal_embed=True)
    x = torch.randn(2, 64, 3, dtype=torch.float64)
    with torch.no_grad():
        full = model(x, mode="recurrent", all_seq=True)
        for mode in ("fft", "conv"):
            torch.testing.assert_close(model(x, mode=mode, all_seq=True), full, atol=1e-10, rtol=0)
        for cut in (1, 23, 50):
            torch.testing.assert_close(model(x[:, :cut], all_seq=True), full[:, :cut], atol=1e-10, rtol=0)
        x2 = x.clone()
        x2[:, 30:] += torch.randn_like(x2[:, 30:])
        later = model(x2, all_seq=True)
    torch.testing.assert_close(later[:, :30], full[:, :30], atol=1e-10, rtol=0)
    assert (later[:, 30:] - full[:, 30:]).abs().max() > 1e-6


def test_bad_input_raises_user_error() -> None:
    model = _model()
    with pytest.raises(UserError, match=r"lmuformer: expected input \(B, L, 3\)"):
        model(torch.randn(2, 10, 4, dtype=torch.float64))
    with pytest.raises(UserError, match="lmuformer: expected input"):
        model(torch.randn(10, 3, dtype=torch.float64))
    with pytest.raises(UserError, match="bad configuration"):
        LMUFormer(embed_dims=0)
    with pytest.raises(UserError, match="unknown mode"):
        model(torch.randn(2, 10, 3, dtype=torch.float64), mode="parallel")
    with pytest.raises(UserError, match="no dropout"):
        LMUFormer(spiking=True, drop_rate=0.1)

"""Training precision: what "auto" resolves to, bfloat16 autocast in the loop, channels-last with its fallback,
and a bf16-trained classifier that learns and comes back as a contiguous float32 model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_model
from torch import nn

import archlab.train._precision as precision
from archlab.errors import UserError
from archlab.study import SearchConfig
from archlab.train import TrainConfig, evaluate, fit, resolve_precision, train_model
from archlab.train._precision import channels_last_works, describe_precision


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 2))


class ViewAfterConv(nn.Module):
    """Flattens its activations with ``view``, which a channels-last tensor does not allow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.head(h.view(h.shape[0], -1))


def stripes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """16x16 images: horizontal stripes (class 0) or vertical stripes (class 1), noisy."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    line = (torch.arange(16) % 4 < 2).float()
    horizontal = line[:, None].expand(16, 16)
    x = torch.where(y[:, None, None] == 0, horizontal, horizontal.T) + 0.5 * torch.randn(n, 16, 16, generator=g)
    return x[:, None], y


def test_fixed_precisions_pass_through_and_unknown_ones_are_refused():
    assert resolve_precision("fp32", "cpu", (1, 28, 28)) == "fp32"
    assert resolve_precision("bf16", "cpu", (64,)) == "bf16"
    assert resolve_precision("auto", "cuda") == "bf16"
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(UserError, match="unknown precision"):
        TrainConfig(precision="half")
    with pytest.raises(UserError, match="unknown --precision 'fp16'"):
        SearchConfig(precision="fp16")


@pytest.mark.parametrize("native", [True, False])
def test_auto_takes_bf16_only_for_images_of_16_pixels_on_a_native_cpu(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    expected = "bf16" if native else "fp32"
    assert resolve_precision("auto", "cpu", (1, 28, 28)) == expected
    assert resolve_precision("auto", "cpu", (3, 16, 16)) == expected
    assert resolve_precision("auto", "cpu", (1, 8, 8)) == "fp32"  # digits: measured not to pay
    assert resolve_precision("auto", "cpu", (64,)) == "fp32"
    assert resolve_precision("auto", "cpu", None) == "fp32"
    line = describe_precision("auto", "cpu", (1, 28, 28))
    assert line.startswith("bfloat16" if native else "float32") and "auto" in line


def test_an_old_run_configuration_keeps_float32():
    old = SearchConfig().to_dict()
    del old["precision"]
    assert SearchConfig.from_dict(old).precision == "fp32"
    assert SearchConfig().precision == "auto" and SearchConfig().trial_config().precision == "auto"


def test_fit_autocasts_the_forward_pass_on_the_cpu_when_asked():
    seen = []

    def loss_fn(model, batch):
        out = model(batch[0])
        seen.append(out.dtype)
        return nn.functional.cross_entropy(out.float(), batch[1])

    batch = (torch.randn(8, 4), torch.randint(0, 2, (8,)))
    model = nn.Linear(4, 2)
    fit(model, [batch], loss_fn, epochs=1, amp=True)
    fit(model, [batch], loss_fn, epochs=1)  # the CPU default: float32
    assert seen == [torch.bfloat16, torch.float32]
    assert model.weight.dtype == torch.float32  # master weights stay in float32


def test_channels_last_is_used_where_it_runs_and_dropped_where_it_does_not():
    x = torch.randn(2, 1, 16, 16)
    cnn = small_cnn()
    assert channels_last_works(cnn, x)
    assert cnn[0].weight.is_contiguous(memory_format=torch.channels_last)
    viewer = ViewAfterConv()
    assert not channels_last_works(viewer, x)
    assert viewer.conv.weight.is_contiguous()  # put back
    assert not channels_last_works(nn.Sequential(nn.Flatten(), nn.Linear(256, 2)), x)  # no convolution
    assert not channels_last_works(small_cnn(), torch.randn(2, 16))  # not images


@pytest.mark.parametrize("make", [small_cnn, ViewAfterConv])
def test_a_bf16_classifier_learns_and_comes_back_contiguous_in_float32(make, tmp_path):
    x, y = stripes(512)
    xv, yv = stripes(256, seed=1)
    torch.manual_seed(0)
    model = make()
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3, precision="bf16", patience=None)
    result = train_model(model, x, y, xv, yv, cfg)
    assert result.val_accuracy > 0.9
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    save_model(model, str(tmp_path / "model.safetensors"))  # refuses non-contiguous weights
    # the float32 evaluation of the bf16-trained model agrees with the bf16 validation it was chosen by
    assert evaluate(model, xv, yv, precision="fp32")[1] == pytest.approx(result.val_accuracy, abs=0.03)


def test_bf16_and_fp32_training_reach_the_same_accuracy():
    x, y = stripes(512)
    xv, yv = stripes(256, seed=1)
    accs = {}
    for p in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = small_cnn()
        accs[p] = train_model(model, x, y, xv, yv, TrainConfig(epochs=6, batch_size=32, precision=p,
                                                                patience=None)).val_accuracy
    assert accs["fp32"] > 0.9 and abs(accs["bf16"] - accs["fp32"]) < 0.05, accs

"""Export: every mixer's model matches PyTorch in ONNX Runtime; weights round-trip; bad files are user errors."""

from __future__ import annotations

import pytest
import torch

from archlab import zoo
from archlab.errors import UserError
from archlab.export import check_onnx, export_onnx, load_weights, save_weights


@pytest.mark.parametrize("mixer", zoo.list_mixers())
def test_onnx_matches_pytorch_for_every_mixer(mixer, tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("metaformer", stages=[{"mixer": mixer, "depth": 1, "width": 16},
                                                   {"mixer": mixer, "depth": 1, "width": 32}],
                             in_chans=1, num_classes=10, image_size=(8, 8), norm="batchnorm")
    # non-trivial running statistics so that the export of eval-mode BatchNorm is really checked
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8) * 2 + 1)
    path = export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    assert check_onnx(model, path, (1, 8, 8), batch_sizes=(1, 3, 7)) <= 1e-4


def test_onnx_mismatch_is_detected(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    path = export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    with torch.no_grad():
        model[1].bias += 1.0
    from archlab.export import OnnxMismatch

    with pytest.raises(OnnxMismatch, match="differs"):
        check_onnx(model, path, (1, 8, 8))


def test_weights_round_trip_and_bad_files(tmp_path):
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    save_weights(a, tmp_path / "w.safetensors")
    load_weights(b, tmp_path / "w.safetensors")
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    with pytest.raises(UserError, match="does not fit"):
        load_weights(torch.nn.Linear(5, 3), tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a valid safetensors"):
        load_weights(b, tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        load_weights(b, tmp_path / "missing.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors", "w.safetensors"]  # no temp files

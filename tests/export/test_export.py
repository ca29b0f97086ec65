"""Export: every mixer's model matches PyTorch in ONNX Runtime; weights round-trip; bad files are user errors."""

from __future__ import annotations

import pytest
import torch

from archlab import zoo
from archlab.errors import UserError
from archlab.export import Preprocessed, check_onnx, export_onnx, load_weights, save_weights


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
    with pytest.raises(UserError, match=r"does not fit the model: .*Linear: size mismatch for weight"):
        load_weights(torch.nn.Linear(5, 3), tmp_path / "w.safetensors")  # the message says what does not fit
    with pytest.raises(UserError, match=r'Missing key\(s\) in state_dict: "0.weight"'):
        load_weights(torch.nn.Sequential(torch.nn.Linear(4, 3)), tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a valid safetensors"):
        load_weights(b, tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        load_weights(b, tmp_path / "missing.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors", "w.safetensors"]  # no temp files


def test_preprocessed_model_on_raw_uint8_images_equals_the_model_on_the_dataset(tmp_path):
    """An image folder's PNGs (0-255) through Preprocessed give exactly what the model gives on the dataset's
    normalised tensors, in PyTorch and in the exported ONNX graph; the metadata says what the input is."""
    import json

    import numpy as np
    import onnx
    import onnxruntime as ort
    from PIL import Image

    from archlab.data import load_dataset
    from archlab.export import input_metadata

    rng = np.random.default_rng(0)
    raw = {}
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
            raw[(cls, i)] = pixels
    data = load_dataset(tmp_path / "imgs", seed=0)
    assert data.scale == 255.0
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 2))
    wrapped = Preprocessed(model, data.scale, data.mean, data.std).eval()
    # the raw pixels of the training split, recovered from its normalised tensors (uint8 values are exact)
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    pixels = ((data.x_train * std + mean) * 255).round()
    assert pixels.min() >= 0 and pixels.max() <= 255
    with torch.no_grad():
        torch.testing.assert_close(wrapped(pixels), model(data.x_train), atol=1e-4, rtol=1e-4)
    meta = input_metadata(data.describe(), preprocessed=True)
    path = export_onnx(wrapped, data.input_shape, tmp_path / "m.onnx", metadata=meta)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"x": pixels.numpy().astype(np.uint8).astype(np.float32)})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(data.x_train).numpy(), atol=1e-4, rtol=1e-4)
    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    described = json.loads(stored["archlab.input"])
    assert described["layout"] == "NCHW" and described["scale"] == 255.0
    assert described["mean"] == list(data.mean) and json.loads(stored["archlab.classes"]) == ["a", "b"]


def test_preprocessed_rejects_bad_statistics():
    model = torch.nn.Identity()
    with pytest.raises(UserError, match="one value per channel"):
        Preprocessed(model, 255.0, [0.5, 0.5], [0.2])
    with pytest.raises(UserError, match="positive"):
        Preprocessed(model, 255.0, [0.5], [0.0])

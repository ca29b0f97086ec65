"""INT8 quantisation through ONNX Runtime: dynamic and static post-training quantisation keep a digits CNN's
accuracy, the mixed-precision policy respects its bound, and a QAT model exports as QDQ that ONNX Runtime runs
as PyTorch does."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from archlab.compress.quantize import (
    export_qat_onnx,
    mixed_precision,
    onnx_accuracy,
    onnx_latency,
    qat_prepare,
    quantizable_nodes,
    quantize_dynamic_onnx,
    quantize_static_onnx,
)
from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.export import export_onnx
from archlab.train import TrainConfig, evaluate, train_model


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = cnn()
    train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, TrainConfig(epochs=15, patience=None))
    path = tmp_path_factory.mktemp("q") / "model.onnx"
    export_onnx(model, data.input_shape, path)
    return data, model, path


def ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_post_training_int8_keeps_the_accuracy(trained, tmp_path):
    data, model, path = trained
    base = onnx_accuracy(path, data.x_test, data.y_test)
    assert base == pytest.approx(evaluate(model, data.x_test, data.y_test)[1], abs=1e-3)
    dyn = quantize_dynamic_onnx(path, tmp_path / "dynamic.onnx")
    static = quantize_static_onnx(path, tmp_path / "static.onnx", data.x_train[:256])
    assert "QuantizeLinear" in ops(static) and "DequantizeLinear" in ops(static)
    assert ops(dyn) & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
    for q in (dyn, static):
        assert onnx_accuracy(q, data.x_test, data.y_test) >= base - 0.02, q
    assert static.stat().st_size < 0.5 * path.stat().st_size  # int8 weights
    assert onnx_latency(static, data.input_shape, repeats=5, warmup=1) > 0


def test_mixed_precision_stays_within_its_bound_and_partitions_the_nodes(trained, tmp_path):
    data, _, path = trained
    nodes = quantizable_nodes(path)
    assert len(nodes) == 4  # two Conv, two Gemm
    result = mixed_precision(path, tmp_path / "mixed.onnx", data.x_val, data.y_val, max_drop=0.005,
                             calibration=data.x_train[:256])
    assert sorted(result.int8 + result.fp32) == sorted(nodes) and set(result.sensitivity) == set(nodes)
    assert result.accuracy >= result.float_accuracy - 0.005
    assert onnx_accuracy(result.path, data.x_val, data.y_val) == pytest.approx(result.accuracy)
    assert not (tmp_path / "mixed.trial.onnx").exists()


def test_a_qat_model_exports_as_qdq_and_runs_in_onnx_runtime_as_in_pytorch(trained, tmp_path):
    data, model, _ = trained
    qat = qat_prepare(cnn())
    float_state = model.state_dict()  # QAT starts from the trained float weights
    for name, p in qat.named_parameters():
        p.data.copy_(float_state[name.replace(".layer", "")])
    train_model(qat, data.x_train, data.y_train, data.x_val, data.y_val, TrainConfig(epochs=3, lr=1e-3,
                                                                                      patience=None))
    path = export_qat_onnx(qat, data.input_shape, tmp_path / "qat.onnx")
    assert "QuantizeLinear" in ops(path)
    torch_acc = evaluate(qat, data.x_test, data.y_test)[1]
    onnx_acc = onnx_accuracy(path, data.x_test, data.y_test)
    assert onnx_acc == pytest.approx(torch_acc, abs=0.01)
    assert onnx_acc >= evaluate(model, data.x_test, data.y_test)[1] - 0.02


def test_bad_inputs_are_refused(trained, tmp_path):
    data, _, path = trained
    with pytest.raises(UserError, match="calibration method"):
        quantize_static_onnx(path, tmp_path / "x.onnx", data.x_train[:8], method="entropy-ish")
    with pytest.raises(UserError, match="cannot load ONNX model"):
        (tmp_path / "bad.onnx").write_bytes(b"not onnx")
        onnx_accuracy(tmp_path / "bad.onnx", data.x_test, data.y_test)
    with pytest.raises(UserError, match="no nn.Linear or nn.Conv2d"):
        qat_prepare(nn.Sequential(nn.ReLU()))

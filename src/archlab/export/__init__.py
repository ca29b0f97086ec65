"""archlab.export: weights as safetensors and models as ONNX, checked against PyTorch with ONNX Runtime."""

from archlab.export._export import (
    OnnxMismatch,
    check_onnx,
    export_onnx,
    load_weights,
    save_weights,
)

__all__ = ["OnnxMismatch", "check_onnx", "export_onnx", "load_weights", "save_weights"]

"""archlab.export: weights as safetensors and models as ONNX, checked against PyTorch with ONNX Runtime."""

from archlab.export._export import (
    OnnxMismatch,
    Preprocessed,
    check_onnx,
    export_onnx,
    input_metadata,
    load_weights,
    save_weights,
)

__all__ = ["OnnxMismatch", "Preprocessed", "check_onnx", "export_onnx", "input_metadata", "load_weights",
           "save_weights"]

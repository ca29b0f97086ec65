"""Saving and exporting a trained model.

Weights are stored with safetensors (no pickle, so a checkpoint cannot run code when loaded). ONNX export uses
``torch.onnx.export`` with a dynamic batch axis; :func:`check_onnx` runs the file in ONNX Runtime and compares
it with the PyTorch model on random inputs at several batch sizes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from archlab._io import atomic_path
from archlab.errors import UserError

__all__ = ["OnnxMismatch", "check_onnx", "export_onnx", "load_weights", "save_weights"]


class OnnxMismatch(RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch outputs within tolerance."""


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict as safetensors (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata or {})
    return path


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load safetensors weights into ``model`` (strict); a corrupt or mismatched file is a UserError."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        state = load_file(str(path))
    except Exception as e:
        raise UserError(f"weights file {path} is not a valid safetensors file ({type(e).__name__})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"weights file {path} does not fit the model: {first}") from None
    return model


def _example(input_shape: Sequence[int], batch: int, input_dtype: str, vocab_size: int | None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    if input_dtype == "long":
        return torch.randint(0, vocab_size or 2, (batch, *input_shape), generator=generator)
    if input_dtype != "float":
        raise UserError(f"input_dtype must be 'float' or 'long', got {input_dtype!r}")
    return torch.randn(batch, *input_shape, generator=generator)


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | os.PathLike,
                opset: int = 17, input_dtype: str = "float", vocab_size: int | None = None) -> Path:
    """Export ``model`` (eval mode) to ONNX with input ``x`` of shape (batch, *input_shape) -> ``logits``.

    ``input_dtype="long"`` exports a model of token ids (in ``[0, vocab_size)``) instead of floats.
    """
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        x = _example(input_shape, 1, input_dtype, vocab_size)
        with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(tmp), dynamo=False, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset)
    finally:
        model.train(was_training)
    return path


def check_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int],
               batch_sizes: Sequence[int] = (1, 4), atol: float = 1e-4, seed: int = 0,
               input_dtype: str = "float", vocab_size: int | None = None) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch outputs; raises if above ``atol``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        for b in batch_sizes:
            x = _example(input_shape, b, input_dtype, vocab_size, gen)
            with torch.no_grad():
                ref = model(x).numpy()
            got = session.run(["logits"], {"x": x.numpy()})[0]
            worst = max(worst, float(np.max(np.abs(ref - got))))
    finally:
        model.train(was_training)
    if not worst <= atol:
        raise OnnxMismatch(f"ONNX output differs from PyTorch by {worst:.3g} (> {atol:g})")
    return worst

"""Saving and exporting a trained model.

Weights are stored with safetensors (no pickle, so a checkpoint cannot run code when loaded). ONNX export uses
``torch.onnx.export`` with a dynamic batch axis; :func:`check_onnx` runs the file in ONNX Runtime and compares
it with the PyTorch model on random inputs at several batch sizes. :class:`Preprocessed` puts a dataset's
normalisation in front of a model, so that the exported graph takes inputs as the data files hold them (pixel
values 0-255, say); :func:`export_onnx` also writes what the graph expects into the file's metadata.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from archlab._io import atomic_path
from archlab.errors import UserError

__all__ = ["OnnxMismatch", "Preprocessed", "check_onnx", "export_onnx", "input_metadata", "load_weights",
           "save_weights"]


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
        # torch's message is a header line ("Error(s) in loading state_dict for X:") and then the details
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = " ".join(lines[:2])
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise UserError(f"weights file {path} does not fit the model: {detail}") from None
    return model


class Preprocessed(nn.Module):
    """``model((x / scale - mean) / std)`` with per-channel ``mean`` and ``std``: the model behind the
    normalisation its training data had, for raw inputs of shape ``(B, C, H, W)`` or ``(B, C, L)``."""

    def __init__(self, model: nn.Module, scale: float, mean: Sequence[float], std: Sequence[float],
                 input_rank: int = 3) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean):
            raise UserError(f"Preprocessed: mean and std need one value per channel, got {mean!r} and {std!r}")
        if not scale > 0 or min(std) <= 0:
            raise UserError(f"Preprocessed: scale and std must be positive, got {scale!r} and {std!r}")
        view = (1, len(mean)) + (1,) * (input_rank - 1)
        self.model = model
        self.register_buffer("inv_std", (1.0 / (scale * torch.tensor(std, dtype=torch.float64))).float().view(view))
        self.register_buffer("shift", (torch.tensor(mean, dtype=torch.float64) * scale).float().view(view))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (x / scale - mean) / std, as one subtraction and one multiplication
        return self.model((x - self.shift) * self.inv_std)


def input_metadata(data: dict, *, preprocessed: bool) -> dict[str, str]:
    """What an exported graph expects, for the ONNX file's metadata, from a dataset's ``describe()``:
    layout, dtype, value range and normalisation of the input ``x``, and the class names of ``logits``."""
    shape = list(data.get("input_shape") or [])
    if data.get("vocab_size") is not None:
        x = {"dtype": "int64", "shape": ["batch", *shape], "values": f"token ids in [0, {data['vocab_size']})"}
    else:
        layout = {3: "NCHW", 2: "NCL"}.get(len(shape), "N" + "?" * len(shape))
        scale = float(data.get("scale", 1.0))
        x = {"dtype": "float32", "shape": ["batch", *shape], "layout": layout}
        if preprocessed:
            x["values"] = (f"raw, as the data files hold them (0-{scale:g} for these data; uint8 images may be "
                           "cast to float32 as they are)")
            x["normalisation"] = "inside the graph: (x / scale - mean) / std per channel"
        else:
            x["values"] = "already normalised: (raw / scale - mean) / std per channel"
        x.update(scale=scale, mean=data.get("mean"), std=data.get("std"))
    return {"archlab.input": json.dumps(x), "archlab.classes": json.dumps(list(data.get("classes") or [])),
            "archlab.output": "logits (batch, classes): argmax is the class; softmax gives probabilities"}


def _example(input_shape: Sequence[int], batch: int, input_dtype: str, vocab_size: int | None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    if input_dtype == "long":
        return torch.randint(0, vocab_size or 2, (batch, *input_shape), generator=generator)
    if input_dtype != "float":
        raise UserError(f"input_dtype must be 'float' or 'long', got {input_dtype!r}")
    return torch.randn(batch, *input_shape, generator=generator)


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | os.PathLike,
                opset: int = 17, input_dtype: str = "float", vocab_size: int | None = None,
                metadata: dict[str, str] | None = None) -> Path:
    """Export ``model`` (eval mode) to ONNX with input ``x`` of shape (batch, *input_shape) -> ``logits``.

    ``input_dtype="long"`` exports a model of token ids (in ``[0, vocab_size)``) instead of floats.
    ``metadata`` goes into the file's ``metadata_props`` (see :func:`input_metadata`).
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
            if metadata:
                import onnx

                graph = onnx.load(str(tmp))
                for key, value in metadata.items():
                    entry = graph.metadata_props.add()
                    entry.key, entry.value = key, value
                onnx.save(graph, str(tmp))
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

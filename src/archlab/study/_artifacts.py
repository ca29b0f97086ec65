"""What a finished run leaves behind, read back: the best model, and its ONNX export.

A run folder holds ``run.json`` (the configuration and what the data looked like) and ``best/`` (``arch.json``
and ``model.safetensors``). :func:`load_best_model` rebuilds the best architecture in the run's space and loads
its weights; :func:`export_best` writes it as ONNX and checks the file against PyTorch with ONNX Runtime. Bad
or missing files are :class:`~archlab.errors.UserError`\\ s naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from archlab.errors import UserError

__all__ = ["BestModel", "export_best", "exportable", "load_best_model"]

BEST_DIR = "best"
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class BestModel:
    """The best model of a run, with what is needed to feed it: its input shape (one example, no batch), the
    number of classes, and the vocabulary size for token-id input (None for float input)."""

    model: nn.Module
    arch: Any
    input_shape: tuple[int, ...]
    num_classes: int
    vocab_size: int | None = None

    @property
    def input_dtype(self) -> str:
        """``"long"`` (token ids) or ``"float"``."""
        return "long" if self.vocab_size is not None else "float"


def exportable(model: nn.Module, data: dict[str, Any]) -> tuple[nn.Module, dict[str, str]]:
    """The model to export for data described by ``data`` (a dataset's ``describe()``, as ``run.json`` keeps
    it), and the ONNX metadata that says what its input is. Float inputs with recorded normalisation get it in
    the graph (:class:`archlab.export.Preprocessed`), so the file takes values as the data files hold them."""
    from archlab.export import Preprocessed, input_metadata

    mean, std, shape = data.get("mean"), data.get("std"), data.get("input_shape") or []
    if data.get("vocab_size") is None and mean and std and "scale" in data:
        wrapped = Preprocessed(model, float(data["scale"]), mean, std, input_rank=len(shape))
        return wrapped.eval(), input_metadata(data, preprocessed=True)
    return model, input_metadata(data, preprocessed=False)


def _data_info(run: dict[str, Any], cfg: Any) -> tuple[tuple[int, ...], int, int | None]:
    """Input shape, classes and vocabulary of the run's data: as ``run.json`` recorded them, else from loading
    the dataset again (runs written before the data was recorded)."""
    info = run.get("data") or {}
    shape, classes, vocab = info.get("input_shape"), info.get("num_classes"), info.get("vocab_size")
    if shape is None or classes is None:
        from archlab.data import load_dataset

        d = load_dataset(cfg.data, seed=cfg.seed)
        shape, classes, vocab = d.input_shape, d.num_classes, d.vocab_size
    return tuple(int(s) for s in shape), int(classes), None if vocab is None else int(vocab)


def load_best_model(run_dir: str | os.PathLike[str]) -> BestModel:
    """Rebuild the best architecture of the run in ``run_dir`` and load its trained weights.

    A folder that is not a run, a run that has not finished (no ``best/arch.json``), an architecture that is
    malformed or not in the run's space, or a corrupt weights file is a :class:`~archlab.errors.UserError`.
    """
    from archlab.export import load_weights
    from archlab.study._config import SearchConfig, make_space
    from archlab.study._folder import load_run

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cfg = SearchConfig.from_dict(run["config"])
    arch_file = run_dir / BEST_DIR / ARCH_FILE
    if not arch_file.is_file():
        raise UserError(f"{run_dir} has no {BEST_DIR}/{ARCH_FILE} (the run has not finished)")
    shape, classes, vocab = _data_info(run, cfg)
    space = make_space(cfg, shape, classes, vocab)
    try:
        text = arch_file.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{arch_file} is not a text file") from None
    arch = space.validate(text)
    model = load_weights(space.build(arch), run_dir / BEST_DIR / WEIGHTS_FILE)
    return BestModel(model=model, arch=arch, input_shape=shape, num_classes=classes, vocab_size=vocab)


def export_best(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None,
                atol: float = 1e-4) -> dict[str, Any]:
    """Export the best model of a run to ONNX (default ``RUN/best/model.onnx``) and check it against PyTorch.

    Returns ``{"onnx": path, "max_abs_diff": float, "atol": atol, "input_shape": [...]}``. Bad input is a
    :class:`~archlab.errors.UserError` (see :func:`load_best_model`); an ONNX model that differs from PyTorch by
    more than ``atol`` raises :class:`archlab.export.OnnxMismatch` (the file is left for inspection).
    """
    from archlab.export import check_onnx, export_onnx
    from archlab.study._folder import load_run

    best = load_best_model(run_dir)
    target = Path(out_path) if out_path is not None else Path(run_dir) / BEST_DIR / ONNX_FILE
    io = {"input_dtype": best.input_dtype, "vocab_size": best.vocab_size}
    model, metadata = exportable(best.model, load_run(run_dir).get("data") or {})
    export_onnx(model, best.input_shape, target, metadata=metadata, **io)
    diff = check_onnx(model, target, best.input_shape, atol=atol, **io)
    return {"onnx": str(target), "max_abs_diff": diff, "atol": atol, "input_shape": list(best.input_shape),
            "input": json.loads(metadata["archlab.input"])}

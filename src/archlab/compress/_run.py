"""``archlab compress``: a finished run's best model made smaller or faster by one method, measured before and
after on the run's own test split, written to a new folder (never over the run).

Methods (:data:`METHODS`):

- ``svd``: every linear layer cut to its best rank-``⌈r·rank⌉`` approximation (the low-rank baseline), then
  ``--epochs`` of fine-tuning (0: none);
- ``maestro``: the linear layers decomposed from their SVD and trained ``--epochs`` with Maestro's ordered dropout
  and group lasso (:mod:`archlab.compress.maestro`), then kept at fraction ``--rank`` of their components;
- ``int8-dynamic``, ``int8-static``, ``int8-mixed``: ONNX Runtime post-training quantisation of the exported model
  (dynamic; static QDQ calibrated on 512 training images; per-layer mixed precision within ``--max-drop`` of the
  float accuracy on the validation split, calibrated on 128) (:mod:`archlab.compress.quantize`);
- ``qat``: quantisation-aware training for ``--epochs`` from the trained weights, exported as QDQ.

The low-rank methods change the PyTorch model (both PyTorch and ONNX Runtime latencies are measured); the INT8
ones change only the ONNX file (ONNX Runtime latency; PyTorch's is the original's). Every model's ONNX file takes
raw inputs (the normalisation inside the graph, as ``archlab export`` writes it).

The output folder holds ``compress.json`` (source run, method, settings, measurements before and after, the
structure needed to rebuild the model), ``model.onnx``, ``model.safetensors`` for the PyTorch-level methods
(:func:`load_compressed` rebuilds the model from it) and ``report.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError

__all__ = ["METHODS", "CompressSettings", "compress_run", "factorise", "load_compressed"]

METHODS = ("svd", "maestro", "int8-dynamic", "int8-static", "int8-mixed", "qat")
COMPRESS_FILE = "compress.json"
CALIBRATION_SIZE = 512


@dataclass(frozen=True)
class CompressSettings:
    rank: float = 0.5  # svd, maestro: fraction of each linear layer's components kept
    epochs: int | None = None  # fine-tuning / training epochs (None: the method's default)
    max_drop: float = 0.01  # int8-mixed: largest accuracy drop (absolute, validation) from the float model
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.rank <= 1.0:
            raise UserError(f"--rank must be in (0, 1], got {self.rank}")
        if self.epochs is not None and self.epochs < 0:
            raise UserError(f"--epochs must be >= 0, got {self.epochs}")
        if not 0.0 <= self.max_drop < 1.0:
            raise UserError(f"--max-drop must be in [0, 1), got {self.max_drop}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")


DEFAULT_EPOCHS = {"svd": 0, "maestro": 3, "qat": 2}


def factorise(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Replace, in place, each ``nn.Linear`` named in ``ranks`` by ``Sequential(Linear(in, k, bias=False),
    Linear(k, out))``: the structure the low-rank methods save (weights then load into it)."""
    modules = dict(model.named_modules())
    for name, k in ranks.items():
        linear = modules.get(name)
        if not isinstance(linear, nn.Linear):
            raise UserError(f"compress: the model has no linear layer {name!r} to factorise")
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, nn.Sequential(nn.Linear(linear.in_features, k, bias=False),
                                             nn.Linear(k, linear.out_features, bias=linear.bias is not None)))
    return model


def _compact(model: nn.Module) -> dict[str, int]:
    """Every MaestroLinear of ``model`` replaced by its compact module at its fraction; the ranks kept (layers
    that stay one product matrix are not listed)."""
    from archlab.compress.maestro import MaestroLinear

    ranks = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, MaestroLinear):
            small = module.compact()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, small)
            if isinstance(small, nn.Sequential):
                ranks[name] = small[0].out_features
    return ranks


def _raw(x: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    """Normalised inputs back to the raw values the exported graph takes."""
    mean, std, scale = info.get("mean"), info.get("std"), info.get("scale")
    if not (mean and std and scale):
        return x
    view = (1, len(mean)) + (1,) * (x.dim() - 2)
    return (x * torch.tensor(std).view(view) + torch.tensor(mean).view(view)) * float(scale)


def _measure(model: nn.Module, onnx_path: Path, data: Any, info: dict[str, Any], *, torch_changed: bool
             ) -> dict[str, Any]:
    from archlab.compress.quantize import onnx_accuracy, onnx_latency
    from archlab.measure import count_flops, count_params, measure_latency
    from archlab.train import evaluate

    shape = tuple(data.input_shape)
    row: dict[str, Any] = {"onnx_accuracy": onnx_accuracy(onnx_path, _raw(data.x_test, info), data.y_test),
                           "onnx_latency_ms": onnx_latency(onnx_path, shape), "onnx_bytes": onnx_path.stat().st_size}
    if torch_changed:
        row.update(accuracy=evaluate(model, data.x_test, data.y_test)[1], params=count_params(model),
                   flops=count_flops(model, shape), torch_latency_ms=measure_latency(model, shape))
    return row


def _export(model: nn.Module, info: dict[str, Any], shape: tuple[int, ...], path: Path) -> Path:
    from archlab.export import export_onnx
    from archlab.study._artifacts import exportable

    wrapped, metadata = exportable(model, info)
    return export_onnx(wrapped, shape, path, metadata=metadata)


def _finetune(model: nn.Module, data: Any, epochs: int, s: CompressSettings) -> None:
    from archlab.train import TrainConfig, train_model

    if epochs > 0:
        train_model(model, data.x_train, data.y_train, data.x_val, data.y_val,
                    TrainConfig(epochs=epochs, lr=s.lr, patience=None, seed=s.seed, batch_size=128))


def compress_run(run_dir: str | os.PathLike, method: str, out_dir: str | os.PathLike | None = None,
                 settings: CompressSettings = CompressSettings(),
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compress the best model of ``run_dir`` with ``method``; returns what ``compress.json`` holds."""
    from archlab.data import load_dataset
    from archlab.study import SearchConfig
    from archlab.study._artifacts import load_best_model
    from archlab.study._folder import load_run, write_json

    if method not in METHODS:
        raise UserError(f"unknown compression method {method!r}; choose from {', '.join(METHODS)}")
    say = progress or (lambda _: None)
    run_dir = Path(run_dir)
    best = load_best_model(run_dir)
    run = load_run(run_dir)
    info = run.get("data") or {}
    if best.vocab_size is not None:
        raise UserError(f"--method {method} does not apply to {run_dir}: its model reads token ids, and archlab "
                        "compress handles models of float inputs")
    model = best.model.eval()
    head = _head(model, best.num_classes)
    if method in ("svd", "maestro") and not any(type(m) is nn.Linear and n not in head
                                                 for n, m in model.named_modules()):
        raise UserError(f"--method {method} does not apply to {run_dir}: its model has no linear layer to "
                        "factorise besides its classifier")
    out = Path(out_dir) if out_dir is not None else run_dir.parent / f"{run_dir.name}-{method}"
    if out.exists():
        raise UserError(f"{out} already exists; archlab compress never overwrites: choose another --out")
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise UserError(f"--out {out} is inside the run {run_dir}; choose a folder outside it")
    cfg = SearchConfig.from_dict(run["config"])
    say(f"loading {cfg.data}")
    data = load_dataset(cfg.data, seed=cfg.seed)
    if tuple(data.input_shape) != tuple(best.input_shape):
        raise UserError(f"the data {cfg.data!r} now has inputs {tuple(data.input_shape)}, the run's model "
                        f"{tuple(best.input_shape)}")
    shape = tuple(best.input_shape)
    epochs = settings.epochs if settings.epochs is not None else DEFAULT_EPOCHS.get(method, 0)
    out.mkdir(parents=True)
    try:
        result = _compress(model, method, out, run_dir, data, info, shape, epochs, head, settings, say)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a failed or interrupted compression leaves no half folder
        raise
    write_json(out / COMPRESS_FILE, result)
    (out / "report.md").write_text(report_markdown(result))
    return result


def _compress(model: nn.Module, method: str, out: Path, run_dir: Path, data: Any, info: dict[str, Any],
              shape: tuple[int, ...], epochs: int, head: tuple[str, ...], settings: CompressSettings,
              say: Callable[[str], None]) -> dict[str, Any]:
    from archlab.export import save_weights

    result: dict[str, Any] = {"source": str(run_dir), "method": method, "settings": {**asdict(settings),
                                                                                     "epochs": epochs}}
    with tempfile.TemporaryDirectory() as tmp:
        float_onnx = _export(model, info, shape, Path(tmp) / "float.onnx")
        say("measuring the original")
        result["before"] = _measure(model, float_onnx, data, info, torch_changed=True)
        target = out / "model.onnx"
        say(f"compressing: {method}")
        torch_changed, structure = _apply(method, model, float_onnx, target, data, info, epochs, settings,
                                          head)
        say("measuring the compressed model")
        after = _measure(model, target, data, info, torch_changed=torch_changed)
        if not torch_changed:
            for key in ("accuracy", "params", "flops", "torch_latency_ms"):
                after[key] = None  # the PyTorch model is the original's; the compressed one runs in ONNX Runtime
        result["after"] = after
    result["structure"] = structure
    if torch_changed:
        save_weights(model, out / "model.safetensors", metadata={"archlab.compress": method})
    return result


def _head(model: nn.Module, num_classes: int) -> tuple[str, ...]:
    """The classifier: the last linear layer with one output per class (the low-rank methods leave it whole, as
    Maestro's and the SVD baselines' experiments do)."""
    heads = [name for name, m in model.named_modules() if type(m) is nn.Linear and m.out_features == num_classes]
    return heads[-1:]


def _apply(method: str, model: nn.Module, float_onnx: Path, target: Path, data: Any, info: dict[str, Any],
           epochs: int, s: CompressSettings, head: tuple[str, ...]) -> tuple[bool, dict[str, Any]]:
    """Compress; returns whether the PyTorch model changed and the structure to rebuild it from its weights."""
    from archlab.compress import quantize
    from archlab.compress.maestro import decompose, set_fraction, svd_truncate, train_maestro

    calibration = _raw(data.x_train[:CALIBRATION_SIZE], info)
    if method == "svd":
        svd_truncate(model, s.rank, skip=head)
        ranks = _compact(model)
        _finetune(model, data, epochs, s)
        _export(model, info, tuple(data.input_shape), target)
        return True, {"factorised": ranks}
    if method == "maestro":
        decompose(model, skip=head, svd_init=True)
        if epochs:
            train_maestro(model, data.x_train, data.y_train, epochs=epochs, batch_size=128, lr=s.lr, seed=s.seed)
        set_fraction(model, s.rank)
        ranks = _compact(model)
        model.eval()
        _export(model, info, tuple(data.input_shape), target)
        return True, {"factorised": ranks}
    if method == "qat":
        quantize.qat_prepare(model)
        _finetune(model, data, max(1, epochs), s)
        quantize.freeze_observers(model)
        _export(model.eval(), info, tuple(data.input_shape), target)
        return True, {"qat": [n for n, m in model.named_modules() if isinstance(m, quantize.QATWrapper)]}
    if method == "int8-dynamic":
        quantize.quantize_dynamic_onnx(float_onnx, target)
        return False, {}
    if method == "int8-static":
        quantize.quantize_static_onnx(float_onnx, target, calibration)
        return False, {}
    # 128 calibration images: the policy search quantises the model once per node and log2(nodes) more times
    mixed = quantize.mixed_precision(float_onnx, target, _raw(data.x_val, info), data.y_val, max_drop=s.max_drop,
                                     calibration=calibration[:128], work_dir=target.parent)
    return False, {"int8": mixed.int8, "fp32": mixed.fp32, "sensitivity": mixed.sensitivity}


def load_compressed(folder: str | os.PathLike) -> nn.Module:
    """The PyTorch model of an ``archlab compress`` folder (``svd``, ``maestro`` or ``qat``), weights loaded."""
    from archlab.compress.quantize import qat_prepare
    from archlab.export import load_weights
    from archlab.study._artifacts import load_best_model

    folder = Path(folder)
    path = folder / COMPRESS_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not an archlab compress folder (no {COMPRESS_FILE})")
    try:
        info = json.loads(path.read_text())
        source, structure = info["source"], info.get("structure") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{path} is corrupt: {e}") from None
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder} holds only an ONNX model ({info.get('method')}): load {folder / 'model.onnx'} "
                        "with ONNX Runtime")
    model = load_best_model(source).model
    if "factorised" in structure:
        factorise(model, {k: int(v) for k, v in structure["factorised"].items()})
    if "qat" in structure:
        wanted = set(structure["qat"])
        qat_prepare(model, skip=lambda name, _: name not in wanted)
    return load_weights(model, folder / "model.safetensors").eval()


def report_markdown(result: dict[str, Any]) -> str:
    """The before/after table of a compression as Markdown."""
    from archlab.report.format import format_bytes, format_count, format_flops, format_ms, format_percent

    rows = [("test accuracy (PyTorch)", "accuracy", format_percent), ("test accuracy (ONNX Runtime)",
                                                                      "onnx_accuracy", format_percent),
            ("parameters", "params", format_count), ("FLOPs per input", "flops", format_flops),
            ("latency, PyTorch CPU, batch 1", "torch_latency_ms", format_ms),
            ("latency, ONNX Runtime CPU, batch 1", "onnx_latency_ms", format_ms),
            ("ONNX file", "onnx_bytes", format_bytes)]
    before, after = result["before"], result["after"]
    lines = [f"# archlab compress: {result['method']}", "", f"Source run: `{result['source']}`. Settings: "
             + ", ".join(f"{k} = {v}" for k, v in result["settings"].items()) + ".", "",
             "| | original | compressed |", "|---|---|---|"]
    for label, key, fmt in rows:
        lines.append(f"| {label} | {fmt(before.get(key))} | "
                     f"{fmt(after.get(key)) if after.get(key) is not None else 'unchanged (ONNX only)'} |")
    structure = result.get("structure") or {}
    if structure.get("factorised"):
        lines += ["", "Factorised layers (rank kept): " + ", ".join(f"`{k}` {v}"
                                                                    for k, v in structure["factorised"].items())]
    if structure.get("fp32") is not None:
        lines += ["", f"INT8 nodes: {len(structure['int8'])}; kept in float32: "
                  + (", ".join(f"`{n}`" for n in structure["fp32"]) or "none")]
    return "\n".join(lines) + "\n"

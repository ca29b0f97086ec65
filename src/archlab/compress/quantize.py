"""INT8 quantisation of a trained classifier, deployed through ONNX Runtime: post-training (dynamic and static),
per-layer mixed precision, and quantisation-aware training exported as QDQ.

This is the quantisation half of SimQ-NAS (Sridhar et al., "SimQ-NAS: Simultaneous Quantization Policy and
Neural Architecture Search", 2023: a per-layer INT8-or-FP32 policy, which its authors run with Intel Neural
Compressor's post-training quantisation on CPUs, IntelLabs/DyNAS-T ``supernetwork_registry.py``'s ``q_bits``
{8, 32} per layer). Here the engines are ONNX Runtime's quantiser (``onnxruntime.quantization``) and PyTorch's
fake quantisation; archlab adds the policy search, the calibration plumbing and the measurements.

- :func:`quantize_dynamic_onnx`: weights INT8 ahead of time, activations quantised on the fly (MatMul/Gemm,
  the right choice for linear-heavy models).
- :func:`quantize_static_onnx`: weights and activations INT8 with scales calibrated on sample inputs (min-max or
  percentile), in the QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into INT8 kernels),
  per-channel weights by default; ``exclude`` keeps named nodes in float32.
- :func:`mixed_precision`: the per-layer policy: each quantisable node is tried alone in INT8 and its accuracy
  drop on a held-out split measured; then the longest prefix of the nodes, least sensitive first, whose joint
  quantisation stays within ``max_drop`` of float32 is quantised (bisection; a greedy search over SimQ-NAS's
  {8, 32} bits per layer).
- :func:`qat_prepare` / :func:`export_qat_onnx`: quantisation-aware training: fake quantisers (PyTorch's, per
  channel for weights, moving-average min-max for activations) on the inputs of every Linear and Conv2d, training
  through them with :func:`archlab.train.fit` (straight-through gradients), then an ONNX export in which every fake
  quantiser becomes a QuantizeLinear/DequantizeLinear pair with the learned scales.
- :func:`onnx_accuracy` and :func:`onnx_latency`: what a file does in ONNX Runtime on this CPU.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError

__all__ = ["QUANTIZABLE_OPS", "MixedPrecision", "QATWrapper", "export_qat_onnx", "freeze_observers",
           "mixed_precision", "onnx_accuracy",
           "onnx_latency", "qat_prepare", "quantizable_nodes", "quantize_dynamic_onnx", "quantize_static_onnx"]

QUANTIZABLE_OPS = ("Conv", "MatMul", "Gemm")


def _session(path: str | os.PathLike, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 (ONNX Runtime raises its own exception types)
        raise UserError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from None


def _input_name(session) -> str:  # noqa: ANN001
    return session.get_inputs()[0].name


def onnx_accuracy(path: str | os.PathLike, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of the ONNX model at ``path`` on ``(x, y)`` in ONNX Runtime."""
    session = _session(path)
    name = _input_name(session)
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = session.run(None, {name: x[i:i + batch_size].numpy()})[0]
        correct += int((logits.argmax(1) == y[i:i + batch_size].numpy()).sum())
    return correct / max(1, len(x))


def onnx_latency(path: str | os.PathLike, input_shape: Sequence[int], batch_size: int = 1, repeats: int = 50,
                 warmup: int = 10, threads: int = 1) -> float:
    """Median milliseconds of one ONNX Runtime call on a random batch (``threads`` intra-op threads)."""
    session = _session(path, threads)
    name = _input_name(session)
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {name: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def quantizable_nodes(path: str | os.PathLike) -> list[str]:
    """Names of the nodes ONNX Runtime's quantiser would quantise (Conv, MatMul, Gemm), in graph order."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in QUANTIZABLE_OPS]


def quantize_dynamic_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic INT8: weights quantised ahead of time, activations at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


class _Reader:
    """ONNX Runtime's calibration data reader over float batches."""

    def __init__(self, name: str, x: torch.Tensor, batch_size: int) -> None:
        self.batches = iter([{name: x[i:i + batch_size].numpy()} for i in range(0, len(x), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantize_static_onnx(src: str | os.PathLike, dst: str | os.PathLike, calibration: torch.Tensor, *,
                         exclude: Sequence[str] = (), per_channel: bool = True, method: str = "minmax",
                         batch_size: int = 64) -> Path:
    """Static INT8 in the QDQ format, scales calibrated on ``calibration`` inputs (``method``: "minmax" or
    "percentile"); the nodes named in ``exclude`` stay float32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UserError(f"quantize_static_onnx: unknown calibration method {method!r}; choose minmax or percentile")
    if len(calibration) == 0:
        raise UserError("quantize_static_onnx: needs calibration inputs")
    name = _input_name(_session(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(src), str(dst), _Reader(name, calibration, batch_size), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=methods[method], nodes_to_exclude=list(exclude))
    return Path(dst)


@dataclass
class MixedPrecision:
    """The per-layer policy :func:`mixed_precision` chose and what it measured."""

    path: Path  # the quantised model
    int8: list[str]  # nodes quantised
    fp32: list[str]  # nodes kept in float32
    accuracy: float  # on the calibration split
    float_accuracy: float
    sensitivity: dict[str, float] = field(default_factory=dict)  # accuracy drop of each node alone in INT8


def mixed_precision(src: str | os.PathLike, dst: str | os.PathLike, x: torch.Tensor, y: torch.Tensor, *,
                    max_drop: float = 0.01, calibration: torch.Tensor | None = None, per_channel: bool = True,
                    work_dir: str | os.PathLike | None = None) -> MixedPrecision:
    """Quantise as many nodes as possible while the accuracy on ``(x, y)`` stays within ``max_drop`` (absolute)
    of the float model's: the nodes ordered by their measured sensitivity (each alone in INT8), then the longest
    prefix of that order within the bound."""
    calibration = x if calibration is None else calibration
    nodes = quantizable_nodes(src)
    if not nodes:
        raise UserError(f"mixed_precision: {src} has no Conv, MatMul or Gemm node to quantise")
    work = Path(work_dir) if work_dir is not None else Path(dst).parent
    work.mkdir(parents=True, exist_ok=True)
    trial = work / (Path(dst).stem + ".trial.onnx")
    base = onnx_accuracy(src, x, y)

    def accuracy_with(int8: Sequence[str]) -> float:
        quantize_static_onnx(src, trial, calibration, exclude=[n for n in nodes if n not in int8],
                             per_channel=per_channel)
        return onnx_accuracy(trial, x, y)

    try:
        sensitivity = {n: base - accuracy_with([n]) for n in nodes}
        order = sorted(nodes, key=lambda n: (sensitivity[n], nodes.index(n)))
        # the longest prefix of the least sensitive nodes that stays within the bound, by bisection (log N trials
        # instead of N; it assumes that quantising more nodes does not raise the accuracy, as it rarely does)
        lo, hi, acc = 0, len(order), base
        while lo < hi:
            mid = (lo + hi + 1) // 2
            got = accuracy_with(order[:mid])
            if base - got <= max_drop:
                lo, acc = mid, got
            else:
                hi = mid - 1
        chosen = order[:lo]
        quantize_static_onnx(src, dst, calibration, exclude=[n for n in nodes if n not in chosen],
                             per_channel=per_channel)
    finally:
        trial.unlink(missing_ok=True)
    return MixedPrecision(Path(dst), [n for n in nodes if n in chosen], [n for n in nodes if n not in chosen], acc,
                          base, sensitivity)


class QATWrapper(nn.Module):
    """A Linear or Conv2d with fake-quantised input (per tensor, INT8, moving-average min-max observer) and
    weight (per output channel, symmetric, INT8)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        from torch.ao.quantization import (
            FakeQuantize,
            MovingAverageMinMaxObserver,
            MovingAveragePerChannelMinMaxObserver,
        )

        self.layer = layer
        self.input_fq = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
                                     dtype=torch.qint8, qscheme=torch.per_tensor_affine)
        # ONNX's QuantizeLinear takes the full int8 range (the exporter refuses -127..127)
        self.weight_fq = FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128,
                                      quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                      ch_axis=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_fq(x)
        w = self.weight_fq(self.layer.weight)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        layer = self.layer
        return F.conv2d(x, w, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def qat_prepare(model: nn.Module, *, skip: Callable[[str, nn.Module], bool] | None = None) -> nn.Module:
    """Wrap, in place, every ``nn.Linear`` and plain ``nn.Conv2d`` (zero padding) of ``model`` in a
    :class:`QATWrapper` (``skip(name, module)`` keeps some in float32); train it with :func:`archlab.train.fit` or
    :func:`archlab.train.train_model` as usual."""
    wrapped = 0
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            ok = type(child) is nn.Linear or (type(child) is nn.Conv2d and child.padding_mode == "zeros"
                                              and not isinstance(child.padding, str))
            if ok and not isinstance(parent, QATWrapper) and not (skip and skip(full, child)):
                setattr(parent, name, QATWrapper(child))
                wrapped += 1
    if not wrapped:
        raise UserError("qat_prepare: the model has no nn.Linear or nn.Conv2d layer to quantise")
    return model


def freeze_observers(model: nn.Module) -> nn.Module:
    """Stop every QAT observer of ``model`` from updating its scale (before evaluation and export)."""
    for m in model.modules():
        if isinstance(m, QATWrapper):
            m.input_fq.disable_observer()
            m.weight_fq.disable_observer()
    return model


def export_qat_onnx(model: nn.Module, input_shape: Sequence[int], path: str | os.PathLike, opset: int = 17) -> Path:
    """Export a QAT model (observers frozen) to ONNX: every fake quantiser becomes a QuantizeLinear /
    DequantizeLinear pair with its learned scale and zero point, which ONNX Runtime runs in INT8."""
    from archlab.export import export_onnx

    return export_onnx(freeze_observers(model), input_shape, path, opset=opset)

"""Data-free proxies: scores of the architecture from constructed inputs, not from the batch's values.

- ``synflow``: Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
  flow", NeurIPS 2020, as zero-cost-nas ``synflow.py`` scores it (the ``synflow`` measure, ``bn=False``): every
  parameter and buffer is replaced by its absolute value in float64, BatchNorm layers act as the identity, the
  input is a single all-ones example, R = Σ f(1), and the score is Σ |θ ⊙ ∂R/∂θ| over the conv/linear weights.
  The raw sum is returned, as the reference's (no log). Departures: the model runs in eval mode, so dropout is off
  (the reference runs the copy in the mode it is given; its NAS-Bench-201 cells have no dropout); the BatchNorm
  identity is a forward hook (the reference swaps ``forward`` on a copy), and an integer-input model (tokens) gets
  the all-ones token sequence rather than failing on a float64 input.
- ``zen``: Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition", ICCV 2021, as the
  reference ``ZeroShotProxy/compute_zen_score.py`` computes it: per repeat, the conv/linear weights are redrawn
  from N(0, 1) with zero biases and the BatchNorm/GroupNorm affine parameters set to 1 and 0, x ~ N(0, 1) and
  ε ~ N(0, 1) of the batch's example shape (``batch_size`` 16), Δ = mean_n Σ |f(x) − f(x + γε)| (γ = 1e-2) on the
  pre-global-pooling feature map f, and the score log Δ + Σ_BN log √(mean running_var) (the running variances after
  the train-mode forwards, accumulated over the repeats as in the reference); the result is the mean over
  ``repeat`` = 32 repeats (the reference's default). The model's own weights are never used or changed: the redrawn
  ones go through :func:`torch.func.functional_call`, buffers are clones. Departures: an arbitrary classifier has
  no ``forward_pre_GAP``, so f is the input of the last ``nn.Linear`` called in the forward (the model's output
  when there is none); for a CNN whose global pooling sits before that Linear this is the pooled feature, so Δ sums
  |Δ of the spatial mean| instead of the reference's Σ over positions. Dropout modules act as the identity (hooks),
  since random masks would swamp γε. All BatchNorm dimensions count (the reference counts ``BatchNorm2d``), and
  1-d/3-d convolutions are redrawn like 2-d ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from archlab.proxies._common import WEIGHT_LAYERS, call, cloned_buffers, isolated, nan_on_error, removing, weight_names

__all__ = ["synflow", "synflow_score", "zen", "zen_score"]


def _identity(_module, inputs, _output):
    return inputs[0]


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> float:
    """SynFlow (Tanaka et al., NeurIPS 2020): Σ |θ ⊙ ∂R/∂θ| over conv/linear weights, R = Σ f_|θ|(1), float64,
    BatchNorm as identity (zero-cost-nas ``synflow.py``, ``bn=False``); NaN where it fails."""
    return nan_on_error(synflow_score, model, x, y, seed=seed)


def synflow_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> float:
    """:func:`synflow`, raising where it fails."""
    names = weight_names(model)
    with isolated(model, x, seed, train=False):
        tensors = {n: p.detach().double().abs() for n, p in model.named_parameters()}
        tensors.update({n: b.detach().double().abs() if b.is_floating_point() else b.detach().clone()
                        for n, b in model.named_buffers()})
        for n in dict.fromkeys(names):
            tensors[n].requires_grad_(True)
        dtype = torch.float64 if x.is_floating_point() else x.dtype
        ones = torch.ones((1, *x.shape[1:]), dtype=dtype, device=x.device)
        with removing([]) as handles:
            handles += [m.register_forward_hook(_identity) for m in model.modules() if isinstance(m, _BatchNorm)]
            out = call(model, tensors, ones)
        leaves = [tensors[n] for n in names]
        grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True) if leaves else ()
        total = sum(((w.detach() * g).abs().sum() for w, g in zip(leaves, grads, strict=True) if g is not None),
                    torch.zeros((), dtype=torch.float64))
        return float(total)


def _gaussian_init(model: nn.Module) -> dict[str, torch.Tensor]:
    """The reference's ``network_weight_gaussian_init``, drawn in module order into new tensors."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}

    def put(param, value) -> None:
        if isinstance(param, nn.Parameter) and id(param) in names:
            out[names[id(param)]] = value

    for m in model.modules():
        if isinstance(m, WEIGHT_LAYERS):
            put(m.weight, torch.randn_like(m.weight, requires_grad=False))
            if m.bias is not None:
                put(m.bias, torch.zeros_like(m.bias, requires_grad=False))
        elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and getattr(m, "weight", None) is not None:
            put(m.weight, torch.ones_like(m.weight, requires_grad=False))
            put(m.bias, torch.zeros_like(m.bias, requires_grad=False))
    return out


def zen(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0,
        mixup_gamma: float = 1e-2, batch_size: int = 16, repeat: int = 32) -> float:
    """Zen-score (Lin et al., ICCV 2021): mean over repeats of log E‖f(x) − f(x + γε)‖₁ + Σ_BN log √mean(σ²), with
    Gaussian weights and inputs (``compute_zen_score.py``); f is the last Linear's input (see the module docstring).
    NaN where it fails."""
    return nan_on_error(zen_score, model, x, y, seed=seed, mixup_gamma=mixup_gamma, batch_size=batch_size,
                        repeat=repeat)


def zen_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0,
              mixup_gamma: float = 1e-2, batch_size: int = 16, repeat: int = 32) -> float:
    """:func:`zen`, raising where it fails."""
    if not x.is_floating_point():
        raise TypeError(f"zen feeds Gaussian inputs; this model takes {x.dtype}")
    shape = (batch_size, *x.shape[1:])
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.running_var is not None]
    feature: list[torch.Tensor] = []

    def grab(_module, inputs) -> None:
        feature[:] = [inputs[0]]

    scores = []
    with isolated(model, x, seed, train=True), torch.no_grad(), removing([]) as handles:
        handles += [m.register_forward_pre_hook(grab) for m in model.modules() if isinstance(m, nn.Linear)]
        handles += [m.register_forward_hook(_identity) for m in model.modules() if isinstance(m, _DropoutNd)]
        buffers = cloned_buffers(model)
        for _ in range(repeat):
            tensors = {**buffers, **_gaussian_init(model)}
            x1 = torch.randn(shape, dtype=x.dtype, device=x.device)
            x2 = torch.randn(shape, dtype=x.dtype, device=x.device)
            feature.clear()
            out = call(model, tensors, x1)
            f1 = feature[0] if feature else out
            feature.clear()
            out = call(model, tensors, x1 + mixup_gamma * x2)
            f2 = feature[0] if feature else out
            delta = (f1 - f2).abs().flatten(1).sum(1).mean()
            bn = sum(float(torch.log(buffers[f"{n}.running_var" if n else "running_var"].double().mean().sqrt()))
                     for n, _ in bns)
            scores.append(float(torch.log(delta.double())) + bn)
    return float(sum(scores) / len(scores))

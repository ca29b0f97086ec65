"""Zero-cost proxies for neural architecture search.

- ``naswot``: Mellor et al., "Neural Architecture Search without Training", ICML 2021 — log |det K| of the
  kernel of binary activation codes (K_ij = number of units on which inputs i and j agree).
- ``synflow``: Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic flow",
  NeurIPS 2020 — sum of |θ ⊙ ∂R/∂θ| for R = sum of the output of the network with |θ| on an all-ones input.
- ``grad_norm``, ``snip``, ``jacob_cov``: as collected by Abdelfattah et al., "Zero-Cost Proxies for Lightweight
  NAS", ICLR 2021 (reference: SamsungLabs/zero-cost-nas ``foresight/pruners/measures/*.py``).
- ``flops``, ``params``: the cost baselines that every zero-cost study compares against (Ning et al.,
  "Evaluating Efficient Performance Estimators of Neural Architectures", NeurIPS 2021): FLOPs of one example's
  forward pass and the parameter count.

:class:`ProxyScorer` takes a name with a leading ``-`` as "smaller is better" (``"-flops"``: cheaper archs
score higher), which is how a time-limited search prefers archs it can train for more epochs.

Every proxy leaves the model's weights and mode as they were.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PROXIES", "ProxyScorer", "compute_proxies", "flops", "grad_norm", "jacob_cov", "naswot", "params",
           "snip", "synflow"]

_ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish)


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, _ACTIVATIONS) or type(module).__name__ in {"StarReLU", "SquaredReLU"}


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """log |det K_H| over the batch, with K_H = N_A − Hamming distance of the inputs' binary activation codes.

    A unit is "on" when its activation's input is positive (the ReLU code of the paper; for smooth activations
    such as GELU the same sign pattern).
    """
    codes: list[torch.Tensor] = []

    def hook(_module, inputs, _output):
        codes.append((inputs[0].detach() > 0).flatten(1).float())

    handles = [m.register_forward_hook(hook) for m in model.modules() if _is_activation(m)]
    was_training = model.training
    try:
        model.train()  # batch statistics, as the paper computes it at initialisation
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not codes:
        return 0.0
    c = torch.cat(codes, dim=1).double()
    k = c @ c.t() + (1 - c) @ (1 - c).t()  # agreements = N_A - Hamming distance
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if sign > 0 else -math.inf


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    pairs = [(p.detach(), p.grad.detach().clone()) for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return pairs


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over parameter tensors of the L2 norm of the cross-entropy gradient."""
    return float(sum(g.norm() for _, g in _loss_gradients(model, x, y)))


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of |θ ⊙ ∂L/∂θ| (connection sensitivity)."""
    return float(sum((p * g).abs().sum() for p, g in _loss_gradients(model, x, y)))


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """Sum of |θ ⊙ ∂R/∂θ|, R = Σ f_|θ|(1): data-free, on a float64 copy with every parameter made positive."""
    net = copy.deepcopy(model).double().eval()  # eval: normalisation layers use their (init) running stats
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    net.zero_grad(set_to_none=True)
    net(ones).sum().backward()
    total = sum((p.detach() * p.grad).abs().sum() for p in net.parameters() if p.grad is not None)
    value = float(total)
    return math.log(value) if value > 0 and math.isfinite(value) else (math.inf if value > 0 else -math.inf)


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """−Σ_i [log(λ_i + k) + 1/(λ_i + k)], λ the eigenvalues of the correlation of per-input Jacobians, k=1e-5."""
    inp = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(inp).sum().backward()
    jac = inp.grad.detach().flatten(1).double()
    model.zero_grad(set_to_none=True)
    corr = torch.corrcoef(jac)
    corr = torch.nan_to_num(corr, nan=0.0)
    eig = torch.linalg.eigvalsh(corr).clamp_min(0.0)
    k = 1e-5
    return float(-(torch.log(eig + k) + 1.0 / (eig + k)).sum())


def flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """FLOPs of the forward pass for one example of ``x`` (counted on the meta device: no compute)."""
    from archlab.measure import count_flops

    return float(count_flops(model, tuple(x.shape[1:]), input_dtype="long" if not x.is_floating_point()
                             else "float"))


def params(model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> float:
    """The number of parameters."""
    return float(sum(p.numel() for p in model.parameters()))


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "naswot": naswot, "synflow": synflow, "grad_norm": grad_norm, "snip": snip, "jacob_cov": jacob_cov,
    "flops": flops, "params": params,
}


def compute_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    names: list[str] | None = None) -> dict[str, float]:
    """Every proxy in ``names`` (default all) on one batch; the model's weights are left unchanged."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}
    for name in names or list(PROXIES):
        out[name] = PROXIES[name](model, x, y)
        model.load_state_dict(state)  # BatchNorm running statistics move in train-mode forwards
    return out


class ProxyScorer:
    """Scores archs of a space by zero-cost proxies on one fixed batch of training data.

    The model is built under a fixed seed and the batch is the same for every arch, so an arch's scores never
    change (a strategy rebuilt from the ledger makes the same choices). Scores are cached per arch. A proxy that
    fails or is not finite scores ``-inf`` for that arch.

    ``time_budget_s`` bounds the seconds spent scoring in all: once spent, :attr:`exhausted` is true and a
    strategy stops asking (a short search does not spend its budget ranking candidates it has no time to train).
    """

    def __init__(self, space, x: torch.Tensor, y: torch.Tensor, *, names: tuple[str, ...] = ("naswot", "snip"),
                 batch_size: int = 64, seed: int = 0, time_budget_s: float | None = None) -> None:
        unknown = [n for n in names if n.removeprefix("-") not in PROXIES]
        if unknown:
            from archlab.errors import UserError

            raise UserError(f"unknown proxy {unknown[0]!r}; choose from {', '.join(PROXIES)}")
        generator = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=generator)[:batch_size]
        self.space, self.x, self.y = space, x[idx], y[idx]
        self.names, self.seed = tuple(names), seed
        self.time_budget_s, self.spent_s = time_budget_s, 0.0
        self._cache: dict = {}

    @property
    def exhausted(self) -> bool:
        """Whether the scoring time budget is spent (never, without one)."""
        return self.time_budget_s is not None and self.spent_s >= self.time_budget_s

    def __call__(self, arch) -> tuple[float, ...]:
        if arch not in self._cache:
            start = time.perf_counter()
            torch.manual_seed(self.seed)
            model = self.space.build(arch)
            values = []
            for name in self.names:
                try:
                    v = PROXIES[name.removeprefix("-")](model, self.x, self.y)
                    if name.startswith("-"):
                        v = -v
                except (RuntimeError, ValueError):
                    v = -math.inf
                values.append(v if math.isfinite(v) else -math.inf)
            self._cache[arch] = tuple(values)
            self.spent_s += time.perf_counter() - start
        return self._cache[arch]

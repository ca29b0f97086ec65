"""Maestro: trainable low-rank decomposition with ordered dropout.

Paper: Horváth, Laskaridis, Rajput & Wang, "Maestro: Uncovering Low-Rank Structures via Trainable Decomposition",
ICML 2024. Facts (names, the SVD start, the losses, the sampler, the shrinking rule) follow the authors'
SamuelHorvath/Maestro-LoD ``maestro/layers/linear.py`` and ``cifar_mnist_main.py``; the code is archlab's.

A linear layer ``W`` becomes ``U Vᵀ`` (:class:`MaestroLinear`: ``in_network`` holds ``Vᵀ``, ``out_network``
holds ``U`` and the bias). *Ordered dropout* keeps the first ``⌈r·p⌉`` of the ``r`` components, so training at
random ``p`` orders them by importance: for a linear map on whitened data this recovers the SVD, and for a linear
autoencoder PCA, the first ``k`` components spanning the top-``k`` principal subspace for every ``k``.

Training (:func:`train_maestro`, on :func:`archlab.train.fit`): each step the loss is

    CE(full model) + CE(model with one layer at a sampled width, target softmax(full logits) detached)
    + λ Σ_layers Σ_i (‖V_i‖ + ‖U_:,i‖)                                            (group lasso, λ = 5e-3)

where the sampled (layer, width) pair is uniform over all pairs (the reference's ``SingleLayerSampler``).
*Progressive shrinking* (:meth:`MaestroLinear.shrink`) drops the components whose importance ``‖V_i‖·‖U_:,i‖`` is
below a threshold (1e-5 in the reference) after every epoch; the optimizer keeps its parameters, the dropped
components are masked until :meth:`MaestroLinear.compact` removes them.

Baseline: :func:`svd_truncate`, the plain network's weights cut to their top singular components.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import FitState, Hook, fit, shuffled_batches

__all__ = ["DEFAULT_LASSO", "MaestroLinear", "MaestroResult", "decompose", "group_lasso", "maestro_layers",
           "set_fraction", "svd_truncate", "train_maestro"]

DEFAULT_LASSO = 5e-3  # the reference's gp_lambda


class MaestroLinear(nn.Module):
    """``y = U Vᵀ x + b`` with ordered dropout: ``forward(x, p)`` uses the first ``⌈r·p⌉`` components.

    ``in_network`` (``inner_dim × in_features``, no bias) is ``Vᵀ``, ``out_network`` (``out_features ×
    inner_dim``) is ``U`` with the bias, as in the reference, so its state dicts load. ``p`` (attribute, default
    1.0) is the fraction used when ``forward`` is called without one; ``keep`` masks the components that
    :meth:`shrink` dropped."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rank: int | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rank = min(in_features, out_features) if rank is None else rank
        if not 1 <= rank <= min(in_features, out_features):
            raise UserError(f"MaestroLinear: rank must be in 1..{min(in_features, out_features)}, got {rank}")
        self.in_network = nn.Linear(in_features, rank, bias=False)
        self.out_network = nn.Linear(rank, out_features, bias=bias)
        self.register_buffer("keep", torch.ones(rank, dtype=torch.bool))
        self.p = 1.0

    @property
    def inner_dim(self) -> int:
        """The number of components not dropped by shrinking."""
        return int(self.keep.sum())

    def width(self, p: float | None = None) -> int:
        """How many components ``p`` keeps: ``⌈inner_dim · p⌉``."""
        p = self.p if p is None else p
        if not 0.0 < p <= 1.0:
            raise UserError(f"MaestroLinear: the kept fraction must be in (0, 1], got {p}")
        return math.ceil(self.inner_dim * p - 1e-9)

    def factors(self, p: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Vᵀ, U)`` restricted to the kept components at fraction ``p``."""
        k = self.width(p)
        if bool(self.keep.all()):
            return self.in_network.weight[:k], self.out_network.weight[:, :k]
        idx = self.keep.nonzero().squeeze(1)[:k]
        return self.in_network.weight[idx], self.out_network.weight[:, idx]

    def forward(self, x: torch.Tensor, p: float | None = None) -> torch.Tensor:
        v_t, u = self.factors(p)
        return F.linear(F.linear(x, v_t), u, self.out_network.bias)

    def component_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(‖V_i‖, ‖U_:,i‖)`` for every component (dropped ones included)."""
        return self.in_network.weight.norm(dim=1), self.out_network.weight.norm(dim=0)

    def group_lasso(self) -> torch.Tensor:
        """``Σ_i ‖V_i‖ + ‖U_:,i‖`` over the kept components."""
        v, u = self.component_norms()
        return ((v + u) * self.keep).sum()

    @torch.no_grad()
    def importance(self) -> torch.Tensor:
        """``‖V_i‖ · ‖U_:,i‖`` per component (0 for dropped ones): the component's scale in ``U Vᵀ``."""
        v, u = self.component_norms()
        return v * u * self.keep

    @torch.no_grad()
    def shrink(self, threshold: float) -> int:
        """Drop the components of importance below ``threshold`` (at least one stays); returns how many remain."""
        imp = self.importance()
        keep = self.keep & (imp >= threshold)
        if not bool(keep.any()):
            keep = torch.zeros_like(self.keep)
            keep[int(imp.argmax())] = True
        self.keep.copy_(keep)
        return self.inner_dim

    @classmethod
    @torch.no_grad()
    def decompose(cls, linear: nn.Linear, rank: int | None = None) -> MaestroLinear:
        """The layer's SVD ``W = (U √S)(V √S)ᵀ`` (the reference's ``decompose_linear``): at full rank it computes
        what ``linear`` computes; with ``rank`` the best rank-``rank`` approximation (Eckart–Young)."""
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, rank).to(w.device, w.dtype)
        u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
        r = layer.in_network.out_features
        root = s[:r].sqrt()
        layer.out_network.weight.copy_((u[:, :r] * root).to(w.dtype))
        layer.in_network.weight.copy_((vh[:r] * root[:, None]).to(w.dtype))
        if linear.bias is not None:
            layer.out_network.bias.copy_(linear.bias.detach())
        return layer

    @torch.no_grad()
    def compact(self, p: float | None = None) -> nn.Module:
        """A plain module computing this layer at fraction ``p``: two linear layers (``k`` components) when that
        has fewer parameters than the product ``U Vᵀ`` as one linear layer, else that one layer."""
        v_t, u = self.factors(p)
        k = v_t.shape[0]
        bias = self.out_network.bias
        if k * (self.in_features + self.out_features) < self.in_features * self.out_features:
            first, second = nn.Linear(self.in_features, k, bias=False), nn.Linear(k, self.out_features,
                                                                                   bias=bias is not None)
            first.weight.copy_(v_t)
            second.weight.copy_(u)
            if bias is not None:
                second.bias.copy_(bias)
            return nn.Sequential(first, second).to(v_t.device)
        full = nn.Linear(self.in_features, self.out_features, bias=bias is not None).to(v_t.device, v_t.dtype)
        full.weight.copy_(u @ v_t)
        if bias is not None:
            full.bias.copy_(bias)
        return full

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, inner_dim={self.inner_dim}, "
                f"bias={self.out_network.bias is not None}")


def _linear_children(model: nn.Module, skip: tuple[str, ...]) -> Iterator[tuple[nn.Module, str, nn.Linear]]:
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Linear and full not in skip:
                yield module, child_name, child


def decompose(model: nn.Module, *, skip: tuple[str, ...] = (), svd_init: bool = True) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (but those named in ``skip``) by a :class:`MaestroLinear`, in
    place: from its SVD (the model computes what it did) or, with ``svd_init=False``, freshly initialised."""
    found = False
    for parent, name, linear in _linear_children(model, skip):
        if svd_init:
            layer = MaestroLinear.decompose(linear)
        else:
            layer = MaestroLinear(linear.in_features, linear.out_features, linear.bias is not None).to(
                linear.weight.device, linear.weight.dtype)
        setattr(parent, name, layer)
        found = True
    if not found:
        raise UserError("maestro: the model has no nn.Linear layer to decompose")
    return model


def maestro_layers(model: nn.Module) -> list[MaestroLinear]:
    return [m for m in model.modules() if isinstance(m, MaestroLinear)]


def set_fraction(model: nn.Module, p: float) -> None:
    """Every decomposed layer of ``model`` runs at fraction ``p`` of its components."""
    for layer in maestro_layers(model):
        layer.width(p)  # checks p
        layer.p = p


def group_lasso(model: nn.Module) -> torch.Tensor:
    return sum((layer.group_lasso() for layer in maestro_layers(model)), torch.zeros(()))


@torch.no_grad()
def svd_truncate(model: nn.Module, fraction: float, *, skip: tuple[str, ...] = ()) -> nn.Module:
    """The baseline: each ``nn.Linear`` (but ``skip``) replaced, in place, by its best approximation of rank
    ``⌈r · fraction⌉`` (``r = min(in, out)``), stored as a :class:`MaestroLinear` of that rank."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"svd_truncate: fraction must be in (0, 1], got {fraction}")
    for parent, name, linear in _linear_children(model, skip):
        rank = math.ceil(min(linear.in_features, linear.out_features) * fraction - 1e-9)
        setattr(parent, name, MaestroLinear.decompose(linear, rank))
    return model


@dataclass
class MaestroResult:
    steps: int
    seconds: float
    ranks: list[int]  # components kept per decomposed layer after shrinking
    curve: list[dict[str, float]]


class _Shrinking(Hook):
    def __init__(self, layers: list[MaestroLinear], threshold: float) -> None:
        self.layers, self.threshold = layers, threshold

    def on_epoch(self, state: FitState) -> None:
        if self.threshold > 0:
            for layer in self.layers:
                layer.shrink(self.threshold)


def train_maestro(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 10, batch_size: int = 64,
                  lr: float = 1e-3, weight_decay: float = 0.0, lasso: float = DEFAULT_LASSO,
                  shrink_threshold: float = 1e-5, seed: int = 0,
                  loss: str = "cross_entropy") -> MaestroResult:
    """Train a decomposed ``model`` (:func:`decompose`) on ``(x, y)`` with Maestro's loss and sampler, shrinking
    after every epoch. ``loss="mse"`` trains a regressor or autoencoder: both passes regress ``y`` (for a linear
    autoencoder the optimum of ordered dropout is PCA's nested subspaces)."""
    layers = maestro_layers(model)
    if not layers:
        raise UserError("train_maestro: the model has no MaestroLinear layer (decompose it first)")
    if loss not in ("cross_entropy", "mse"):
        raise UserError(f"train_maestro: loss must be cross_entropy or mse, got {loss!r}")
    rng = random.Random(seed)

    def sample() -> tuple[MaestroLinear, float]:
        # uniform over all (layer, width) pairs: a layer with more components is drawn more often
        total = sum(layer.inner_dim for layer in layers)
        pick = rng.randrange(total)
        for layer in layers:
            if pick < layer.inner_dim:
                return layer, (pick + 1) / layer.inner_dim
            pick -= layer.inner_dim
        raise AssertionError("unreachable")

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        xb, yb = batch
        full = m(xb)
        layer, p = sample()
        layer.p = p
        sampled = m(xb)
        layer.p = 1.0
        if loss == "mse":
            task = F.mse_loss(full, yb)
            distil = F.mse_loss(sampled, yb)  # E_p ||y - f_p(x)||²: the objective whose optimum is nested PCA
        else:
            task = F.cross_entropy(full, yb)
            distil = F.cross_entropy(sampled, F.softmax(full.detach(), dim=-1))
        reg = group_lasso(m)
        return task + distil + lasso * reg, {"task": task.item(), "sampled": distil.item()}

    steps_per_epoch = math.ceil(len(x) / batch_size)
    set_fraction(model, 1.0)  # the full pass; the sampled pass sets one layer's fraction and puts it back
    batches = shuffled_batches(x, y, batch_size=batch_size, seed=seed)
    result = fit(model, batches, loss_fn, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr,
                 weight_decay=weight_decay, hooks=[_Shrinking(layers, shrink_threshold)], seed=seed, amp=False)
    set_fraction(model, 1.0)
    return MaestroResult(steps=result.steps, seconds=result.seconds, ranks=[layer.inner_dim for layer in layers],
                         curve=result.curve)

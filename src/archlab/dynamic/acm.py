"""Adaptive Computation Modules: a feed-forward layer split into N small learners, of which each token uses as many
as a per-token gate decides.

Paper: Wójcik et al., "Adaptive Computation Modules: Granular Conditional Computation for Efficient Inference".
Facts follow bartwojcik/adaptive_computation_modules
(``architectures/acm.py``, ``rep_distill_train.py``, ``gating_networks_train.py``, ``end_to_end.py``); the code
is archlab's.

Learner ``i`` is ``act(x W1_i + b1_i) W2_i`` (a ``hidden/N``-wide slice of an MLP; biases on the hidden layer only,
as the reference's ``bias="hidden_only"``), and the module's output with ``k`` learners is the sum of the first
``k``: ``y_k = Σ_{i<k} learner_i(x)``, ``y_0 = 0``. :meth:`AdaptiveComputationMLP.forward_all` returns every
``y_k``; :meth:`AdaptiveComputationMLP.forward_gated` computes, for each token, only the learners its choice
needs. The gate is a linear layer over the token giving ``N + 1`` logits; training samples a hard choice with
Gumbel-softmax (τ = 0.8, straight-through), inference takes the argmax.

:func:`acmize` replaces a network's MLPs by :class:`ACM` modules that keep the original MLP as teacher, then:

1. :func:`distill_learners` (phase I): every ``y_k`` (k = 1..N) regresses the original MLP's output on the
   network's own activations (MSE, all k at once); the network's output is unchanged meanwhile.
2. :func:`train_gates` (phase II): per token, the label is the smallest ``k`` for which one more learner
   reduces the error ``‖y_k − y_orig‖²`` by less than a factor ``gating_error_factor`` = 1.2 (else ``N``); the
   gate learns the labels with cross-entropy.
3. :func:`end_to_end` (phase III): the whole network with gates on, task cross-entropy plus
   ``w · |mean cost − target|`` (the L1 routing loss, ``w`` = 0.1), cost being the used share of the learners.

:func:`ffn_cost` is the share of learner FLOPs a network used on a batch (its mean over modules and tokens).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import fit, shuffled_batches

__all__ = ["ACM", "AdaptiveComputationMLP", "acm_modules", "acmize", "distill_learners", "drop_teachers",
           "end_to_end", "ffn_cost", "gate_labels", "set_mode", "train_gates"]

GATE_TAU = 0.8
GATING_ERROR_FACTOR = 1.2
ROUTING_LOSS_WEIGHT = 0.1


class AdaptiveComputationMLP(nn.Module):
    """``num_blocks`` learners of ``hidden_features // num_blocks`` hidden units each, over the last axis."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None, num_blocks: int = 4,
                 act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        if num_blocks < 1 or hidden_features % num_blocks:
            raise UserError(f"AdaptiveComputationMLP: {hidden_features} hidden units do not split into "
                            f"{num_blocks} equal learners")
        out_features = out_features or in_features
        self.num_blocks, self.block_dim = num_blocks, hidden_features // num_blocks
        self.in_features, self.out_features = in_features, out_features
        self.w1 = nn.Parameter(torch.empty(num_blocks, in_features, self.block_dim))
        self.b1 = nn.Parameter(torch.zeros(num_blocks, self.block_dim))
        self.w2 = nn.Parameter(torch.empty(num_blocks, self.block_dim, out_features))
        self.act = act_layer()
        bound1, bound2 = 1 / math.sqrt(in_features), 1 / math.sqrt(self.block_dim)
        nn.init.uniform_(self.w1, -bound1, bound1)
        nn.init.uniform_(self.w2, -bound2, bound2)

    def learner(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.act(x @ self.w1[i] + self.b1[i]) @ self.w2[i]

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """``(N + 1, ..., out_features)``: ``y_0 = 0, y_1, ..., y_N``."""
        h = self.act(torch.einsum("...d,ndb->...nb", x, self.w1) + self.b1)
        parts = torch.einsum("...nb,nbo->n...o", h, self.w2)
        return torch.cat([torch.zeros_like(parts[:1]), parts.cumsum(0)])

    def forward_gated(self, x: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
        """Each token through the first ``choices[token]`` learners only (``choices`` of shape ``x.shape[:-1]``,
        integers 0..N)."""
        if choices.shape != x.shape[:-1]:
            raise UserError(f"forward_gated: choices of shape {tuple(choices.shape)} for inputs "
                            f"{tuple(x.shape)}; expected {tuple(x.shape[:-1])}")
        flat, ks = x.reshape(-1, x.shape[-1]), choices.reshape(-1)
        out = flat.new_zeros(len(flat), self.out_features)
        for i in range(self.num_blocks):
            rows = (ks > i).nonzero().squeeze(1)
            if len(rows) == 0:
                break  # choices are cumulative: no token needs learner i or any later one
            out.index_add_(0, rows, self.learner(i, flat[rows]))
        return out.reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_gated(x, torch.full(x.shape[:-1], self.num_blocks, device=x.device))


class ACM(nn.Module):
    """An adaptive computation module standing in for ``original`` (an MLP ``in → hidden → out``; kept, frozen,
    as the teacher of phases I and II). ``mode``: "original" (the teacher's output), "distill" (phase I: the
    teacher's output; the learners' loss in ``last_loss``), "gate" (phase II: the teacher's output; the gate's
    loss in ``last_loss``), "gated" (the ACM: gate and learners), or an int ``k`` (every token ``k`` learners)."""

    def __init__(self, original: nn.Module, in_features: int, hidden_features: int, out_features: int | None = None,
                 num_blocks: int = 4, act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.mlp = AdaptiveComputationMLP(in_features, hidden_features, out_features, num_blocks, act_layer)
        self.gate = nn.Linear(in_features, num_blocks + 1)
        self.original = original.requires_grad_(False)
        self.mode: str | int = "gated"
        self.last_loss: torch.Tensor | None = None
        self.last_cost: torch.Tensor | None = None  # mean share of the learners used, over the batch's tokens

    @property
    def num_blocks(self) -> int:
        return self.mlp.num_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode, n = self.mode, self.num_blocks
        if mode in ("original", "distill", "gate") and self.original is None:
            raise UserError(f"ACM: mode {mode!r} needs the teacher MLP, which drop_teachers removed")
        if mode == "original":
            return self.original(x)
        if mode in ("distill", "gate"):
            with torch.no_grad():
                target = self.original(x)
            if mode == "distill":
                self.last_loss = ((self.mlp.forward_all(x)[1:] - target) ** 2).mean()
            else:
                with torch.no_grad():
                    labels = gate_labels(self.mlp.forward_all(x), target)
                self.last_loss = F.cross_entropy(self.gate(x).reshape(-1, n + 1), labels.reshape(-1))
            return target
        if isinstance(mode, int):
            if not 0 <= mode <= n:
                raise UserError(f"ACM: a uniform choice must be in 0..{n}, got {mode}")
            self.last_cost = torch.tensor(mode / n)
            return self.mlp.forward_gated(x, torch.full(x.shape[:-1], mode, device=x.device))
        if mode != "gated":
            raise UserError(f"ACM: unknown mode {mode!r}")
        logits = self.gate(x)
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=GATE_TAU, hard=True)  # straight-through hard choice
            costs = torch.arange(n + 1, device=x.device, dtype=onehot.dtype) / n
            self.last_cost = (onehot * costs).sum(-1).mean()
            return torch.einsum("k...o,...k->...o", self.mlp.forward_all(x), onehot)
        choices = logits.argmax(-1)
        self.last_cost = choices.float().mean() / n
        return self.mlp.forward_gated(x, choices)


def gate_labels(ys: torch.Tensor, target: torch.Tensor, factor: float = GATING_ERROR_FACTOR) -> torch.Tensor:
    """Per token, the smallest ``k`` in 1..N after which one more learner cuts the squared error to the target by
    less than ``factor`` (``err_k / err_{k+1} < factor``), else ``N`` (``ys``: ``forward_all``'s ``(N + 1, ...)``)."""
    err = ((ys[1:] - target) ** 2).sum(-1)  # (N, ...): errors of k = 1..N
    n = err.shape[0]
    if n == 1:
        return torch.ones(err.shape[1:], dtype=torch.long, device=err.device)
    rel = err[:-1] / err[1:].clamp_min(1e-12)  # (N - 1, ...): err_k / err_{k+1}, k = 1..N-1
    small = rel < factor
    first = small.float().argmax(0)  # index of the first True (0 when none: fixed below)
    return torch.where(small.any(0), first + 1, torch.full_like(first, n))


def acmize(model: nn.Module, num_blocks: int = 4,
           is_mlp: Callable[[nn.Module], bool] | None = None) -> list[ACM]:
    """Replace, in place, every MLP of ``model`` (by default a module with ``fc1``/``fc2`` linear layers and an
    ``act``: timm's and archlab's ViT ``Mlp``) by an :class:`ACM` of ``num_blocks`` learners with the same hidden
    width, the MLP kept as its teacher."""
    is_mlp = is_mlp or (lambda m: all(isinstance(getattr(m, a, None), nn.Linear) for a in ("fc1", "fc2")))
    made = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ACM) or not is_mlp(child):
                continue
            act = type(child.act) if hasattr(child, "act") else nn.GELU
            acm = ACM(child, child.fc1.in_features, child.fc1.out_features, child.fc2.out_features, num_blocks, act)
            setattr(parent, name, acm.to(child.fc1.weight.device))
            made.append(acm)
    if not made:
        raise UserError("acmize: the model has no MLP (a module with fc1 and fc2 linear layers) to replace")
    return made


def acm_modules(model: nn.Module) -> list[ACM]:
    return [m for m in model.modules() if isinstance(m, ACM)]


def set_mode(model: nn.Module, mode: str | int) -> None:
    for m in acm_modules(model):
        m.mode = mode


def drop_teachers(model: nn.Module) -> nn.Module:
    """Delete every ACM's teacher MLP (after training: the deployed network carries only learners and gates)."""
    for m in acm_modules(model):
        if m.mode in ("original", "distill", "gate"):
            m.mode = "gated"
        m.original = None
    return model


def ffn_cost(model: nn.Module) -> float:
    """The share of the learners the last forward pass used (mean over the ACMs)."""
    costs = [m.last_cost for m in acm_modules(model) if m.last_cost is not None]
    if not costs:
        raise UserError("ffn_cost: no ACM ran in gated or uniform mode yet")
    return float(torch.stack([c.float() for c in costs]).mean())


def _module_phase(model: nn.Module, x: torch.Tensor, mode: str, params: list[nn.Parameter], epochs: int,
                  batch_size: int, lr: float, seed: int) -> float:
    set_mode(model, mode)
    modules = acm_modules(model)

    def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        m(batch[0])
        return torch.stack([a.last_loss for a in modules]).sum()

    was = model.training
    model.train()
    result = fit(model, shuffled_batches(x, batch_size=batch_size, seed=seed), loss_fn, epochs=epochs,
                 steps_per_epoch=math.ceil(len(x) / batch_size), params=params,
                 optimizer=lambda p: torch.optim.Adam(p, lr=lr), seed=seed, amp=False)
    model.train(was)
    set_mode(model, "gated")
    return result.loss


def distill_learners(model: nn.Module, x: torch.Tensor, *, epochs: int = 2, batch_size: int = 64, lr: float = 1e-3,
                     seed: int = 0) -> float:
    """Phase I: the learners of every ACM regress their teacher's output on ``x``'s activations (Adam, the
    reference's lr 1e-3, batch 64, 2 epochs). Returns the last loss."""
    params = [p for m in acm_modules(model) for p in m.mlp.parameters()]
    return _module_phase(model, x, "distill", params, epochs, batch_size, lr, seed)


def train_gates(model: nn.Module, x: torch.Tensor, *, epochs: int = 1, batch_size: int = 64, lr: float = 1e-2,
                seed: int = 0) -> float:
    """Phase II: every gate learns its per-token labels (:func:`gate_labels`); the reference's 1 epoch, lr 0.01."""
    params = [p for m in acm_modules(model) for p in m.gate.parameters()]
    return _module_phase(model, x, "gate", params, epochs, batch_size, lr, seed)


def end_to_end(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target_cost: float, epochs: int = 5,
               batch_size: int = 64, lr: float = 1e-4, routing_weight: float = ROUTING_LOSS_WEIGHT,
               seed: int = 0) -> float:
    """Phase III: the network with its gates on, cross-entropy + ``routing_weight · |cost − target_cost|``; every
    parameter but the teachers' trains (Adam)."""
    if not 0.0 <= target_cost <= 1.0:
        raise UserError(f"end_to_end: target_cost must be in [0, 1], got {target_cost}")
    set_mode(model, "gated")
    modules = acm_modules(model)

    def loss_fn(m: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        task = F.cross_entropy(m(batch[0]), batch[1])
        cost = torch.stack([a.last_cost for a in modules]).mean()
        return task + routing_weight * (cost - target_cost).abs(), {"cost": cost.item()}

    params = [p for p in model.parameters() if p.requires_grad]
    was = model.training
    model.train()
    result = fit(model, shuffled_batches(x, y, batch_size=batch_size, seed=seed), loss_fn, epochs=epochs,
                 steps_per_epoch=math.ceil(len(x) / batch_size), params=params,
                 optimizer=lambda p: torch.optim.Adam(p, lr=lr), seed=seed, amp=False)
    model.train(was)
    return result.loss

"""NViT: global structural pruning of a Vision Transformer with Hessian-aware group saliency and a latency table.

Paper: Yang, Yin, Shen, Molchanov, Li & Kautz, "Global Vision Transformer Pruning with Hessian-Aware Saliency",
CVPR 2023. Facts follow NVlabs/NViT (``nvit/pruning_core/pruning_engine_general.py`` method 23,
``nvit/main_full_global_latency.py``); the code is archlab's.

Prunable groups of an archlab / timm :class:`~archlab.zoo.models.vit.VisionTransformer`: the attention heads of
every block (a head's q, k and v rows of ``qkv`` and its columns of ``proj``) and the MLP hidden units of every
block, in groups of ``group_size`` (rows of ``fc1``, columns of ``fc2``). NViT also prunes the shared embedding
dimension and each head's QK and V widths separately; archlab does not yet (heads and MLP groups only).

- **Saliency** (:class:`GroupSaliency`): ``S_g = (Σ_{w ∈ g} w · ∂L/∂w)²``, the second-order (Fisher) estimate of
  the loss increase when the group is zeroed, accumulated over batches with momentum 0.9. Groups of different
  types are compared after dividing each type's scores by that type's mean (NViT divides by constants fitted to
  DeiT-B's group sizes; archlab normalises by the measured mean, which does not depend on the architecture).
- **Latency** (:class:`LatencyTable`): the CPU time of a block at batch 1 for every (heads, MLP width) it can
  take, measured on this machine; removing a group is penalised by the latency it saves:
  ``S_adj = S − η · (Lat(now) − Lat(without the group))`` (η = ``latency_weight``; latency in ms).
- **Pruning** (:func:`prune`): train with distillation from the unpruned network (cross-entropy +
  ``T²·KL``), and every ``interval`` steps zero the ``per_step`` groups of lowest ``S_adj``, until the latency
  table says the network is at ``target`` of its original latency; then :func:`materialize` builds the smaller
  network (fewer heads and MLP units per block), which is fine-tuned.
- **Baseline**: :func:`uniform_masks` prunes the same share of heads and MLP groups in every block (the smallest
  by weight norm), to the same latency target.
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.measure import measure_latency
from archlab.train import FitState, Hook, fit
from archlab.train.distill import soft_target_kl
from archlab.zoo.models.vit import VisionTransformer

__all__ = ["GroupSaliency", "LatencyTable", "Masks", "PrunedAttention", "PruneResult", "apply_masks", "materialize",
           "prune", "true_loss_increase", "uniform_masks"]


@dataclass
class Masks:
    """Which heads (``heads[b][h]``) and MLP groups (``mlp[b][g]``) of every block are kept."""

    heads: list[list[bool]]
    mlp: list[list[bool]]
    group_size: int

    @classmethod
    def full(cls, vit: VisionTransformer, group_size: int) -> Masks:
        hidden = vit.blocks[0].mlp.fc1.out_features
        if hidden % group_size:
            raise UserError(f"nvit: the MLP width {hidden} is not a multiple of group_size {group_size}")
        return cls([[True] * b.attn.num_heads for b in vit.blocks],
                   [[True] * (b.mlp.fc1.out_features // group_size) for b in vit.blocks], group_size)

    def groups(self, kept: bool = True) -> list[tuple[str, int, int]]:
        """Every group still kept (or, with ``kept=False``, every pruned one): ``(kind, block, index)``."""
        return ([("head", b, h) for b, row in enumerate(self.heads) for h, k in enumerate(row) if k == kept]
                + [("mlp", b, g) for b, row in enumerate(self.mlp) for g, k in enumerate(row) if k == kept])

    def shape(self, block: int) -> tuple[int, int]:
        """(heads, MLP units) kept in ``block``."""
        return sum(self.heads[block]), sum(self.mlp[block]) * self.group_size

    def without(self, kind: str, block: int, index: int) -> Masks:
        m = copy.deepcopy(self)
        (m.heads if kind == "head" else m.mlp)[block][index] = False
        return m


def _group_params(vit: VisionTransformer, kind: str, block: int, index: int, group_size: int
                  ) -> list[tuple[torch.Tensor, tuple]]:
    """(parameter, index) pairs of the weights of one group."""
    blk = vit.blocks[block]
    if kind == "head":
        attn = blk.attn
        hd = attn.head_dim
        inner = attn.num_heads * hd
        rows = torch.cat([torch.arange(t * inner + index * hd, t * inner + (index + 1) * hd) for t in range(3)])
        out = [(attn.qkv.weight, (rows,)), (attn.proj.weight, (slice(None), slice(index * hd, (index + 1) * hd)))]
        if attn.qkv.bias is not None:
            out.append((attn.qkv.bias, (rows,)))
        return out
    sl = slice(index * group_size, (index + 1) * group_size)
    out = [(blk.mlp.fc1.weight, (sl,)), (blk.mlp.fc2.weight, (slice(None), sl))]
    if blk.mlp.fc1.bias is not None:
        out.append((blk.mlp.fc1.bias, (sl,)))
    return out


@torch.no_grad()
def apply_masks(vit: VisionTransformer, masks: Masks, grads: bool = False) -> None:
    """Zero the weights (or, with ``grads``, the gradients) of every pruned group."""
    for key in masks.groups(kept=False):
        for p, idx in _group_params(vit, *key, masks.group_size):
            t = p.grad if grads else p
            if t is not None:
                t[idx] = 0


class GroupSaliency:
    """``S_g = (Σ_{w∈g} w·∂L/∂w)²`` of every group, a momentum-0.9 average over the batches it is updated with."""

    def __init__(self, vit: VisionTransformer, masks: Masks, momentum: float = 0.9) -> None:
        self.vit, self.masks, self.momentum = vit, masks, momentum
        self.scores: dict[tuple[str, int, int], float] = {}

    @torch.no_grad()
    def update(self) -> None:
        """Read the gradients now in the network (after ``loss.backward()``)."""
        for key in self.masks.groups():
            total = 0.0
            for p, idx in _group_params(self.vit, *key, self.masks.group_size):
                if p.grad is not None:
                    total += float((p[idx] * p.grad[idx]).sum())
            s = total * total
            old = self.scores.get(key)
            self.scores[key] = s if old is None else self.momentum * old + (1 - self.momentum) * s

    def normalised(self) -> dict[tuple[str, int, int], float]:
        """Scores divided by the mean of their group type (heads, MLP groups) among the kept groups."""
        out = {}
        for kind in ("head", "mlp"):
            keys = [k for k in self.masks.groups() if k[0] == kind and k in self.scores]
            mean = statistics.fmean(self.scores[k] for k in keys) if keys else 1.0
            out.update({k: self.scores[k] / (mean or 1.0) for k in keys})
        return out


class PrunedAttention(nn.Module):
    """Self-attention with ``num_heads`` heads of ``head_dim`` channels on a ``dim``-channel stream (the heads'
    total width may differ from ``dim``); no head left means the branch adds only ``proj``'s bias."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool, proj_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias) if inner else None
        self.proj = nn.Linear(max(inner, 1), dim, bias=proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        if self.qkv is None:
            return (self.proj.bias if self.proj.bias is not None else x.new_zeros(x.shape[-1])).expand_as(x)
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, length, -1))


class _ZeroMlp(nn.Module):
    def __init__(self, bias: torch.Tensor | None, dim: int) -> None:
        super().__init__()
        self.register_buffer("bias", bias.detach().clone() if bias is not None else torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand_as(x)


@torch.no_grad()
def materialize(vit: VisionTransformer, masks: Masks) -> VisionTransformer:
    """A new network with only the kept heads and MLP units (the same function as ``vit`` under ``masks``)."""
    small = copy.deepcopy(vit)
    for b, blk in enumerate(small.blocks):
        attn = blk.attn
        keep = [h for h, k in enumerate(masks.heads[b]) if k]
        hd, dim = attn.head_dim, attn.qkv.in_features
        inner = attn.num_heads * hd
        new = PrunedAttention(dim, len(keep), hd, attn.qkv.bias is not None, attn.proj.bias is not None)
        if keep:
            rows = torch.cat([torch.arange(t * inner + h * hd, t * inner + (h + 1) * hd)
                              for t in range(3) for h in keep])
            cols = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in keep])
            new.qkv.weight.copy_(attn.qkv.weight[rows])
            if attn.qkv.bias is not None:
                new.qkv.bias.copy_(attn.qkv.bias[rows])
            new.proj.weight.copy_(attn.proj.weight[:, cols])
        if attn.proj.bias is not None:
            new.proj.bias.copy_(attn.proj.bias)
        blk.attn = new
        units = torch.cat([torch.arange(g * masks.group_size, (g + 1) * masks.group_size)
                           for g, k in enumerate(masks.mlp[b]) if k] or [torch.zeros(0, dtype=torch.long)])
        mlp = blk.mlp
        if len(units) == 0:
            blk.mlp = _ZeroMlp(mlp.fc2.bias, mlp.fc2.out_features)
            continue
        fc1, fc2 = nn.Linear(mlp.fc1.in_features, len(units), bias=mlp.fc1.bias is not None), \
            nn.Linear(len(units), mlp.fc2.out_features, bias=mlp.fc2.bias is not None)
        fc1.weight.copy_(mlp.fc1.weight[units])
        if mlp.fc1.bias is not None:
            fc1.bias.copy_(mlp.fc1.bias[units])
        fc2.weight.copy_(mlp.fc2.weight[:, units])
        if mlp.fc2.bias is not None:
            fc2.bias.copy_(mlp.fc2.bias)
        mlp.fc1, mlp.fc2 = fc1, fc2
    return small


class LatencyTable:
    """CPU milliseconds of one transformer block at ``batch_size`` for every (heads, MLP units) it can be pruned to,
    measured here (median of ``repeats`` after warm-up, one thread), and the network's latency as the sum over
    blocks plus the measured rest (embedding, norm, head).

    At batch 1 a small ViT is bound by per-operation overhead, not width: on a 4-block, 128-wide digits ViT (17
    tokens) one block takes 0.228 ms whole and still 0.121 ms with one head and 16 MLP units, so no width pruning
    reaches half the latency there. Measure at the batch the network will serve."""

    def __init__(self, vit: VisionTransformer, group_size: int, repeats: int = 20, batch_size: int = 1) -> None:
        blk = vit.blocks[0]
        self.dim, self.heads, self.hidden = blk.attn.qkv.in_features, blk.attn.num_heads, blk.mlp.fc1.out_features
        self.head_dim, self.group_size = blk.attn.head_dim, group_size
        self.tokens, self.batch_size = vit.patch_embed.num_patches + 1, batch_size
        self.table: dict[tuple[int, int], float] = {}
        one = copy.deepcopy(vit)  # a one-block network to prune (materialize copies it, never changes it)
        one.blocks = nn.Sequential(blk)
        for h, m in itertools.product(range(self.heads + 1), range(0, self.hidden + 1, group_size)):
            masks = Masks([[i < h for i in range(self.heads)]], [[g < m // group_size
                                                                   for g in range(self.hidden // group_size)]],
                          group_size)
            block = materialize(one, masks).blocks[0]
            self.table[(h, m)] = measure_latency(block, (self.tokens, self.dim), batch_size, repeats, warmup=3)
        full = self.table[(self.heads, self.hidden)]
        self.rest = max(0.0, measure_latency(vit, (vit.in_chans, *vit.img_size), batch_size, repeats, warmup=3)
                        - full * len(vit.blocks))

    def block(self, heads: int, units: int) -> float:
        return self.table[(heads, units)]

    def network(self, masks: Masks) -> float:
        return self.rest + sum(self.block(*masks.shape(b)) for b in range(len(masks.heads)))

    def saving(self, masks: Masks, kind: str, block: int) -> float:
        """Milliseconds saved by removing one more group of ``kind`` from ``block``."""
        h, m = masks.shape(block)
        after = (h - 1, m) if kind == "head" else (h, m - self.group_size)
        return self.block(h, m) - self.block(*after)



@torch.no_grad()
def uniform_masks(vit: VisionTransformer, table: LatencyTable, target: float, group_size: int) -> Masks:
    """The baseline: the same share of heads and MLP groups removed from every block (the smallest by weight
    norm in each block), the share growing until the table's latency is at ``target`` of the full network's."""
    full = Masks.full(vit, group_size)
    goal = target * table.network(full)
    for share in [i / 100 for i in range(0, 101)]:
        masks = copy.deepcopy(full)
        for b in range(len(vit.blocks)):
            for kind, row in (("head", masks.heads[b]), ("mlp", masks.mlp[b])):
                n_drop = min(len(row), math.floor(share * len(row) + 1e-9))
                norms = [sum(float(p[idx].norm()) for p, idx in _group_params(vit, kind, b, i, group_size))
                         for i in range(len(row))]
                for i in sorted(range(len(row)), key=lambda i: norms[i])[:n_drop]:
                    row[i] = False
        if table.network(masks) <= goal:
            return masks
    return masks


@dataclass
class PruneResult:
    masks: Masks
    model: VisionTransformer  # materialised (smaller) network, before fine-tuning
    predicted_latency: float  # ms, from the table
    steps: int
    history: list[dict] = field(default_factory=list)  # every pruning round


class _Pruner(Hook):
    def __init__(self, vit: VisionTransformer, masks: Masks, table: LatencyTable, target_ms: float, interval: int,
                 per_step: int, latency_weight: float) -> None:
        self.vit, self.masks, self.table = vit, masks, table
        self.target_ms, self.interval, self.per_step, self.eta = target_ms, interval, per_step, latency_weight
        self.saliency = GroupSaliency(vit, masks)
        self.history: list[dict] = []

    def after_backward(self, state: FitState) -> None:
        self.saliency.update()
        apply_masks(self.vit, self.masks, grads=True)

    def on_step(self, state: FitState) -> str | None:
        apply_masks(self.vit, self.masks)
        if state.step % self.interval:
            return None
        scores = self.saliency.normalised()
        removed = []
        for _ in range(self.per_step):
            if self.table.network(self.masks) <= self.target_ms:
                break
            candidates = self.masks.groups()
            if not candidates:
                break
            key = min(candidates, key=lambda k: scores.get(k, 0.0) - self.eta * self.table.saving(self.masks, k[0],
                                                                                                    k[1]))
            self.masks = self.masks.without(*key)
            self.saliency.masks = self.masks
            removed.append(key)
        apply_masks(self.vit, self.masks)
        self.history.append({"step": state.step, "removed": removed, "latency_ms": self.table.network(self.masks)})
        return "target" if self.table.network(self.masks) <= self.target_ms else None


def prune(vit: VisionTransformer, x: torch.Tensor, y: torch.Tensor, *, target: float = 0.5, group_size: int = 8,
          table: LatencyTable | None = None, interval: int = 10, per_step: int = 2, latency_weight: float = 0.5,
          max_steps: int = 5000, batch_size: int = 64, lr: float = 5e-4, temperature: float = 1.0,
          seed: int = 0) -> PruneResult:
    """NViT's iterative pruning of ``vit`` (a copy; the original is the distillation teacher) to ``target`` of its
    latency on this CPU, training with distillation between rounds. Fine-tune the result afterwards."""
    if not 0.0 < target < 1.0:
        raise UserError(f"nvit: target must be in (0, 1), got {target}")
    table = table or LatencyTable(vit, group_size)
    teacher = copy.deepcopy(vit).eval().requires_grad_(False)
    student = copy.deepcopy(vit)
    masks = Masks.full(student, group_size)
    pruner = _Pruner(student, masks, table, target * table.network(masks), interval, per_step, latency_weight)
    gen = torch.Generator().manual_seed(seed)

    def batches(_: float) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        return x[idx], y[idx]

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        logits = m(batch[0])
        with torch.no_grad():
            soft = teacher(batch[0])
        return F.cross_entropy(logits, batch[1]) + soft_target_kl(logits, soft, temperature)

    result = fit(student, batches, loss_fn, steps=max_steps, hooks=[pruner], lr=lr, warmup=0.0,
                 schedule=lambda base, progress: base, seed=seed, amp=False)
    student.eval()
    return PruneResult(pruner.masks, materialize(student, pruner.masks), table.network(pruner.masks), result.steps,
                       pruner.history)


def true_loss_increase(vit: VisionTransformer, masks: Masks, keys: list[tuple[str, int, int]], x: torch.Tensor,
                       y: torch.Tensor) -> list[float]:
    """The measured loss increase on ``(x, y)`` of zeroing each group alone (what the saliency estimates)."""
    vit.eval()
    with torch.no_grad():
        base = F.cross_entropy(vit(x), y).item()
    out = []
    for key in keys:
        probe = copy.deepcopy(vit)
        apply_masks(probe, masks.without(*key))
        with torch.no_grad():
            out.append(F.cross_entropy(probe(x), y).item() - base)
    return out


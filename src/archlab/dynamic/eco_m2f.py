"""ECO-M2F's early exiting for a classifier: an encoder that can stop after any of its layers, trained so every
exit works, and a gate that picks, from cheap features of each input, the exit it needs.

Paper: Yao et al., "Efficient Transformer Encoders for Mask2Former-style models" (ECO-M2F), 2024. Facts follow
GYeow/ECO-M2F (``mask2former/maskformer_model.py``: the exit-weighted loss; ``prepare_gating_targets``:
``softmax(q_i − β·i)`` over exits; ``modeling/pixel_decoder/gating.py``: ``GatingFunction`` = average pooling over
tokens, then one linear layer); the code is archlab's, for classification instead of panoptic segmentation (the per-
image quality ``q_i`` is the probability the exit gives the true class, where ECO-M2F uses the image's panoptic
quality).

Three steps, as in the paper: (1) train the multi-exit network with the losses of all exits weighted by exit
index (:func:`exit_weighted_loss`); (2) for every image of a held-out split, record each exit's quality, and make
the gate's target ``softmax((q_i − β·i) / τ)`` (:func:`gate_targets`; ``τ`` = 1 in the reference; larger ``β``
prefers earlier exits); (3) train the gate on those targets (:func:`train_gate`). At inference an input runs
only up to the exit its gate chose (:meth:`MultiExitViT.forward_gated`). Only steps 2 and 3 are repeated for a
new ``β``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import fit, shuffled_batches
from archlab.zoo.models.vit import VisionTransformer

__all__ = ["GatingFunction", "MultiExitViT", "exit_qualities", "exit_weighted_loss", "gate_targets", "gated_accuracy",
           "train_gate", "train_multi_exit"]


class GatingFunction(nn.Module):
    """Average pooling over tokens, then a linear layer to one logit per exit (zero bias at start)."""

    def __init__(self, d_model: int, num_gates: int) -> None:
        super().__init__()
        self.head = nn.Linear(d_model, num_gates)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens.mean(1))


class MultiExitViT(nn.Module):
    """A :class:`~archlab.zoo.models.vit.VisionTransformer` with an exit (LayerNorm + linear head on the class
    token) after every block and a gate reading the embedded patches (before the first block)."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit
        dim, classes = vit.embed_dim, vit.num_classes
        self.exits = nn.ModuleList([nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, classes))
                                    for _ in vit.blocks])
        self.gate = GatingFunction(dim, len(vit.blocks))

    @property
    def num_exits(self) -> int:
        return len(self.exits)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vit
        tokens = v.patch_embed(x)
        return torch.cat((v.cls_token.expand(len(tokens), -1, -1), tokens), dim=1) + v.pos_embed

    def forward_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The logits of every exit, ``[(B, classes)] * num_exits`` (training and analysis)."""
        h = self.embed(x)
        outs = []
        for block, head in zip(self.vit.blocks, self.exits, strict=True):
            h = block(h)
            outs.append(head(h[:, 0]))
        return outs

    def forward_exit(self, x: torch.Tensor, exit_index: int) -> torch.Tensor:
        """Fixed truncation: the logits of exit ``exit_index`` (0-based), computing only the blocks before it."""
        if not 0 <= exit_index < self.num_exits:
            raise UserError(f"MultiExitViT: exit must be in 0..{self.num_exits - 1}, got {exit_index}")
        h = self.embed(x)
        for block in self.vit.blocks[:exit_index + 1]:
            h = block(h)
        return self.exits[exit_index](h[:, 0])

    def forward_gated(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, exits)``: each input runs up to the exit its gate picks (argmax), no further."""
        h = self.embed(x)
        choice = self.gate(h).argmax(1)
        logits = torch.empty(len(x), self.vit.num_classes, dtype=h.dtype, device=h.device)
        alive = torch.arange(len(x), device=x.device)
        for i, (block, head) in enumerate(zip(self.vit.blocks, self.exits, strict=True)):
            h = block(h)
            done = choice[alive] == i
            if bool(done.any()):
                logits[alive[done]] = head(h[done, 0])
                h, alive = h[~done], alive[~done]
            if len(alive) == 0:
                break
        return logits, choice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_gated(x)[0]


def exit_weighted_loss(logits: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """``Σ_i i · CE_i / Σ_i i`` over exits ``i = 1..E``: the reference's linear weighting by exit index."""
    weights = torch.arange(1, len(logits) + 1, dtype=torch.float32)
    losses = torch.stack([F.cross_entropy(out, y) for out in logits])
    return (weights * losses).sum() / weights.sum()


@torch.no_grad()
def exit_qualities(model: MultiExitViT, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``(N, E)``: the probability each exit gives the true class of every input."""
    model.eval()
    rows = []
    for i in range(0, len(x), batch_size):
        outs = model.forward_exits(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        rows.append(torch.stack([o.softmax(1).gather(1, yb[:, None])[:, 0] for o in outs], dim=1))
    return torch.cat(rows)


def gate_targets(qualities: torch.Tensor, beta: float, temperature: float = 1.0) -> torch.Tensor:
    """``softmax((q_i − β·i) / τ)`` over exits ``i = 1..E`` (``qualities`` ``(N, E)``)."""
    if not temperature > 0:
        raise UserError(f"gate_targets: temperature must be positive, got {temperature}")
    index = torch.arange(1, qualities.shape[1] + 1, dtype=qualities.dtype)
    return ((qualities - beta * index) / temperature).softmax(1)


def train_gate(model: MultiExitViT, x: torch.Tensor, targets: torch.Tensor, *, epochs: int = 20,
               batch_size: int = 64, lr: float = 1e-2, seed: int = 0) -> float:
    """Train only the gate on soft exit targets (cross-entropy against the target distribution); the rest of the
    network stays as it is. Returns the last loss."""
    with torch.no_grad():
        model.eval()
        tokens = torch.cat([model.embed(x[i:i + 512]) for i in range(0, len(x), 512)])
    batches = shuffled_batches(tokens, targets, batch_size=batch_size, seed=seed)
    result = fit(model.gate, batches, lambda g, b: F.cross_entropy(g(b[0]), b[1]), epochs=epochs,
                 steps_per_epoch=math.ceil(len(tokens) / batch_size), lr=lr, weight_decay=0.0, seed=seed, amp=False)
    return result.loss


def train_multi_exit(model: MultiExitViT, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 30,
                     batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> float:
    """Step 1: the backbone and every exit head trained on :func:`exit_weighted_loss` (AdamW, warm-up + cosine);
    the gate is not trained here. Returns the last loss."""
    params = [p for name, p in model.named_parameters() if not name.startswith("gate.")]
    batches = shuffled_batches(x, y, batch_size=batch_size, seed=seed)
    result = fit(model, batches, lambda m, b: exit_weighted_loss(m.forward_exits(b[0]), b[1]), epochs=epochs,
                 steps_per_epoch=math.ceil(len(x) / batch_size), params=params, lr=lr, seed=seed, amp=False)
    model.eval()
    return result.loss


@torch.no_grad()
def gated_accuracy(model: MultiExitViT, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(accuracy, mean depth)`` of the gated network on ``(x, y)``; depth counts blocks run (1..E)."""
    model.eval()
    logits, exits = model.forward_gated(x)
    return (logits.argmax(1) == y).float().mean().item(), (exits.float() + 1).mean().item()

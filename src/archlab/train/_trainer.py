"""Training a built model at a fidelity, deterministically under a seed.

A fidelity is a number of epochs, a number of seconds, or both (whichever ends first). Training keeps the
weights of the epoch with the best validation accuracy (early stopping after ``patience`` epochs without
improvement). A non-finite loss or a run past ``time_limit_s`` raises :class:`TrialFailed` with the reason, so
the search can record the trial as failed and go on.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TrainConfig", "TrainResult", "TrialFailed", "evaluate", "make_adamw", "seed_everything", "train_model"]


class TrialFailed(RuntimeError):
    """A trial that cannot produce a result; ``str(e)`` is the reason recorded in the ledger."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    max_seconds: float | None = None  # time fidelity: stop (successfully) after this many seconds
    time_limit_s: float | None = None  # hard limit: past it the trial fails
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    patience: int | None = 6
    augment_shift: int = 0  # random translation by up to this many pixels (0 = off)
    augment_flip: bool = False  # random left-right mirroring (only for data whose labels survive it)
    grad_clip: float | None = 5.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    val_accuracy: float
    val_loss: float
    epochs: int
    cost_s: float
    curve: list[dict[str, float]] = field(default_factory=list)
    stopped: str = "epochs"  # epochs | early_stopping | max_seconds


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``x``/``y`` in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        total_loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    n = max(1, len(x))
    return total_loss / n, correct / n


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation with zero fill, one offset per sample (cheap augmentation for small images)."""
    if max_shift <= 0 or x.dim() != 4:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift, max_shift, max_shift, max_shift))
    # offsets come from the CPU generator (the same stream on every device), then move to the data
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen).to(x.device)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (b, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (b, w)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # (b, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right (one coin per sample)."""
    if x.dim() != 4:
        return x
    coin = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    return torch.where(coin[:, None, None, None], x.flip(-1), x)


def make_adamw(params: Any, **kwargs: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel where every parameter allows it (real floating-point tensors): one kernel for
    all parameters instead of a dozen small ops per tensor, about 20 % off a training step of the small nets a
    search trains on a CPU. Falls back to the plain loop otherwise (for example, complex parameters)."""
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if tensors and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors):
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except (RuntimeError, ValueError):
            pass
    return torch.optim.AdamW(params, **kwargs)


def _lr_at(base: float, progress: float, warmup: float = 0.05) -> float:
    """Linear warm-up then cosine decay to zero over ``progress`` in [0, 1] (steps or seconds, whichever
    is further along, so a time fidelity still ends with a decayed learning rate)."""
    if progress < warmup:
        return base * max(progress, 1e-3) / warmup
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, (progress - warmup) / (1.0 - warmup))))


def train_model(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                y_val: torch.Tensor, config: TrainConfig = TrainConfig(),
                on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``model`` in place with AdamW and a cosine schedule; the best-validation weights are kept.

    ``on_epoch(point)`` is called after every epoch with that epoch's curve point; if it returns a non-empty
    string, training stops there and the string is the result's ``stopped`` reason (a search's early stopping of
    unpromising trials).
    """
    cfg = config
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_adamw(model.parameters(), lr=_lr_at(cfg.lr, 0.0), weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(x_train) / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    start = time.perf_counter()
    best_acc, best_loss, best_state, best_epoch = -1.0, math.inf, None, 0
    curve: list[dict[str, float]] = []
    stopped = "epochs"
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        running, seen = 0.0, 0
        for i in range(0, len(x_train), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = _shift(x_train[idx], cfg.augment_shift, gen), y_train[idx]
            if cfg.augment_flip:
                xb = _flip(xb, gen)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise TrialFailed(f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
            opt.step()
            step += 1
            elapsed = time.perf_counter() - start
            progress = step / total_steps
            if cfg.max_seconds is not None:
                progress = max(progress, elapsed / cfg.max_seconds)
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg.lr, progress)
            running += loss.item() * len(idx)
            seen += len(idx)
            if cfg.time_limit_s is not None and elapsed > cfg.time_limit_s:
                raise TrialFailed(f"time limit of {cfg.time_limit_s:.0f}s exceeded at epoch {epoch}")
            if cfg.max_seconds is not None and elapsed >= cfg.max_seconds:
                break
        val_loss, val_acc = evaluate(model, x_val, y_val)
        if not math.isfinite(val_loss):
            raise TrialFailed(f"non-finite validation loss at epoch {epoch}")
        seconds = time.perf_counter() - start
        progress = step / total_steps if cfg.max_seconds is None else max(step / total_steps,
                                                                          seconds / cfg.max_seconds)
        # "progress": how far along the learning-rate schedule the epoch ended (0..1), the common clock on which
        # trials of different speeds under a time fidelity can be compared
        point = {"epoch": epoch, "train_loss": running / max(1, seen), "val_loss": val_loss,
                 "val_accuracy": val_acc, "seconds": seconds, "progress": min(1.0, progress)}
        curve.append(point)
        if val_acc > best_acc or (val_acc == best_acc and val_loss < best_loss):
            best_acc, best_loss, best_epoch = val_acc, val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        verdict = on_epoch(point) if on_epoch is not None else None
        if verdict:
            stopped = str(verdict)
            break
        if cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            stopped = "early_stopping"
            break
        if cfg.max_seconds is not None and time.perf_counter() - start >= cfg.max_seconds:
            stopped = "max_seconds"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(val_accuracy=best_acc, val_loss=best_loss, epochs=len(curve),
                       cost_s=time.perf_counter() - start, curve=curve, stopped=stopped)

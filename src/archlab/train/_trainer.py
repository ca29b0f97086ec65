"""Training a classifier at a fidelity, deterministically under a seed (the loop itself is :func:`archlab.train.fit`).

A fidelity is a number of epochs, a number of seconds, or both (whichever ends first). Training keeps the
weights of the epoch with the best validation accuracy (early stopping after ``patience`` epochs without
improvement). A non-finite loss or a run past ``time_limit_s`` raises :class:`TrialFailed` with the reason, so
the search can record the trial as failed and go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.train._fit import FitState, Hook, TrialFailed, fit, make_adamw, seed_everything
from archlab.train._precision import autocast, channels_last_works, check_precision, resolve_precision, to_contiguous

__all__ = ["TrainConfig", "TrainResult", "TrialFailed", "eval_batch_size", "evaluate", "make_adamw", "seed_everything",
           "train_model"]


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
    #: "fp32", "bf16" (bfloat16 autocast, channels-last convolutions) or "auto" (bf16 where the device computes
    #: it natively); see :mod:`archlab.train._precision`
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)

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


def eval_batch_size(config: TrainConfig) -> int:
    """The evaluation batch for a training configuration: twice the training batch, 64 to 512. Larger batches
    buy nothing on a CPU and cost up to three times the time on long sequences (a scan's states leave the cache)."""
    return min(512, max(64, 2 * config.batch_size))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             precision: str = "fp32") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``x``/``y`` in eval mode; the forward pass in ``precision``
    (the loss in float32)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    cast = autocast(precision, x.device)
    for i in range(0, len(x), batch_size):
        with cast:
            logits = model(x[i:i + batch_size])
        logits = logits.float()
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


class _Classifier(Hook):
    """:func:`train_model`'s part of the loop: the running training loss, the evaluation after every epoch, the
    best weights, the caller's ``on_epoch`` and the patience."""

    def __init__(self, model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, cfg: TrainConfig,
                 total_steps: int, on_epoch: Callable[[dict[str, float]], Any] | None, eval_after: int = 0,
                 steps_per_epoch: int = 1, eval_at: Sequence[float] = (), precision: str = "fp32") -> None:
        self.model, self.x_val, self.y_val, self.cfg = model, x_val, y_val, cfg
        self.precision = precision  # resolved: "fp32" or "bf16"
        self.total_steps, self.user_on_epoch = total_steps, on_epoch
        self.steps_per_epoch = steps_per_epoch
        self.marks = sorted(float(m) for m in eval_at if 0.0 < float(m) < 1.0)  # mid-epoch evaluations
        self.running, self.seen = 0.0, 0
        # under a time fidelity, the time to evaluate the validation split (and the caller's eval_after samples)
        # is kept free: estimated from the training speed until the first evaluation measures it
        self.eval_samples = len(x_val) + eval_after
        self.trained, self.eval_per_sample = 0, None
        self.best_acc, self.best_loss, self.best_state, self.best_epoch = -1.0, math.inf, None, 0
        self.curve: list[dict[str, float]] = []
        self.start = time.perf_counter()

    def on_step(self, state: FitState) -> None:
        n = len(state.batch[1])
        self.running += state.loss * n
        self.seen += n
        self.trained += n
        if self.cfg.max_seconds is not None:
            # a forward pass of evaluation costs at most about half a training step's forward-backward-update
            per_sample = self.eval_per_sample or 0.5 * state.seconds / self.trained
            state.reserve_s = per_sample * self.eval_samples
        if self._passed_marks(state) and state.step % self.steps_per_epoch:
            # a point the monitor asked for (a successive-halving rung) falls inside this epoch: evaluate there, so
            # a slow arch is judged at the rung and not only at the end of its first long epoch
            return self._point(state)
        return None

    def _progress(self, state: FitState) -> float:
        progress = state.step / self.total_steps
        if self.cfg.max_seconds is not None:
            progress = max(progress, (time.perf_counter() - self.start) / self.cfg.max_seconds)
        return progress

    def _passed_marks(self, state: FitState) -> bool:
        """Drop the asked points that progress has reached; whether there were any."""
        passed = False
        while self.marks and self._progress(state) >= self.marks[0]:
            self.marks.pop(0)
            passed = True
        return passed

    def on_epoch(self, state: FitState) -> str | None:
        self._passed_marks(state)
        if self.curve and self.curve[-1]["step"] == state.step:
            return None  # the time fidelity cut the epoch right after a point asked inside it: no second evaluation
        return self._point(state)

    def _point(self, state: FitState) -> str | None:
        """Evaluate, record the curve point of this step and ask the monitor. Its ``epoch`` counts the steps taken
        (fractional inside an epoch, and for an epoch cut by the time fidelity)."""
        cfg = self.cfg
        epoch = state.epoch if state.step % self.steps_per_epoch == 0 else round(state.step / self.steps_per_epoch, 3)
        t0 = time.perf_counter()
        val_loss, val_acc = evaluate(self.model, self.x_val, self.y_val, eval_batch_size(cfg), self.precision)
        self.eval_per_sample = (time.perf_counter() - t0) / max(1, len(self.x_val))
        if cfg.max_seconds is not None:
            state.reserve_s = self.eval_per_sample * self.eval_samples
        if not math.isfinite(val_loss):
            raise TrialFailed(f"non-finite validation loss at epoch {epoch}")
        seconds = time.perf_counter() - self.start
        progress = self._progress(state)
        # "progress": how far along the learning-rate schedule the epoch ended (0..1), the common clock on which
        # trials of different speeds under a time fidelity can be compared
        point = {"epoch": epoch, "step": state.step, "train_loss": self.running / max(1, self.seen),
                 "val_loss": val_loss, "val_accuracy": val_acc, "seconds": seconds, "progress": min(1.0, progress)}
        self.curve.append(point)
        self.running, self.seen = 0.0, 0
        if val_acc > self.best_acc or (val_acc == self.best_acc and val_loss < self.best_loss):
            self.best_acc, self.best_loss, self.best_epoch = val_acc, val_loss, epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        verdict = self.user_on_epoch(point) if self.user_on_epoch is not None else None
        if verdict:
            return str(verdict)
        if cfg.patience is not None and epoch - self.best_epoch >= cfg.patience:
            return "early_stopping"
        return None


def train_model(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                y_val: torch.Tensor, config: TrainConfig = TrainConfig(),
                on_epoch: Callable[[dict[str, float]], Any] | None = None, *, eval_after: int = 0,
                eval_at: Sequence[float] = ()) -> TrainResult:
    """Train ``model`` in place with AdamW and a cosine schedule; the best-validation weights are kept.

    Cross-entropy (with ``label_smoothing``) on shuffled mini-batches, augmented as ``config`` says, through
    :func:`~archlab.train.fit`. ``on_epoch(point)`` is called after every epoch with that epoch's curve point;
    if it returns a non-empty string, training stops there and the string is the result's ``stopped`` reason
    (a search's early stopping of unpromising trials). ``eval_at`` are points of the schedule's progress (0..1)
    where a point is also evaluated when they fall inside an epoch (its ``epoch`` then fractional, and the
    result's ``epochs`` too when training stops there): the rungs of successive halving.

    Under a time fidelity (``config.max_seconds``) the run ends on time with its last validation included, and
    with time left to evaluate ``eval_after`` more samples (a test split the caller scores next).

    ``config.precision`` "bf16" (or "auto" where it resolves to it) trains and validates under bfloat16 autocast,
    with channels-last activations when the model has 2-D convolutions and runs on them; the model is returned
    in the contiguous format, its weights in float32.
    """
    cfg = config
    precision = resolve_precision(cfg.precision, x_train.device, tuple(x_train.shape[1:]))
    channels_last = precision == "bf16" and channels_last_works(model, x_train[:2])
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, math.ceil(len(x_train) / cfg.batch_size))
    clf = _Classifier(model, x_val, y_val, cfg, steps_per_epoch * cfg.epochs, on_epoch, eval_after, steps_per_epoch,
                      eval_at, precision)

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(x_train), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb = _shift(x_train[idx], cfg.augment_shift, gen)
            xb = _flip(xb, gen) if cfg.augment_flip else xb
            yield (xb.contiguous(memory_format=torch.channels_last) if channels_last else xb), y_train[idx]

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(m(batch[0]), batch[1], label_smoothing=cfg.label_smoothing)

    try:
        result = fit(model, epoch_batches, loss_fn, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                     max_seconds=cfg.max_seconds, time_limit_s=cfg.time_limit_s, lr=cfg.lr,
                     weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, hooks=[clf], amp=precision == "bf16",
                     seed=cfg.seed)
    finally:
        if channels_last:
            to_contiguous(model)
    if clf.best_state is not None:
        model.load_state_dict(clf.best_state)
    return TrainResult(val_accuracy=clf.best_acc, val_loss=clf.best_loss,
                       epochs=clf.curve[-1]["epoch"] if clf.curve else 0,
                       cost_s=time.perf_counter() - clf.start, curve=clf.curve, stopped=result.stopped)

"""Training and evaluating language models on a 1-D stream of token ids (character-level LMs, e.g. tiny Shakespeare).

The protocol is the char-LM one of nanoGPT (Karpathy, karpathy/nanoGPT ``train.py``: random windows of
``block_size + 1`` tokens drawn from the training stream, next-token cross-entropy at every position, AdamW with
linear warm-up and cosine decay, gradient clipping at 1.0), with the evaluation used to compare sequence models
(Gu & Dao, "Mamba", COLM 2024; Yang et al., "Gated Linear Attention Transformers", ICML 2024): **bits per
character**, the mean next-character cross-entropy in nats divided by ``ln 2``, over non-overlapping windows
that cover the whole split (every token after the first is predicted exactly once, each window from a fresh
state, so attention and recurrent models see the same context).

A model is any ``nn.Module`` mapping ids ``(B, L)`` to logits ``(B, L, V)``; :func:`decode_tokens_per_s` also
needs ``forward(ids, return_state=True)`` and ``step(token, state)`` (:class:`archlab.zoo.models.sequence.
SequenceModel`, :class:`archlab.zoo.mixers.mamba.MambaLMHeadModel`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train._fit import FitState, Hook, TrialFailed, fit, seed_everything

__all__ = ["LMResult", "decode_tokens_per_s", "evaluate_bpc", "evaluate_lm_loss", "fit_token_targets",
           "sequence_logits", "train_lm"]


@dataclass
class LMResult:
    val_bpc: float
    val_loss: float  # mean next-token cross-entropy on the validation split, in nats
    train_tokens_per_s: float  # tokens predicted per second of training (optimizer steps only)
    steps: int
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0  # training time, evaluation excluded


def _check_ids(ids: torch.Tensor, what: str, min_len: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype != torch.int64:
        got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise UserError(f"lm: {what} must be a 1-D int64 tensor of token ids, got {got}")
    if len(ids) < min_len:
        raise UserError(f"lm: {what} has {len(ids)} tokens; at least {min_len} are needed")


def sequence_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, checked to map ids ``(B, L)`` to logits ``(B, L, V)`` (a UserError says what came back)."""
    out = model(x)
    if out.ndim != 3 or out.shape[:2] != x.shape:
        raise UserError(f"lm: the model must map ids (B, L) to logits (B, L, V); got {tuple(out.shape)} for "
                        f"{tuple(x.shape)}")
    return out


def fit_token_targets(model: nn.Module, sample: Callable[[float], tuple[torch.Tensor, torch.Tensor]], *,
                      steps: int | None, max_seconds: float | None, lr: float, weight_decay: float = 0.1,
                      warmup: float = 0.05, grad_clip: float = 1.0, log_every: int | None = None,
                      on_step: Callable[[dict[str, float]], None] | None = None
                      ) -> tuple[int, float, list[dict[str, float]]]:
    """Next-token training, the loop of :func:`train_lm` and :func:`archlab.train.seqtasks.train_on_task`
    (:func:`archlab.train.fit` with a cross-entropy loss).

    ``sample(progress)`` returns a batch ``(x, y)`` of ids ``(B, L)`` and the target token of every position
    ``(B, L)``; targets ``-100`` are ignored. Cross-entropy
    over the targets, AdamW (betas 0.9, 0.95), gradient clipping, linear warm-up then cosine decay over
    ``progress`` (the further along of steps and seconds). Returns ``(steps, seconds, curve)``; the curve keeps
    every ``log_every``-th step's ``{"step", "loss", "lr", "seconds"}``.
    """
    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(sequence_logits(m, x).flatten(0, 1).float(), y.flatten(), ignore_index=-100)

    hooks = [_OnStep(on_step)] if on_step is not None else []
    # amp off: these losses are compared across runs and devices in full precision, as they always were
    result = fit(model, sample, loss_fn, steps=steps, max_seconds=max_seconds, lr=lr, weight_decay=weight_decay,
                 betas=(0.9, 0.95), warmup=warmup, grad_clip=grad_clip, log_every=log_every, hooks=hooks, amp=False)
    return result.steps, result.seconds, result.curve


class _OnStep(Hook):
    """Hands every step's point ``{"step", "loss", "lr", "seconds"}`` to a callback."""

    def __init__(self, callback: Callable[[dict[str, float]], None]) -> None:
        self.callback = callback

    def on_step(self, state: FitState) -> None:
        self.callback(state.point)


@torch.no_grad()
def evaluate_lm_loss(model: nn.Module, ids: torch.Tensor, block_size: int, batch_size: int = 32,
                     max_tokens: int | None = None) -> float:
    """Mean next-token cross-entropy (nats) over non-overlapping windows of ``block_size`` covering ``ids``
    (the first ``max_tokens`` of them when given), in evaluation mode."""
    if block_size < 1:
        raise UserError(f"lm: block_size must be >= 1, got {block_size}")
    _check_ids(ids, "the evaluation split", 2)
    if max_tokens is not None:
        ids = ids[:max(2, max_tokens)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    n_pred = len(ids) - 1
    n_full = n_pred // block_size
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        # full windows in batches; inputs ids[s : s + T], targets ids[s + 1 : s + T + 1]
        starts = torch.arange(n_full) * block_size
        offsets = torch.arange(block_size)
        for i in range(0, n_full, batch_size):
            idx = starts[i:i + batch_size, None] + offsets
            x, y = ids[idx].to(device), ids[idx + 1].to(device)
            logits = sequence_logits(model, x).flatten(0, 1).float()
            total += F.cross_entropy(logits, y.flatten(), reduction="sum").item()
        rest = n_pred - n_full * block_size
        if rest:  # the tail, a shorter window, so that every token is predicted
            s = n_full * block_size
            x, y = ids[None, s:s + rest].to(device), ids[None, s + 1:s + rest + 1].to(device)
            logits = sequence_logits(model, x).flatten(0, 1).float()
            total += F.cross_entropy(logits, y.flatten(), reduction="sum").item()
    finally:
        model.train(was_training)
    return total / n_pred


def evaluate_bpc(model: nn.Module, ids: torch.Tensor, block_size: int, batch_size: int = 32,
                 max_tokens: int | None = None) -> float:
    """Bits per character (token): :func:`evaluate_lm_loss` divided by ``ln 2``."""
    return evaluate_lm_loss(model, ids, block_size, batch_size, max_tokens) / math.log(2)


def train_lm(model: nn.Module, corpus_train_ids: torch.Tensor, corpus_val_ids: torch.Tensor, *,
             block_size: int = 128, batch_size: int = 32, steps: int | None = None,
             max_seconds: float | None = None, lr: float = 3e-3, weight_decay: float = 0.1, warmup: float = 0.05,
             grad_clip: float = 1.0, seed: int = 0, eval_tokens: int | None = None, log_every: int | None = None,
             on_step: Callable[[dict[str, float]], None] | None = None) -> LMResult:
    """Train ``model`` in place on random windows of ``corpus_train_ids``; return validation bits per char.

    Stops after ``steps`` optimizer steps or ``max_seconds`` of training, whichever comes first (at least one
    must be given); the learning rate warms up linearly over the first ``warmup`` fraction, then decays along a
    cosine to zero (progress is the further along of steps and seconds). ``on_step`` receives ``{"step",
    "loss", "lr", "seconds"}`` after every step; ``curve`` keeps those of every ``log_every``-th step.
    ``eval_tokens`` limits the validation to the first tokens of the split. Deterministic under ``seed`` when
    stopping by ``steps``.
    """
    if steps is None and max_seconds is None:
        raise UserError("lm: give steps or max_seconds (or both)")
    if steps is not None and steps < 1:
        raise UserError(f"lm: steps must be >= 1, got {steps}")
    if max_seconds is not None and max_seconds <= 0:
        raise UserError(f"lm: max_seconds must be > 0, got {max_seconds}")
    if block_size < 1 or batch_size < 1:
        raise UserError(f"lm: block_size and batch_size must be >= 1, got {block_size}, {batch_size}")
    if not 0 <= warmup < 1 or lr <= 0:
        raise UserError(f"lm: need lr > 0 and 0 <= warmup < 1, got lr={lr}, warmup={warmup}")
    _check_ids(corpus_train_ids, "the training split", block_size + 1)
    _check_ids(corpus_val_ids, "the validation split", 2)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(block_size + 1)
    n_starts = len(corpus_train_ids) - block_size

    def sample(progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        windows = corpus_train_ids[torch.randint(0, n_starts, (batch_size,), generator=gen)[:, None] + offsets]
        return windows[:, :-1], windows[:, 1:]

    step, elapsed, curve = fit_token_targets(model, sample, steps=steps, max_seconds=max_seconds, lr=lr,
                                             weight_decay=weight_decay, warmup=warmup, grad_clip=grad_clip,
                                             log_every=log_every, on_step=on_step)
    val_loss = evaluate_lm_loss(model, corpus_val_ids, block_size, batch_size, eval_tokens)
    if not math.isfinite(val_loss):
        raise TrialFailed("non-finite validation loss")
    return LMResult(val_bpc=val_loss / math.log(2), val_loss=val_loss,
                    train_tokens_per_s=step * batch_size * block_size / max(elapsed, 1e-9), steps=step,
                    curve=curve, seconds=elapsed)


@torch.no_grad()
def decode_tokens_per_s(model: nn.Module, prompt_len: int = 64, n_new: int = 256, *, vocab_size: int | None = None,
                        warmup: int = 8, threads: int | None = 1, seed: int = 0) -> float:
    """Tokens per second of step decoding at batch 1 (on ``threads`` intra-op threads; ``None`` leaves them).

    A random prompt of ``prompt_len`` ids is read in one call, ``warmup`` steps are taken untimed, then ``n_new``
    steps are timed, each feeding back the greedy token (so the time includes the head and the argmax).
    """
    if prompt_len < 1 or n_new < 1:
        raise UserError(f"lm: prompt_len and n_new must be >= 1, got {prompt_len}, {n_new}")
    if not callable(getattr(model, "step", None)):
        raise UserError(f"lm: {type(model).__name__} has no step(token, state) for decoding")
    vocab = vocab_size or getattr(model, "vocab_size", None)
    if not vocab:
        raise UserError("lm: decode_tokens_per_s needs vocab_size (the model has no vocab_size attribute)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=gen).to(device)
    old_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        logits, state = model(prompt, return_state=True)
        token = logits[:, -1].argmax(-1)
        for _ in range(warmup):
            logits_t, state = model.step(token, state)
            token = logits_t.argmax(-1)
        begin = time.perf_counter()
        for _ in range(n_new):
            logits_t, state = model.step(token, state)
            token = logits_t.argmax(-1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        took = time.perf_counter() - begin
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    return n_new / max(took, 1e-9)

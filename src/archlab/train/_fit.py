"""One training loop: :func:`fit` runs any loss over any batches at a fidelity of epochs, steps and/or seconds.

Why one loop: archlab trains classifiers (:func:`archlab.train.train_model`), language models and sequence
tasks (:mod:`archlab.train.lm`, :mod:`archlab.train.seqtasks`), and distils one model into another
(:func:`archlab.compress.mohawk.mohawk_distill`); recipes still to come train reconstructions, alternate weight
and architecture steps (DARTS: Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019),
keep pruned weights at zero (Han et al., "Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS 2015), add gradient noise (Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep
Networks", arXiv 1511.06807) or sum the losses of early exits (Teerapittayanon et al., "BranchyNet", ICPR 2016).
Each once had, or would have had, its own copy of the same loop, and the copies drifted (clipping, the schedule,
failure detection). Here the loop is written once; what differs is

- the loss, ``loss_fn(model, batch) -> scalar tensor`` (or ``(loss, logs)`` with a dict of floats or scalar
  tensors to record): cross-entropy, next-token cross-entropy, soft-target KL, MSE of a reconstruction, a
  weighted sum over exits;
- the batches: an iterable per epoch (``batches(epoch)``, or an iterable re-iterated every epoch), or a step
  sampler ``batches(progress) -> batch`` for stream training (one fresh batch per step, no epochs);
- hooks (:class:`Hook`) called at fixed points of every step and epoch.

The fidelity is ``epochs``, ``steps`` and/or ``max_seconds``, whichever ends first; ``time_limit_s`` is a hard
limit past which the run fails. Under ``max_seconds`` a hook that must still work after the last step (the
evaluation at the end of an epoch) says how long in ``state.reserve_s``, and the steps end that much earlier, so
the run, evaluation included, ends on time. The learning rate follows :func:`warmup_cosine` over *progress*, the further
along of steps and seconds, so a run stopped by time still ends with a decayed rate. A non-finite loss or a run
past ``time_limit_s`` raises :class:`TrialFailed` (a search records the trial as failed and goes on).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.errors import UserError

__all__ = ["FitResult", "FitState", "Hook", "TrialFailed", "fit", "make_adamw", "seed_everything", "shuffled_batches",
           "warmup_cosine"]


class TrialFailed(RuntimeError):
    """A trial that cannot produce a result; ``str(e)`` is the reason recorded in the ledger."""


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def warmup_cosine(base: float, progress: float, warmup: float = 0.05) -> float:
    """The learning rate at ``progress`` in [0, 1]: linear warm-up to ``base`` over the first ``warmup`` fraction
    (floored at ``progress = 0.001``, so the first step moves), then cosine decay to zero at 1 (Loshchilov &
    Hutter, "SGDR", ICLR 2017, without restarts). Progress is the further along of steps and seconds, so a run
    stopped by time still ends with a decayed rate; past 1 the rate stays at zero."""
    if progress < warmup:
        return base * max(progress, 1e-3) / warmup
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, (progress - warmup) / (1.0 - warmup))))


@dataclass
class FitState:
    """What a :class:`Hook` sees; :func:`fit` updates it in place (hooks may keep their own state elsewhere)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0  # optimizer steps taken so far
    epoch: int = 0  # the current epoch, from 1 (0 when training from a step sampler)
    batch: Any = None  # the current batch, already on the device
    loss: float = math.nan  # the last step's loss
    logs: dict[str, Any] = field(default_factory=dict)  # the last step's logs from the loss function
    lr: float = 0.0  # the learning rate of the first parameter group for the last step
    progress: float = 0.0  # how far along the schedule, in [0, 1]
    seconds: float = 0.0  # seconds since fit began, at the last update
    point: dict[str, float] = field(default_factory=dict)  # the last step's {"step", "loss", "lr", "seconds"}
    start: float = 0.0  # time.perf_counter() when fit began
    reserve_s: float = 0.0  # seconds a hook needs after the last step (an evaluation): max_seconds stops earlier

    def elapsed(self) -> float:
        """Seconds since :func:`fit` began, now."""
        return time.perf_counter() - self.start


class Hook:
    """Callbacks of :func:`fit`; subclass and override any of them (or pass any object with some of these
    methods). Per optimizer step, in this order:

    - ``before_step(state)``: the batch is in ``state.batch``, before the forward pass (for example, DARTS's
      architecture step on a validation batch; ``fit`` clears the weights' gradients after it);
    - ``after_backward(state)``: the gradients are there, before clipping and the optimizer step (gradient noise,
      zeroing the gradients of pruned weights);
    - ``on_step(state)``: after the optimizer step and the learning-rate update, so exactly once per step taken
      (re-applying pruning masks, logging); a truthy return stops training at once with ``str(value)`` as the
      reason (no ``on_epoch`` for that epoch).

    ``on_epoch(state)`` is called once at the end of every epoch, including a last one cut short by the step or
    time fidelity (so an evaluation sees the final weights), and never when training from a step sampler; a
    truthy return stops training with ``str(value)`` as the reason (early stopping). Every hook's method is
    called; the first truthy reason wins.
    """

    def before_step(self, state: FitState) -> None:
        return None

    def after_backward(self, state: FitState) -> None:
        return None

    def on_step(self, state: FitState) -> str | None:
        return None

    def on_epoch(self, state: FitState) -> str | None:
        return None


@dataclass
class FitResult:
    steps: int
    epochs: int  # epochs begun (0 when training from a step sampler)
    seconds: float  # wall-clock time of the whole fit, hooks included
    stopped: str  # epochs | steps | max_seconds | a hook's reason
    loss: float  # the last step's loss
    curve: list[dict[str, float]] = field(default_factory=list)  # every log_every-th step's point, and the last


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _hook_methods(hooks: Sequence[Any], name: str) -> list[Callable[[FitState], Any]]:
    # skip the base class's no-ops, so a subclass that overrides one method costs nothing per step for the others
    return [getattr(h, name) for h in hooks
            if callable(getattr(h, name, None)) and getattr(type(h), name, None) is not getattr(Hook, name)]


def _first_reason(methods: list[Callable[[FitState], Any]], state: FitState) -> str | None:
    reason = None
    for method in methods:
        verdict = method(state)
        if verdict and reason is None:
            reason = str(verdict)
    return reason


def _check_args(batches: Any, epochs: int | None, steps: int | None, max_seconds: float | None,
                time_limit_s: float | None, lr: float, warmup: float) -> None:
    if epochs is None and steps is None and max_seconds is None:
        raise UserError("fit: give a fidelity: epochs, steps or max_seconds (training stops at the first reached)")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"fit: {name} must be an int >= 1, got {value!r}")
    for name, value in (("max_seconds", max_seconds), ("time_limit_s", time_limit_s)):
        if value is not None and not value > 0:
            raise UserError(f"fit: {name} must be > 0, got {value!r}")
    if not lr > 0 or not 0 <= warmup < 1:
        raise UserError(f"fit: need lr > 0 and 0 <= warmup < 1, got lr={lr}, warmup={warmup}")
    if not callable(batches) and not isinstance(batches, Iterable):
        raise UserError(f"fit: batches must be an iterable or a callable, got {type(batches).__name__}")


def _split_loss(out: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    loss, logs = out if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) else (out, {})
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise UserError(f"fit: loss_fn(model, batch) must return a scalar tensor (or (loss, logs dict)), got {got}")
    return loss, logs


def fit(model: nn.Module, batches: Iterable[Any] | Callable[[Any], Any],
        loss_fn: Callable[[nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict[str, Any]]], *,
        epochs: int | None = None, steps: int | None = None, max_seconds: float | None = None,
        time_limit_s: float | None = None, steps_per_epoch: int | None = None,
        params: Iterable[nn.Parameter] | None = None,
        optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
        lr: float = 1e-3, weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
        warmup: float = 0.05, schedule: Callable[[float, float], float] | None = None,
        grad_clip: float | None = None, hooks: Sequence[Any] | Any = (), device: torch.device | str | None = None,
        amp: bool | None = None, seed: int | None = None, log_every: int | None = None) -> FitResult:
    """Train ``model`` in place on ``loss_fn(model, batch)`` until the first of the fidelities is reached.

    ``batches``: with ``epochs`` given and a callable, ``batches(epoch)`` (from 1) returns that epoch's iterable
    of batches; any other iterable is iterated once per epoch (so it must be re-iterable: a list, a DataLoader);
    a callable without ``epochs`` is a step sampler, ``batches(progress)`` returning one batch per step.
    Batches (tensors, or tuples, lists and dicts of them) are moved to the device.

    The learning-rate schedule needs the number of steps the run will take: ``steps``, or ``epochs`` times
    ``steps_per_epoch`` (by default the ``len()`` of the first epoch's batches), whichever is smaller; by
    ``max_seconds`` alone it follows the clock. ``schedule(base, progress)`` replaces :func:`warmup_cosine`
    (with ``warmup``) as the rate for every parameter group, ``base`` being that group's rate at the start.

    ``params``: the parameters to train (default: all of the model's). ``optimizer(params)`` builds the
    optimizer (its groups' rates are the bases of the schedule); by default fused AdamW (:func:`make_adamw`)
    with ``lr``, ``weight_decay`` and ``betas``. ``grad_clip``: clip the gradients' global norm to it.
    ``device``: move the model there first (default: where its parameters are). ``amp``: autocast the forward
    pass to bfloat16 (default: on for CUDA, off on the CPU, where it pays only with native bfloat16: see
    :mod:`archlab.train._precision`). ``seed``: :func:`seed_everything`
    first. ``hooks``: :class:`Hook` objects (or one). ``log_every``: the curve's step interval (default: 50
    points over ``steps``, else every 10th step).

    Raises :class:`TrialFailed` on a non-finite loss (naming the epoch and the step) and once a step ends past
    ``time_limit_s`` seconds; :class:`~archlab.errors.UserError` on bad arguments. The result's ``stopped`` is
    ``"epochs"``, ``"steps"``, ``"max_seconds"`` or the reason a hook returned.
    """
    _check_args(batches, epochs, steps, max_seconds, time_limit_s, lr, warmup)
    if seed is not None:
        seed_everything(seed)
    if device is not None:
        model.to(device)
    dev = torch.device(device) if device is not None else next((p.device for p in model.parameters()),
                                                               torch.device("cpu"))
    use_amp = (dev.type == "cuda") if amp is None else bool(amp)
    params = list(model.parameters() if params is None else params)
    if not params:
        raise UserError("fit: there is no parameter to train")
    opt = (optimizer(params) if optimizer is not None
           else make_adamw(params, lr=lr, weight_decay=weight_decay, betas=betas))
    rate = schedule if schedule is not None else (lambda base, p: warmup_cosine(base, p, warmup))
    groups = opt.param_groups
    bases = [g["lr"] for g in groups]
    for g, base in zip(groups, bases, strict=True):
        g["lr"] = rate(base, 0.0)
    sampler = callable(batches) and epochs is None
    horizon: int | None = steps
    if not sampler and epochs is not None:
        per_epoch = steps_per_epoch if steps_per_epoch is not None else (
            len(batches) if not callable(batches) and hasattr(batches, "__len__") else None)
        if per_epoch is not None:
            horizon = min(horizon or math.inf, epochs * max(1, per_epoch))
    log_every = log_every or (max(1, steps // 50) if steps else 10)
    hooks = list(hooks) if isinstance(hooks, (list, tuple)) else [hooks]
    before = _hook_methods(hooks, "before_step")
    after_backward = _hook_methods(hooks, "after_backward")
    on_step = _hook_methods(hooks, "on_step")
    on_epoch = _hook_methods(hooks, "on_epoch")
    state = FitState(model=model, optimizer=opt, start=time.perf_counter())
    curve: list[dict[str, float]] = []

    def fidelity_reached() -> str | None:
        if max_seconds is not None and state.seconds + state.reserve_s >= max_seconds:
            return "max_seconds"
        if steps is not None and state.step >= steps:
            return "steps"
        return None

    def take_step(batch: Any) -> str | None:
        """One optimizer step on ``batch``; returns a hook's stop reason."""
        state.batch = batch = _to_device(batch, dev)
        for method in before:
            method(state)
        with torch.autocast(dev.type, dtype=torch.bfloat16) if use_amp else contextlib.nullcontext():
            loss, logs = _split_loss(loss_fn(model, batch))
        value = loss.item()
        if not math.isfinite(value):
            where = f"epoch {state.epoch}, " if state.epoch else ""
            raise TrialFailed(f"non-finite loss ({value}) at {where}step {state.step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for method in after_backward:
            method(state)
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        state.step += 1
        state.seconds = state.elapsed()
        progress = state.step / horizon if horizon else 0.0
        if max_seconds is not None:
            progress = max(progress, state.seconds / max_seconds)
        state.progress = min(1.0, progress)
        state.lr = groups[0]["lr"]  # the rate this step used, before the update below
        for g, base in zip(groups, bases, strict=True):
            g["lr"] = rate(base, state.progress)
        state.loss, state.logs = value, logs
        state.point = {"step": state.step, "loss": value, "lr": state.lr, "seconds": state.seconds}
        state.point.update({k: float(v) for k, v in logs.items()})
        if state.step % log_every == 0:
            curve.append(state.point)
        reason = _first_reason(on_step, state)
        if time_limit_s is not None and state.seconds > time_limit_s:
            where = f"epoch {state.epoch}" if state.epoch else f"step {state.step}"
            raise TrialFailed(f"time limit of {time_limit_s:.0f}s exceeded at {where}")
        return reason

    stopped: str | None = None
    if sampler:
        model.train()
        while stopped is None:
            stopped = take_step(batches(state.progress)) or fidelity_reached()
    while stopped is None:
        if epochs is not None and state.epoch >= epochs:
            stopped = "epochs"
            break
        state.epoch += 1
        model.train()
        epoch_batches = batches(state.epoch) if callable(batches) else batches
        if horizon is None and epochs is not None and hasattr(epoch_batches, "__len__"):
            horizon = min(steps or math.inf, epochs * max(1, len(epoch_batches)))
        if horizon is None and max_seconds is None:
            raise UserError("fit: cannot tell how many steps the run takes (the epoch's batches have no len()); "
                            "pass steps_per_epoch or steps")
        cut, taken = None, 0
        for batch in epoch_batches:
            taken += 1
            reason = take_step(batch)
            if reason:
                return _result(state, curve, reason, epochs=state.epoch)
            cut = fidelity_reached()
            if cut:
                break
        if taken == 0:
            raise UserError(f"fit: epoch {state.epoch} has no batch (an iterator is used up after one pass: pass a "
                            "list, a DataLoader or a callable epoch -> batches)")
        state.seconds = state.elapsed()
        stopped = _first_reason(on_epoch, state) or cut
        if stopped is None and max_seconds is not None and state.elapsed() + state.reserve_s >= max_seconds:
            stopped = "max_seconds"
    return _result(state, curve, stopped, epochs=state.epoch)


def _result(state: FitState, curve: list[dict[str, float]], stopped: str, epochs: int) -> FitResult:
    if state.point and (not curve or curve[-1]["step"] != state.step):
        curve.append(state.point)
    return FitResult(steps=state.step, epochs=epochs, seconds=state.elapsed(), stopped=stopped, loss=state.loss,
                     curve=curve)


def shuffled_batches(*tensors: torch.Tensor, batch_size: int, seed: int = 0
                     ) -> Callable[[int], Iterator[tuple[torch.Tensor, ...]]]:
    """``batches(epoch)`` for :func:`fit`: every epoch a fresh permutation of the tensors' rows (one generator
    seeded with ``seed``), cut into mini-batches of ``batch_size``; each batch a tuple of the tensors' rows."""
    if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
        raise UserError("shuffled_batches: needs tensors with the same number of rows")
    gen = torch.Generator().manual_seed(seed)
    n = len(tensors[0])

    def epoch(_: int) -> Iterator[tuple[torch.Tensor, ...]]:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            yield tuple(t[idx] for t in tensors)
    return epoch

"""Median stopping of unpromising trials (Golovin et al., "Google Vizier: A Service for Black-Box
Optimization", KDD 2017, §3.2.2 "automated early stopping").

A trial is stopped when the best validation accuracy it has reached so far is below the median of what the
earlier reference trials had reached at the same point of their training. Reference trials are the completed
trials that ran to their own end (a trial stopped by this rule is not a reference: its curve ends where it was
cut).

"The same point" is measured as *progress along the learning-rate schedule* (each curve point's
``progress``, 0..1), not as an epoch number: under a time fidelity a slow arch's schedule is compressed into
few epochs, so its epoch-2 accuracy is already that of a decayed learning rate, while a fast arch at epoch 2
of 8 is still at its peak rate; comparing epochs would stop exactly the cheap archs the budget favours. The
rule never judges before ``min_progress`` (the first epochs of every net are noisy) or with fewer than
``min_trials`` references, and never at the end of a trial (stopping then saves nothing).

The curve metric is a parameter (``metric``, ``direction``; validation accuracy, maximised, by default), so the
rule serves any evaluator whose curve points carry the metric and a ``progress``.

The rule depends only on the ledger's curves, so a resumed run rebuilds it exactly (:meth:`add` in trial order).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from archlab.errors import UserError

__all__ = ["STOPPED", "MedianStopping"]

STOPPED = "median_stopping"  # the ``stopped`` reason of a trial this rule ended


class MedianStopping:
    def __init__(self, min_progress: float = 0.25, min_trials: int = 4, metric: str = "val_accuracy",
                 direction: str = "maximize") -> None:
        if not 0.0 <= min_progress < 1.0 or min_trials < 1:
            raise UserError(f"median stopping: need 0 <= min_progress < 1 and min_trials >= 1, "
                            f"got {min_progress}, {min_trials}")
        if direction not in ("maximize", "minimize"):
            raise UserError(f"median stopping: direction must be 'maximize' or 'minimize', got {direction!r}")
        self.metric = metric
        self._sign = 1.0 if direction == "maximize" else -1.0  # values are compared oriented larger-is-better
        self.min_progress = min_progress
        self.min_trials = min_trials
        self._references: list[list[tuple[float, float]]] = []  # per trial: (progress, running best accuracy)

    def add(self, curve: Sequence[dict[str, Any]], stopped: str | None = None) -> None:
        """Record a finished trial's learning curve (ignored if this rule stopped it, or if it has no
        ``progress`` points, as curves written before progress was recorded)."""
        if stopped == STOPPED or not curve or any("progress" not in p for p in curve):
            return
        best, running = -float("inf"), []
        for point in curve:
            best = max(best, self._sign * float(point[self.metric]))
            running.append((float(point["progress"]), best))
        self._references.append(running)

    def threshold(self, progress: float) -> float | None:
        """The median, over references with a point at or before ``progress``, of their best accuracy by then;
        None while too early or with too few references."""
        if progress < self.min_progress:
            return None
        values = []
        for ref in self._references:
            reached = [acc for p, acc in ref if p <= progress + 1e-9]
            if reached:
                values.append(reached[-1])
        if len(values) < self.min_trials:
            return None
        return statistics.median(values)

    def monitor(self) -> Callable[[dict[str, Any]], str | None]:
        """A per-trial ``on_epoch`` callback for :func:`archlab.train.train_model`."""
        best = -float("inf")

        def on_epoch(point: dict[str, Any]) -> str | None:
            nonlocal best
            best = max(best, self._sign * float(point[self.metric]))
            progress = float(point.get("progress", 1.0))
            if progress >= 1.0:
                return None
            limit = self.threshold(progress)
            return STOPPED if limit is not None and best < limit else None

        return on_epoch

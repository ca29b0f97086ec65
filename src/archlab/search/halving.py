"""Successive halving of trials by early stopping: the asynchronous rule of ASHA.

Paper: Li, Jamieson, Rostamizadeh, Gonina, Ben-Tzur, Hardt, Recht and Talwalkar, "A System for Massively
Parallel Hyperparameter Tuning", MLSys 2020 (ASHA), after Jamieson & Talwalkar, "Non-stochastic Best Arm
Identification and Hyperparameter Optimization", AISTATS 2016 (successive halving), and Li et al.,
"Hyperband", JMLR 2018. The stopping form follows Optuna's ``SuccessiveHalvingPruner`` (whose parameter names it
keeps: ``min_resource``, ``reduction_factor``): every trial is started at the full fidelity, and at each rung
``min_resource * reduction_factor**k`` of its resource it goes on only if its value is among the best
``1/reduction_factor`` of all the values recorded at that rung so far (the first trial to reach a rung always goes
on). Many archs get a cheap look; the promising few train to the end, in the same trial, without restarting.
With parallel workers each worker judges against the rungs as they were when its trial started (asynchronous,
as ASHA: no worker waits for a rung to fill).

The resource is *progress along the learning-rate schedule* (a curve point's ``progress``, 0..1), the clock on
which :class:`~archlab.search.MedianStopping` compares trials too: under a time fidelity a slow arch's schedule
is compressed into few epochs, so an epoch count would favour the fast ones. With ``min_resource`` 1/9 and
``reduction_factor`` 3 the rungs are at 1/9 and 1/3 of a trial's schedule, so about one trial in nine trains
to its end.

The monitor asks the trainer to evaluate at the rungs (its ``eval_at``), also inside an epoch, so a slow arch is
judged at the rung instead of at the end of its first long epoch.

Unlike median stopping, every trial's values count at the rungs it reached, a stopped trial's included (ASHA
ranks all that reached a rung). The rule depends only on the ledger's curves, so a resumed run rebuilds it
exactly (:meth:`add` in trial order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from archlab.errors import UserError

__all__ = ["HALVED", "SuccessiveHalving"]

HALVED = "successive_halving"  # the ``stopped`` reason of a trial this rule ended


class SuccessiveHalving:
    """ASHA's stopping rule over a curve metric (validation accuracy, maximised, by default)."""

    def __init__(self, min_resource: float = 1 / 9, reduction_factor: int = 3, metric: str = "val_accuracy",
                 direction: str = "maximize") -> None:
        if not 0.0 < min_resource < 1.0 or not isinstance(reduction_factor, int) or reduction_factor < 2:
            raise UserError(f"successive halving: need 0 < min_resource < 1 and an integer reduction_factor >= 2, "
                            f"got {min_resource}, {reduction_factor}")
        if direction not in ("maximize", "minimize"):
            raise UserError(f"successive halving: direction must be 'maximize' or 'minimize', got {direction!r}")
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.metric = metric
        self._sign = 1.0 if direction == "maximize" else -1.0
        self.rungs: list[float] = []
        r = min_resource
        while r < 1.0 - 1e-9:
            self.rungs.append(r)
            r *= reduction_factor
        self._values: list[list[float]] = [[] for _ in self.rungs]  # per rung: every trial's value there

    def _at_rungs(self, curve: Sequence[dict[str, Any]]) -> list[float]:
        """A curve's running best value at each rung it reached (the first point at or past the rung)."""
        out, best, k = [], -math.inf, 0
        for point in curve:
            if "progress" not in point or self.metric not in point:
                return out
            best = max(best, self._sign * float(point[self.metric]))
            while k < len(self.rungs) and float(point["progress"]) >= self.rungs[k] - 1e-9:
                out.append(best)
                k += 1
        return out

    def add(self, curve: Sequence[dict[str, Any]], stopped: str | None = None) -> None:
        """Record a finished trial's learning curve at the rungs it reached (stopped or not)."""
        for k, value in enumerate(self._at_rungs(curve)):
            self._values[k].append(value)

    def promotable(self, rung: int, value: float) -> bool:
        """Whether ``value`` (oriented larger-is-better) is among the best ``1/reduction_factor`` at ``rung``,
        counting itself; the first value at a rung always is."""
        values = sorted([*self._values[rung], value], reverse=True)
        keep = max(1, len(values) // self.reduction_factor)
        return value >= values[keep - 1]

    def monitor(self) -> Callable[[dict[str, Any]], str | None]:
        """A per-trial ``on_epoch`` callback: stops the trial at the first rung where it is not promotable."""
        best, k = -math.inf, 0

        def on_epoch(point: dict[str, Any]) -> str | None:
            nonlocal best, k
            best = max(best, self._sign * float(point[self.metric]))
            progress = float(point.get("progress", 1.0))
            verdict = None
            while k < len(self.rungs) and progress >= self.rungs[k] - 1e-9:
                if verdict is None and progress < 1.0 and not self.promotable(k, best):
                    verdict = HALVED
                k += 1
            return verdict

        on_epoch.eval_at = tuple(self.rungs)  # type: ignore[attr-defined]  # the trainer evaluates at the rungs
        return on_epoch

    def describe(self) -> dict[str, Any]:
        return {"rule": "successive_halving", "rungs": self.rungs, "reduction_factor": self.reduction_factor,
                "trials_per_rung": [len(v) for v in self._values]}

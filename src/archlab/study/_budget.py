"""Budgets: durations (``180s``, ``30m``, ``1h30m``, ``2.5m``, ``90`` seconds) and :class:`Budget`, the clocks a
search runs under (wall seconds, simulated cost seconds, trial count)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from archlab.errors import UserError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)?", re.IGNORECASE)
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, None: 1.0}


def parse_duration(text: str | float | int, what: str = "budget") -> float:
    """Seconds in ``text``; a negative, zero or unparseable value is a :class:`UserError`."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        if s.startswith("-"):
            raise UserError(f"{what} {text!r} is negative; give a positive duration like 180s, 30m or 1h")
        pos, seconds, parts = 0, 0.0, 0
        while pos < len(s):
            m = _PART.match(s, pos)
            if not m or m.end() == pos:
                raise UserError(f"cannot parse {what} {text!r}; use a duration like 180s, 30m, 1h30m")
            unit = m.group(2)
            if unit is None and m.end() != len(s):
                raise UserError(f"cannot parse {what} {text!r}; use a duration like 180s, 30m, 1h30m")
            seconds += float(m.group(1)) * _SCALE[unit]
            pos, parts = m.end(), parts + 1
        if parts == 0:
            raise UserError(f"{what} is empty; use a duration like 180s, 30m or 1h")
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"{what} {text!r} must be a positive duration")
    return seconds


@dataclass(frozen=True)
class Budget:
    """When a search stops: a wall clock (``seconds``), a cost clock (``cost_s``: each result charges its own
    ``metrics["cost_s"]``, as the NAS-Bench-201 protocol charges a cell's tabulated training time), a number of
    trials (``trials``), or any combination (whichever ends first). A trial starts only while every clock has
    budget left, and its result counts in full even when its cost crosses the limit (the tabular protocols'
    rule: the run that spends the last of the budget is kept).

    Strings are parsed as durations: ``Budget(seconds="30m")``; ``Budget.parse("30m")`` is the same."""

    seconds: float | None = None
    cost_s: float | None = None
    trials: int | None = None

    def __post_init__(self) -> None:
        for name in ("seconds", "cost_s"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_duration(value, f"budget {name}"))
        if self.trials is not None and (isinstance(self.trials, bool) or not isinstance(self.trials, int)
                                        or self.trials < 1):
            raise UserError(f"budget trials must be a positive int, got {self.trials!r}")
        if self.seconds is None and self.cost_s is None and self.trials is None:
            raise UserError("a budget needs seconds, cost_s or trials (or several)")

    @classmethod
    def parse(cls, text: str | float | int | Budget | None = None, *, trials: int | None = None) -> Budget:
        """A wall-clock budget from a duration (``"180s"``, ``"30m"``), optionally with a trial count."""
        if isinstance(text, Budget):
            return text
        return cls(seconds=None if text is None else parse_duration(text), trials=trials)

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "cost_s": self.cost_s, "trials": self.trials}

    def clock(self, *, elapsed: float = 0.0, cost: float = 0.0, trials: int = 0) -> BudgetClock:
        """A running clock, started with what earlier sessions of a resumed run spent."""
        return BudgetClock(self, elapsed, cost, trials)


class BudgetClock:
    """What a search has spent of its :class:`Budget`: wall seconds, charged cost and trials."""

    def __init__(self, budget: Budget, elapsed: float = 0.0, cost: float = 0.0, trials: int = 0) -> None:
        self.budget = budget
        self._t0 = time.perf_counter() - elapsed
        self.cost = cost
        self.trials = trials

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def charge(self, cost_s: float | None) -> None:
        """Count one finished trial and its cost."""
        self.trials += 1
        if cost_s is not None and math.isfinite(cost_s):
            self.cost += float(cost_s)

    def may_start(self, in_flight: int = 0) -> bool:
        """Whether another trial may start while ``in_flight`` others are running."""
        b = self.budget
        if b.trials is not None and self.trials + in_flight >= b.trials:
            return False
        if b.seconds is not None and self.elapsed >= b.seconds:
            return False
        return not (b.cost_s is not None and self.cost >= b.cost_s)

    def remaining_seconds(self) -> float | None:
        return None if self.budget.seconds is None else max(0.0, self.budget.seconds - self.elapsed)

    def fraction(self) -> float:
        """How much of the budget is spent (0..1), the furthest along of its clocks."""
        b, parts = self.budget, []
        if b.seconds is not None:
            parts.append(self.elapsed / b.seconds)
        if b.cost_s is not None:
            parts.append(self.cost / b.cost_s)
        if b.trials is not None:
            parts.append(self.trials / b.trials)
        return min(1.0, max(parts)) if parts else 0.0

"""A lookup table of results, and the evaluator that answers from it.

A tabular benchmark (NAS-Bench-201 and its kind: every arch of a small space trained once, offline) turns an
evaluation into a lookup, so a strategy can be run hundreds of times in seconds; what a trial "costs" is the
training time the table records, charged to a cost-clock :class:`~archlab.study.Budget`. Lookups are instant, so
the ledger writes such a trial once, when it is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from archlab.errors import UserError
from archlab.space import Arch, Space
from archlab.study import EvalResult

__all__ = ["Table", "TableEvaluator"]


class Table:
    """Rows of metrics indexed by an arch's position in a space.

    ``index(arch) -> int`` maps an arch to its row; ``columns`` maps each metric name to a 1-D array with one value
    per row. ``hidden`` names the columns a strategy must never see (their names are prefixed ``test_`` in a
    result, the ledger's convention for metrics kept from strategies)."""

    def __init__(self, space: Space, index: Callable[[Arch], int], columns: Mapping[str, Sequence[float]],
                 hidden: Sequence[str] = ()) -> None:
        self.space = space
        self.index = index
        self.columns = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
        sizes = {len(v) for v in self.columns.values()}
        if len(sizes) != 1:
            raise UserError(f"table columns differ in length: {sorted(sizes)}")
        self.rows = sizes.pop()
        for name in hidden:
            if name not in self.columns:
                raise UserError(f"hidden column {name!r} is not a column of the table ({sorted(self.columns)})")
        self.hidden = tuple(hidden)

    def row(self, arch: Arch) -> dict[str, Any]:
        i = self.index(arch)
        if not 0 <= i < self.rows:
            raise UserError(f"arch {arch.to_json()} has row {i}, outside the table's {self.rows} rows")
        return {(f"test_{k}" if k in self.hidden and not k.startswith("test_") else k): float(v[i])
                for k, v in self.columns.items()}


class TableEvaluator:
    """Answers an arch with its table row; ``cost_column`` is what the trial is charged (``cost_s``)."""

    instant = True

    def __init__(self, table: Table, cost_column: str | None = "cost_s") -> None:
        if cost_column is not None and cost_column not in table.columns:
            raise UserError(f"cost column {cost_column!r} is not a column of the table ({sorted(table.columns)})")
        self.table = table
        self.cost_column = cost_column

    def __call__(self, arch: Arch, *, monitor: Any = None, seconds: float | None = None) -> EvalResult:
        metrics = self.table.row(arch)
        if self.cost_column is not None:
            metrics["cost_s"] = metrics[self.cost_column]
        return EvalResult("complete", metrics)

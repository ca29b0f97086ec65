"""Pareto-front membership of a set of points under mixed maximise / minimise objectives.

Pareto dominance as used throughout multi-objective NAS (e.g. "Efficient Multi-objective Neural Architecture
Search via Lamarckian Evolution", Elsken et al., 2019; NSGA-II, Deb et al., 2002): a point dominates another
when it is at least as good on every objective and strictly better on one. The non-dominated points form the
front; duplicates of a front point do not dominate each other, so all of them are on the front. The direction
names follow Optuna's ``StudyDirection`` (``"maximize"`` / ``"minimize"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from archlab.errors import UserError

DIRECTIONS = ("maximize", "minimize")

# Rows compared at once: bounds the (rows x points x objectives) boolean temporaries to a few MB.
_BLOCK_ELEMENTS = 2_000_000


def pareto_mask(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """Say, for each point, whether it is on the Pareto front.

    ``points[i][k]`` is the value of objective ``k`` for point ``i``; ``directions[k]`` is ``"maximize"`` or
    ``"minimize"``. A point is on the front iff no other point is at least as good on every objective and
    strictly better on at least one. Infinite values are allowed (they compare as usual); NaN is rejected.
    """
    directions = [str(direction) for direction in directions]
    for direction in directions:
        if direction not in DIRECTIONS:
            raise UserError(f"unknown objective direction {direction!r}: expected 'maximize' or 'minimize'")
    if not directions:
        raise UserError("pareto_mask needs at least one objective direction")
    rows = [list(point) for point in points]
    if not rows:
        return []
    for index, row in enumerate(rows):
        if len(row) != len(directions):
            raise UserError(
                f"point {index} has {len(row)} values but there are {len(directions)} objective directions"
            )
    try:
        values = np.asarray(rows, dtype=float)
    except (TypeError, ValueError) as error:
        raise UserError(f"pareto_mask needs numeric points: {error}") from None
    if np.isnan(values).any():
        index = int(np.flatnonzero(np.isnan(values).any(axis=1))[0])
        raise UserError(f"point {index} has a NaN value: a Pareto front is undefined for NaN")
    # Negating the maximised objectives turns the problem into "smaller is better" everywhere.
    sign = np.array([-1.0 if direction == "maximize" else 1.0 for direction in directions])
    costs = values * sign
    count, width = costs.shape
    dominated = np.zeros(count, dtype=bool)
    block = max(1, _BLOCK_ELEMENTS // max(1, count * width))
    for start in range(0, count, block):
        chunk = costs[start : start + block, None, :]  # (rows, 1, objectives) against (points, objectives)
        no_worse = np.all(costs[None, :, :] <= chunk, axis=2)
        better = np.any(costs[None, :, :] < chunk, axis=2)
        dominated[start : start + block] = np.any(no_worse & better, axis=1)
    return [not flag for flag in dominated.tolist()]

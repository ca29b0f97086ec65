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
    if width == 2:
        return _front_2d(costs)
    dominated = np.zeros(count, dtype=bool)
    block = max(1, _BLOCK_ELEMENTS // max(1, count * width))
    for start in range(0, count, block):
        chunk = costs[start : start + block, None, :]  # (rows, 1, objectives) against (points, objectives)
        no_worse = np.all(costs[None, :, :] <= chunk, axis=2)
        better = np.any(costs[None, :, :] < chunk, axis=2)
        dominated[start : start + block] = np.any(no_worse & better, axis=1)
    return [not flag for flag in dominated.tolist()]


def _front_2d(costs: np.ndarray) -> list[bool]:
    """Two objectives, smaller is better, in O(n log n): sorted by the first, a point is dominated when a point of
    a smaller first value has a second value no larger, or one of the same first value a smaller second."""
    first, second = costs[:, 0], costs[:, 1]
    order = np.lexsort((second, first))
    f, s = first[order], second[order]
    new_group = np.ones(len(f), dtype=bool)
    new_group[1:] = f[1:] != f[:-1]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    group_min = s[starts]  # sorted by (first, second): a group's first row holds its smallest second value
    before = np.concatenate([[np.inf], np.minimum.accumulate(group_min)[:-1]])  # best second of smaller firsts
    dominated_sorted = ((before[group] <= s) & (group > 0)) | (group_min[group] < s)
    dominated = np.empty(len(f), dtype=bool)
    dominated[order] = dominated_sorted
    return [not flag for flag in dominated.tolist()]


def hypervolume(points: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]) -> float:
    """The hypervolume of ``points`` (Zitzler & Thiele, 1998): the measure of the region they dominate and that
    dominates ``reference`` (the worst corner: below every maximised objective, above every minimised one). Points
    that do not dominate the reference add nothing. Two objectives: an exact sweep over the front sorted by the
    first; three or more: Optuna's exact WFG implementation."""
    if len(reference) != len(directions):
        raise UserError(f"the reference point has {len(reference)} values for {len(directions)} objectives")
    mask = pareto_mask(points, directions) if len(points) else []
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    ref = np.asarray(reference, dtype=float) * sign
    costs = np.asarray([p for p, on in zip(points, mask, strict=True) if on], dtype=float).reshape(-1, len(ref))
    costs = costs * sign
    costs = costs[np.all(costs < ref, axis=1)]
    if not len(costs):
        return 0.0
    if len(ref) == 1:
        return float(ref[0] - costs[:, 0].min())
    if len(ref) == 2:  # on a front sorted by the first objective, the second falls: a staircase of rectangles
        costs = np.unique(costs, axis=0)
        costs = costs[np.argsort(costs[:, 0], kind="stable")]
        right = np.append(costs[1:, 0], ref[0])
        return float(np.sum((right - costs[:, 0]) * (ref[1] - costs[:, 1])))
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(costs, ref, assume_pareto=True))

"""The Pareto front by brute force: the oracle the Pareto tests (``tests/search``) and the report tests
(``tests/report``) hold archlab's one implementation, :func:`archlab.search.pareto_mask`, to."""

from __future__ import annotations


def brute_force_front(points, directions):
    sign = [-1 if direction == "maximize" else 1 for direction in directions]
    costs = [[value * s for value, s in zip(point, sign, strict=True)] for point in points]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(
            x < y for x, y in zip(a, b, strict=True)
        )

    return [not any(dominates(other, point) for other in costs) for point in costs]

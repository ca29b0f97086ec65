"""Tests of :func:`archlab.search.pareto_mask`, the one Pareto-front implementation of archlab (the search
runner and the HTML report both use it)."""

from __future__ import annotations

import numpy as np
import pytest
from _pareto_oracle import brute_force_front

from archlab.errors import UserError
from archlab.search import pareto_mask

# ---------------------------------------------------------------------------------------------------------
# pareto_mask


def test_pareto_mask_hand_cases():
    # accuracy up, latency down: (0.9, 2) and (0.8, 1) trade off; (0.7, 3) is dominated by both.
    assert pareto_mask([[0.9, 2.0], [0.8, 1.0], [0.7, 3.0]], ["maximize", "minimize"]) == [True, True, False]
    # Equal on one objective, worse on the other: dominated.
    assert pareto_mask([[0.9, 2.0], [0.9, 1.0]], ["maximize", "minimize"]) == [False, True]
    # Duplicates of a front point are all on the front; a duplicate of a dominated point is not.
    points = [[0.9, 1.0], [0.9, 1.0], [0.5, 5.0], [0.5, 5.0]]
    assert pareto_mask(points, ["maximize", "minimize"]) == [True, True, False, False]
    # One objective: the front is every copy of the best value.
    assert pareto_mask([[1], [3], [3], [2]], ["maximize"]) == [False, True, True, False]
    assert pareto_mask([[1], [3], [1], [2]], ["minimize"]) == [True, False, True, False]
    assert pareto_mask([], ["maximize", "minimize"]) == []
    assert pareto_mask([[5.0, 5.0]], ["minimize", "minimize"]) == [True]
    # Infinities compare as usual.
    assert pareto_mask([[0.9, np.inf], [0.8, 1.0], [0.95, -np.inf]], ["maximize", "minimize"]) == [
        False,
        False,
        True,
    ]
    # Three objectives, none dominating another.
    assert pareto_mask([[1, 2, 3], [3, 2, 1], [2, 2, 2]], ["minimize"] * 3) == [True, True, True]
    assert all(type(flag) is bool for flag in pareto_mask([[1.0], [2.0]], ["minimize"]))


def test_pareto_mask_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    for trial in range(300):
        count = int(rng.integers(0, 30))
        width = int(rng.integers(1, 5))
        directions = [str(d) for d in rng.choice(["maximize", "minimize"], size=width)]
        if trial % 2:  # small integers: many ties and exact duplicates
            points = rng.integers(0, 4, size=(count, width)).tolist()
        else:
            points = rng.normal(size=(count, width)).tolist()
        assert pareto_mask(points, directions) == brute_force_front(points, directions), (points, directions)


def test_pareto_mask_large_input_uses_blocks_and_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    points = rng.integers(0, 20, size=(400, 3)).tolist()  # three objectives: the blocked comparison
    directions = ["maximize", "minimize", "minimize"]
    assert pareto_mask(points, directions) == brute_force_front(points, directions)
    flat = [p[:2] for p in points]  # two: the sweep
    assert pareto_mask(flat, directions[:2]) == brute_force_front(flat, directions[:2])


@pytest.mark.parametrize(
    ("points", "directions", "message"),
    [
        ([[1.0]], ["max"], "unknown objective direction"),
        ([[1.0, 2.0], [1.0]], ["maximize", "minimize"], "point 1 has 1 values"),
        ([[1.0], [float("nan")]], ["maximize"], "NaN"),
        ([[1.0]], [], "at least one"),
        ([["a"]], ["maximize"], "numeric"),
    ],
)
def test_pareto_mask_rejects_bad_input(points, directions, message):
    with pytest.raises(UserError, match=message):
        pareto_mask(points, directions)


def test_the_two_objective_sweep_equals_brute_force_with_ties_and_infinities():
    """Two objectives take an O(n log n) sweep; small integer grids make ties on either value common."""
    rng = np.random.default_rng(1)
    for t in range(600):
        points = rng.integers(0, 5, (int(rng.integers(1, 40)), 2)).astype(float)
        if t % 3 == 0:
            points[rng.integers(0, len(points))] = np.inf
        if t % 5 == 0:
            points[rng.integers(0, len(points)), rng.integers(0, 2)] = -np.inf
        directions = [("maximize", "minimize")[int(k)] for k in rng.integers(0, 2, 2)]
        assert pareto_mask(points.tolist(), directions) == brute_force_front(points.tolist(), directions)


def test_hypervolume_two_objectives_equals_optunas_and_known_values():
    from optuna._hypervolume import compute_hypervolume

    from archlab.search import hypervolume

    # a staircase: (acc 0.9, 3 ms) and (acc 0.8, 1 ms) against (0, 5): 0.8*4 + 0.1*2
    assert hypervolume([[0.9, 3.0], [0.8, 1.0], [0.5, 4.0]], ["maximize", "minimize"], [0.0, 5.0]) \
        == pytest.approx(3.4)
    assert hypervolume([[1.0, 9.0]], ["maximize", "minimize"], [0.0, 5.0]) == 0.0  # beyond the reference
    assert hypervolume([[0.5, 0.5, 0.5]], ["minimize"] * 3, [1.1] * 3) == pytest.approx(0.6 ** 3)  # Optuna's WFG
    rng = np.random.default_rng(0)
    for _ in range(50):
        points = rng.random((int(rng.integers(1, 30)), 2))
        mine = hypervolume(points.tolist(), ["minimize"] * 2, [1.1] * 2)
        assert mine == pytest.approx(compute_hypervolume(points, np.full(2, 1.1)))

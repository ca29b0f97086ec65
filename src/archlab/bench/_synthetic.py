"""A synthetic table the size of NAS-Bench-201 (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible
Neural Architecture Search", ICLR 2020): a cell of 6 edges, each one of 5 operations, so 5^6 = 15,625 archs.

The accuracy landscape is smooth and seeded: each edge's operation adds a term, a few edge pairs interact, and a
cell whose every edge is ``none`` scores chance (10 %), as a disconnected NB201 cell does. Each arch's training
cost is the sum of its operations' costs plus noise, with 3x3 convolutions the dearest, in the range of NB201's
12-epoch CIFAR-10 times (a few hundred seconds). It is no stand-in for the real table's numbers; it exists to
test strategies and to measure the search loop's own overhead.
"""

from __future__ import annotations

import numpy as np

from archlab.bench._table import Table
from archlab.space import Arch, Space, choice

__all__ = ["NB201_OPERATIONS", "synthetic_nb201_table"]

NB201_OPERATIONS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = 6


def _space() -> Space:
    return Space(name="nb201-synthetic", **{f"edge{i}": choice(list(NB201_OPERATIONS)) for i in range(EDGES)})


class _EdgeIndex:
    """An arch's row: the sum of its edges' contributions (a class, so that a table pickles to worker processes)."""

    def __init__(self, terms: list[tuple[str, dict[str, int]]]) -> None:
        self.terms = terms

    def __call__(self, arch: Arch) -> int:
        return sum(term[arch[name]] for name, term in self.terms)


def synthetic_nb201_table(seed: int = 0) -> Table:
    """The synthetic table over the space ``edge0..edge5`` (each a choice of :data:`NB201_OPERATIONS`); columns
    ``val_accuracy`` (the search reward), ``test_accuracy`` (hidden from strategies) and ``cost_s``."""
    rng = np.random.default_rng(seed)
    n_ops = len(NB201_OPERATIONS)
    codes = np.indices((n_ops,) * EDGES).reshape(EDGES, -1).T  # row r: the operation index of each edge
    strength = np.array([0.0, 0.6, 0.8, 1.0, 0.5])  # none < pool < skip < conv1x1 < conv3x3, on average
    per_edge = strength[None, :] + 0.25 * rng.standard_normal((EDGES, n_ops))
    score = per_edge[np.arange(EDGES)[None, :], codes].sum(axis=1)
    for _ in range(4):  # a few interacting edge pairs
        a, b = rng.choice(EDGES, size=2, replace=False)
        score += 0.3 * rng.standard_normal((n_ops, n_ops))[codes[:, a], codes[:, b]]
    score = (score - score.min()) / (score.max() - score.min())
    val = 0.10 + 0.84 * score + 0.01 * rng.standard_normal(len(score))
    val[(codes == 0).all(axis=1)] = 0.10
    test = val + 0.005 * rng.standard_normal(len(val))
    op_cost = np.array([0.0, 2.0, 20.0, 45.0, 8.0])
    cost = 300.0 + op_cost[codes].sum(axis=1) + 5.0 * rng.random(len(val))
    weights = [int(w) for w in n_ops ** np.arange(EDGES)[::-1]]
    # one dict per edge: operation -> its contribution to the row index
    terms = [(f"edge{i}", {op: j * weights[i] for j, op in enumerate(NB201_OPERATIONS)}) for i in range(EDGES)]
    return Table(_space(), _EdgeIndex(terms), {"val_accuracy": np.clip(val, 0, 1), "test_accuracy": np.clip(test, 0, 1),
                                   "cost_s": cost}, hidden=("test_accuracy",))

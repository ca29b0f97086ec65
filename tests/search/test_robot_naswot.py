"""RoBoT (BO over proxy weights, then greedy) and NASWOT search on a synthetic NB201-sized table with synthetic
proxies: one tracks the accuracy, one is noise, one is anti-correlated."""

from __future__ import annotations

import random

import numpy as np
import pytest

from archlab.bench import TableEvaluator, synthetic_nb201_table
from archlab.errors import UserError
from archlab.search import NaswotSearch, RoBoT, TrialRecord, create_strategy
from archlab.search.robot import normalised_proxy_matrix
from archlab.study import Budget, Ledger, search


@pytest.fixture(scope="module")
def table():
    return synthetic_nb201_table(seed=3)


def _pool(table, n=400, seed=0):
    """``n`` archs of the table with three proxies each: accuracy + noise, noise, minus accuracy."""
    rng = random.Random(seed)
    # distinct archs in the order drawn (a set's order follows the hashes, which vary between processes)
    archs = list(dict.fromkeys(table.space.sample(rng) for _ in range(3 * n)))[:n]
    gen = np.random.default_rng(seed)
    scores = {}
    for a in archs:
        acc = table.row(a)["test_accuracy"]
        scores[a] = (acc + 0.02 * gen.standard_normal(), gen.standard_normal(), -acc * 1e3)
    return scores


def _run(table, strategy, trials):
    ledger = Ledger.memory(("accuracy",), space=table.space)
    result = search(table.space, TableEvaluator(table), strategy, ledger, Budget(trials=trials))
    return result, ledger


def test_normalised_matrix_min_max_nan_and_constant():
    m = normalised_proxy_matrix([[1.0, 5.0, float("nan")], [3.0, 5.0, 2.0], [2.0, 5.0, float("-inf")]])
    np.testing.assert_allclose(m[:, 0], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(m[:, 1], [5.0, 5.0, 5.0])  # a constant column is left as it is (the reference)
    np.testing.assert_allclose(m[:, 2], [0.0, 2.0, 0.0])  # non-finite adds nothing; one finite value: constant


def test_robot_learns_the_useful_proxy_and_finds_the_pool_optimum(table):
    scores = _pool(table)
    best_val = max(table.row(a)["val_accuracy"] for a in scores)
    found, random_found = [], []
    for seed in range(4):
        strat = RoBoT(table.space, seed=seed, scores=scores, queries=20)
        result, _ = _run(table, strat, 20)
        assert len(result.records) == 20 and len({r.arch for r in result.records}) == 20
        assert all(r.arch in scores for r in result.records)
        found.append(result.best.metrics["val_accuracy"])
        w = strat.best_weights()
        # the combination ranks by accuracy: the useful proxy weighs more than the anti-correlated one (either may
        # carry it: a negative weight on the anti-correlated proxy is a positive one on the accuracy)
        assert w[0] > w[2] and w[0] - w[2] > 0.5
        rnd, _ = _run(table, create_strategy("random", table.space, seed=seed), 20)
        random_found.append(rnd.best.metrics["val_accuracy"])
    ranks = sorted((table.row(a)["val_accuracy"] for a in scores), reverse=True)
    # every run ends among the pool's five best (random search over the same 20 queries does not)
    assert all(f >= ranks[4] for f in found), (found, ranks[:5])
    assert np.median(found) > np.median(random_found)
    assert max(found) == pytest.approx(best_val)


def test_robot_spends_its_bo_iterations_then_exploits(table):
    scores = _pool(table, n=150)
    strat = RoBoT(table.space, seed=1, scores=scores, queries=12)
    result, _ = _run(table, strat, 12)
    assert strat._iterations == 12 and not strat.exploring
    with_w = [r for r in result.records if "w" in (r.memo or {}).get("robot", {})]
    repeats = sum(len(r.memo["robot"]["repeats"]) for r in result.records)
    assert len(with_w) + repeats == 12 and repeats > 0  # each iteration either queried a new arch or reused a result
    w = strat.best_weights()
    matrix = normalised_proxy_matrix(list(scores.values()))
    order = [list(scores)[i] for i in np.argsort(-(matrix @ w), kind="stable")]
    exploited = [r.arch for r in result.records if "w" not in r.memo["robot"]]
    assert exploited
    # the exploitation queries are the best-ranked archs under the best weights, not yet queried, in order
    explored = {r.arch for r in with_w}
    assert exploited == [a for a in order if a not in explored][:len(exploited)]


def test_robot_rebuilt_from_records_proposes_what_the_live_one_would(table):
    scores = _pool(table, n=200)
    live = RoBoT(table.space, seed=5, scores=scores, queries=15)
    result, _ = _run(table, live, 8)
    rebuilt = RoBoT(table.space, seed=5, scores=scores, queries=15)
    rebuilt.rebuild(result.records)
    assert rebuilt.state_dict() == live.state_dict()
    assert rebuilt.ask() == live.ask()


def test_robot_with_a_scorer_draws_and_scores_its_pool(table):
    calls = []

    def scorer(arch):
        calls.append(arch)
        acc = table.row(arch)["test_accuracy"]
        return (acc, -acc)

    strat = RoBoT(table.space, seed=0, scorer=scorer, pool_size=60, queries=8)
    result, _ = _run(table, strat, 8)
    assert len(calls) == 60 == len(set(calls)) and strat.describe()["pool"] == 60
    assert {r.arch for r in result.records} <= set(calls)
    assert result.best.metrics["val_accuracy"] >= sorted(table.row(a)["val_accuracy"] for a in calls)[-5]
    # a rebuilt strategy draws the same pool (its size comes back from the memo)
    again = RoBoT(table.space, seed=0, scorer=scorer, pool_size=60, queries=8)
    again.rebuild(result.records[:4])
    assert again._pool is None and again._pool_limit == 60


def test_robot_and_naswot_bad_arguments(table):
    with pytest.raises(UserError, match="one of them"):
        RoBoT(table.space)
    with pytest.raises(UserError, match="queries"):
        RoBoT(table.space, scores=_pool(table, 10), queries=0)
    with pytest.raises(UserError, match="one of them"):
        NaswotSearch(table.space)
    with pytest.raises(UserError, match="100 candidates"):
        NaswotSearch(table.space, scores={table.space.sample(random.Random(0)): 1.0})
    # the budget estimate becomes RoBoT's query budget
    assert create_strategy("robot", table.space, scores=_pool(table, 10), expected_trials=7).queries == 7


def test_naswot_trains_the_best_scored_of_n_candidates(table):
    scores = {a: s[0] for a, s in _pool(table, n=300, seed=2).items()}
    for n in (10, 100, 300):
        picks = []
        for seed in range(3):
            strat = NaswotSearch(table.space, seed=seed, n_candidates=n, scores=scores)
            ranking = strat.ranking()
            assert len(ranking) == n and set(ranking) <= set(scores)
            assert [scores[a] for a in ranking] == sorted((scores[a] for a in ranking), reverse=True)
            result, _ = _run(table, strat, 3)
            assert [r.arch for r in result.records] == ranking[:3]
            picks.append(ranking[0])
        if n == 300:  # every candidate: the best-scored arch of the table, whatever the seed
            assert picks == [max(scores, key=scores.get)] * 3


def test_naswot_with_a_time_limited_scorer_ranks_what_it_scored(table):
    class Scorer:
        names = ("nwot",)

        def __init__(self):
            self.n = 0

        @property
        def exhausted(self):
            return self.n >= 5

        def __call__(self, arch):
            self.n += 1
            return (table.row(arch)["test_accuracy"],)

    strat = NaswotSearch(table.space, seed=0, n_candidates=50, scorer=Scorer())
    assert len(strat.ranking()) == 5 and strat.describe()["scored"] == 5
    record = TrialRecord(0, strat.ranking()[0], "complete", {"val_accuracy": 0.5})
    strat.tell(record)
    assert strat.ask() == strat.ranking()[1]

"""Local search and the surrogate-guided local search: neighbourhoods, the walk, the exact Bayesian posterior."""

from __future__ import annotations

import random

import numpy as np
import pytest

from archlab.errors import UserError
from archlab.search import TrialRecord, create_strategy
from archlab.space import Arch, Space, choice, create_space, integer, real, repeat


def nb201() -> Space:
    return create_space("nb201", input_shape=(3, 32, 32), num_classes=10)


def flat() -> Space:
    return Space(a=integer(0, 7), b=choice(["x", "y", "z", "w"]), c=integer(0, 9))


def unimodal(arch: Arch) -> float:
    return 1.0 - (abs(arch["a"] - 5) + abs(arch["c"] - 2) + 3 * (arch["b"] != "z")) / 20


def test_neighbors_are_every_arch_one_decision_away():
    space = nb201()
    arch = space.from_index(123)
    near = space.neighbors(arch)
    params = space.to_params(arch)
    assert len(near) == len(set(near)) == 6 * 4
    for other in near:
        diff = [k for k, v in space.to_params(other).items() if v != params[k]]
        assert len(diff) == 1
    brute = [a for a in space.enumerate() if sum(x != y for x, y in zip(space.to_params(a).values(),
                                                                         params.values(), strict=True)) == 1]
    assert set(near) == set(brute)


def test_neighbors_leave_out_changes_that_need_new_decisions():
    space = Space(depth=repeat(choice(["p", "q"]), count=integer(1, 3)), width=choice([8, 16]))
    arch = space.from_params({"depth.count": 2, "depth.0": "p", "depth.1": "q", "width": 8})
    near = space.neighbors(arch)
    # each layer's other op and the other width; a longer or shorter repeat needs or drops decisions: left out
    assert sorted(a.to_json() for a in near) == sorted(space.from_params(p).to_json() for p in (
        {"depth.count": 2, "depth.0": "q", "depth.1": "q", "width": 8},
        {"depth.count": 2, "depth.0": "p", "depth.1": "p", "width": 8},
        {"depth.count": 2, "depth.0": "p", "depth.1": "q", "width": 16}))
    with_real = Space(lr=real(0.1, 1.0), width=choice([8, 16]))
    assert [a["width"] for a in with_real.neighbors(with_real.sample(0))] in ([8], [16])


def drive(strategy, score, n):
    archs = []
    for i in range(n):
        arch = strategy.ask()
        strategy.tell(TrialRecord(i, arch, "complete", {"val_accuracy": score(arch)}))
        archs.append(arch)
    return archs


def test_local_search_walks_the_best_neighbourhood_and_reaches_a_unimodal_optimum():
    space = flat()
    s = create_strategy("local_search", space, seed=3, num_init=5)
    archs = drive(s, unimodal, 5)
    best = max(archs, key=unimodal)
    nxt = s.ask()
    assert s.current.arch == best and nxt in space.neighbors(best)
    s.pending.discard(nxt)
    archs = drive(s, unimodal, 120)
    assert max(unimodal(a) for a in archs) == 1.0  # hill climbing on one hill reaches its top
    assert len(set(archs)) == len(archs)


def test_local_search_restarts_at_a_local_optimum():
    space = Space(a=choice([0, 1, 2]), b=choice([0, 1, 2]))  # 9 archs; two peaks
    peaks = {(0, 0): 0.9, (2, 2): 1.0}

    def score(a: Arch) -> float:
        return peaks.get((a["a"], a["b"]), 0.1)

    for seed in range(5):
        s = create_strategy("local_search", space, seed=seed, num_init=1)
        restarted = False
        for i in range(9):
            arch = s.ask()
            s.tell(TrialRecord(i, arch, "complete", {"val_accuracy": score(arch)}))
            if s.state_dict()["restart"]:  # a neighbourhood without a better arch: a local optimum
                restarted = True
                assert s.current is None and not s.queue
        assert restarted and len(set(r.arch for r in s.history)) == 9


def dense_posterior_mean(strategy, archs, rewards, queries):
    """Bayesian linear regression on the explicit one-hot second-order features (the primal form)."""
    enc = strategy.encoding
    feats = enc.features(np.stack([enc.codes(strategy.space, a) for a in archs]))
    x = np.zeros((len(archs), enc.n_features))
    np.put_along_axis(x, feats, 1.0, axis=1)
    y = np.asarray(rewards)
    y = (y - y.mean()) / (y.std() + 1e-9)
    precision = x.T @ x / strategy.noise + np.diag(1 / strategy.prior)
    w = np.linalg.solve(precision, x.T @ y / strategy.noise)
    q = np.zeros((len(queries), enc.n_features))
    np.put_along_axis(q, enc.features(np.stack([enc.codes(strategy.space, a) for a in queries])), 1.0, axis=1)
    return q @ w


@pytest.mark.parametrize("limit", [50_000, 0])  # candidates: every arch, or a pool (a big space)
def test_surrogate_posterior_equals_the_dense_bayesian_regression(limit):
    space = Space(a=integer(0, 4), b=choice(["x", "y", "z"]),
                  layers=repeat(choice(["p", "q"]), count=integer(1, 3)))
    s = create_strategy("surrogate_ls", space, seed=0, init=3, explore=8, enumerate_limit=limit)
    rng = random.Random(0)
    archs = list({space.sample(rng) for _ in range(40)})[:25]
    rewards = [rng.random() for _ in archs]
    for i, (a, r) in enumerate(zip(archs, rewards, strict=True)):
        s.tell(TrialRecord(i, a, "complete", {"val_accuracy": r}))
    queries = [space.sample(rng) for _ in range(10)]
    np.testing.assert_allclose(s.predict(queries), dense_posterior_mean(s, archs, rewards, queries), atol=1e-8)
    proposal = s.ask()  # past explore: a neighbour of the best told arch
    assert proposal not in archs
    assert proposal in space.neighbors(max(zip(rewards, archs, strict=True), key=lambda t: t[0])[1])


def test_surrogate_ls_beats_random_search_on_a_landscape():
    space = flat()  # 320 archs
    found = {name: [] for name in ("random", "surrogate_ls")}
    for seed in range(8):
        for name in found:
            kw = {"init": 5, "explore": 15} if name == "surrogate_ls" else {}
            archs = drive(create_strategy(name, space, seed=seed, **kw), unimodal, 25)
            found[name].append(max(unimodal(a) for a in archs))
    assert np.mean(found["surrogate_ls"]) > np.mean(found["random"])
    assert np.mean(found["surrogate_ls"]) == 1.0


def test_an_infeasible_trial_is_told_as_the_worst_reward_and_a_failed_one_not_at_all():
    space = flat()
    s = create_strategy("surrogate_ls", space, seed=0)
    archs = [space.sample(i) for i in range(4)]
    s.tell(TrialRecord(0, archs[0], "failed", {}))
    s.tell(TrialRecord(1, archs[1], "infeasible", {}))  # nothing seen yet: teaches nothing
    s.tell(TrialRecord(2, archs[2], "complete", {"val_accuracy": 0.7}))
    s.tell(TrialRecord(3, archs[3], "infeasible", {}))
    assert s.state_dict()["rewards"] == [0.7, 0.7]


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="real range"):
        create_strategy("surrogate_ls", Space(lr=real(0.1, 1.0)))
    with pytest.raises(UserError, match="init <= explore"):
        create_strategy("surrogate_ls", flat(), init=20, explore=10)
    with pytest.raises(UserError, match="num_init"):
        create_strategy("local_search", flat(), num_init=0)

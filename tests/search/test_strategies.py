"""Strategies: exact rebuild from the ledger, no duplicates, and search that beats random on a landscape."""

from __future__ import annotations

import random
import statistics

import pytest

from archlab.errors import UserError
from archlab.search import (
    SearchExhausted,
    TrialRecord,
    create_strategy,
    dominates,
    list_strategies,
    objective_values,
    pareto_front,
)
from archlab.space import Arch, Space, choice, integer, repeat
from archlab.study import EvalResult, Ledger

TARGET = {"a": 3, "b": "z", "c": 5, "layers": ["q", "r", "q"]}


def landscape_space() -> Space:
    return Space(a=integer(0, 7), b=choice(["x", "y", "z", "w"]), c=integer(0, 9),
                 layers=repeat(choice(["p", "q", "r"]), count=integer(1, 4)))


def score(arch: Arch) -> float:
    """A smooth synthetic objective with one optimum (TARGET)."""
    s = -abs(arch["a"] - TARGET["a"]) - abs(arch["c"] - TARGET["c"]) - 3 * (arch["b"] != TARGET["b"])
    layers = arch["layers"]
    s -= 2 * abs(len(layers) - len(TARGET["layers"]))
    s -= sum(2 for x, y in zip(layers, TARGET["layers"], strict=False) if x != y)
    return (s + 40) / 40


def fake_metrics(arch: Arch) -> dict:
    return {"val_accuracy": score(arch), "params": 100 * (arch["a"] + 1) + 10 * len(arch["layers"]),
            "flops": 1000 * arch["c"], "latency_ms": 0.1 * (arch["c"] + 1)}


def run_with_ledger(strategy, ledger: Ledger, space: Space, n: int) -> list[Arch]:
    archs = []
    for _ in range(n):
        arch = strategy.ask()
        record = ledger.finish(ledger.start(arch), EvalResult("complete", fake_metrics(arch)),
                               memo=strategy.memo(arch))
        strategy.tell(record)
        archs.append(arch)
    return archs


def make(name: str, space: Space, objectives: list[str]):
    kw = {"population_size": 6} if name == "rea" else {"init": 4, "explore": 10} if name == "surrogate_ls" else {}
    return create_strategy(name, space, seed=7, objectives=objectives, **kw)


@pytest.mark.parametrize("name", ["random", "rea", "tpe", "nsga2", "reinforce", "local_search", "surrogate_ls"])
def test_a_strategy_rebuilt_from_the_ledger_continues_exactly(name, tmp_path):
    """Interrupt after 14 trials, rebuild a fresh strategy from the ledger: the next proposals are the ones an
    uninterrupted run makes."""
    space = landscape_space()
    objectives = ["accuracy", "params"] if name == "nsga2" else ["accuracy"]
    uninterrupted = run_with_ledger(make(name, space, objectives),
                                    Ledger(f"sqlite:///{tmp_path}/a.db", objectives, space=space), space, 18)

    first = run_with_ledger(make(name, space, objectives),
                            Ledger(f"sqlite:///{tmp_path}/b.db", objectives, space=space), space, 14)
    reopened = Ledger(f"sqlite:///{tmp_path}/b.db", objectives, create=False, space=space)
    clone = make(name, space, objectives)
    clone.rebuild(reopened.records())
    assert [r.arch for r in clone.history] == first
    rest = run_with_ledger(clone, reopened, space, 4)
    assert first + rest == uninterrupted
    assert len(set(uninterrupted)) == len(uninterrupted)


@pytest.mark.parametrize("name", ["random", "rea", "tpe", "local_search", "surrogate_ls"])
def test_no_arch_is_proposed_twice_until_the_space_is_exhausted(name, tmp_path):
    space = Space(a=choice([1, 2, 3]), b=choice(["x", "y"]), c=integer(0, 1))  # 12 archs
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db", ["accuracy"], space=space)
    s = create_strategy(name, space, seed=0, population_size=4) if name == "rea" else create_strategy(name, space)
    seen = []
    for _ in range(12):
        arch = s.ask()
        assert arch not in seen
        m = {"val_accuracy": arch["a"] / 3, "params": 1, "flops": 1, "latency_ms": 1.0}
        s.tell(ledger.finish(ledger.start(arch), EvalResult("complete", m), memo=s.memo(arch)))
        seen.append(arch)
    with pytest.raises(SearchExhausted):
        s.ask()
    assert set(seen) == set(space.enumerate())
    assert len({r.arch for r in ledger.records()}) == 12  # the ledger's evaluations are distinct too


def best_after(name: str, seed: int, n: int) -> float:
    space = landscape_space()
    kw = {"population_size": 8, "sample_size": 3} if name == "rea" else {}
    s = create_strategy(name, space, seed=seed, **kw)
    best = -1.0
    for i in range(n):
        arch = s.ask()
        m = fake_metrics(arch)
        s.tell(TrialRecord(i, arch, "complete", m))
        best = max(best, m["val_accuracy"])
    return best


def test_evolution_finds_better_archs_than_random_search():
    rea = [best_after("rea", seed, 80) for seed in range(12)]
    rnd = [best_after("random", seed, 80) for seed in range(12)]
    # the landscape scores in steps of 0.025: evolution ends more than two steps closer to the optimum on average,
    # and its worst seed is at least as good as random search's best-but-one
    assert statistics.mean(rea) > statistics.mean(rnd) + 0.05
    assert min(rea) >= sorted(rnd)[-2]


def test_pareto_front_matches_brute_force():
    import random

    rng = random.Random(0)
    for trial in range(30):
        recs = [TrialRecord(i, Arch({"i": i}), "complete",
                            {"val_accuracy": rng.choice([0.5, 0.6, 0.7, 0.8]), "params": rng.randrange(1, 6),
                             "flops": rng.randrange(1, 4), "latency_ms": 1.0}) for i in range(25)]
        recs.append(TrialRecord(99, Arch({"i": 99}), "failed", {}))
        objs = ["accuracy", "params", "flops"][: 1 + trial % 3]
        front = {r.number for r in pareto_front(recs, objs)}
        done = [r for r in recs if r.ok]
        brute = {r.number for r in done
                 if not any(dominates(objective_values(o, objs), objective_values(r, objs)) for o in done)}
        assert front == brute
        assert 99 not in front


def test_unknown_strategy_and_objective_are_user_errors():
    with pytest.raises(UserError, match="unknown strategy 'bogus'"):
        create_strategy("bogus", landscape_space())
    with pytest.raises(UserError, match="unknown objective"):
        create_strategy("random", landscape_space(), objectives=["speed"])
    assert {"random", "rea", "tpe", "nsga2"} <= set(list_strategies())


def noisy_proxy(arch: Arch) -> tuple[float, float]:
    """Two 'proxies' that each see part of the objective (as real zero-cost proxies do)."""
    return (score(arch) - 0.01 * arch["c"], -abs(arch["a"] - TARGET["a"]))


def test_rea_proxy_warm_start_picks_the_best_ranked_of_the_candidates():
    space = landscape_space()
    s = create_strategy("rea", space, seed=3, population_size=5, scorer=noisy_proxy, warmup_candidates=8)
    plain = create_strategy("rea", space, seed=3, population_size=5)
    for i in range(5):
        arch = s.ask()
        # replay the candidates this step drew: the same per-step generator, the same unseen filter
        rng = random.Random(f"rea:3:{i}")
        candidates = []
        while len(candidates) < 8:
            a = space.sample(rng)
            if a not in s.seen and a not in candidates:
                candidates.append(a)
        columns = list(zip(*(noisy_proxy(a) for a in candidates), strict=True))
        ranks = [sum(sum(1.0 if v > w else 0.5 if v == w else 0.0 for w in col) for col, v in
                     zip(columns, (col[j] for col in columns), strict=True)) for j in range(8)]
        assert arch == candidates[max(range(8), key=lambda j: ranks[j])]
        s.tell(TrialRecord(i, arch, "complete", fake_metrics(arch)))
        plain_arch = plain.ask()
        plain.tell(TrialRecord(i, plain_arch, "complete", fake_metrics(plain_arch)))
    # warmed-up initial members score better than plain random ones
    assert statistics.mean(score(r.arch) for r in s.history) > statistics.mean(score(r.arch) for r in plain.history)


def test_rea_proxy_warm_start_rebuilt_from_the_ledger_continues_exactly(tmp_path):
    space = landscape_space()

    def fresh():
        return create_strategy("rea", space, seed=7, population_size=6, scorer=noisy_proxy)

    uninterrupted = run_with_ledger(fresh(), Ledger(f"sqlite:///{tmp_path}/a.db", ["accuracy"], create=True),
                                    space, 10)
    first = run_with_ledger(fresh(), Ledger(f"sqlite:///{tmp_path}/b.db", ["accuracy"], create=True), space, 3)
    reopened = Ledger(f"sqlite:///{tmp_path}/b.db", ["accuracy"], create=False)
    clone = fresh()
    clone.rebuild(reopened.records())
    assert first + run_with_ledger(clone, reopened, space, 7) == uninterrupted


def test_rea_proxy_warm_start_beats_random_initialisation_on_average():
    def best_initial(scorer, seed):
        s = create_strategy("rea", landscape_space(), seed=seed, population_size=6, scorer=scorer)
        best = -1.0
        for i in range(6):
            arch = s.ask()
            s.tell(TrialRecord(i, arch, "complete", fake_metrics(arch)))
            best = max(best, score(arch))
        return best

    warm = [best_initial(noisy_proxy, seed) for seed in range(10)]
    cold = [best_initial(None, seed) for seed in range(10)]
    assert statistics.mean(warm) > statistics.mean(cold) + 0.05


def test_reinforce_learns_a_policy_that_proposes_better_archs():
    """On the synthetic NB201-sized table the policy's proposals improve: the last 50 of 200 score better than the
    first 50, on every seed, and the probability of the table's best operation on some edge has grown."""
    from archlab.bench import TableEvaluator, synthetic_nb201_table

    table = synthetic_nb201_table(seed=2)
    evaluator = TableEvaluator(table)
    for seed in range(3):
        s = create_strategy("reinforce", table.space, seed=seed, dedupe=False, learning_rate=0.05)
        start = s.probabilities()
        scores = []
        for i in range(200):
            arch = s.ask()
            result = evaluator(arch)
            s.tell(TrialRecord(i, arch, "complete", result.metrics))
            scores.append(result.metrics["val_accuracy"])
        assert statistics.mean(scores[-50:]) > statistics.mean(scores[:50]) + 0.05
        end = s.probabilities()
        assert max(max(end[p]) for p in end) > max(max(start[p]) for p in start) + 0.2


def test_reinforce_needs_categorical_decisions():
    from archlab.space import real

    with pytest.raises(UserError, match="real range"):
        create_strategy("reinforce", Space(lr=real(1e-4, 1e-1, log=True), depth=integer(1, 3)))
    s = create_strategy("reinforce", Space(depth=integer(1, 3), layers=repeat(choice(["a", "b"]), count=integer(1, 2))))
    arch = s.ask()
    assert arch in s.space and s.log_prob(arch).item() < 0


@pytest.mark.parametrize("name", ["random", "rea", "reinforce"])
def test_without_deduplication_a_rebuilt_strategy_still_continues_exactly(name):
    """The published protocols turn de-duplication off; what is pending must still empty as records are told, or
    a strategy rebuilt on resume would draw from another step seed than the live one."""
    space = landscape_space()
    kw = {"population_size": 6} if name == "rea" else {}
    live = create_strategy(name, space, seed=3, dedupe=False, **kw)
    for i in range(12):
        arch = live.ask()
        live.tell(TrialRecord(i, arch, "complete", fake_metrics(arch)))
    assert not live.pending
    clone = create_strategy(name, space, seed=3, dedupe=False, **kw)
    clone.rebuild(live.history)
    assert [clone.ask() for _ in range(1)] == [live.ask()]

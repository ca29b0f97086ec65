"""The open search core: any space, evaluator, budget and ledger through one loop."""

from __future__ import annotations

import json

import pytest

from archlab.bench import TableEvaluator, synthetic_nb201_table
from archlab.errors import UserError
from archlab.search import Constraint, Objective, create_strategy
from archlab.space import Arch, Space, choice, integer
from archlab.study import Budget, EvalResult, Ledger, SearchConfig, run_search, search

ARCHS = dict(width=choice([8, 16, 32]), depth=integer(1, 4), act=choice(["relu", "gelu"]))


class CountingEvaluator:
    """A custom evaluator: a made-up score of the arch, charged a cost of ``10 * depth`` seconds."""

    instant = True

    def __init__(self) -> None:
        self.calls: list[Arch] = []

    @staticmethod
    def score(arch) -> float:
        return arch["width"] / 32 - 0.1 * abs(arch["depth"] - 3) + (0.05 if arch["act"] == "gelu" else 0.0)

    def __call__(self, arch, *, monitor=None, seconds=None):
        self.calls.append(arch)
        return EvalResult("complete", {"score": self.score(arch), "cost_s": 10.0 * arch["depth"],
                                       "size": arch["width"]})


def test_a_custom_space_and_evaluator_run_through_run_search(tmp_path):
    space = Space(name="toy", **ARCHS)
    evaluator = CountingEvaluator()
    summary = run_search(space=space, evaluator=evaluator, budget=Budget(trials=12), strategy="random",
                         objectives=[Objective("score", "score", "maximize")], out=tmp_path / "run", report=False)
    assert len(evaluator.calls) == 12 and len(set(evaluator.calls)) == 12  # its space, de-duplicated
    assert all(a in space for a in evaluator.calls)
    assert summary["trials"]["completed"] == 12
    best = max(evaluator.calls, key=CountingEvaluator.score)
    assert Arch(summary["best"]["arch"]) == best
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["space"]["fingerprint"] == space.fingerprint()
    assert run["objectives"] == [{"name": "score", "metric": "score", "direction": "maximize", "label": None}]


def test_constraints_are_data_on_any_metric():
    space = Space(name="toy", **ARCHS)
    ledger = Ledger.memory([Objective("score", "score")], space=space)
    strategy = create_strategy("random", space, objectives=[Objective("score", "score")])
    result = search(space, CountingEvaluator(), strategy, ledger, Budget(trials=24),
                    constraints=[Constraint("size", 16)])
    states = {r.arch: r.state for r in result.records}
    assert {s for a, s in states.items() if a["width"] == 32} == {"infeasible"}
    assert {s for a, s in states.items() if a["width"] <= 16} == {"complete"}
    assert result.best.arch["width"] <= 16
    infeasible = next(r for r in result.records if r.state == "infeasible")
    assert infeasible.reason == "constraint: size 32 > 16" and infeasible.metrics["constraints"] == [1.0]


@pytest.mark.parametrize("limit, expected", [(25.0, 3), (30.0, 3), (30.5, 4), (1.0, 1)])
def test_a_cost_clock_budget_stops_at_the_right_trial(limit, expected):
    """Every trial costs 10 s: a trial starts while less than the budget is spent, and the one that crosses it
    counts in full."""
    space = Space(name="flat", x=integer(0, 99))

    def ten_seconds(arch, *, monitor=None, seconds=None):
        return EvalResult("complete", {"val_accuracy": arch["x"] / 99, "cost_s": 10.0})

    ledger = Ledger.memory(space=space)
    result = search(space, ten_seconds, create_strategy("random", space), ledger, Budget(cost_s=limit))
    assert len(result.records) == expected and result.cost_s == pytest.approx(10.0 * expected)


def test_a_build_function_that_raises_anything_fails_that_trial_and_the_search_goes_on(tmp_path):
    class Odd(Exception):
        pass

    def build(arch):
        if arch["width"] == 16:
            raise Odd("this arch cannot be built")
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(64, arch["width"]), nn.ReLU(), nn.Linear(arch["width"], 10))

    space = Space(build, name="mlp", width=choice([8, 16, 32]), extra=integer(0, 1))
    summary = run_search(SearchConfig(data="digits", epochs=1, budget_s=None, n_trials=6, final_epochs=0,
                                      export_onnx=False, strategy="random", warmstart="none",
                                      stopping="none"),
                         tmp_path / "run", space=space, report=False)
    assert summary["trials"]["failed"] == 2 and summary["trials"]["completed"] == 4
    from archlab.study import load_run

    ledger = Ledger(load_run(tmp_path / "run")["storage"], create=False)
    failed = [r for r in ledger.records() if r.state == "failed"]
    assert {r.arch["width"] for r in failed} == {16}
    assert all(r.reason.startswith("Odd: this arch cannot be built") for r in failed)


@pytest.mark.parametrize("name", ["random", "rea", "reinforce", "tpe", "nsga2"])
def test_a_strategy_told_live_and_one_rebuilt_from_the_ledger_hold_identical_state(name, tmp_path):
    table = synthetic_nb201_table(seed=1)
    space = table.space
    objectives = ["accuracy"] if name != "nsga2" else [Objective("accuracy", "val_accuracy"),
                                                        Objective("cost", "cost_s", "minimize")]
    kw = {"population_size": 8, "sample_size": 3} if name == "rea" else {}
    live = create_strategy(name, space, seed=3, objectives=objectives, **kw)
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db", objectives, space=space)
    search(space, TableEvaluator(table), live, ledger, Budget(trials=25))
    rebuilt = create_strategy(name, space, seed=3, objectives=objectives, **kw)
    rebuilt.rebuild(Ledger(f"sqlite:///{tmp_path}/l.db", objectives, create=False, space=space).records())
    assert rebuilt.state_dict() == live.state_dict()
    assert rebuilt.history == live.history  # the records themselves, metrics and memos included
    if name == "rea":
        assert rebuilt.population == live.population
    assert [rebuilt.ask() for _ in range(3)] == [live.ask() for _ in range(3)]


def test_dedupe_is_a_policy_and_repeats_are_charged_when_it_is_off():
    space = Space(name="tiny", a=choice([0, 1]), b=choice([0, 1]))  # 4 archs

    def lookup(arch, *, monitor=None, seconds=None):
        return EvalResult("complete", {"val_accuracy": 0.1 * (arch["a"] + 2 * arch["b"]), "cost_s": 1.0})

    on = search(space, lookup, create_strategy("random", space), Ledger.memory(space=space), Budget(trials=10))
    assert len(on.records) == 4 and on.exhausted is False  # the space ran out
    off = search(space, lookup, create_strategy("random", space, dedupe=False), Ledger.memory(space=space),
                 Budget(trials=10))
    assert len(off.records) == 10 and len({r.arch for r in off.records}) <= 4 and off.cost_s == 10.0


def test_an_in_memory_ledger_is_written_out_and_read_back(tmp_path):
    table = synthetic_nb201_table(seed=0)
    ledger = Ledger.memory(space=table.space)
    result = search(table.space, TableEvaluator(table), create_strategy("rea", table.space), ledger,
                    Budget(trials=20))
    copy = ledger.save_to(f"sqlite:///{tmp_path}/out.db")
    back = Ledger(f"sqlite:///{tmp_path}/out.db", create=False)
    assert back.records() == result.records == ledger.records()
    assert all("test_accuracy" not in r.metrics for r in back.records())  # hidden from strategies
    assert copy.trials()[0]["test_accuracy"] > 0  # but kept in the ledger


def test_bad_objectives_storages_and_budgets_are_user_errors():
    with pytest.raises(UserError, match="unknown objective 'speed'"):
        Ledger.memory(["speed"])
    with pytest.raises(UserError, match="direction"):
        Objective("x", "x", "up")
    with pytest.raises(UserError, match="budget needs"):
        Budget()
    with pytest.raises(UserError, match="positive"):
        Budget(trials=0)
    space = Space(name="toy", **ARCHS)

    def no_score(arch, *, monitor=None, seconds=None):
        return EvalResult("complete", {"other": 1.0})

    with pytest.raises(UserError, match="no 'score' metric"):
        search(space, no_score, create_strategy("random", space, objectives=[Objective("score", "score")]),
               Ledger.memory([Objective("score", "score")], space=space), Budget(trials=3))

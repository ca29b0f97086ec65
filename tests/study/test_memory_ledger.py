"""The in-memory ledger keeps plain payloads and builds its Optuna study only when asked: the study it builds is
the one an Optuna-backed ledger writes for the same trials."""

from __future__ import annotations

import enum
import json
import math

import numpy as np
import optuna
import pytest

import archlab.study._ledger as ledger_module
from archlab.bench import TableEvaluator, synthetic_nb201_table
from archlab.errors import StorageError
from archlab.search import Objective, create_strategy
from archlab.space import Space, choice, integer
from archlab.study import Budget, EvalResult, Ledger, search

SPACE = Space(name="toy", width=choice([8, 16, 32]), depth=integer(1, 4), act=choice(["relu", "gelu"]))
ONE = [Objective("accuracy", "val_accuracy")]
TWO = [Objective("accuracy", "val_accuracy"), Objective("cost", "cost_s", "minimize")]
ARCHS = list(SPACE.enumerate())


def arch(i: int):
    return ARCHS[i]


def write(ledger: Ledger) -> dict:
    """One of every kind of trial, in an order that interleaves running and instant trials."""
    ledger.save_config({"strategy": "rea", "seeds": (1, 2), "rate": np.float64(0.5)})
    ledger.pin_space({"name": "toy", "fingerprint": "abc"})
    ledger.add(arch(0), EvalResult("complete", {"val_accuracy": np.float64(0.9), "cost_s": 10,
                                                "test_accuracy": 0.8}),
               extra={"search_elapsed_s": 1.5}, memo={"seen": (1, 2)})
    running = ledger.start(arch(1))
    ledger.add(arch(2), EvalResult("failed", reason="RuntimeError: boom"))
    ledger.finish(running, EvalResult("complete", {"val_accuracy": 0.7, "cost_s": 3.0}, curve=[0.1, 0.5]))
    ledger.add(arch(3), EvalResult("infeasible", {"val_accuracy": 0.95, "constraints": [1.0]},
                                   reason="constraint: size 32 > 16"))
    ledger.add(arch(4), EvalResult("complete", {"val_accuracy": math.nan, "cost_s": 1.0}))  # a NaN objective
    ledger.add(arch(5), EvalResult("complete", {"val_accuracy": 0.6}))  # no cost_s: fails with two objectives
    left = ledger.start(arch(6))  # left running, as by a killed process
    instant = ledger.start(arch(7), mark_running=False)
    before = (ledger.records(), ledger.trials())
    ledger.finish(instant, EvalResult("complete", {"val_accuracy": 0.5, "cost_s": 2.0}))
    recovered = ledger.recover()
    return {"running": running.number, "left": left.number, "instant": instant, "before": before,
            "recovered": recovered}


def seen(value) -> str:
    """What a reader sees (a NaN metric included, which equals nothing)."""
    return repr(value)


def optuna_view(study: optuna.Study, drop: tuple[str, ...] = ()) -> str:
    """The study's trials as a reader sees them (``drop``: keys of the ``archlab`` attribute left out)."""
    return seen([(t.number, t.state, t.values, t.params, t.distributions,
                  {k: {f: x for f, x in v.items() if f not in drop} if k == "archlab" else v
                   for k, v in t.user_attrs.items()})
                 for t in study.get_trials(deepcopy=False)])


@pytest.mark.parametrize("objectives", [ONE, TWO], ids=["one", "two"])
def test_the_memory_ledger_records_what_an_optuna_ledger_records(objectives, tmp_path):
    memory = Ledger.memory(objectives, space=SPACE)
    eager = Ledger("sqlite:///" + str(tmp_path / "x.db"), objectives, space=SPACE)
    got, want = write(memory), write(eager)
    assert got["running"] == want["running"] == 1 and got["left"] == want["left"] == 6  # numbered when started
    assert got["instant"].number is None and got["recovered"] == want["recovered"] == 1
    assert seen(got["before"]) == seen(want["before"])
    assert seen(memory.records()) == seen(eager.records())
    assert seen(memory.trials()) == seen(eager.trials())
    assert [r["number"] for r in memory.trials()] == list(range(8))
    assert memory.config() == eager.config() == {"strategy": "rea", "seeds": [1, 2], "rate": 0.5}
    assert memory.pinned_space() == eager.pinned_space()
    assert memory._study is None  # nothing above needed the study
    assert optuna_view(memory.study) == optuna_view(eager.study)
    assert memory.study.user_attrs == eager.study.user_attrs
    assert memory.study.directions == eager.study.directions
    states = {r["status"] for r in memory.trials()}
    assert states == {"complete", "failed", "infeasible"}


def test_a_memory_ledger_does_not_touch_optuna_until_asked(monkeypatch):
    def no(*args, **kwargs):
        raise AssertionError("touched Optuna")

    monkeypatch.setattr(ledger_module, "create_trial", no)
    monkeypatch.setattr(optuna, "create_study", no)
    monkeypatch.setattr(optuna.storages, "InMemoryStorage", no)
    ledger = Ledger.memory(TWO, space=SPACE)
    write(ledger)
    ledger.records(), ledger.trials(), ledger.config(), ledger.pinned_space()
    with pytest.raises(AssertionError, match="touched Optuna"):
        ledger.study  # noqa: B018


def test_running_trials_keep_their_numbers_and_times_when_the_study_is_built(tmp_path):
    ledger = Ledger.memory(space=SPACE)
    a = ledger.start(arch(0))
    b = ledger.start(arch(1), mark_running=False)
    ledger.add(arch(2), EvalResult("complete", {"val_accuracy": 0.5}))
    ledger.finish(b, EvalResult("complete", {"val_accuracy": 0.6}))
    ledger.finish(a, EvalResult("complete", {"val_accuracy": 0.7}))
    for other in (ledger, Ledger("sqlite:///" + str(tmp_path / "x.db"), space=SPACE)):
        done = other.start(arch(3))
        other.recover()
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            other.finish(done, EvalResult("complete", {"val_accuracy": 0.1}))
    trials = ledger.study.get_trials()[:3]
    assert [(t.number, t.params, t.value) for t in trials] == [
        (0, SPACE.to_params(arch(0)), 0.7), (1, SPACE.to_params(arch(2)), 0.5), (2, SPACE.to_params(arch(1)), 0.6)]
    assert trials[0].datetime_start <= trials[1].datetime_start == trials[1].datetime_complete
    assert trials[1].datetime_complete <= trials[0].datetime_complete  # a finished when it was finished


def test_writes_after_the_study_is_built_reach_it(tmp_path):
    memory = Ledger.memory(TWO, space=SPACE)
    eager = Ledger("sqlite:///" + str(tmp_path / "x.db"), TWO, space=SPACE)
    pending = {}
    for name, ledger in (("memory", memory), ("eager", eager)):
        ledger.add(arch(0), EvalResult("complete", {"val_accuracy": 0.9, "cost_s": 1.0}))
        pending[name] = ledger.start(arch(1))  # running while the study is built
    assert len(memory.study.trials) == 2 and memory.study.trials[1].state == optuna.trial.TrialState.RUNNING
    assert memory.storage is memory.study._storage
    for name, ledger in (("memory", memory), ("eager", eager)):
        ledger.save_config({"after": True})
        late = ledger.start(arch(2))
        ledger.add(arch(3), EvalResult("failed", reason="late"))
        ledger.finish(pending[name], EvalResult("complete", {"val_accuracy": 0.8, "cost_s": 2.0}))
        ledger.finish(late, EvalResult("complete", {"val_accuracy": 0.7, "cost_s": 3.0}))
        ledger.start(arch(4))
        assert ledger.recover() == 1
    assert optuna_view(memory.study) == optuna_view(eager.study)
    assert seen(memory.records()) == seen(eager.records()) and seen(memory.trials()) == seen(eager.trials())
    assert memory.config() == eager.config() == {"after": True}
    assert [t.number for t in memory.study.trials] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("built", [False, True], ids=["lazy", "built"])
def test_save_to_writes_a_memory_ledger_to_sqlite_and_reads_back(built, tmp_path):
    memory = Ledger.memory(TWO, space=SPACE)
    write(memory)
    if built:
        memory.study  # noqa: B018
    url = "sqlite:///" + str(tmp_path / "out.db")
    copy = memory.save_to(url)
    back = Ledger(url, TWO, create=False, space=SPACE)
    assert seen(back.records()) == seen(copy.records()) == seen(memory.records())
    assert seen(back.trials()) == seen(memory.trials())
    assert back.config() == memory.config() and back.pinned_space() == memory.pinned_space()
    assert optuna_view(back.study) == optuna_view(memory.study)
    mine = memory.study.get_trials()
    assert [(t.datetime_start, t.datetime_complete) for t in back.study.get_trials()] == \
           [(t.datetime_start, t.datetime_complete) for t in mine]


def test_a_search_records_the_same_in_memory_and_in_sqlite(tmp_path):
    table = synthetic_nb201_table(seed=2)

    def run(ledger: Ledger) -> Ledger:
        strategy = create_strategy("rea", table.space, seed=4, dedupe=False, population_size=5, sample_size=2)
        search(table.space, TableEvaluator(table), strategy, ledger, Budget(trials=40))
        return ledger

    memory = run(Ledger.memory(space=table.space))
    eager = run(Ledger("sqlite:///" + str(tmp_path / "x.db"), space=table.space))
    assert memory.records() == eager.records()

    def strip(rows):  # the wall clock differs between the two runs
        return [{k: v for k, v in r.items() if k != "search_elapsed_s"} for r in rows]

    assert strip(memory.trials()) == strip(eager.trials())
    wall = ("search_elapsed_s",)
    assert optuna_view(memory.study, wall) == optuna_view(eager.study, wall)


def test_memory_storages_make_a_memory_ledger_and_others_an_optuna_one(tmp_path):
    for ledger in (Ledger(), Ledger(None), Ledger("memory"), Ledger.memory()):
        assert isinstance(ledger, Ledger) and ledger._study is None and ledger.url == "memory"
    given = optuna.storages.InMemoryStorage()
    assert Ledger(given).storage is given  # a storage object is used as it is
    with pytest.raises(StorageError, match="holds no archlab study"):
        Ledger(None, create=False)
    import copy

    eager = Ledger("sqlite:///" + str(tmp_path / "x.db"))
    assert type(copy.copy(eager)) is Ledger and type(copy.copy(Ledger())) is type(Ledger())


class Colour(enum.IntEnum):
    RED = 1


class Text(str):
    def __str__(self) -> str:
        return "other"


class Thing:
    def __str__(self) -> str:
        return "a thing"


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1.5, (2, "x")], "c": None, "d": True},
    {"n": np.float64(0.25), "i": np.int64(3), "flag": np.bool_(True), "f32": np.float32(0.1)},
    {1: "int key", "1": "text key", 2.5: "float key", None: "null", False: "bool"},
    [math.nan, math.inf, -math.inf, -0.0, 10**30],
    {"enum": Colour.RED, "text": Text("t"), "nested": {"t": (Colour.RED, Text("u"))}},
    {"obj": Thing(), "set": {1}},
])
def test_plain_is_what_json_gives_back(value):
    def json_round_trip(v):
        return json.loads(json.dumps(v, default=ledger_module._default))

    got, want = ledger_module._plain(value), json_round_trip(value)
    assert json.dumps(got) == json.dumps(want)
    assert _types(got) == _types(want)


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__

"""The zero-cost-proxy warm start every strategy has (``Strategy.set_warmstart``; ``--warmstart``): the first
asks are the rank-sum best of their candidate pools, the strategy's own proposals follow, a rebuilt strategy
continues exactly, and the configuration, the runner and the CLI wire it."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from scipy.stats import rankdata
from typer.testing import CliRunner

from archlab.errors import UserError
from archlab.search import TrialRecord, create_strategy, resolve_objectives
from archlab.search._base import rank_sum_best
from archlab.space import Arch, Space, choice, integer, repeat
from archlab.study import SearchConfig

STRATEGIES = ["random", "local_search", "surrogate_ls", "reinforce", "tpe", "nsga2", "rea"]
TARGET = {"a": 2, "b": "z", "c": 4}


def small_space() -> Space:
    return Space(a=integer(0, 5), b=choice(["x", "y", "z", "w"]), c=integer(0, 5),
                 layers=repeat(choice(["p", "q", "r"]), count=integer(1, 3)))


def accuracy(arch: Arch) -> float:
    s = -abs(arch["a"] - TARGET["a"]) - abs(arch["c"] - TARGET["c"]) - 3 * (arch["b"] != TARGET["b"])
    return (s + 20 - len(arch["layers"])) / 20


def metrics(arch: Arch) -> dict:
    return {"val_accuracy": accuracy(arch), "params": 10 * (arch["a"] + 1)}


class FakeScorer:
    """Two deterministic 'proxies' of the arch, each seeing part of the objective (and a tie now and then)."""

    names = ("alpha", "beta")

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, arch: Arch) -> tuple[float, float]:
        self.calls += 1
        return (-abs(arch["a"] - TARGET["a"]) - 0.1 * arch["c"], float(arch["b"] == TARGET["b"]))


def make(name: str, warm: int | None = 4, candidates: int = 6, seed: int = 5):
    kw = {"population_size": 4} if name == "rea" else {"init": 3, "explore": 8} if name == "surrogate_ls" else {}
    s = create_strategy(name, small_space(), seed=seed, **kw)
    if warm is not None:
        s.set_warmstart(FakeScorer(), trials=warm, candidates=candidates)
    return s


def expected_pick(strategy, scorer, candidates: int) -> Arch:
    """This step's pool replayed (the same per-step generator and unseen filter), ranked independently (scipy's
    average ranks, summed over the proxies; the first of equals)."""
    rng = random.Random(f"{strategy.name}:{strategy.seed}:{len(strategy.history)}")
    pool: list[Arch] = []
    while len(pool) < candidates:
        a = strategy.space.sample(rng)
        if a not in strategy.seen and a not in pool:
            pool.append(a)
    scores = np.array([scorer(a) for a in pool])
    total = sum(rankdata(scores[:, k]) for k in range(scores.shape[1]))
    return pool[int(np.argmax(total))]


def tell(strategy, number: int, arch: Arch) -> None:
    strategy.tell(TrialRecord(number, arch, "complete", metrics(arch), memo=strategy.memo(arch)))


@pytest.mark.parametrize("name", STRATEGIES)
def test_the_first_asks_are_the_proxies_picks_then_the_strategy_proposes(name):
    s, plain = make(name), make(name, warm=None)
    reference = FakeScorer()
    for i in range(4):
        assert s.warming
        arch = s.ask()
        assert arch == expected_pick(s, reference, 6), i
        tell(s, i, arch)
    assert not s.warming
    for i in range(4, 10):  # afterwards exactly what the strategy alone proposes from the same records
        plain.rebuild(s.history)
        arch = s.ask()
        assert arch == plain.ask(), i
        tell(s, i, arch)
    assert len({r.arch for r in s.history}) == 10


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_strategy_rebuilt_from_its_records_continues_exactly(name):
    live = make(name)
    archs = []
    for i in range(12):
        archs.append(live.ask())
        tell(live, i, archs[-1])
    for cut in (0, 2, 4, 7):  # during the warm start, at its end, after it
        clone = make(name)
        clone.rebuild(live.history[:cut])
        for i in range(cut, 12):
            arch = clone.ask()
            assert arch == archs[i], (cut, i)
            tell(clone, i, arch)
        assert clone.state_dict() == live.state_dict()


def test_asked_and_running_trials_count_toward_the_warm_trials():
    s = make("random", warm=2)
    first, second = s.ask(), s.ask()  # two workers: both warm
    assert first != second and not s.warming
    third = s.ask()
    tell(s, 0, first)
    assert not s.warming and third not in (first, second)


def test_the_warm_picks_beat_random_ones_on_average():
    def mean_accuracy(warm, seed):
        s = make("random", warm=warm, candidates=10, seed=seed)
        archs = [s.ask() for _ in range(4)]
        return sum(map(accuracy, archs)) / 4

    warm = [mean_accuracy(4, seed) for seed in range(8)]
    cold = [mean_accuracy(None, seed) for seed in range(8)]
    assert sum(warm) / 8 > sum(cold) / 8 + 0.05


def test_rank_sum_best_takes_the_best_summed_rank_and_the_first_of_equals():
    archs = [Arch({"i": i}) for i in range(4)]
    assert rank_sum_best(archs, [(1, 0), (3, 0), (2, 5), (0, 9)]) == archs[2]
    assert rank_sum_best(archs, [(1, 1), (1, 1), (0, 0), (0, 0)]) == archs[0]


def test_a_spent_scorer_ranks_only_what_it_scored():
    class Spent(FakeScorer):
        @property
        def exhausted(self):
            return self.calls >= 2

    s = create_strategy("tpe", small_space(), seed=1)
    scorer = Spent()
    s.set_warmstart(scorer, trials=3, candidates=8)
    s.ask()
    assert scorer.calls == 2
    s.ask()  # spent: a random unseen candidate, nothing more scored
    assert scorer.calls == 2


def test_describe_shows_the_warm_start_and_none_gives_the_plain_strategy():
    s = make("reinforce", warm=3, candidates=7)
    assert s.describe()["warmstart"] == {"proxies": ["alpha", "beta"], "trials": 3, "candidates": 7}
    assert "warmstart" not in make("reinforce", warm=None).describe()
    s.set_warmstart(None)
    assert "warmstart" not in s.describe() and not s.warming
    rea = create_strategy("rea", small_space(), population_size=5, scorer=FakeScorer(), warmup_candidates=8)
    assert rea.describe()["warmstart"] == {"proxies": ["alpha", "beta"], "trials": 5, "candidates": 8}


def test_default_warm_trials():
    s = create_strategy("tpe", small_space())
    assert [s.warmstart_trials(n) for n in (None, 1, 3, 8, 20, 41, 1000)] == [10, 2, 2, 2, 5, 10, 10]
    s.set_warmstart(FakeScorer(), expected_trials=24)
    assert s.warmstart.trials == 6 and s.warmstart.candidates == 10
    rea = create_strategy("rea", small_space(), expected_trials=30)
    rea.set_warmstart(FakeScorer(), expected_trials=30)
    assert rea.warmstart.trials == rea.population_size == 10
    with pytest.raises(UserError, match="trials >= 1"):
        s.set_warmstart(FakeScorer(), trials=0)
    with pytest.raises(UserError, match="candidates >= 1"):
        s.set_warmstart(FakeScorer(), trials=2, candidates=0)


def test_nsga2_keeps_warm_trials_in_its_first_generation():
    s = make("nsga2", warm=3)
    memos = []
    for i in range(12):
        arch = s.ask()
        memos.append(s.memo(arch))
        s.tell(TrialRecord(i, arch, "complete", metrics(arch), memo=memos[-1]))
    generations = [next(v for k, v in m.items() if k.endswith(":generation")) for m in memos]
    assert generations == [0] * 10 + [1, 1]  # 3 warm + 7 sampled make the first generation of 10


def test_the_config_validates_the_warm_start_and_reads_old_run_files():
    assert SearchConfig().warmstart == "proxies"
    assert SearchConfig(warmstart="none").to_dict()["warmstart"] == "none"
    assert "proxy_warmup" not in SearchConfig().to_dict()
    with pytest.raises(UserError, match="unknown --warmstart 'sometimes'; choose from proxies, none"):
        SearchConfig(warmstart="sometimes")
    old = SearchConfig().to_dict()
    del old["warmstart"]
    assert SearchConfig.from_dict({**old, "proxy_warmup": True}).warmstart == "proxies"
    assert SearchConfig.from_dict({**old, "proxy_warmup": False}).warmstart == "none"


# -- the runner and the CLI
FAST = dict(data="digits", mixers=("pooling", "mlp"), epochs=1, budget_s=None, final_epochs=0, batch_size=64)


@pytest.fixture(scope="module")
def digits():
    from archlab.data import load_dataset

    return load_dataset("digits", seed=0)


def test_the_runner_warm_starts_any_strategy_in_accuracy_only_training_runs(digits):
    from archlab.study import make_space
    from archlab.study._runner import _make_strategy

    cfg = SearchConfig(n_trials=12, **FAST)
    space = make_space(cfg, digits.input_shape, digits.num_classes)
    objectives = resolve_objectives(["accuracy"])
    for name in ("random", "tpe", "rea"):
        s = _make_strategy(name, cfg, space, digits, objectives, (), True, 12)
        assert s.warmstart is not None and s.warmstart.scorer.names == ("naswot", "snip")
        assert s.warmstart.trials == (s.population_size if name == "rea" else 3)
    assert _make_strategy("random", SearchConfig(warmstart="none", n_trials=12, **FAST), space, digits, objectives,
                          (), True, 12).warmstart is None
    assert _make_strategy("random", cfg, space, digits, objectives, (), False, 12).warmstart is None
    two = resolve_objectives(["accuracy", "params"])
    assert _make_strategy("random", cfg, space, digits, two, (), True, 12).warmstart is None
    timed = SearchConfig(**{**FAST, "budget_s": 60.0})
    s = _make_strategy("local_search", timed, space, digits, objectives, (), True, 12)
    assert s.warmstart.scorer.names == ("naswot", "snip", "-flops")
    assert s.warmstart.scorer.time_budget_s == pytest.approx(0.1 * timed.search_budget_s)


def test_a_strategy_built_on_proxies_gets_a_scorer_of_its_own_and_no_warm_start(digits, monkeypatch):
    from archlab.search import _STRATEGIES, RandomSearch
    from archlab.study import make_space
    from archlab.study._runner import _make_strategy

    class ProxyBased(RandomSearch):
        name = "proxy_based"
        proxy_names = ("synflow",)

        def __init__(self, space, *, scorer, **kw):
            super().__init__(space, **kw)
            self.scorer = scorer

    monkeypatch.setitem(_STRATEGIES, "proxy_based", ProxyBased)
    cfg = SearchConfig(n_trials=12, **FAST)
    space = make_space(cfg, digits.input_shape, digits.num_classes)
    objectives = resolve_objectives(["accuracy"])
    for warmstart in ("proxies", "none"):
        s = _make_strategy("proxy_based", SearchConfig(n_trials=12, warmstart=warmstart, **FAST), space, digits,
                           objectives, (), True, 12)
        assert s.scorer.names == ("synflow",) and s.warmstart is None


def test_a_run_records_its_warm_start_and_an_old_run_folder_resumes(tmp_path):
    from archlab.study import run_search

    out = tmp_path / "run"
    summary = run_search(SearchConfig(n_trials=3, strategy="random", **FAST), out, report=False)
    assert summary["strategy"]["warmstart"] == {"proxies": ["naswot", "snip"], "trials": 2, "candidates": 10}
    assert summary["run"]["warmstart"] == "proxies"
    # a run folder of an older archlab: proxy_warmup instead of warmstart
    run = json.loads((out / "run.json").read_text())
    del run["config"]["warmstart"]
    run["config"]["proxy_warmup"] = False
    (out / "run.json").write_text(json.dumps(run))
    resumed = run_search(SearchConfig(n_trials=4, **FAST), out, resume=True, report=False)
    assert resumed["trials"]["completed"] == 4
    assert resumed["run"]["warmstart"] == "none" and "warmstart" not in resumed["strategy"]


def test_the_cli_flag_and_its_deprecated_alias(monkeypatch):
    import archlab.study
    from archlab.cli import app

    seen = []

    def fake_run_search(cfg, *args, **kwargs):
        seen.append(cfg.warmstart)
        raise KeyboardInterrupt

    monkeypatch.setattr(archlab.study, "run_search", fake_run_search)
    runner = CliRunner()
    for args, expected in ((["--warmstart", "none"], "none"), ([], "proxies"), (["--no-proxy-warmup"], "none")):
        result = runner.invoke(app, ["search", "--trials", "1", "--out", "/nonexistent/x", *args])
        assert result.exit_code != 2, result.output
        assert seen.pop() == expected
    result = runner.invoke(app, ["search", "--trials", "1", "--warmstart", "magic"])
    assert result.exit_code == 2 and "unknown --warmstart 'magic'; choose from proxies, none" in result.stderr
    result = runner.invoke(app, ["search", "--no-proxy-warmup", "--warmstart", "proxies"])
    assert result.exit_code == 2 and "contradicts --warmstart proxies" in result.stderr
    help_text = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"}).output
    assert "--warmstart" in help_text and "--no-proxy-warmup" not in help_text

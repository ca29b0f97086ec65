"""Portfolio starts: a strategy's first asks are the space's known-good archs in order, before its warm start and
its own proposals; a rebuilt strategy continues exactly; a restricted space leaves out what it does not hold; the
main job wires it and says which portfolio archs ran."""

from __future__ import annotations

import pytest

from archlab.search import TrialRecord, create_strategy
from archlab.search.portfolio import portfolio, portfolio_archs
from archlab.space import Space, create_space, integer
from archlab.study import SearchConfig, run_search


def image_space(**kw):
    return create_space("image", input_shape=(1, 28, 28), num_classes=10, **kw)


def test_the_image_portfolio_depends_on_the_budget_and_the_space():
    space = image_space()
    short = [name for name, _ in portfolio(space, 600)]
    assert short == ["textbook", "resnet", "convformer"]
    assert [name for name, _ in portfolio(space, 1800)] == short + ["textbook-wide"]
    restricted = image_space(mixers=["attention"])  # no sepconv, no pooling: the convformer arch is not in it
    assert [name for name, _ in portfolio(restricted, 600)] == ["textbook", "resnet"]
    assert portfolio(Space(a=integer(0, 3))) == [] and portfolio_archs(Space(a=integer(0, 3))) == []


@pytest.mark.parametrize("name", ["random", "rea", "tpe", "local_search"])
def test_first_asks_are_the_portfolio_then_the_strategy(name):
    space = image_space()
    start = portfolio(space, 600)

    def make():
        s = create_strategy(name, space, seed=1, expected_trials=12)
        s.set_portfolio(start)
        return s

    live = make()
    asked = []
    for i in range(5):
        arch = live.ask()
        asked.append(arch)
        live.tell(TrialRecord(i, arch, "complete", {"val_accuracy": 0.5 + 0.01 * i}))
    assert asked[:3] == [a for _, a in start]
    assert len(set(asked)) == 5
    assert [p["name"] for p in live.describe()["portfolio"]] == ["textbook", "resnet", "convformer"]
    # a strategy rebuilt from the first two records asks what the live one asked next
    rebuilt = make()
    rebuilt.rebuild([TrialRecord(i, a, "complete", {"val_accuracy": 0.5 + 0.01 * i}) for i, a in
                     enumerate(asked[:2])])
    assert rebuilt.ask() == asked[2]


def test_the_main_job_runs_the_portfolio_first(tmp_path):
    cfg = SearchConfig(data="digits", budget_s=None, n_trials=4, epochs=1, final_epochs=0, export_onnx=False,
                       strategy="random", warmstart="none", stopping="none")
    summary = run_search(cfg, tmp_path / "run", report=False)
    names = [p["name"] for p in summary["strategy"]["portfolio"]]
    assert names == ["textbook", "resnet", "convformer"]
    from archlab.study import Ledger, load_run

    ledger = Ledger(load_run(tmp_path / "run")["storage"], create=False)
    records = sorted(ledger.records(), key=lambda r: r.number)
    assert [r.arch.to_dict() for r in records[:3]] == [p["arch"] for p in summary["strategy"]["portfolio"]]
    off = run_search(SearchConfig(**{**cfg.to_dict(), "portfolio": False, "objectives": ("accuracy",)}),
                     tmp_path / "off", report=False)
    assert "portfolio" not in off["strategy"]

"""The ledger on every storage it supports, PostgreSQL for real (a throw-away server, tests/_postgres.py): a search
with 4 worker processes and 200 cheap trials loses, duplicates and half-writes nothing, and evaluates the same archs
as the same search run sequentially."""

from __future__ import annotations

import pytest

from archlab.bench import TableEvaluator, synthetic_nb201_table
from archlab.search import create_strategy
from archlab.study import Budget, Ledger, search


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    if request.param == "journal":
        return f"journal://{tmp_path / 'ledger.log'}"
    from _postgres import fresh_database

    return fresh_database(request.getfixturevalue("postgres_url"))


TABLE = synthetic_nb201_table(seed=0)


def _search(ledger: Ledger, workers: int, trials: int = 200):
    return search(TABLE.space, TableEvaluator(TABLE), create_strategy("random", TABLE.space, seed=7), ledger,
                  Budget(trials=trials), workers=workers)


def test_four_workers_lose_duplicate_and_half_write_nothing(storage):
    sequential = _search(Ledger.memory(space=TABLE.space), workers=1)
    result = _search(Ledger(storage, space=TABLE.space), workers=4)
    assert len(result.records) == 200
    rows = Ledger(storage, create=False, space=TABLE.space).trials()  # read back from the storage itself
    assert sorted(r["number"] for r in rows) == list(range(200))
    assert all(r["state"] == "COMPLETE" and r["status"] == "complete" for r in rows)
    archs = [TABLE.space.validate(r["arch"]) for r in rows]
    assert len(set(archs)) == 200
    for row, arch in zip(rows, archs, strict=True):  # every value written whole, the table's own
        assert row["val_accuracy"] == pytest.approx(TABLE.row(arch)["val_accuracy"])
    assert set(archs) == {r.arch for r in sequential.records}  # a seeded strategy: the same archs


def test_a_search_resumes_on_the_storage_it_left(storage):
    first = _search(Ledger(storage, space=TABLE.space), workers=1, trials=30)
    resumed = search(TABLE.space, TableEvaluator(TABLE), create_strategy("random", TABLE.space, seed=7),
                     Ledger(storage, create=False, space=TABLE.space), Budget(trials=60), resume=True)
    whole = _search(Ledger.memory(space=TABLE.space), workers=1, trials=60)
    assert [r.arch for r in resumed.records] == [r.arch for r in whole.records]
    assert [r.arch for r in resumed.records][:30] == [r.arch for r in first.records]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance of 2 CPUs started by the test (Ray is a test dependency under CI)."""
    import os

    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail('CI: Ray must be installed (pip install "archlab[ray]")', pytrace=False)
        pytest.skip("Ray is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_and_local_executors_write_the_same_ledger(ray_cluster, tmp_path):
    def run(executor: str, storage: str):
        ledger = Ledger(storage, space=TABLE.space)
        search(TABLE.space, TableEvaluator(TABLE), create_strategy("random", TABLE.space, seed=3), ledger,
               Budget(trials=40), workers=2, executor=executor)
        rows = Ledger(storage, create=False, space=TABLE.space).trials()
        return {TABLE.space.validate(r["arch"]): (r["state"], r["val_accuracy"], r["cost_s"]) for r in rows}

    on_ray = run("ray", f"sqlite:///{tmp_path / 'ray.db'}")
    local = run("local", f"sqlite:///{tmp_path / 'local.db'}")
    assert len(on_ray) == 40 and on_ray == local
    assert ray_cluster.is_initialized()  # the search used the running instance and left it running


def test_a_ray_worker_gets_the_data_from_the_factory_not_from_disk(monkeypatch):
    from archlab.data import load_dataset
    from archlab.study import SearchConfig
    from archlab.study import _config as config_module
    from archlab.study._config import TrainingEvaluatorFactory

    cfg = SearchConfig(data="digits", n_trials=1, budget_s=None)
    data = load_dataset("digits", seed=0)
    factory = TrainingEvaluatorFactory(cfg.to_dict()).with_data(data)

    def no_disk(*args, **kwargs):
        raise AssertionError("the worker read the data files")

    monkeypatch.setattr(config_module, "load_dataset", no_disk)
    evaluator = factory()
    assert evaluator.data is data and evaluator.factory() is factory

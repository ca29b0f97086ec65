"""Training-free search on NAS-Bench-201: the proxy tables archlab ships (where they come from, that this code
recomputes them), their correlations with the table's accuracies, and RoBoT and NASWOT replayed on them."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from scipy.stats import spearmanr

from archlab.bench import (
    NB201_FILE,
    NB201_PROXY_FILES,
    PUBLISHED_NASWOT,
    load_nb201_proxies,
    load_nb201_table,
    run_protocol,
)
from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.proxies import VOTE_PROXIES, compute_proxies, proxy_batch, proxy_correlations, sample_archs
from archlab.search import RoBoT
from archlab.space import create_space


@pytest.fixture(scope="module")
def table(shared_data):
    return load_nb201_table(shared_data / NB201_FILE)


@pytest.fixture(scope="module")
def proxies():
    return load_nb201_proxies(("nwot", "synflow", "grad_norm", "snip", "grasp", "fisher", "jacob_cov"))


def test_the_shipped_tables_are_the_seeded_samples_they_claim():
    space = create_space("nb201", input_shape=(3, 32, 32), num_classes=10)
    full = load_nb201_proxies(("synflow",))
    nwot = load_nb201_proxies(("nwot",))
    assert NB201_PROXY_FILES[full.file]["cells"] == full.cells == 1000
    assert NB201_PROXY_FILES[nwot.file]["cells"] == nwot.cells == 3000
    # the first N cells of `archlab proxies --sample N --seed 0`, in order (so the nwot sample extends the other)
    assert list(nwot.scores) == sample_archs(space, 3000, seed=0)
    assert list(full.scores) == list(nwot.scores)[:1000]
    both = load_nb201_proxies(("nwot", "synflow"))
    assert both.file == full.file
    assert [both.scores[a][0] for a in full.scores] == [nwot.scores[a][0] for a in full.scores]
    assert "--sample 3000" in nwot.command and "--proxies nwot" in nwot.command
    with pytest.raises(UserError, match="no shipped NB201 proxy table has zen"):
        load_nb201_proxies(("zen",))


def test_this_code_recomputes_the_shipped_scores(shared_data, proxies):
    data = load_dataset("cifar10", seed=0)
    space = create_space("nb201", input_shape=data.input_shape, num_classes=data.num_classes)
    x, y = proxy_batch(data.x_train, data.y_train, 64, seed=0)
    for arch in [list(proxies.scores)[i] for i in (0, 517)]:
        import torch

        torch.manual_seed(0)
        now = compute_proxies(space.build(arch), x, y, proxies.names, seed=0)
        # to 2e-3: the reductions of the gradient proxies run in another order on another CPU (the shipped scores
        # and a 2-core AMD EPYC of 2026-12-04 differ by up to 2e-4 on grasp, fisher, grad_norm and snip)
        np.testing.assert_allclose([now[n] for n in proxies.names], proxies.scores[arch], rtol=2e-3)


PUBLISHED_SPEARMAN = {"synflow": 0.74, "jacob_cov": 0.73, "snip": 0.60, "grad_norm": 0.59, "grasp": 0.51,
                      "fisher": 0.36, "nwot": 0.78}


def _spearman(table, scores, column="test_accuracy"):
    archs = list(scores)
    acc = np.array([table.row(a)[column] for a in archs])
    values = np.array([scores[a] for a in archs], dtype=float)
    out = {}
    for j in range(values.shape[1]):
        ok = np.isfinite(values[:, j])
        out[j] = spearmanr(values[ok, j], acc[ok])[0]
    return out


def test_correlations_with_cifar10_test_accuracy_are_the_published_ones(table, proxies):
    rho = dict(zip(proxies.names, _spearman(table, proxies.scores).values(), strict=True))
    nwot = load_nb201_proxies(("nwot",))
    rho["nwot"] = _spearman(table, nwot.scores)[0]
    # measured on this sample: synflow .79, nwot .78 (3,000 cells), jacob_cov .68, grasp .56 within .06 of the
    # published; snip .66, grad_norm .66 .07 above; fisher .57 is .21 above the published .36 (a gap, BENCHMARKS.md)
    close = {n: v for n, v in PUBLISHED_SPEARMAN.items() if n != "fisher"}
    assert {n: rho[n] for n in close} == pytest.approx(close, abs=0.08), rho
    assert rho["fisher"] > PUBLISHED_SPEARMAN["fisher"]


def test_the_majority_vote_ranks_better_than_any_of_its_proxies(table):
    """Abdelfattah et al.'s vote of synflow, jacob_cov and snip: Spearman .82 published; .87 on this sample."""
    shipped = load_nb201_proxies(VOTE_PROXIES)
    rows = [dict(zip(shipped.names, s, strict=True)) for s in shipped.scores.values()]
    acc = [table.row(a)["test_accuracy"] for a in shipped.scores]
    rho = proxy_correlations(rows, acc, shipped.names, votes={"vote": VOTE_PROXIES})["spearman"]
    assert rho["vote"] >= 0.82
    assert rho["vote"] > max(rho[n] for n in VOTE_PROXIES) + 0.05, rho


def test_robot_with_20_queries_reaches_the_samples_optimum(table):
    result = run_protocol(table, "robot", runs=10, budget_seconds=None, queries=20)
    summary = result.summary()
    assert summary["queries_mean"] == 20 and summary["candidates_in_table"] == 1000
    values = result.values()
    optimum = summary["pool_optimum"]["cifar10"]
    assert statistics.fmean(values) >= optimum - 0.1, (values, optimum)
    # every query is a cell of the shipped sample, each once
    assert all(r["arch"] in {table.space.to_string(a) for a in load_nb201_proxies(RoBoT.proxy_names).scores}
               for r in result.rows)


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_naswot_search_lands_on_the_published_means(table, n):
    result = run_protocol(table, "naswot", runs=200, budget_seconds=None, queries=1, strategy_kwargs={
        "n_candidates": n})
    summary = result.summary()
    assert summary["published"]["mean"] == PUBLISHED_NASWOT[n][0] and summary["candidates"] == n
    assert summary["mean"] == pytest.approx(PUBLISHED_NASWOT[n][0], abs=0.5)

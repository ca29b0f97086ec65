"""One-shot methods as strategies of ``archlab search``: the ranking they propose, the memory estimate that guards
them, and a run that records its supernet's ranking in the ledger and resumes without training it again."""

from __future__ import annotations

import math

import pytest
import torch

from archlab.errors import UserError
from archlab.search import create_strategy
from archlab.search.oneshot.memory import estimate_training_memory
from archlab.search.oneshot.strategy import DartsSearch, evolve_inherited, most_probable
from archlab.space import create_space
from archlab.study import Ledger, SearchConfig, run_search


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_space():
    return create_space("nb201", input_shape=(1, 8, 8), num_classes=10, C=4, N=1)


def test_most_probable_is_the_top_of_the_product_distribution():
    space = tiny_space()
    supernet = space.supernet("darts", seed=0)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for a in supernet.arch_parameters():
            a.copy_(torch.randn(a.shape, generator=gen))
    probs = supernet.probabilities()

    def logp(arch):
        return sum(math.log(probs[path][option]) for path, option in arch.to_dict().items())

    ranked = most_probable(supernet, supernet.derive(), 30)
    best = sorted((logp(a) for a in space.enumerate()), reverse=True)[:30]
    assert ranked[0] == supernet.derive()
    assert len(set(ranked)) == 30
    assert [logp(a) for a in ranked] == pytest.approx(best)


def test_memory_estimate_scales_with_the_batch_counts_every_darts_candidate_and_leaves_the_model_alone():
    space = tiny_space()
    x = torch.randn(2, 1, 8, 8)
    supernet = space.supernet("darts", seed=0)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    e32, e64 = (estimate_training_memory(supernet, x, b) for b in (32, 64))
    assert abs(e64.activations - 2 * e32.activations) <= 1 and e32.activations > 0
    weights = sum(p.numel() * p.element_size() for p in supernet.parameters())
    assert e32.weights == e32.gradients == e32.optimizer == weights
    assert e32.total == 3 * weights + e32.activations
    assert all(p.grad is None for p in supernet.parameters())
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())
    single = space.supernet("spos", seed=0)
    arch = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                             "nor_conv_3x3~2|")
    one_path = estimate_training_memory(single, x, 32, forward_kwargs=[{"arch": arch}])
    # the mixture keeps every candidate's activations, a single path one candidate's per edge
    assert e32.activations > 1.5 * one_path.activations


def test_a_strategy_refuses_a_supernet_over_the_memory_limit_and_a_space_without_factory_choices():
    space = tiny_space()
    data = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    with pytest.raises(UserError, match="over --max-memory 0 MB"):
        create_strategy("darts", space, data=data, max_memory_mb=0.01)
    ok = create_strategy("gdas", space, data=data, max_memory_mb=10_000)
    assert ok.memory is not None and 0 < ok.memory.total_mb < 10_000
    metaformer = create_space("metaformer", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(UserError, match="cannot be compiled into a supernet"):
        create_strategy("spos", metaformer, data=data)


def test_evolution_over_inherited_accuracy_finds_the_best_of_a_known_score():
    space = tiny_space()
    target = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                               "nor_conv_3x3~2|").to_dict()

    def score(arch):  # edges agreeing with the target
        return sum(arch.to_dict()[p] == o for p, o in target.items()) / len(target)

    scored = evolve_inherited(space, score, 300, seed=0)
    assert len({a for a, _ in scored}) == len(scored) == 300
    assert max(s for _, s in scored) == 1.0  # random sampling finds all six edges with p = 1 - (1 - 5**-6)**300 ~ 2 %


def quick(n_trials, **kw):
    return SearchConfig(space="nb201", data="digits", epochs=1, budget_s=None, n_trials=n_trials, final_epochs=0,
                        export_onnx=False, warmstart="none", stopping="none", batch_size=64, seed=0, **kw)


@pytest.mark.parametrize("method", ["darts", "gdas", "sharpdarts", "sd-darts", "spos"])
def test_a_one_shot_search_proposes_its_ranking_and_resumes_without_retraining(tmp_path, monkeypatch, method):
    out = tmp_path / method
    summary = run_search(quick(3, strategy=method), out, space=tiny_space(), report=False)
    assert summary["strategy"]["name"] == method and summary["strategy"]["epochs_trained"] >= 1
    assert summary["choices"]["proposals"].startswith(f"a {method.upper()} supernet")
    ledger = Ledger(f"sqlite:///{out / 'ledger.db'}", create=False)
    trials = sorted(ledger.trials(), key=lambda t: t["number"])
    memos = [r.memo for r in ledger.records() if r.memo]
    assert len(memos) == 1
    ranking = memos[0]["oneshot"]["ranking"]
    assert [t["arch"] for t in trials] == ranking[:3]

    def no_retraining(self):
        raise AssertionError("the resumed strategy trained its supernet again")

    monkeypatch.setattr(type(create_strategy(method, tiny_space())), "train_and_rank", no_retraining)
    run_search(quick(5, strategy=method), out, space=tiny_space(), resume=True, report=False)
    trials = sorted(Ledger(f"sqlite:///{out / 'ledger.db'}", create=False).trials(), key=lambda t: t["number"])
    assert [t["arch"] for t in trials] == ranking[:5]
    assert isinstance(create_strategy("darts", tiny_space()), DartsSearch)

"""A run pins its space: resume rebuilds exactly that space, even after the zoo has grown, or refuses clearly."""

from __future__ import annotations

import json

import pytest
from torch import nn

from archlab import zoo
from archlab.errors import UserError
from archlab.study import Ledger, SearchConfig, load_run, run_search
from archlab.zoo import _registry

# the metaformer space with its default mixers (every non-causal mixer registered now), trained for one epoch
QUICK = dict(space="metaformer", data="digits", epochs=1, budget_s=None, final_epochs=0, export_onnx=False,
             strategy="random", warmstart="none", stopping="none", batch_size=128, seed=4)


def _archs(out):
    return [r.arch for r in Ledger(load_run(out)["storage"], create=False).records()]


@pytest.fixture
def zoo_snapshot(monkeypatch):
    """Registrations made in the test are undone afterwards."""
    monkeypatch.setattr(_registry, "_MIXERS", dict(_registry._MIXERS))


def test_resume_after_registering_a_new_mixer_reproduces_the_run(tmp_path, zoo_snapshot):
    reference = run_search(SearchConfig(n_trials=4, **QUICK), tmp_path / "ref", report=False)
    first = run_search(SearchConfig(n_trials=2, **QUICK), tmp_path / "run", report=False)
    assert first["trials"]["completed"] == 2

    @zoo.register_mixer("identity_for_test", layout="image", paper="none: a test's mixer")
    def identity_for_test(dim, *, resolution=None, **kw):
        return nn.Identity()

    assert "identity_for_test" in zoo.list_mixers(causal=False)  # a fresh metaformer space would differ now
    resumed = run_search(SearchConfig(n_trials=4, **QUICK), tmp_path / "run", resume=True, report=False)
    assert _archs(tmp_path / "run") == _archs(tmp_path / "ref")
    assert resumed["best"]["arch"] == reference["best"]["arch"]
    assert all(s["mixer"] != "identity_for_test" for a in _archs(tmp_path / "run") for s in a["stages"])


def test_resume_refuses_a_space_that_cannot_be_rebuilt(tmp_path):
    out = tmp_path / "run"
    run_search(SearchConfig(n_trials=1, mixers=("pooling", "mlp"), **QUICK), out, report=False)
    run = json.loads((out / "run.json").read_text())
    run["space"]["spec"]["mixers"] = ["pooling", "no_such_mixer"]
    (out / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError, match="cannot be rebuilt.*no_such_mixer"):
        run_search(SearchConfig(n_trials=2, **QUICK), out, resume=True, report=False)
    run["space"]["spec"]["mixers"] = ["mlp", "pooling"]  # rebuilds, but not the space the run searched
    (out / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError, match="fingerprint"):
        run_search(SearchConfig(n_trials=2, **QUICK), out, resume=True, report=False)

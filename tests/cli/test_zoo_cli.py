"""``archlab zoo list`` and ``archlab zoo profile``."""

from __future__ import annotations

import json

import pytest
from test_cli_errors import archlab, assert_one_line_error

from archlab import zoo


def test_zoo_list_counts_match_the_built_models():
    result = archlab("zoo", "list", "poolformer_s*", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(zoo.list_models("poolformer_s*"))
    assert rows["poolformer_s12"]["params"] == 11_915_176  # timm's count (tests/zoo/test_timm_parity.py)
    assert rows["poolformer_s12"]["family"] == "metaformer" and "MetaFormer" in rows["poolformer_s12"]["paper"]
    # FLOPs at the registered 224x224 input, counted on the meta device, equal a real count
    from archlab.measure import count_flops

    assert rows["poolformer_s12"]["flops"] == count_flops(zoo.create_model("poolformer_s12"), (3, 224, 224))


def test_zoo_list_counts_every_unireplknet_on_the_meta_device():
    """Its drop-path schedule was a tensor made on the current device: on the meta device it had no values and
    the list showed an error instead of a count."""
    result = archlab("zoo", "list", "unireplknet_*", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(zoo.list_models("unireplknet_*")) and len(rows) == 6
    for name, row in rows.items():
        assert "error" not in row and row["params"] == sum(p.numel() for p in zoo.create_model(name).parameters())

def test_zoo_list_of_mixers():
    result = archlab("zoo", "list", "--mixers", "--json")
    assert result.returncode == 0
    assert {r["name"] for r in json.loads(result.stdout)} == set(zoo.list_mixers())


def test_zoo_profile_reports_every_measure():
    result = archlab("zoo", "profile", "poolformer_s12", "--batches", "1,2", "--repeats", "1", "--json")
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["params"] == 11_915_176 and r["flops"] > 1e9
    assert r["latency_ms_b1"] > 0 and r["latency_ms_b2"] > 0
    assert r["peak_activation_bytes"] >= 64 * 56 * 56 * 4  # at least one stage-1 feature map


@pytest.mark.parametrize("args, needle", [
    (["zoo", "profile", "no_such_model"], "no_such_model"),
    (["zoo", "profile", "poolformer_s12", "--batches", "0"], "--batches"),
    (["zoo", "list", "no_such_*"], "no_such_*"),
])
def test_zoo_bad_input(args, needle):
    assert_one_line_error(archlab(*args), needle)


def test_zoo_list_counts_the_bert_families_and_shows_progress(monkeypatch):
    """BERT's input check and MosaicBERT's unpadding read token values, which the meta device does not have: the
    check is skipped there, and a model whose FLOPs need real values is counted on a real build. The list shows
    a progress bar while it counts, and names are never cut."""
    import io

    from rich.console import Console

    import archlab.cli.zoo as zoo_cli
    from archlab.measure import count_flops, zoo_model_counts

    for name in ("bert_tiny_char", "mosaicbert_tiny_char"):
        row = zoo_model_counts(name)
        assert "error" not in row, row
        assert row["flops"] == count_flops(zoo.create_model(name), (128,), input_dtype="long") > 0
    progress, table = io.StringIO(), io.StringIO()
    monkeypatch.setattr(zoo_cli, "err", Console(file=progress, force_terminal=True, width=80))
    monkeypatch.setattr(zoo_cli, "out", Console(file=table, width=60))
    zoo_cli.zoo_list(pattern="*_tiny_char", mixers=False, as_json=False)
    assert "counting" in progress.getvalue() and "2/2" in progress.getvalue()
    assert "mosaicbert_tiny_char" in table.getvalue() and "bert_tiny_char" in table.getvalue()

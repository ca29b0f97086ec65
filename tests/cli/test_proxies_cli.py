"""``archlab proxies``: rows equal to :func:`compute_proxies` on the seeded batch, correlations equal to scipy's
on the NB201 table, resuming without recomputing, a failing proxy as NaN with its reason, bad input as one line
and exit code 2."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from scipy import stats
from test_cli_errors import assert_one_line_error
from typer.testing import CliRunner

import archlab.data
from archlab.cli import app
from archlab.proxies import _batch, _proxies, compute_proxies
from archlab.space import create_space

NAMES = ["nwot", "snip", "params"]
BATCH = "16"  # the command's default is 64; a smaller batch keeps the test fast on 2 busy cores


def invoke(*args: str):
    return CliRunner().invoke(app, ["proxies", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.fixture(scope="module", autouse=True)
def one_thread_here():
    """One intra-op thread: on 2 cores shared with other work, a second thread makes these small nets far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cached_data():
    """``archlab.data.load_dataset`` remembering what it loaded (CIFAR-10 takes seconds to decode)."""
    loaded: dict = {}
    real = archlab.data.load_dataset

    def load(name, *, seed=0, **kwargs):
        key = (str(name), seed, tuple(sorted(kwargs.items())))
        if key not in loaded:
            loaded[key] = real(name, seed=seed, **kwargs)
        return loaded[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(archlab.data, "load_dataset", load)
        yield load


@pytest.fixture
def counter(monkeypatch):
    """How many archs :func:`score_archs` computes (calls of ``compute_proxies``)."""
    calls = []
    real = _batch.compute_proxies

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_batch, "compute_proxies", counted)
    return calls


def nb201_args(out: Path, sample: int) -> list[str]:
    return ["--space", "nb201", "--data", "cifar10", "--sample", str(sample), "--seed", "0", "--batch-size", BATCH,
            "--proxies", ",".join(NAMES), "--out", str(out)]


@pytest.fixture(scope="module")
def six(shared_data, cached_data, tmp_path_factory):
    """A run of 6 NB201 cells on CIFAR-10: (its CSV, its JSON output)."""
    out = tmp_path_factory.mktemp("proxies") / "six.csv"
    result = invoke(*nb201_args(out, 6), "--json")
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


def test_rows_are_compute_proxies_on_the_seeded_batch(six, cached_data):
    out, _ = six
    rows = read_csv(out)
    assert list(rows[0]) == ["arch", *NAMES, "seconds", "errors"]
    assert len(rows) == 6 and len({r["arch"] for r in rows}) == 6
    data = cached_data("cifar10", seed=0)
    space = create_space("nb201", input_shape=(3, 32, 32), num_classes=10)
    idx = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))[:int(BATCH)]
    x, y = data.x_train[idx], data.y_train[idx]
    for row in rows:
        torch.manual_seed(0)
        model = space.build(space.from_string(row["arch"]))
        expected = compute_proxies(model, x, y, NAMES, seed=0)
        for name in NAMES:
            assert same(float(row[name]), expected[name]), (row["arch"], name, row[name], expected[name])
        assert row["errors"] == "" and float(row["seconds"]) > 0


def test_correlations_are_scipys_on_the_table(six):
    from archlab.bench import load_nb201_table

    out, summary = six
    rows = read_csv(out)
    table = load_nb201_table(hardware=False)
    acc = [table.columns["test_accuracy"][table.space.index(table.space.from_string(r["arch"]))] for r in rows]
    params = [float(r["params"]) for r in rows]
    assert summary["spearman"]["params"] == pytest.approx(stats.spearmanr(params, acc).statistic, abs=1e-12)
    assert summary["kendall"]["params"] == pytest.approx(stats.kendalltau(params, acc).statistic, abs=1e-12)
    assert summary["n"] == 6 and summary["csv"] == str(out) and summary["dataset"] == "cifar10"
    assert set(summary["spearman"]) == set(NAMES) and summary["n_by_proxy"] == dict.fromkeys(NAMES, 6)


def test_the_table_is_printed(six, tmp_path):
    out, _ = six
    copy = tmp_path / "copy.csv"
    copy.write_bytes(out.read_bytes())
    result = invoke(*nb201_args(copy, 6))  # everything is in the file: nothing is computed, the table printed
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Spearman ρ" in text and "Kendall τ" in text and "6 archs" in text and "CIFAR-10 test accuracy" in text
    assert copy.read_bytes() == out.read_bytes()


def test_resume_computes_only_the_missing_archs(six, counter, tmp_path):
    full, _ = six
    out = tmp_path / "resume.csv"
    assert invoke(*nb201_args(out, 4)).exit_code == 0
    assert len(counter) == 4
    first = out.read_text().splitlines()
    result = invoke(*nb201_args(out, 6))
    assert result.exit_code == 0, result.stderr
    assert len(counter) == 6, "the first 4 archs were scored again"
    lines = out.read_text().splitlines()
    assert lines[:5] == first and len(lines) == 7
    drop_seconds = [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(full)]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(out)] == drop_seconds

    # a kill while a row was being written leaves a line without its newline: it is dropped and recomputed
    text = out.read_text()
    out.write_text(text[:text.rstrip("\n").rfind("\n") + 1] + lines[-1][:20])
    assert invoke(*nb201_args(out, 6)).exit_code == 0
    assert len(counter) == 7
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(out)] == drop_seconds

    # other proxies: other columns, which is an error, not a mixed file
    before = out.read_bytes()
    result = invoke(*nb201_args(out, 6)[:-4], "--proxies", "nwot,params", "--out", str(out))
    assert_one_line_error(result, "columns")
    assert out.read_bytes() == before and len(counter) == 7

    # another seed (another batch and other initialisations): refused, not mixed into the file
    args = nb201_args(out, 6)
    args[args.index("--seed") + 1] = "1"
    result = invoke(*args)
    assert_one_line_error(result, "--seed 0 (now 1)")
    assert out.read_bytes() == before and len(counter) == 7


def test_a_failing_proxy_is_nan_with_its_reason_on_another_space(monkeypatch, tmp_path):
    def boom(shared, y):
        raise RuntimeError("no saliency today")

    monkeypatch.setitem(_proxies._FROM_PASS, "snip", (boom, "loss"))
    out = tmp_path / "mf.csv"
    result = invoke("--space", "metaformer", "--data", "digits", "--sample", "2", "--seed", "1", "--batch-size", "8",
                    "--proxies", "snip,params,nwot", "--out", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["spearman"] is None and summary["n"] == 2 and summary["computed"] == 2
    assert "snip is NaN for 2 of 2 archs" in result.stderr
    rows = read_csv(out)
    assert len(rows) == 2
    for row in rows:
        json.loads(row["arch"])  # the arch's JSON
        assert math.isnan(float(row["snip"]))
        assert row["errors"] == "snip: RuntimeError('no saliency today')"
        assert math.isfinite(float(row["params"])) and float(row["params"]) > 0
        assert not math.isnan(float(row["nwot"]))


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--sample", "3", "--proxies", "nwot,magic"], ["unknown proxy 'magic'"]),
        (["--sample", "3", "--space", "nowhere"], ["unknown space 'nowhere'"]),
        (["--sample", "0"], ["--sample must be >= 1"]),
        ([], ["either --sample N or --archs FILE"]),
        (["--sample", "3", "--archs", "cells.txt"], ["either --sample N or --archs FILE"]),
        (["--archs", "missing.txt"], ["missing.txt", "no such file"]),
        (["--sample", "3", "--batch-size", "0"], ["--batch-size must be >= 1"]),
        (["--sample", "3", "--data", "imagenet-1k"], ["unknown dataset 'imagenet-1k'"]),
        (["--archs", "cells.txt", "--data", "digits"], ["cells.txt, line 3", "malformed NB201 cell string"]),
        (["--archs", "ops.txt", "--data", "digits"], ["ops.txt, line 1", "unknown operation 'conv_7x7'"]),
        (["--archs", "mf.txt", "--space", "metaformer", "--data", "digits"], ["mf.txt, line 1", "teleport"]),
        (["--archs", "binary.txt", "--data", "digits"], ["cannot read the archs file"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    Path("cells.txt").write_text(f"{good}\n\n{good.replace('+', '', 1)}\n")
    Path("ops.txt").write_text(good.replace("nor_conv_3x3~0|+", "conv_7x7~0|+", 1) + "\n")
    Path("mf.txt").write_text(json.dumps({"stages": [{"mixer": "teleport", "depth": 1, "width": 16}],
                                          "mlp_ratio": 2, "norm": "layernorm"}) + "\n")
    Path("binary.txt").write_bytes(b"\xff\xfe\x00bad")
    assert_one_line_error(invoke(*args, "--out", "scores.csv"), *needles)
    assert not Path("scores.csv").exists()

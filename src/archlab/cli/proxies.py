"""``archlab proxies``: score many archs by zero-cost proxies on one fixed batch into a resumable CSV and, where
the space has a table (``nb201``: NAS-Bench-201's), print each proxy's rank correlations with the table's test
accuracy, as the zero-cost proxy studies report them (Abdelfattah et al., ICLR 2021). The work is done by
:func:`archlab.proxies.score_archs` and :func:`archlab.proxies.proxy_correlations`."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table as RichTable

from archlab.cli._app import EXIT_INTERRUPTED, app, err, fail, flag, out, print_json, user_errors
from archlab.space import list_spaces

__all__ = ["proxies"]

# --data name (lower case, without '-' and '_') -> the NB201 table's dataset (archlab bench nb201 --dataset)
_TABLE_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16": "imagenet16",
                   "imagenet16120": "imagenet16"}
_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}
_DEFAULT_NAMES = "every proxy but zen (slow) and naswot (= nwot): nwot, synflow, grad_norm, snip, grasp, fisher, " \
                 "jacob_cov, epe_nas, l2_norm, plain, flops, params"


def _default_out(space: str, data: str, seed: int) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(data).stem if Path(data).exists() else data).strip("-") or "data"
    return Path(f"proxies-{space}-{slug}-seed{seed}.csv")


@app.command(epilog="Example: archlab proxies --space nb201 --data cifar10 --sample 100  |  archlab proxies --archs "
                    "cells.txt --proxies nwot,snip,synflow --out scores.csv  |  archlab proxies --space metaformer "
                    "--data digits --sample 20")
def proxies(
    space: Annotated[str, typer.Option(help=f"predefined search space: {', '.join(list_spaces())}")] = "nb201",
    data: Annotated[str, typer.Option(help="dataset whose training split gives the batch: digits, fashion-mnist, "
                                           "cifar10, or a path; on nb201, data named cifar10, cifar100 or "
                                           "ImageNet16-120 (or a file or folder of that name) is correlated with "
                                           "the table's test accuracy on it")] = "cifar10",
    sample: Annotated[int | None, typer.Option(help="score this many distinct archs drawn at random with --seed "
                                                    "(a larger sample with the same seed extends a smaller one)")]
    = None,
    archs: Annotated[Path | None, typer.Option(help="score the archs of this file instead: one a line, an NB201 "
                                                    "cell string (|nor_conv_3x3~0|+|...) or, on other spaces, "
                                                    "the arch's JSON")] = None,
    names: Annotated[str | None, typer.Option("--proxies", help=f"comma-separated proxies (default: "
                                                                f"{_DEFAULT_NAMES})")] = None,
    batch_size: Annotated[int, typer.Option(help="examples in the one fixed batch (zero-cost-nas's default)")]
    = 64,
    seed: Annotated[int, typer.Option(help="seed of the data split, the batch, the sample and every model's "
                                           "initialisation")] = 0,
    out_csv: Annotated[Path | None, typer.Option("--out", help="CSV of scores, one row per arch, appended as they "
                                                               "come; if it exists its archs are skipped (resume; "
                                                               "the columns and the options that change a row "
                                                               "must be the same, kept in FILE.csv.json) (default: "
                                                               "proxies-SPACE-DATA-seedS.csv)")] = None,
    table: Annotated[Path | None, typer.Option(help="nb201: the table of test accuracies (default: "
                                                    "$ARCHLAB_DATA/nb201_robot.csv; no correlations if absent)")]
    = None,
    as_json: Annotated[bool, flag("--json", "print JSON on stdout: spearman, kendall, n, n_by_proxy, csv")] = False,
) -> None:
    """Score archs by zero-cost proxies at initialisation, all on one fixed training batch, writing a CSV row per
    arch (a failing proxy is NaN, its reason in the errors column); on nb201 with CIFAR data, print each proxy's
    Spearman and Kendall rank correlation with NAS-Bench-201's 200-epoch test accuracy (and, when synflow,
    jacob_cov and snip are among the proxies, that of their majority vote, row "vote")."""
    from archlab.proxies import DEFAULT_BATCH_PROXIES, read_archs, sample_archs
    from archlab.proxies._batch import check_proxy_names

    with user_errors():
        chosen = check_proxy_names(names.split(",") if names is not None else DEFAULT_BATCH_PROXIES)
        if space not in list_spaces():
            fail(f"unknown space {space!r}; choose from {', '.join(list_spaces())}")
        if (sample is None) == (archs is None):
            fail("give either --sample N or --archs FILE (one of them)")
        if sample is not None and sample < 1:
            fail(f"--sample must be >= 1, got {sample}")
        if batch_size < 1:
            fail(f"--batch-size must be >= 1, got {batch_size}")
        if archs is not None and not archs.is_file():
            fail(f"--archs {archs}: no such file")
        key = _table_dataset(data) if space == "nb201" else None
        tab = _table(table, key)
        ds, the_space = _data_and_space(space, data, seed)
        chosen_archs = sample_archs(the_space, sample, seed) if sample is not None else read_archs(the_space, archs)
        path = out_csv if out_csv is not None else _default_out(space, data, seed)
        _check_settings(path, {"space": space, "data": data, "seed": seed, "batch_size": batch_size})
        started = time.perf_counter()
        rows, computed = _score(the_space, ds, chosen_archs, chosen, path, seed, batch_size, as_json)
    seconds = time.perf_counter() - started
    _report_failures(rows, chosen)
    result: dict[str, Any] = {"spearman": None, "kendall": None, "n": len(rows), "csv": str(path),
                              "computed": computed, "seconds": round(seconds, 3)}
    if tab is not None:
        from archlab.bench import DATASETS
        from archlab.proxies import VOTE_PROXIES, proxy_correlations

        column = tab.columns[DATASETS[key]]
        acc = [100 * float(column[tab.space.index(tab.space.from_string(r["arch"]))]) for r in rows]
        votes = {"vote": VOTE_PROXIES} if set(VOTE_PROXIES) <= set(chosen) else None
        result.update(proxy_correlations(rows, acc, chosen, votes=votes), dataset=key)
    if as_json:
        print_json(result)
        return
    _print(result)


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Resume only rows made the same way: the settings that change a row are kept beside the CSV
    (``FILE.csv.json``); a different setting is a one-line error before anything is written."""
    import json

    side = path.with_name(path.name + ".json")
    if path.exists() and side.is_file():
        try:
            saved = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            saved = None
        if not isinstance(saved, dict):
            fail(f"{side} is not a settings file archlab wrote; remove it or use another --out")
        differ = [f"--{k.replace('_', '-')} {saved.get(k)} (now {v})" for k, v in settings.items()
                  if saved.get(k) != v]
        if differ:
            fail(f"{path} holds scores made with {', '.join(differ)}: use the same options to continue it, or "
                 "another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(json.dumps(settings, indent=2) + "\n")


def _table_dataset(data: str) -> str | None:
    """The NB201 table's dataset (``cifar10``, ``cifar100``, ``imagenet16``) that ``--data`` names, if any."""
    name = Path(data.strip()).stem if Path(data.strip()).exists() else data.strip()
    return _TABLE_DATASETS.get(re.sub(r"[-_ ]", "", name.lower()))


def _table(path: Path | None, key: str | None) -> Any:
    """The NB201 table when the correlations have a column to use; ``None`` (and a note) when the default one is
    not there. A ``--table`` that cannot be loaded is an error."""
    if key is None:
        if path is not None:
            fail("--table is only used on --space nb201 with --data cifar10, cifar100 or imagenet16")
        return None
    from archlab.bench import load_nb201_table
    from archlab.errors import DataError

    try:
        return load_nb201_table(path, hardware=False)
    except DataError as e:
        if path is not None:
            raise
        err.print(f"note: no correlations ({e})", highlight=False, soft_wrap=True)
        return None


def _data_and_space(space: str, data: str, seed: int) -> tuple[Any, Any]:
    """The dataset (split under ``seed``) and the space made for its inputs and classes, as ``archlab search``
    makes them."""
    from archlab.data import load_dataset
    from archlab.space import create_space

    ds = load_dataset(data, seed=seed)
    kwargs = {"vocab_size": ds.vocab_size} if ds.vocab_size is not None else {}
    return ds, create_space(space, input_shape=ds.input_shape, num_classes=ds.num_classes, **kwargs)


def _score(space: Any, ds: Any, archs: list, names: list[str], path: Path, seed: int, batch_size: int,
           as_json: bool) -> tuple[list[dict[str, Any]], int]:
    """Run :func:`score_archs` under a progress bar (stderr, when it is a terminal); Ctrl-C says how to resume."""
    from archlab.proxies import score_archs

    show = not as_json and err.is_terminal
    computed = 0
    with Progress(TextColumn("[bold]proxies[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=err, disable=not show,
                  transient=False) as bar:
        task = None

        def progress(ev: dict[str, Any]) -> None:
            nonlocal task, computed
            if ev["event"] == "start":
                if ev["resumed"] and not as_json:
                    err.print(f"resuming: {ev['resumed']} of {ev['total']} archs already in {path}",
                              highlight=False, soft_wrap=True)
                task = bar.add_task("", total=ev["todo"])
            else:
                computed = ev["done"]
                bar.update(task, completed=ev["done"], description=f"{ev['row']['seconds']:.2f} s/arch")

        try:
            rows = score_archs(space, ds, archs, names, path, seed=seed, batch_size=batch_size, progress=progress)
        except KeyboardInterrupt:
            bar.stop()
            err.print(f"interrupted: {computed} new row(s) kept in {path}; run the same command again to continue",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
    return rows, computed


def _report_failures(rows: list[dict[str, Any]], names: list[str]) -> None:
    """One stderr line per proxy that was NaN on some archs."""
    for name in names:
        bad = sum(1 for r in rows if r[name] != r[name])
        if bad:
            err.print(f"note: {name} is NaN for {bad} of {len(rows)} archs (reasons in the errors column)",
                      highlight=False, soft_wrap=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _print(result: dict[str, Any]) -> None:
    if result["spearman"] is None:
        out.print(f"{result['n']} archs scored ({result['computed']} now, in {result['seconds']:.1f} s); scores in "
                  f"{result['csv']} (no accuracy table for this space and data: no correlations)", highlight=False,
                  soft_wrap=True)
        return
    label = _LABELS[result["dataset"]]
    out.print(f"Rank correlation of each proxy with NAS-Bench-201's {label} test accuracy (200 epochs), "
              f"{result['n']} archs:", highlight=False, soft_wrap=True)
    t = RichTable()
    for col, justify in (("proxy", "left"), ("Spearman ρ", "right"), ("Kendall τ", "right"), ("n", "right")):
        t.add_column(col, justify=justify)
    rho = result["spearman"]
    for name in sorted(rho, key=lambda n: (rho[n] is None, -(rho[n] or 0.0))):  # the best proxy first
        t.add_row(name, _fmt(result["spearman"][name]), _fmt(result["kendall"][name]),
                  str(result["n_by_proxy"][name]))
    out.print(t)
    out.print(f"scores in {result['csv']} ({result['computed']} archs computed now, in {result['seconds']:.1f} s)",
              highlight=False)

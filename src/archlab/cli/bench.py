"""``archlab bench nb201``: NAS-Bench-201's published search protocol replayed on the table in seconds, the
published numbers printed beside archlab's; ``--pareto DEVICE`` prints the table's exact latency/accuracy front."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from archlab.cli._app import app, err, flag, out, print_json, user_errors
from archlab.errors import UserError

__all__ = ["bench_app"]

bench_app = typer.Typer(help="Tabular NAS benchmarks: published protocols replayed on their tables.",
                        no_args_is_help=True, epilog="Example: archlab bench nb201 --strategy rea --runs 100")
app.add_typer(bench_app, name="bench")

_DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


@bench_app.command("nb201", epilog="Examples: archlab bench nb201  |  archlab bench nb201 --strategy rea --runs 100 "
                                   "--dataset cifar100  |  archlab bench nb201 --objectives accuracy,latency "
                                   "--pareto pi5")
def nb201(
    strategy: Annotated[str | None, typer.Option(help="search strategy (default: archlab's best on this "
                                                      "protocol, surrogate_ls)")] = None,
    runs: Annotated[int, typer.Option(help="independent seeded runs")] = 500,
    budget_seconds: Annotated[float | None, typer.Option(help="simulated seconds per run (each query charged its "
                                                              "12-epoch training time; default 12,000 without "
                                                              "--queries, none with it)")] = None,
    queries: Annotated[int | None, typer.Option(help="at most this many queries per run (RoBoT's protocol: 20; "
                                                     "NASWOT's: 1, the best-scored candidate)")] = None,
    candidates: Annotated[int | None, typer.Option(help="naswot: random cells scored per run (N = 10, 100, 1000 "
                                                        "in the paper), drawn from the shipped nwot table")] = None,
    dataset: Annotated[str, typer.Option(help="test accuracy reported: cifar10, cifar100 or imagenet16 (the "
                                              "search always uses CIFAR-10 validation accuracy)")] = "cifar10",
    table: Annotated[Path | None, typer.Option(help="nb201_robot.csv (default: $ARCHLAB_DATA/nb201_robot.csv)")]
    = None,
    hardware: Annotated[Path | None, typer.Option(help="hwnasbench360.parquet (default: beside the table)")] = None,
    device: Annotated[str, typer.Option(help="measured device for latency: pi5 or pixel")] = "pi5",
    framework: Annotated[str, typer.Option(help="runtime measured: onnx, litert or torchmobile")] = "onnx",
    objectives: Annotated[str, typer.Option(help="accuracy, or accuracy,latency for a Pareto search")]
    = "accuracy",
    max_latency_ms: Annotated[float | None, typer.Option(help="an arch slower than this on --device is "
                                                               "infeasible")] = None,
    pareto: Annotated[str | None, typer.Option(help="print the whole table's exact latency/accuracy front on "
                                                    "this device (pi5, pixel) instead of searching")] = None,
    workers: Annotated[int, typer.Option(help="processes for the runs (default: the CPU count, at most 8)")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the first run (run i uses seed + i)")] = 0,
    as_json: Annotated[bool, flag("--json", "print JSON (keys mean, std, runs, published...)")]
    = False,
    rows: Annotated[Path | None, typer.Option(help="also write every run's row to this JSON file")] = None,
) -> None:
    """Replay NAS-Bench-201's search protocol: RUNS seeded runs of BUDGET_SECONDS simulated seconds (or QUERIES
    queries) each, the best arch by 12-epoch CIFAR-10 validation accuracy reported by its 200-epoch test accuracy,
    mean ± std beside the published numbers. The training-free strategies (robot, naswot) search the cells of
    the zero-cost proxy tables shipped with archlab (a random sample; the report says which)."""
    from archlab.bench import DEFAULT_BENCH_STRATEGY, load_nb201_table, run_protocol
    from archlab.search import Constraint

    with user_errors():
        device_used = pareto or device
        tab = load_nb201_table(table, hardware=hardware, device=device_used, framework=framework)
        if pareto is not None:
            _print_front(tab, device_used, framework, as_json)
            return
        constraints = [Constraint("latency_ms", max_latency_ms)] if max_latency_ms is not None else []
        names = [o.strip() for o in objectives.split(",") if o.strip()]
        name = strategy or ("nsga2" if len(names) > 1 else DEFAULT_BENCH_STRATEGY)
        n_workers = workers if workers > 0 else min(8, os.cpu_count() or 1)
        if budget_seconds is None and queries is None:
            budget_seconds = 12_000
        kwargs: dict[str, Any] = {}
        if candidates is not None:
            if name != "naswot":
                raise UserError(f"--candidates is an option of the naswot strategy, not of {name}")
            kwargs["n_candidates"] = candidates
        show = not as_json and err.is_terminal
        with Progress(TextColumn(f"[bold]nb201 {name}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=not show, transient=False) as bar:
            task = bar.add_task("runs", total=runs)
            result = run_protocol(tab, name, runs=runs, budget_seconds=budget_seconds, queries=queries,
                                  strategy_kwargs=kwargs, dataset=dataset,
                                  objectives=names, constraints=constraints, workers=n_workers, first_seed=seed,
                                  progress=lambda done, total: bar.update(task, completed=done))
    summary = result.summary()
    if rows is not None:
        import json

        rows.write_text(json.dumps({"summary": summary, "rows": result.rows}, indent=2))
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    label = _DATASET_LABELS[s["dataset"]]
    published = s["published"]
    budget = " and ".join(([f"{s['budget_seconds']:,.0f} simulated s"] if s["budget_seconds"] is not None else [])
                          + ([f"{s['queries']} queries"] if s.get("queries") is not None else []))
    t = RichTable(title=f"NAS-Bench-201, {s['strategy']}: {s['runs']} runs of {budget}")
    t.add_column("")
    t.add_column(f"{label} test accuracy (%)", justify="right")
    t.add_row("archlab", _pm(s["mean"], s["std"]))
    t.add_row(f"published ({published['source']})" if published else "published",
              _pm(published["mean"], published["std"]) if published else "-")
    if s.get("pool_optimum"):
        t.add_row("best cell of the searched sample", f"{s['pool_optimum'][s['dataset']]:.2f}")
    out.print(t)
    out.print(f"{s['queries_mean']:.1f} queries per run on average; {s['wall_s']:.1f} s of wall time")
    if s.get("note"):
        out.print(s["note"])
    if s.get("proxy_table"):
        out.print(f"candidates: {s['proxy_table']}")
    if s.get("hypervolume_ratio_mean") is not None:
        ratio = _pm(s["hypervolume_ratio_mean"], s["hypervolume_ratio_std"])
        out.print(f"hypervolume of each run's front / the table's front's: {ratio}")


def _print_front(tab: Any, device: str, framework: str, as_json: bool) -> None:
    from archlab.bench import front_hypervolume
    from archlab.search import Objective

    objs = [Objective("accuracy", "test_accuracy", "maximize"), Objective("latency", "latency_ms", "minimize")]
    front, hv, reference = front_hypervolume(tab, objs)
    acc, lat = tab.columns["test_accuracy"], tab.columns["latency_ms"]
    space = tab.space
    cells = [{"index": int(i), "arch": space.to_string(space.from_index(int(i))), "test_accuracy": 100 * acc[i],
              "latency_ms": float(lat[i])} for i in front]
    if as_json:
        print_json({"device": device, "framework": framework, "metric": "test_accuracy (CIFAR-10, 200 epochs)",
                    "front": cells, "hypervolume": hv, "reference": reference})
        return
    t = RichTable(title=f"NAS-Bench-201: exact accuracy/latency front ({device}, {framework}), {len(cells)} cells")
    for col, justify in (("index", "right"), ("arch", "left"), ("CIFAR-10 test %", "right"),
                         ("latency ms", "right")):
        t.add_column(col, justify=justify)
    for c in cells:
        t.add_row(str(c["index"]), c["arch"], f"{c['test_accuracy']:.2f}", f"{c['latency_ms']:.3f}")
    out.print(t)
    out.print(f"hypervolume {hv:.4f} (reference: accuracy {100 * reference[0]:.2f} %, latency {reference[1]:.3f} ms)")

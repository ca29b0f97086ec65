"""``archlab search``: the search command, its progress bar and the summary it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from archlab.cli._app import app, err, out, print_json, user_errors
from archlab.report.format import format_count, format_int, format_ms, format_percent

__all__ = ["SearchProgress", "search"]


def _pct(value: Any, digits: int = 2) -> str:
    """The terminal's percentage: ``97.12%`` (the report writes ``97.1 %``)."""
    return format_percent(value, digits=digits, space="")


class SearchProgress:
    """A rich progress bar over the budget (time or trials) with the best result so far.

    Called with each event :func:`archlab.study.run_search` reports; draws on ``console`` (stderr by default)
    and does nothing when not ``enabled`` (JSON output, or stderr is not a terminal).
    """

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console if console is not None else err
        self.bar: Progress | None = None
        self.task: Any = None
        self.by_time = True

    def __call__(self, ev: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = ev["event"]
        if kind == "start":
            self.by_time = ev.get("budget_s") is not None
            total = ev["budget_s"] if self.by_time else ev["n_trials"]
            self.bar = Progress(TextColumn("[bold]search[/]"), BarColumn(), TextColumn("{task.description}"),
                                TimeElapsedColumn(), console=self.console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("starting", total=total)
            if ev.get("resumed"):
                self.console.print(f"resuming: {ev['trials']} finished trial(s) in the ledger")
        elif kind == "trial" and self.bar is not None:
            best = ev.get("best_val_accuracy")
            best_txt = f"best {_pct(best)} (#{ev['best_number']})" if best is not None else "no result yet"
            last = ev.get("val_accuracy")
            last_txt = _pct(last, digits=1) if last is not None else ev["state"]
            self.bar.update(self.task, completed=ev["elapsed_s"] if self.by_time else ev["done"],
                            description=f"trial {ev['number']}: {last_txt} | {best_txt}")
        elif kind == "final_start":
            if self.bar is not None:
                self.bar.update(self.task, completed=self.bar.tasks[0].total)
                self.bar.stop()
            secs = f"up to {ev['seconds']:.0f}s" if ev.get("seconds") else f"{ev['epochs']} epochs"
            self.console.print(f"training the best arch (trial {ev['number']}) longer: {secs}")
        elif kind == "no_result" and self.bar is not None:
            self.bar.stop()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command(epilog="Example: archlab search --data fashion-mnist --objectives accuracy,latency_ms "
                    "--max-latency-ms 2 --budget 30m")
def search(
    data: Annotated[str, typer.Option(help="digits, fashion-mnist, cifar10, or a path (image folder, "
                                           "IDX, .npz, .csv)")] = "digits",
    space: Annotated[str, typer.Option(help="predefined search space")] = "metaformer",
    mixers: Annotated[str | None, typer.Option(help="comma-separated token mixers to search among "
                                                    "(default: every registered mixer)")] = None,
    strategy: Annotated[str, typer.Option(help="random, rea, reinforce, tpe, nsga2")] = "rea",
    objectives: Annotated[str, typer.Option(help="comma-separated: accuracy, params, flops, latency_ms")]
    = "accuracy",
    budget: Annotated[str | None, typer.Option(help="wall-clock budget: 180s, 30m, 1h")] = None,
    trials: Annotated[int | None, typer.Option(help="stop after this many evaluated archs")] = None,
    seed: Annotated[int, typer.Option(help="seed of the strategy, splits and training")] = 0,
    epochs: Annotated[int, typer.Option(help="max epochs per trial (search fidelity)")] = 20,
    trial_seconds: Annotated[str | None, typer.Option(help="time fidelity per trial (default: budget/10)")]
    = None,
    train_subset: Annotated[int | None, typer.Option(help="train each trial on this many examples (0: all; "
                                                          "default: 10,000 of a large training split)")] = None,
    final_epochs: Annotated[int, typer.Option(help="epochs to retrain the best arch (0: no retraining)")] = 40,
    max_params: Annotated[int | None, typer.Option(help="constraint: most parameters")] = None,
    max_flops: Annotated[int | None, typer.Option(help="constraint: most FLOPs per image")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="constraint: most CPU ms at batch 1")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default: sqlite in the run folder)")]
    = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="run folder (default: runs/search-<time>)")]
    = None,
    resume: Annotated[Path | None, typer.Option(help="continue the interrupted run in this folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip report.html")] = False,
    no_median_stopping: Annotated[bool, typer.Option(
        "--no-median-stopping", help="train every trial to its full fidelity instead of stopping those whose "
        "learning curve falls below the median of earlier trials' curves")] = False,
    workers: Annotated[int, typer.Option(help="trials trained side by side, each in its own process with its "
                                             "share of the cores (small nets use a second thread poorly)")] = 1,
    no_proxy_warmup: Annotated[bool, typer.Option(
        "--no-proxy-warmup", help="rea: start from plain random samples instead of the best of 10 by zero-cost "
                                  "proxies (NASWOT + SNIP)")] = False,
) -> None:
    """Search a space on a dataset under a budget; write the ledger, best model, ONNX, report and summary."""
    from archlab.study import SearchConfig, parse_duration, run_search

    with user_errors():
        budget_s = parse_duration(budget) if budget is not None else None
        if budget is None and trials is None and resume is None:
            budget_s = 180.0
        cfg = None
        if resume is None or budget is not None or trials is not None:
            cfg = SearchConfig(
                space=space, data=data, mixers=tuple(mixers.split(",")) if mixers else None, strategy=strategy,
                objectives=tuple(objectives.split(",")),
                budget_s=budget_s, n_trials=trials, seed=seed, epochs=epochs,
                trial_seconds=parse_duration(trial_seconds, "--trial-seconds") if trial_seconds else None,
                train_subset=train_subset, final_epochs=final_epochs, max_params=max_params, max_flops=max_flops,
                max_latency_ms=max_latency_ms, storage=storage, proxy_warmup=not no_proxy_warmup,
                median_stopping=not no_median_stopping, workers=workers)
        progress = SearchProgress(enabled=not as_json and err.is_terminal)
        try:
            summary = run_search(cfg, resume if resume is not None else out_dir, resume=resume is not None,
                                 progress=progress, report=not no_report)
        finally:
            progress.close()
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    """The run in a few lines: trial counts, the Pareto front as a table, the best arch and the run folder."""
    best = summary.get("best")
    counts = summary["trials"]
    out.print(f"[bold]{counts['completed']}[/] archs trained, {counts['failed']} failed, "
              f"{counts['infeasible']} over constraints, in {summary['elapsed_s']:.0f}s")
    if best is None:
        out.print("no arch completed; see the report for the reasons")
        return
    table = Table(title="Pareto front (validation accuracy first)")
    for col in ("trial", "val acc", "test acc", "params", "FLOPs", "latency ms"):
        table.add_column(col, justify="right")
    for p in sorted(summary["pareto"], key=lambda p: -(p["val_accuracy"] or 0)):
        table.add_row(str(p["number"]), _pct(p["val_accuracy"]), _pct(p["test_accuracy"]),
                      format_int(p["params"]), format_count(p["flops"], digits=2),
                      format_ms(p["latency_ms"], unit=False))
    out.print(table)
    out.print(f"best: trial {best['number']}  val {_pct(best['val_accuracy'])}  test "
              f"{_pct(best['test_accuracy'])}  params {format_int(best['params'])}  "
              f"latency {format_ms(best['latency_ms'])}")
    out.print(f"run folder: {summary['run']['out']}  (report.html, best/, summary.json)")

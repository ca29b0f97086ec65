"""``archlab search``: the search command, its progress bar and the summary it prints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from archlab._urls import drop_password
from archlab.cli._app import EXIT_INTERRUPTED, app, err, fail, flag, out, print_json, process_start, user_errors
from archlab.errors import UserError, WorkersDied
from archlab.report.format import format_count, format_int, format_ms, format_percent
from archlab.search import list_strategies
from archlab.space import list_spaces

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
            self.bar = self._bar("search")
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
            self.bar = self._bar("final")
            self.task = self.bar.add_task("epoch 0", total=1.0)
        elif kind == "final_epoch" and self.bar is not None:
            acc = ev.get("val_accuracy")
            acc_txt = f": val {_pct(acc, digits=1)}" if acc is not None else ""
            self.bar.update(self.task, completed=min(1.0, ev.get("progress") or 0.0),
                            description=f"epoch {ev['epoch']}{acc_txt}")
        elif kind == "stage":
            if self.bar is not None:
                self.bar.stop()
                self.bar = None
            self.console.print(f"{ev['what']}…")
        elif kind == "no_result" and self.bar is not None:
            self.bar.stop()

    def _bar(self, label: str) -> Progress:
        bar = Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), TextColumn("{task.description}"),
                       TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=self.console,
                       transient=False)
        bar.start()
        return bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


#: Options that define a run and so cannot change when it is resumed (each sets the SearchConfig field of its name,
#: but for the flags in _FIELD).
_FIXED_ON_RESUME = ("data", "space", "mixers", "strategy", "objectives", "seed", "epochs", "trial_seconds",
                    "train_subset", "final_epochs", "max_params", "max_flops", "max_latency_ms", "storage",
                    "stopping", "no_median_stopping", "no_portfolio", "warmstart", "no_proxy_warmup",
                    "trial_memory", "max_memory", "precision")  # --workers may change
_FIELD = {"no_median_stopping": "stopping", "no_proxy_warmup": "warmstart", "trial_memory": "trial_memory_mb",
          "no_portfolio": "portfolio", "max_memory": "max_memory_mb"}


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or through the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _check_resume_options(ctx: typer.Context, resume: Path, cfg: Any, new_budget: bool) -> None:
    """Refuse options that cannot change on resume; say which budget the resumed run gets."""
    from archlab.study import SearchConfig
    from archlab.study._folder import load_run

    if _given(ctx, "out_dir"):
        raise UserError("--resume names the run folder; drop --out")
    info = load_run(resume)
    if "config" not in info:
        return
    saved = SearchConfig.from_dict(info["config"])
    for option in _FIXED_ON_RESUME:
        field = _FIELD.get(option, option)
        now, then = getattr(cfg, field), getattr(saved, field)
        if field == "storage" and now and then:  # the same storage, its password given again at run time
            now, then = drop_password(now), drop_password(then)
        if _given(ctx, option) and now != then:
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{flag} cannot change when resuming: the run in {resume} has {field} = "
                            f"{getattr(saved, field)!r}; drop {flag}, or start a new run with --out")
    if new_budget and (cfg.budget_s, cfg.n_trials) != (saved.budget_s, saved.n_trials):
        def show(seconds: float | None, trials: int | None) -> str:
            parts = ([f"{seconds:g} s"] if seconds is not None else []) + \
                    ([f"{trials} trials"] if trials is not None else [])
            return " and ".join(parts) or "none"
        err.print(f"resuming {resume} with a budget of {show(cfg.budget_s, cfg.n_trials)} in all "
                  f"(was {show(saved.budget_s, saved.n_trials)}), counting what the run already spent")


@app.command(epilog="Examples: archlab search --data digits --budget 3m  |  archlab search --data fashion-mnist "
                    "--objectives accuracy,latency_ms --max-latency-ms 2 --budget 30m  |  archlab search --resume "
                    "runs/search-20261203-101500 --budget 1h")
def search(
    ctx: typer.Context,
    data: Annotated[str, typer.Option(help="digits, fashion-mnist, cifar10, or a path (image folder, "
                                           "IDX, .npz, .csv)")] = "digits",
    space: Annotated[str, typer.Option(help=f"predefined search space: {', '.join(list_spaces())}")]
    = "image",
    mixers: Annotated[str | None, typer.Option(help="comma-separated token mixers to search among "
                                                    "(default: every registered mixer)")] = None,
    strategy: Annotated[str, typer.Option(help=", ".join(list_strategies()))] = "rea",
    objectives: Annotated[str, typer.Option(help="comma-separated: accuracy, params, flops, latency_ms")]
    = "accuracy",
    budget: Annotated[str | None, typer.Option(help="wall-clock budget: 180s, 30m, 1h")] = None,
    trials: Annotated[int | None, typer.Option(help="stop after this many evaluated archs")] = None,
    seed: Annotated[int, typer.Option(help="seed of the strategy, splits and training")] = 0,
    epochs: Annotated[int, typer.Option(help="max epochs per trial (search fidelity)")] = 20,
    trial_seconds: Annotated[str | None, typer.Option(
        help="time fidelity per trial (default: a third of the search's time with --stopping asha, a tenth "
             "otherwise)")]
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
    as_json: Annotated[bool, flag("--json", "print the summary as JSON on stdout")] = False,
    no_report: Annotated[bool, flag("--no-report", "skip report.html")] = False,
    stopping: Annotated[str, typer.Option(
        help="asha: successive halving, a trial goes on past a ninth and a third of its schedule only if it is in "
             "the best third of the trials there; median: stop a trial whose curve falls below the median of "
             "earlier trials' curves; none: every trial trains to its full fidelity",
        metavar="asha|median|none")] = "asha",
    no_median_stopping: Annotated[bool, typer.Option("--no-median-stopping", hidden=True,
                                                     help="deprecated: --stopping none")] = False,
    no_portfolio: Annotated[bool, flag(
        "--no-portfolio", "start from the strategy's own proposals instead of the space's known-good archs "
                          "(the textbook CNN, a small ResNet, ...)")] = False,
    workers: Annotated[int, typer.Option(help="trials trained side by side, each in its own process with its "
                                             "share of the cores (small nets use a second thread poorly)")] = 1,
    trial_memory: Annotated[float | None, typer.Option(
        help="a trial may grow its process's memory (address space) by at most this many MB; past it the trial "
             "fails with its reason and the search goes on (default: no limit)", metavar="MB")] = None,
    max_memory: Annotated[float | None, typer.Option(
        help="one-shot strategies (darts, gdas, spos): refuse, before training, a supernet whose estimated "
             "training memory exceeds this many MB (default: no check)", metavar="MB")] = None,
    precision: Annotated[str, typer.Option(
        help="training precision: fp32; bf16 (bfloat16 autocast, channels-last convolutions); auto: bf16 on CUDA "
             "and, on a CPU with native bfloat16 (avx512_bf16 / AMX), for images of 16 pixels a side or more "
             "(2.4x faster training steps on a Zen 4 CPU), else fp32", metavar="auto|fp32|bf16")] = "auto",
    executor: Annotated[str, typer.Option(help="where trials run: local (processes on this machine) or ray (Ray "
                                               "actors; pip install \"archlab\\[ray]\")", metavar="local|ray")]
    = "local",
    address: Annotated[str, typer.Option(help="--executor ray: local (a Ray instance started for the run), auto "
                                              "(the cluster this machine is part of) or ray://HOST:PORT")]
    = "local",
    warmstart: Annotated[str, typer.Option(
        help="proxies: in accuracy-only runs, each of the strategy's first trials (rea: its first population; "
             "others: a quarter of the expected trials, at most 10) is the best of 10 random archs by zero-cost "
             "proxies (NASWOT + SNIP ranks, + FLOPs under a time fidelity); none: every trial is the strategy's "
             "own proposal", metavar="proxies|none")] = "proxies",
    no_proxy_warmup: Annotated[bool, typer.Option("--no-proxy-warmup", hidden=True,
                                                  help="deprecated: --warmstart none")] = False,
    download: Annotated[bool, flag(
        "--download", "fetch fashion-mnist or cifar10 into ~/.cache/archlab when not found (needs internet; "
                           "md5-checked)")] = False,
) -> None:
    """Search a space on a dataset under a budget; write the ledger, best model, ONNX, report and summary."""
    from archlab.study import SearchConfig, parse_duration, run_search
    from archlab.study._folder import RUN_FILE, default_run_dir

    with user_errors():
        if no_proxy_warmup:  # the deprecated flag of the evolution-only warm-up
            if _given(ctx, "warmstart") and warmstart != "none":
                raise UserError(f"--no-proxy-warmup (deprecated: --warmstart none) contradicts --warmstart "
                                f"{warmstart}; drop one")
            warmstart = "none"
        if no_median_stopping:
            if _given(ctx, "stopping") and stopping != "none":
                raise UserError(f"--no-median-stopping (deprecated: --stopping none) contradicts --stopping "
                                f"{stopping}; drop one")
            stopping = "none"
        budget_s = parse_duration(budget) if budget is not None else None
        new_budget = budget is not None or trials is not None
        asked = SearchConfig(
            space=space, data=data, mixers=tuple(mixers.split(",")) if mixers else None, strategy=strategy,
            objectives=tuple(objectives.split(",")),
            budget_s=budget_s if new_budget else 180.0, n_trials=trials, seed=seed, epochs=epochs,
            trial_seconds=parse_duration(trial_seconds, "--trial-seconds") if trial_seconds else None,
            train_subset=train_subset, final_epochs=final_epochs, max_params=max_params, max_flops=max_flops,
            max_latency_ms=max_latency_ms, storage=storage, warmstart=warmstart,
            stopping=stopping, portfolio=not no_portfolio, workers=workers, executor=executor, address=address,
            trial_memory_mb=trial_memory, max_memory_mb=max_memory, precision=precision)
        # a resumed run keeps its saved configuration; only a new budget (time and/or trials) replaces the old one
        cfg = asked if resume is None or new_budget else None
        if resume is not None:
            _check_resume_options(ctx, resume, asked, new_budget)
        started = process_start()  # the budget counts the command's start-up (a download does not)
        if download:
            from archlab.data import fetch_dataset

            fetch_dataset(data)
            started = time.perf_counter()
        if resume is None and out_dir is None:
            out_dir = default_run_dir()
        folder = resume if resume is not None else out_dir
        progress = SearchProgress(enabled=not as_json and err.is_terminal)
        try:
            summary = run_search(cfg, folder, resume=resume is not None, progress=progress, report=not no_report,
                                 started=started, ledger=storage if resume is not None else None,
                                 workers=workers if _given(ctx, "workers") else None,
                                 executor=executor if _given(ctx, "executor") else None,
                                 address=address if _given(ctx, "address") else None)
        except WorkersDied as e:
            progress.close()
            fewer = f" --workers {max(1, workers // 2)}" if workers > 1 else ""
            fail(f"{e}; continue with `archlab search --resume {folder}{fewer}`", code=1)
        except KeyboardInterrupt:
            progress.close()
            if (Path(folder) / RUN_FILE).is_file():
                message = (f"interrupted: finished trials are kept in {folder}; continue with "
                           f"`archlab search --resume {folder}`")
            else:
                message = "interrupted before the run started; nothing was written"
            err.print(message, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
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
    table = Table(title="Pareto front of the search (trials at the search fidelity)")
    for col in ("trial", "val acc", "test acc", "params", "FLOPs", "latency ms"):
        table.add_column(col, justify="right")
    for p in sorted(summary["pareto"], key=lambda p: -(p["val_accuracy"] or 0)):
        table.add_row(str(p["number"]), _pct(p["val_accuracy"]), _pct(p["test_accuracy"]),
                      format_int(p["params"]), format_count(p["flops"], digits=2),
                      format_ms(p["latency_ms"], unit=False))
    out.print(table)
    final = summary.get("final") or {}
    searched = best.get("search") or {}
    if final.get("used"):
        epochs = final.get("epochs")
        what = f"trial {best['number']}'s arch trained longer ({epochs} epoch{'' if epochs == 1 else 's'})"
    else:
        what = f"trial {best['number']}'s weights from the search"
        if final.get("state") == "skipped":
            what += " (no longer training: " + str(final.get("reason")) + ")"
    line = (f"exported model: {what}: val {_pct(best['val_accuracy'])}, test {_pct(best['test_accuracy'])}, "
            f"{format_int(best['params'])} params, latency {format_ms(best['latency_ms'])} at batch 1")
    if final.get("used") and searched.get("val_accuracy") is not None:
        line += f" (in the search: val {_pct(searched['val_accuracy'])})"
    out.print(line, highlight=False)
    out.print(f"run folder: {summary['run']['out']}  (report.html, best/, summary.json)")

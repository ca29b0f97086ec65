"""The ``archlab`` command.

Exit codes: 0 success, 2 bad input (one line on stderr naming what was wrong), 1 internal failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from archlab.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="archlab: declare, search, export and compare neural-network architectures.")
err = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class _SearchProgress:
    """A rich progress bar over the budget (time or trials) with the best result so far."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
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
                                TimeElapsedColumn(), console=err, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("starting", total=total)
            if ev.get("resumed"):
                err.print(f"resuming: {ev['trials']} finished trial(s) in the ledger")
        elif kind == "trial" and self.bar is not None:
            best = ev.get("best_val_accuracy")
            best_txt = f"best {best * 100:.2f}% (#{ev['best_number']})" if best is not None else "no result yet"
            last = ev.get("val_accuracy")
            last_txt = f"{last * 100:.1f}%" if last is not None else ev["state"]
            self.bar.update(self.task, completed=ev["elapsed_s"] if self.by_time else ev["done"],
                            description=f"trial {ev['number']}: {last_txt} | {best_txt}")
        elif kind == "final_start":
            if self.bar is not None:
                self.bar.update(self.task, completed=self.bar.tasks[0].total)
                self.bar.stop()
            secs = f"up to {ev['seconds']:.0f}s" if ev.get("seconds") else f"{ev['epochs']} epochs"
            err.print(f"training the best arch (trial {ev['number']}) longer: {secs}")
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
    strategy: Annotated[str, typer.Option(help="random, rea, tpe, nsga2")] = "rea",
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
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/search-<time>)")] = None,
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

    try:
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
        progress = _SearchProgress(enabled=not as_json and err.is_terminal)
        try:
            summary = run_search(cfg, resume if resume is not None else out, resume=resume is not None,
                                 progress=progress, report=not no_report)
        finally:
            progress.close()
    except UserError as e:
        _fail(str(e))
    if as_json:
        _print_json(summary)
        return
    _print_summary(summary)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _print_summary(summary: dict[str, Any]) -> None:
    best = summary.get("best")
    counts = summary["trials"]
    out.print(f"[bold]{counts['completed']}[/] archs trained, {counts['failed']} failed, "
              f"{counts['infeasible']} over constraints, in {summary['elapsed_s']:.0f}s")
    if best is None:
        out.print("no arch completed; see the report for the reasons")
        return
    table = Table(title="Pareto front (validation accuracy first)")
    for col in ("trial", "val acc", "test acc", "params", "MFLOPs", "latency ms"):
        table.add_column(col, justify="right")
    for p in sorted(summary["pareto"], key=lambda p: -(p["val_accuracy"] or 0)):
        table.add_row(str(p["number"]), _pct(p["val_accuracy"]), _pct(p["test_accuracy"]), f"{p['params']:,}",
                      f"{(p['flops'] or 0) / 1e6:.2f}", f"{p['latency_ms']:.3f}")
    out.print(table)
    out.print(f"best: trial {best['number']}  val {_pct(best['val_accuracy'])}  test "
              f"{_pct(best['test_accuracy'])}  params {best['params']:,}  latency {best['latency_ms']:.3f} ms")
    out.print(f"run folder: {summary['run']['out']}  (report.html, best/, summary.json)")


@app.command(epilog="Example: archlab export runs/search-20261126-120000 --out model.onnx")
def export(
    run_dir: Annotated[Path, typer.Argument(help="a finished run folder")],
    output: Annotated[Path | None, typer.Option("--out", help="ONNX file (default: RUN/best/model.onnx)")]
    = None,
    atol: Annotated[float, typer.Option(help="largest allowed |ONNX - PyTorch| difference")] = 1e-4,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Export the best model of a run to ONNX and check it against PyTorch with ONNX Runtime."""
    from archlab.data import load_dataset
    from archlab.export import OnnxMismatch, check_onnx, export_onnx, load_weights
    from archlab.study import SearchConfig, load_run, make_space

    try:
        run = load_run(run_dir)
        cfg = SearchConfig.from_dict(run["config"])
        arch_file = run_dir / "best" / "arch.json"
        if not arch_file.is_file():
            raise UserError(f"{run_dir} has no best/arch.json (the run has not finished)")
        info = run.get("data") or {}
        shape, classes, vocab = info.get("input_shape"), info.get("num_classes"), info.get("vocab_size")
        if shape is None or classes is None:
            d = load_dataset(cfg.data, seed=cfg.seed)
            shape, classes, vocab = d.input_shape, d.num_classes, d.vocab_size
        space = make_space(cfg, tuple(shape), int(classes), vocab)
        io = {"input_dtype": "long" if vocab is not None else "float", "vocab_size": vocab}
        try:
            text = arch_file.read_text()
        except UnicodeDecodeError:
            raise UserError(f"{arch_file} is not a text file") from None
        arch = space.validate(text)
        model = load_weights(space.build(arch), run_dir / "best" / "model.safetensors")
        target = output or run_dir / "best" / "model.onnx"
        export_onnx(model, tuple(shape), target, **io)
        try:
            diff = check_onnx(model, target, tuple(shape), atol=atol, **io)
        except OnnxMismatch as e:
            _fail(str(e), code=1)
    except UserError as e:
        _fail(str(e))
    result = {"onnx": str(target), "max_abs_diff": diff, "atol": atol, "input_shape": list(shape)}
    if as_json:
        _print_json(result)
    else:
        out.print(f"wrote {target} (max |ONNX - PyTorch| = {diff:.2e})")


@app.command(epilog="Example: archlab report runs/search-20261126-120000")
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (finished or not)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """(Re)write RUN/report.html from the ledger, also for a run that is still going or was interrupted."""
    from archlab.study import rewrite_report

    try:
        path = rewrite_report(run_dir)
    except UserError as e:
        _fail(str(e))
    if as_json:
        _print_json({"report": str(path)})
    else:
        out.print(f"wrote {path}")


zoo_app = typer.Typer(add_completion=False, no_args_is_help=True, help="the model and mixer zoo")
app.add_typer(zoo_app, name="zoo")


def _model_counts(name: str) -> dict[str, Any]:
    """Name, family, paper, params and FLOPs (at the registered default input) without allocating weights."""
    import torch

    from archlab import zoo
    from archlab.measure import count_flops, count_params

    info = zoo.model_info(name)
    row: dict[str, Any] = {"name": name, "family": info["family"], "paper": info["paper"],
                           "input_shape": list(info["input_shape"]) if info["input_shape"] else None,
                           "params": None, "flops": None}
    try:
        with torch.device("meta"):  # shapes only: even multi-billion-parameter models cost nothing to count
            model = zoo.create_model(name)
        row["params"] = count_params(model)
        if info["input_shape"]:
            row["flops"] = count_flops(model, info["input_shape"], input_dtype=info["input_dtype"])
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:  # an op without a meta kernel
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    return row


def _si(n: int | None, giga: str = "G") -> str:
    if n is None:
        return "—"
    for unit, scale in ((giga, 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


@zoo_app.command("list", epilog="Example: archlab zoo list 'poolformer*'")
def zoo_list(
    pattern: Annotated[str, typer.Argument(help="fnmatch pattern over model names")] = "*",
    mixers: Annotated[bool, typer.Option("--mixers", help="list token mixers instead of models")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Registered models (name, family, paper, params, FLOPs at the default input), or token mixers."""
    from archlab import zoo

    if mixers:
        rows = [{"name": n, "layout": zoo.get_mixer_spec(n).layout, "causal": zoo.get_mixer_spec(n).causal,
                 "paper": zoo.get_mixer_spec(n).paper} for n in zoo.list_mixers(pattern)]
        if as_json:
            _print_json(rows)
            return
        table = Table("mixer", "layout", "causal", "paper")
        for r in rows:
            table.add_row(r["name"], r["layout"], "yes" if r["causal"] else "", r["paper"])
        out.print(table)
        return
    names = zoo.list_models(pattern)
    if not names:
        _fail(f"no model matches {pattern!r}; `archlab zoo list` shows them all")
    rows = [_model_counts(n) for n in names]
    if as_json:
        _print_json(rows)
        return
    table = Table("model", "family", "params", "FLOPs", "input", "paper")
    for r in rows:
        shape = "×".join(map(str, r["input_shape"])) if r["input_shape"] else "—"
        table.add_row(r["name"], r["family"], _si(r["params"], "B"), _si(r["flops"]), shape, r["paper"])
    out.print(table)


@zoo_app.command("profile", epilog="Example: archlab zoo profile poolformer_s12 --batches 1,32")
def zoo_profile(
    name: Annotated[str, typer.Argument(help="a registered model name")],
    batches: Annotated[str, typer.Option(help="comma-separated batch sizes for latency")] = "1,32",
    repeats: Annotated[int, typer.Option(help="timed forward passes per batch size (median)")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Params, FLOPs, CPU latency (1 thread, median) at each batch size, and peak activation memory."""
    from archlab import zoo
    from archlab.measure import profile_model

    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        _fail(f"--batches must be positive integers separated by commas, got {batches!r}")
    if repeats < 1:
        _fail(f"--repeats must be >= 1, got {repeats}")
    try:
        info = zoo.model_info(name)
        if not info["input_shape"]:
            raise UserError(f"model {name!r} has no registered default input shape to profile at")
        model = zoo.create_model(name)
    except UserError as e:
        _fail(str(e))
    with err.status(f"profiling {name}"):
        result = profile_model(model, info["input_shape"], latency_batches=sizes, repeats=repeats,
                               input_dtype=info["input_dtype"], memory=True)
    result = {"name": name, "input_shape": list(info["input_shape"]), **result}
    if as_json:
        _print_json(result)
        return
    table = Table("measure", "value")
    table.add_row("input", "×".join(map(str, info["input_shape"])))
    table.add_row("params", f"{result['params']:,}")
    table.add_row("FLOPs (batch 1)", f"{result['flops']:,}")
    for b in sizes:
        table.add_row(f"CPU latency, batch {b}", f"{result[f'latency_ms_b{b}']:.2f} ms")
    table.add_row("peak activation memory (batch 1)", f"{result['peak_activation_bytes'] / 2**20:.2f} MiB")
    out.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: completed trials are in the ledger; continue with --resume RUN_FOLDER")
        sys.exit(130)



if __name__ == "__main__":
    main()

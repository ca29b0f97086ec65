"""``archlab zoo list`` and ``archlab zoo profile``: the model and mixer zoo, with numbers from
:mod:`archlab.measure`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from archlab.cli._app import app, err, fail, flag, out, print_json, user_errors
from archlab.report.format import format_bytes, format_count, format_int, format_ms, format_shape

__all__ = ["zoo_app"]

zoo_app = typer.Typer(add_completion=False, no_args_is_help=True, help="the model and mixer zoo",
                      epilog="Examples: archlab zoo list 'poolformer*'  |  archlab zoo list --mixers  |  "
                             "archlab zoo profile unireplknet_a")
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list", epilog="Example: archlab zoo list 'poolformer*'")
def zoo_list(
    pattern: Annotated[str, typer.Argument(help="fnmatch pattern over model names")] = "*",
    mixers: Annotated[bool, flag("--mixers", "list token mixers instead of models")] = False,
    as_json: Annotated[bool, flag("--json", "print the result as JSON on stdout")] = False,
) -> None:
    """Registered models (name, family, paper, params, FLOPs at the default input), or token mixers."""
    from archlab import zoo
    from archlab.measure import zoo_model_counts

    if mixers:
        specs = {n: zoo.get_mixer_spec(n) for n in zoo.list_mixers(pattern)}
        rows = [{"name": n, "layout": s.layout, "causal": s.causal, "paper": s.paper} for n, s in specs.items()]
        if as_json:
            print_json(rows)
            return
        table = Table("mixer", "layout", "causal", "paper")
        for r in rows:
            table.add_row(r["name"], r["layout"], "yes" if r["causal"] else "", r["paper"])
        out.print(table)
        return
    names = zoo.list_models(pattern)
    if not names:
        fail(f"no model matches {pattern!r}; `archlab zoo list` shows them all")
    rows = []
    # counting builds every model (on the meta device): about a minute for the whole zoo, so show how far it is
    with Progress(TextColumn("[bold]counting[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeRemainingColumn(), console=err, transient=True, disable=as_json or not err.is_terminal) as bar:
        task = bar.add_task("", total=len(names))
        for name in names:
            bar.update(task, description=name)
            rows.append(zoo_model_counts(name))
            bar.advance(task)
    if as_json:
        print_json(rows)
        return
    table = Table()
    table.add_column("model", no_wrap=True, min_width=max(len(n) for n in names))  # names are never cut
    for column in ("family", "params", "FLOPs", "input", "paper"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], r["family"], format_count(r["params"], digits=2, giga="B"),
                      format_count(r["flops"], digits=2), format_shape(r["input_shape"]), r["paper"])
    out.print(table)
    for r in rows:
        if r.get("error"):
            out.print(f"{r['name']}: no counts ({r['error']})", highlight=False, soft_wrap=True)


@zoo_app.command("profile", epilog="Example: archlab zoo profile poolformer_s12 --batches 1,32")
def zoo_profile(
    name: Annotated[str, typer.Argument(help="a registered model name")],
    batches: Annotated[str, typer.Option(help="comma-separated batch sizes for latency")] = "1,32",
    repeats: Annotated[int, typer.Option(help="timed forward passes per batch size (median)")] = 10,
    as_json: Annotated[bool, flag("--json", "print the result as JSON on stdout")] = False,
) -> None:
    """Params, FLOPs, CPU latency (1 thread, median) at each batch size, and peak activation memory."""
    from archlab.measure import profile_zoo_model

    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        fail(f"--batches must be positive integers separated by commas, got {batches!r}")
    if repeats < 1:
        fail(f"--repeats must be >= 1, got {repeats}")
    with user_errors(), err.status(f"profiling {name}"):
        result = profile_zoo_model(name, latency_batches=sizes, repeats=repeats)
    if as_json:
        print_json(result)
        return
    table = Table("measure", "value")
    table.add_row("input", format_shape(result["input_shape"]))
    table.add_row("params", format_int(result["params"]))
    table.add_row("FLOPs (batch 1)", format_int(result["flops"]))
    for b in sizes:
        table.add_row(f"CPU latency, batch {b}", format_ms(result[f"latency_ms_b{b}"]))
    table.add_row("peak activation memory (batch 1)", format_bytes(result["peak_activation_bytes"]))
    out.print(table)

"""``archlab report``: (re)write a run's report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archlab.cli import _print_json, _user_errors, app, out


@app.command(epilog="Example: archlab report runs/search-20261126-120000")
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (finished or not)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """(Re)write RUN/report.html from the ledger, also for a run that is still going or was interrupted."""
    from archlab.study import rewrite_report

    with _user_errors():
        path = rewrite_report(run_dir)
    if as_json:
        _print_json({"report": str(path)})
    else:
        out.print(f"wrote {path}")

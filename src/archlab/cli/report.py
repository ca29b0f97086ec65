"""``archlab report``: (re)write a run's report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archlab.cli._app import app, flag, out, print_json, user_errors


@app.command(epilog="Example: archlab report runs/search-20261126-120000")
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (finished or not)")],
    as_json: Annotated[bool, flag("--json", "print the result as JSON on stdout")] = False,
) -> None:
    """(Re)write RUN/report.html from the ledger, also for a run that is still going or was interrupted."""
    from archlab.study import rewrite_report

    with user_errors():
        path = rewrite_report(run_dir)
    if as_json:
        print_json({"report": str(path)})
    else:
        out.print(f"wrote {path}")

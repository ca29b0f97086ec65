"""The ``archlab`` command: one typer app, one module per command group.

``archlab search`` (:mod:`archlab.cli.search`), ``archlab export`` (:mod:`archlab.cli.export`), ``archlab
report`` (:mod:`archlab.cli.report`) and ``archlab zoo list|profile`` (:mod:`archlab.cli.zoo`) register
themselves on :data:`app`. The commands only parse options, call the library and print; the work (searching,
loading and exporting a model, measuring) is done by :mod:`archlab.study`, :mod:`archlab.measure` and
:mod:`archlab.zoo`, and numbers are written by :mod:`archlab.report.format`.

Exit codes: 0 success, 2 bad input (one line on stderr naming what was wrong), 1 internal failure, 130
interrupted. Domain imports happen inside the commands so that ``archlab --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from archlab.errors import UserError

__all__ = ["app", "main"]

#: Exit codes of the command.
EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="archlab: declare, search, export and compare neural-network architectures.")
#: Messages, progress and errors go to stderr; results (tables, JSON) to stdout, so they can be piped.
err = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code`` (2: bad input, 1: internal)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a :class:`~archlab.errors.UserError` raised inside into :func:`_fail` (exit code 2)."""
    try:
        yield
    except UserError as e:
        _fail(str(e))


def _print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (values JSON does not know, such as paths, as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def main() -> None:
    """The console script: run the app; Ctrl-C ends with a hint on how to resume, and exit code 130."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: completed trials are in the ledger; continue with --resume RUN_FOLDER")
        sys.exit(EXIT_INTERRUPTED)


# The command groups register themselves on ``app`` when imported; the order here is the order of ``--help``.
from archlab.cli import search, export, report, zoo  # noqa: E402, F401, I001

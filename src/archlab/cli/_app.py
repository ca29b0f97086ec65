"""What every command module of the CLI shares: the typer app, the consoles, exit codes and error handling."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from archlab.errors import UserError

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "app", "err", "fail", "flag", "flag_help", "main",
           "out", "print_json", "process_start", "user_errors"]

_IMPORTED = time.perf_counter()

#: Exit codes of the command.
EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _as_flag(option: Any) -> Any:
    if option is not None:
        option.metavar = ""  # typer would show ``--help <bool>``
    return option


class _Command(TyperCommand):
    """A command whose ``--help`` is shown as the flag it is."""

    def get_help_option(self, ctx: Any) -> Any:
        return _as_flag(super().get_help_option(ctx))


class _Group(TyperGroup):
    """A group whose ``--help`` is shown as the flag it is."""

    def get_help_option(self, ctx: Any) -> Any:
        return _as_flag(super().get_help_option(ctx))


def flag_help(typer_app: typer.Typer) -> None:
    """Make every command and group of ``typer_app`` (registered so far) show ``--help`` as a flag."""
    def default(cls: Any) -> bool:  # unset, typer's own, or typer's placeholder for its own
        return getattr(cls, "value", cls) in (None, TyperGroup, TyperCommand)

    if default(typer_app.info.cls):
        typer_app.info.cls = _Group
    for command in typer_app.registered_commands:
        if default(command.cls):
            command.cls = _Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            flag_help(group.typer_instance)


app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="archlab: declare, search, export and compare neural-network architectures.",
                  epilog="Examples: archlab search --data fashion-mnist --budget 30m  |  archlab zoo list  |  "
                         "archlab bench nb201 --strategy rea --runs 100  |  archlab export runs/search-DATE "
                         "--out model.onnx  |  archlab COMMAND --help")
#: Messages, progress and errors go to stderr; results (tables, JSON) to stdout, so they can be piped.
err = Console(stderr=True)
out = Console()


def flag(name: str, help: str) -> Any:  # noqa: A002 (typer's name)
    """A boolean flag: shown in ``--help`` without a value placeholder."""
    return typer.Option(name, help=help, metavar="")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code`` (2: bad input, 1: internal)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`~archlab.errors.UserError` raised inside into :func:`fail` (exit code 2)."""
    try:
        yield
    except UserError as e:
        fail(str(e))


def process_start() -> float:
    """When this process started, as a ``time.perf_counter()`` value (so a budget counts Python's start-up and
    the imports): from ``/proc/self/stat`` on Linux, else when this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name: field 3 onwards
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    now = time.perf_counter()
    return now - age if 0.0 <= age <= now - _IMPORTED + 60.0 else _IMPORTED


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (values JSON does not know, such as paths, as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def main() -> None:
    """The console script: run the app; Ctrl-C ends with a hint on how to resume, and exit code 130."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: completed trials are in the ledger; continue with --resume RUN_FOLDER")
        sys.exit(EXIT_INTERRUPTED)

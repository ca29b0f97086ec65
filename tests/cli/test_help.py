"""Every command's --help: an example, help text for every option, flags without a value placeholder, and the
names a user may pass (spaces)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from archlab.cli import app
from archlab.space import list_spaces

COMMANDS = [[], ["search"], ["export"], ["report"], ["bench"], ["bench", "nb201"], ["zoo"], ["zoo", "list"],
            ["zoo", "profile"], ["proxies"]]


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "archlab")
def test_help_has_an_example_and_describes_every_option(command: list[str]) -> None:
    text = _help(*command)
    assert re.search(r"Examples?: archlab ", text), text
    for line in text.splitlines():
        match = re.match(r"│ (--[a-z-]+)\s+(<\w+>)?\s*(.*?)\s*│$", line)
        if match is None:
            continue
        option, placeholder, description = match.groups()  # --help too: typer's own flag shows no placeholder
        assert description, f"{' '.join(command)} {option} has no help text"
        assert placeholder != "<bool>", f"{' '.join(command)} {option} shows a value placeholder for a flag"


def test_search_help_lists_the_spaces() -> None:
    text = " ".join(_help("search").split())
    for name in list_spaces():
        assert name in text

"""Self-contained offline HTML report of one architecture-search run.

The page has five parts: what was searched and the best architecture found; the Pareto plot (validation
accuracy against latency, parameters or FLOPs, switchable with a dropdown); search progress (best-so-far
validation accuracy per trial); learning curves of the top trials; and a sortable table of every trial.

The page is the Jinja2 template ``templates/report.html.j2`` (with its stylesheet and sort script inlined
from the same folder); :mod:`archlab.report.tables` turns the run into the plain text the template shows and
:mod:`archlab.report.figures` draws the plotly figures, with plotly.js embedded once so the file opens without
network access. Autoescape is on: everything that comes from the run (architectures, names, failure reasons)
is HTML-escaped on its way into the page; only the figure divs plotly writes go in as markup.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from markupsafe import Markup

from archlab._io import atomic_write_text
from archlab.errors import UserError
from archlab.report import figures as _figures
from archlab.report import tables as _tables
from archlab.report._trials import checked, front_numbers, is_plottable, mapping

__all__ = ["render_report", "write_report"]

TEMPLATE = "report.html.j2"


@functools.cache
def _environment() -> jinja2.Environment:
    """The template environment (built once): autoescape on, undefined names are errors, not blanks."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archlab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _title(summary: Mapping[str, Any]) -> str:
    run = mapping(summary.get("run"))
    title = "archlab report"
    if run.get("space") is not None:
        title += f" — {run['space']}"
        if run.get("data") is not None:
            title += f" on {run['data']}"
    return title


def render_report(summary: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> str:
    """Return the HTML text of the report of one search run (see the module docstring for its sections).

    Deterministic: the same summary and trials give the same bytes. Input of the wrong type (a summary that
    is not a mapping, a trial without a number or state) is a :class:`~archlab.errors.UserError`; missing
    metrics are not, since a report is also written for runs that are still going.
    """
    summary, trials = checked(summary, trials)
    completed = [trial for trial in trials if is_plottable(trial)]
    front = front_numbers(summary, trials, completed)
    divs = _figures.figure_divs(_figures.figures(summary, completed, front))
    return _environment().get_template(TEMPLATE).render(
        title=_title(summary),
        run_facts=_tables.run_facts(summary),
        tally=_tables.trial_tally(summary, trials),
        best=_tables.best_block(summary, completed),
        choices=_tables.choices(summary),
        completed=bool(completed),
        figures={name: Markup(div) for name, div in divs.items()},  # plotly's own output: trusted markup
        top_curves=_figures.TOP_CURVES,
        columns=_tables.COLUMNS,
        rows=_tables.trial_rows(trials, front),
    )


def write_report(
    path: str | os.PathLike[str], summary: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]
) -> pathlib.Path:
    """Render the report and write it to ``path`` atomically; return the path written.

    The text goes to a temporary file in the same folder, which then replaces ``path`` in one step, so a
    reader (or a crash) never sees a half-written report. Missing parent folders are created.
    """
    text = render_report(summary, trials)
    target = pathlib.Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the folder of the report {str(target)!r}: {error.strerror}") from None
    if target.is_dir():
        raise UserError(f"the report path {str(target)!r} is a folder; give a file name such as report.html")
    try:
        return atomic_write_text(target, text)
    except OSError as error:
        raise UserError(f"cannot write the report to {str(target)!r}: {error.strerror or error}") from None

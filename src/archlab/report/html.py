"""Self-contained offline HTML report of one architecture-search run.

The page has five parts: what was searched and the best architecture found; the Pareto plot (validation
accuracy against latency, parameters or FLOPs, switchable with a dropdown); search progress (best-so-far
validation accuracy per trial); learning curves of the top trials; and a sortable table of every trial.
Plots are plotly figures; plotly.js is embedded once, inline, so the file opens without network access.
The layout of the plots follows optuna's visualisation module (``plot_pareto_front``,
``plot_optimization_history``, ``plot_intermediate_values``), whose names the sections echo.

Everything that comes from the run (architectures, names, failure reasons) is HTML-escaped before it reaches
the page, and hover text is escaped too because plotly interprets a subset of HTML tags in labels.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from archlab._io import atomic_write_text
from archlab.errors import UserError
from archlab.report.pareto import pareto_mask

__all__ = ["render_report", "write_report"]

#: The x axes the Pareto plot can show, in order of preference: (trial key, axis title, dropdown label).
X_METRICS = (
    ("latency_ms", "latency (ms)", "latency"),
    ("params", "parameters", "params"),
    ("flops", "FLOPs", "FLOPs"),
)

#: How an objective name in ``summary["run"]["objectives"]`` maps onto a trial key and a direction; used
#: only when the run recorded no Pareto membership of its own.
OBJECTIVE_KEYS = {
    "accuracy": ("val_accuracy", "maximize"),
    "val_accuracy": ("val_accuracy", "maximize"),
    "test_accuracy": ("test_accuracy", "maximize"),
    "latency_ms": ("latency_ms", "minimize"),
    "latency": ("latency_ms", "minimize"),
    "params": ("params", "minimize"),
    "flops": ("flops", "minimize"),
    "cost_s": ("cost_s", "minimize"),
}

TOP_CURVES = 5
ARCH_CELL_CHARS = 60
ARCH_HOVER_CHARS = 80
FIGURE_HEIGHT = "460px"
NO_COMPLETED = "No completed trial yet."


# ---------------------------------------------------------------------------------------------------------
# Public API


def render_report(summary: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> str:
    """Return the HTML text of the report of one search run (see the module docstring for its sections)."""
    summary, trials = _checked(summary, trials)
    completed = [trial for trial in trials if _is_plottable(trial)]
    front = _front_numbers(summary, trials, completed)
    figures = _figures(summary, completed, front)

    # plotly.js goes into the page once, inline, with the first figure; the others reuse it.
    figure_html: dict[str, str] = {}
    for index, (name, figure) in enumerate((name, f) for name, f in figures.items() if f is not None):
        figure_html[name] = figure.to_html(
            full_html=False,
            include_plotlyjs=index == 0,
            div_id=f"archlab-{name}",  # fixed ids keep the page deterministic (same input, same bytes)
            default_width="100%",
            default_height=FIGURE_HEIGHT,
            config={"displaylogo": False, "responsive": True},
        )

    run = _mapping(summary.get("run"))
    title = "archlab report"
    if run.get("space") is not None:
        title += f" — {run['space']}"
        if run.get("data") is not None:
            title += f" on {run['data']}"
    no_plot = _note(NO_COMPLETED)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_escape(title)}</h1>",
        _header_section(summary, trials, completed),
        '<section id="pareto"><h2>Pareto front</h2>',
        _with_note(
            figure_html.get("pareto"), _PARETO_NOTE, no_plot if not completed else _note(_NO_X_METRIC)
        ),
        "</section>",
        '<section id="progress"><h2>Search progress</h2>',
        _with_note(figure_html.get("progress"), _PROGRESS_NOTE, no_plot),
        "</section>",
        '<section id="curves"><h2>Learning curves</h2>',
        _with_note(
            figure_html.get("curves"),
            _CURVES_NOTE,
            no_plot if not completed else _note("No learning curve was recorded."),
        ),
        "</section>",
        _table_section(trials, front),
        f"<script>{_SORT_JS}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


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


# ---------------------------------------------------------------------------------------------------------
# Input checks and small value helpers


def _checked(
    summary: Mapping[str, Any] | None, trials: Sequence[Mapping[str, Any]] | None
) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    if summary is None:
        summary = {}
    if not isinstance(summary, Mapping):
        raise UserError(f"the report summary must be a mapping, not {type(summary).__name__}")
    if trials is None:
        trials = []
    if isinstance(trials, str | bytes) or not isinstance(trials, Sequence):
        raise UserError(f"the report trials must be a list of mappings, not {type(trials).__name__}")
    checked = []
    for index, trial in enumerate(trials):
        if not isinstance(trial, Mapping):
            raise UserError(f"trial at position {index} must be a mapping, not {type(trial).__name__}")
        for key in ("number", "state"):
            if trial.get(key) is None:
                raise UserError(f"trial at position {index} has no {key!r}")
        if isinstance(trial["number"], bool) or not isinstance(trial["number"], numbers.Integral):
            raise UserError(f"trial at position {index} has a non-integer number {trial['number']!r}")
        checked.append({**trial, "number": int(trial["number"])})
    checked.sort(key=lambda trial: trial["number"])
    return summary, checked


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _finite(value: Any) -> float | None:
    """The value as a float, or None when it is missing, not a number, or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _state(trial: Mapping[str, Any]) -> str:
    return str(trial.get("state")).upper()


def _is_plottable(trial: Mapping[str, Any]) -> bool:
    return _state(trial) == "COMPLETE" and _finite(trial.get("val_accuracy")) is not None


def _flag(value: Any) -> bool:
    return isinstance(value, bool | np.bool_) and bool(value)


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_escape(text)}</p>'


def _with_note(figure: str | None, note: str, otherwise: str) -> str:
    return otherwise if figure is None else _note(note) + "\n" + figure


_PARETO_NOTE = (
    "Validation accuracy of every completed trial against its cost; the Pareto front is highlighted and"
    " joined by a step line. When several cost metrics were recorded, the menu at the top left switches"
    " the x axis."
)
_PROGRESS_NOTE = "Validation accuracy of each completed trial, and the best found so far, by trial number."
_CURVES_NOTE = (
    f"Validation accuracy per epoch of the top {TOP_CURVES} completed trials (and the final retrain)."
)
_NO_X_METRIC = "No trial recorded latency, parameters or FLOPs; see the search progress below."


def _arch_json(arch: Any, indent: int | None = None) -> str:
    if arch is None:
        return ""
    separators = None if indent else (",", ":")
    try:
        return json.dumps(arch, indent=indent, separators=separators, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # a circular structure: fall back to its repr
        return repr(arch)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _si(value: float) -> tuple[float, str]:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return value / factor, prefix
    return value, ""


def format_count(value: Any) -> str:
    """``12345`` → ``"12.3k"``, ``1234567`` → ``"1.2M"``, ``950`` → ``"950"``; ``"–"`` when missing."""
    number = _finite(value)
    if number is None:
        return "–"
    scaled, prefix = _si(number)
    return f"{scaled:.1f}{prefix}" if prefix else f"{number:.0f}"


def format_flops(value: Any) -> str:
    """``1.2e6`` → ``"1.2 MFLOPs"``; ``"–"`` when missing."""
    number = _finite(value)
    if number is None:
        return "–"
    scaled, prefix = _si(number)
    return f"{scaled:.1f} {prefix}FLOPs" if prefix else f"{number:.0f} FLOPs"


def format_ms(value: Any) -> str:
    """``0.4512`` → ``"0.451 ms"`` (three significant digits below a second); ``"–"`` when missing."""
    number = _finite(value)
    if number is None:
        return "–"
    return f"{number:.3g} ms" if abs(number) < 1000 else f"{number:.0f} ms"


def format_percent(value: Any) -> str:
    """An accuracy in 0..1 as a percentage: ``0.9834`` → ``"98.3 %"``; ``"–"`` when missing."""
    number = _finite(value)
    return "–" if number is None else f"{100 * number:.1f} %"


def format_seconds(value: Any) -> str:
    """A duration: ``42.3`` → ``"42.3 s"``, ``192`` → ``"3 min 12 s"``, ``3720`` → ``"1 h 2 min"``."""
    number = _finite(value)
    if number is None:
        return "–"
    if number < 60:
        return f"{number:.1f} s"
    seconds = round(number)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _masked_storage(storage: Any) -> str:
    # A storage URL can carry a database password; the report is meant to be shared.
    return re.sub(r"(://[^:/@\s]+):[^@/\s]*@", r"\1:***@", str(storage))


# ---------------------------------------------------------------------------------------------------------
# Pareto membership


def _front_numbers(
    summary: Mapping[str, Any], trials: list[Mapping[str, Any]], completed: list[Mapping[str, Any]]
) -> set[int]:
    """Trial numbers on the Pareto front: as the run recorded it, else computed from its objectives."""
    recorded = {trial["number"] for trial in trials if _flag(trial.get("pareto"))}
    for member in summary.get("pareto") or []:
        number = member.get("number") if isinstance(member, Mapping) else None
        if isinstance(number, numbers.Integral) and not isinstance(number, bool):
            recorded.add(int(number))
    if recorded or not completed:
        return recorded
    objectives = _mapping(summary.get("run")).get("objectives") or ["accuracy"]
    if isinstance(objectives, str):
        objectives = [objectives]
    keys = [OBJECTIVE_KEYS[name] for name in objectives if name in OBJECTIVE_KEYS]
    keys = list(dict.fromkeys(keys)) or [OBJECTIVE_KEYS["accuracy"]]
    rated = [trial for trial in completed if all(_finite(trial.get(key)) is not None for key, _ in keys)]
    points = [[_finite(trial.get(key)) for key, _ in keys] for trial in rated]
    mask = pareto_mask(points, [direction for _, direction in keys])
    return {trial["number"] for trial, on_front in zip(rated, mask, strict=True) if on_front}


# ---------------------------------------------------------------------------------------------------------
# Figures


def _figures(
    summary: Mapping[str, Any], completed: list[Mapping[str, Any]], front: set[int]
) -> dict[str, go.Figure | None]:
    final_curve = _mapping(summary.get("final")).get("curve")
    return {
        "pareto": _pareto_figure(completed, front) if completed else None,
        "progress": _progress_figure(completed) if completed else None,
        "curves": _curves_figure(completed, final_curve),
    }


def _hover_arch(trial: Mapping[str, Any]) -> str:
    return _escape(_shorten(_arch_json(trial.get("arch")), ARCH_HOVER_CHARS))


def _layout(**extra: Any) -> dict[str, Any]:
    layout = dict(
        template="plotly_white",
        margin=dict(l=60, r=20, t=60, b=50),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
        yaxis=dict(title=dict(text="validation accuracy"), tickformat=".0%"),
    )
    layout.update(extra)
    return layout


def _axis_type(values: list[float]) -> str:
    positive = [value for value in values if value > 0]
    if len(positive) == len(values) and positive and max(positive) / min(positive) > 20:
        return "log"
    return "linear"


def _pareto_figure(completed: list[Mapping[str, Any]], front: set[int]) -> go.Figure | None:
    """Validation accuracy against a cost metric; trace 0 = other trials, trace 1 = front (step line)."""
    options = []
    for key, title, label in X_METRICS:
        rows = [trial for trial in completed if _finite(trial.get(key)) is not None]
        if rows:
            options.append((key, title, label, rows))
    if not options:
        return None

    def trace_data(key: str, rows: list[Mapping[str, Any]]) -> list[dict[str, list[Any]]]:
        others = [trial for trial in rows if trial["number"] not in front]
        members = sorted(
            (trial for trial in rows if trial["number"] in front),
            key=lambda trial: (_finite(trial.get(key)), -(_finite(trial.get("val_accuracy")) or 0.0)),
        )
        formatter = X_FORMATTERS[key]
        return [
            dict(
                x=[_finite(trial.get(key)) for trial in group],
                y=[_finite(trial.get("val_accuracy")) for trial in group],
                # [trial number, formatted x]: the hover label shows the x value in its own units.
                customdata=[[trial["number"], formatter(trial.get(key))] for trial in group],
                text=[_hover_arch(trial) for trial in group],
            )
            for group in (others, members)
        ]

    hover = "trial %{customdata[0]}<br>val acc %{y:.1%}<br>%{customdata[1]}<br>%{text}<extra></extra>"
    key, title, _, rows = options[0]
    others, members = trace_data(key, rows)
    figure = go.Figure(
        [
            go.Scatter(
                name="trial",
                mode="markers",
                marker=dict(size=8, color="#8da0cb", opacity=0.75),
                hovertemplate=hover,
                **others,
            ),
            go.Scatter(
                name="Pareto front",
                mode="lines+markers",
                line=dict(shape="hv", color="#d95f02", width=2),
                marker=dict(size=11, color="#d95f02", symbol="diamond", line=dict(width=1, color="white")),
                hovertemplate=hover,
                **members,
            ),
        ]
    )
    layout = _layout(
        xaxis=dict(title=dict(text=title), type=_axis_type([_finite(t.get(key)) for t in rows])),
    )
    if len(options) > 1:
        buttons = []
        for option_key, option_title, label, option_rows in options:
            data = trace_data(option_key, option_rows)
            restyle = {field: [trace[field] for trace in data] for field in ("x", "y", "customdata", "text")}
            axis_type = _axis_type([_finite(t.get(option_key)) for t in option_rows])
            relayout = {"xaxis.title.text": option_title, "xaxis.type": axis_type}
            buttons.append(dict(label=label, method="update", args=[restyle, relayout]))
        layout["updatemenus"] = [
            dict(
                buttons=buttons,
                direction="down",
                active=0,
                showactive=True,
                x=0,
                xanchor="left",
                y=1.13,
                yanchor="top",
            )
        ]
        layout["margin"] = dict(l=60, r=20, t=70, b=50)
    figure.update_layout(**layout)
    return figure


def _progress_figure(completed: list[Mapping[str, Any]]) -> go.Figure:
    numbers = [trial["number"] for trial in completed]
    accuracies = [_finite(trial.get("val_accuracy")) for trial in completed]
    best_so_far, best = [], -math.inf
    for accuracy in accuracies:
        best = max(best, accuracy)
        best_so_far.append(best)
    figure = go.Figure(
        [
            go.Scatter(
                name="trial",
                x=numbers,
                y=accuracies,
                mode="markers",
                marker=dict(size=7, color="#8da0cb", opacity=0.75),
                text=[_hover_arch(trial) for trial in completed],
                hovertemplate="trial %{x}<br>val acc %{y:.1%}<br>%{text}<extra></extra>",
            ),
            go.Scatter(
                name="best so far",
                x=numbers,
                y=best_so_far,
                mode="lines",
                line=dict(shape="hv", color="#1b9e77", width=2),
                hovertemplate="best after trial %{x}: %{y:.1%}<extra></extra>",
            ),
        ]
    )
    figure.update_layout(**_layout(xaxis=dict(title=dict(text="trial number"))))
    return figure


def _curve_points(curve: Any) -> tuple[list[float], list[float]]:
    epochs, accuracies = [], []
    if not isinstance(curve, Sequence) or isinstance(curve, str | bytes):
        return epochs, accuracies
    for index, point in enumerate(curve):
        if not isinstance(point, Mapping):
            continue
        accuracy = _finite(point.get("val_accuracy"))
        if accuracy is None:
            continue
        epoch = _finite(point.get("epoch"))
        epochs.append(index + 1 if epoch is None else epoch)
        accuracies.append(accuracy)
    return epochs, accuracies


def _curves_figure(completed: list[Mapping[str, Any]], final_curve: Any) -> go.Figure | None:
    with_curves = [trial for trial in completed if _curve_points(trial.get("curve"))[0]]
    with_curves.sort(key=lambda trial: (-_finite(trial["val_accuracy"]), trial["number"]))
    top = with_curves[:TOP_CURVES]
    traces = []
    for trial in top:
        epochs, accuracies = _curve_points(trial["curve"])
        traces.append(
            go.Scatter(
                name=f"trial {trial['number']}",
                x=epochs,
                y=accuracies,
                mode="lines+markers",
                text=[_hover_arch(trial)] * len(epochs),
                hovertemplate=f"trial {trial['number']}<br>epoch %{{x}}<br>val acc %{{y:.1%}}<br>%{{text}}"
                "<extra></extra>",
            )
        )
    epochs, accuracies = _curve_points(final_curve)
    if epochs:
        traces.append(
            go.Scatter(
                name="final retrain",
                x=epochs,
                y=accuracies,
                mode="lines",
                line=dict(color="black", dash="dash", width=2),
                hovertemplate="final retrain<br>epoch %{x}<br>val acc %{y:.1%}<extra></extra>",
            )
        )
    if not traces:
        return None
    figure = go.Figure(traces)
    figure.update_layout(
        **_layout(
            xaxis=dict(title=dict(text="epoch")),
        )
    )
    return figure


# ---------------------------------------------------------------------------------------------------------
# HTML sections


def _definition_list(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{_escape(name)}</dt><dd>{_escape(value)}</dd>" for name, value in items)
    return f"<dl>{rows}</dl>"


def _header_section(
    summary: Mapping[str, Any], trials: list[Mapping[str, Any]], completed: list[Mapping[str, Any]]
) -> str:
    run = _mapping(summary.get("run"))
    objectives = run.get("objectives")
    if isinstance(objectives, Sequence) and not isinstance(objectives, str):
        objectives = ", ".join(str(name) for name in objectives)
    searched = [
        (label, str(run[key]) if key != "storage" else _masked_storage(run[key]))
        for label, key in (
            ("space", "space"),
            ("data", "data"),
            ("strategy", "strategy"),
            ("budget", "budget"),
            ("seed", "seed"),
            ("started", "started"),
            ("storage", "storage"),
        )
        if run.get(key) is not None
    ]
    if objectives:
        searched.insert(3, ("objectives", str(objectives)))

    states = [_state(trial) for trial in trials]
    counts = _mapping(summary.get("trials"))
    tally = []
    for label, state in (("completed", "COMPLETE"), ("failed", "FAIL"), ("pruned", "PRUNED")):
        value = counts.get(label)
        tally.append((label, str(value if isinstance(value, int) else states.count(state))))
    if states.count("RUNNING"):
        tally.append(("running", str(states.count("RUNNING"))))
    tally.append(("in this report", str(len(trials))))
    if _finite(summary.get("elapsed_s")) is not None:
        tally.append(("elapsed", format_seconds(summary["elapsed_s"])))

    parts = ['<section id="summary"><h2>Run</h2><div class="columns">']
    described = _definition_list(searched) if searched else _note("The run description was not recorded.")
    parts.append(f"<div><h3>What was searched</h3>{described}</div>")
    parts.append(f"<div><h3>Trials</h3>{_definition_list(tally)}</div>")
    parts.append("</div>")
    parts.append(_best_block(summary, completed))
    parts.append("</section>")
    return "\n".join(parts)


def _best_block(summary: Mapping[str, Any], completed: list[Mapping[str, Any]]) -> str:
    best = summary.get("best")
    if not isinstance(best, Mapping):
        if not completed:
            return f"<h3>Best architecture</h3>{_note(NO_COMPLETED)}"
        best = max(completed, key=lambda trial: (_finite(trial["val_accuracy"]), -trial["number"]))
    number = best.get("number")
    heading = "Best architecture" + (f" (trial {number})" if number is not None else "")
    facts = [
        ("validation accuracy", format_percent(best.get("val_accuracy"))),
        ("test accuracy", format_percent(best.get("test_accuracy"))),
        ("parameters", format_count(best.get("params")) + " params"),
        ("FLOPs", format_flops(best.get("flops"))),
        ("latency", format_ms(best.get("latency_ms"))),
        ("search cost", format_seconds(best.get("cost_s"))),
    ]
    facts = [(name, value) for name, value in facts if not value.startswith("–")]
    parts = [f"<h3>{_escape(heading)}</h3>", _definition_list(facts)]
    final = _mapping(summary.get("final"))
    if final:
        retrain = [
            ("test accuracy", format_percent(final.get("test_accuracy"))),
            ("validation accuracy", format_percent(final.get("val_accuracy"))),
            ("epochs", str(final["epochs"]) if final.get("epochs") is not None else "–"),
            ("cost", format_seconds(final.get("cost_s"))),
        ]
        retrain = [(name, value) for name, value in retrain if value != "–"]
        if retrain:
            parts.append(f"<h4>Retrained from scratch</h4>{_definition_list(retrain)}")
    arch = best.get("arch")
    if arch is not None:
        parts.append(f'<pre class="arch">{_escape(_arch_json(arch, indent=2))}</pre>')
    return "\n".join(parts)


X_FORMATTERS = {
    "latency_ms": format_ms,
    "params": lambda value: format_count(value) + " params",
    "flops": format_flops,
}

_COLUMNS = ("trial", "state", "val acc", "test acc", "params", "FLOPs", "latency", "cost", "reason", "arch")


def _cell(text: str, sort_value: Any = None, css: str = "", title: str | None = None) -> str:
    attributes = ""
    if sort_value is not None:
        attributes += f' data-sort="{_escape(sort_value)}"'
    if css:
        attributes += f' class="{css}"'
    if title is not None:
        attributes += f' title="{_escape(title)}"'
    return f"<td{attributes}>{_escape(text)}</td>"


def _table_section(trials: list[Mapping[str, Any]], front: set[int]) -> str:
    head = "".join(f'<th scope="col" title="sort by {name}">{_escape(name)}</th>' for name in _COLUMNS)
    rows = []
    for trial in trials:
        number = trial["number"]
        on_front = number in front
        state = _state(trial)
        arch = _arch_json(trial.get("arch"))
        reason = trial.get("reason")
        cells = [
            _cell(f"{number} ★" if on_front else str(number), number),
            _cell(state, state, css=f"state-{state.lower()}"),
            _cell(format_percent(trial.get("val_accuracy")), _finite(trial.get("val_accuracy")), "num"),
            _cell(format_percent(trial.get("test_accuracy")), _finite(trial.get("test_accuracy")), "num"),
            _cell(format_count(trial.get("params")), _finite(trial.get("params")), "num"),
            _cell(format_flops(trial.get("flops")), _finite(trial.get("flops")), "num"),
            _cell(format_ms(trial.get("latency_ms")), _finite(trial.get("latency_ms")), "num"),
            _cell(format_seconds(trial.get("cost_s")), _finite(trial.get("cost_s")), "num"),
            _cell("" if reason is None else str(reason), None if reason is None else str(reason), "reason"),
            _cell(_shorten(arch, ARCH_CELL_CHARS), arch or None, "arch", title=arch if arch else None),
        ]
        row_class = ' class="pareto"' if on_front else ""
        rows.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    body = "\n".join(rows) if rows else f'<tr><td colspan="{len(_COLUMNS)}">No trial yet.</td></tr>'
    legend = _note("★ marks a Pareto-front member. Click a column header to sort.")
    return (
        f'<section id="trials"><h2>Trials</h2>{legend}\n'
        f'<table class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></section>'
    )


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
.columns { display: flex; gap: 3rem; flex-wrap: wrap; }
dl { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem; margin: .4rem 0; }
dt { color: #666; } dd { margin: 0; }
pre.arch { background: #f6f8fa; padding: .8rem; overflow: auto; max-height: 24rem; font-size: .85rem; }
.note { color: #666; font-style: italic; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { border-bottom: 1px solid #eee; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { cursor: pointer; user-select: none; background: #fafafa; position: sticky; top: 0; }
th[data-order="asc"]::after { content: " ▲"; } th[data-order="desc"]::after { content: " ▼"; }
td.num { text-align: right; white-space: nowrap; }
td.arch { font-family: ui-monospace, monospace; white-space: nowrap; }
td.reason { max-width: 20rem; }
tr.pareto { background: #fff4e6; }
.state-fail { color: #b00020; } .state-pruned { color: #8a6d00; } .state-running { color: #1565c0; }
"""

# Sorts by each cell's data-sort value (numbers numerically, else text); cells without one go last.
_SORT_JS = """
(function () {
  function key(cell) {
    var value = cell.getAttribute("data-sort");
    if (value === null || value === "") return null;
    var number = Number(value);
    return isNaN(number) ? value : number;
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0], column = th.cellIndex;
      var ascending = th.getAttribute("data-order") !== "asc";
      table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("data-order"); });
      th.setAttribute("data-order", ascending ? "asc" : "desc");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a.cells[column]), y = key(b.cells[column]);
        if (x === null || y === null) return (x === null) - (y === null);
        var numeric = typeof x === "number" && typeof y === "number";
        var order = numeric ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
"""

"""The report's plotly figures: the Pareto front, the search progress and the learning curves.

The layout follows optuna's visualisation module (``plot_pareto_front``, ``plot_optimization_history``,
``plot_intermediate_values``). Hover text is HTML-escaped because plotly interprets a subset of HTML tags in
labels. :func:`figure_divs` turns the figures into ``<div>``\\ s with plotly.js inline, once, so the page
opens without network access.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from archlab.report._trials import arch_text, mapping, shorten
from archlab.report.format import finite, format_count, format_flops, format_ms
from archlab.search._objectives import OBJECTIVES

__all__ = ["TOP_CURVES", "X_METRICS", "figure_divs", "figures"]


def _label(name: str) -> str:
    return OBJECTIVES[name].label or name


#: The x axes the Pareto plot can show, in order of preference: (trial key, axis title, dropdown label,
#: hover formatter). Axis titles are the objective presets' labels.
X_METRICS: tuple[tuple[str, str, str, Callable[[Any], str]], ...] = (
    ("latency_ms", _label("latency_ms"), "latency", format_ms),
    ("params", _label("params"), "params", lambda value: format_count(value) + " params"),
    ("flops", _label("flops"), "FLOPs", format_flops),
)
Y_TITLE = _label("accuracy")
TOP_CURVES = 5
ARCH_HOVER_CHARS = 80
FIGURE_HEIGHT = "460px"


def figures(
    summary: Mapping[str, Any], completed: list[Mapping[str, Any]], front: set[int]
) -> dict[str, go.Figure | None]:
    """The figures by section name; None where there is nothing to plot."""
    final_curve = mapping(summary.get("final")).get("curve")
    return {
        "pareto": _pareto_figure(completed, front) if completed else None,
        "progress": _progress_figure(completed) if completed else None,
        "curves": _curves_figure(completed, final_curve),
    }


def figure_divs(figures: Mapping[str, go.Figure | None]) -> dict[str, str]:
    """Each existing figure as an HTML ``<div>`` plus script; plotly.js goes inline with the first only."""
    divs: dict[str, str] = {}
    for index, (name, figure) in enumerate((name, f) for name, f in figures.items() if f is not None):
        divs[name] = figure.to_html(
            full_html=False,
            include_plotlyjs=index == 0,
            div_id=f"archlab-{name}",  # fixed ids keep the page deterministic (same input, same bytes)
            default_width="100%",
            default_height=FIGURE_HEIGHT,
            config={"displaylogo": False, "responsive": True},
        )
    return divs


def _hover_arch(trial: Mapping[str, Any]) -> str:
    return html.escape(shorten(arch_text(trial), ARCH_HOVER_CHARS), quote=True)


def _layout(**extra: Any) -> dict[str, Any]:
    layout = dict(
        template="plotly_white",
        margin=dict(l=60, r=20, t=60, b=50),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
        yaxis=dict(title=dict(text=Y_TITLE), tickformat=".0%"),
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
    for key, title, label, formatter in X_METRICS:
        rows = [trial for trial in completed if finite(trial.get(key)) is not None]
        if rows:
            options.append((key, title, label, formatter, rows))
    if not options:
        return None

    def trace_data(key: str, formatter: Callable[[Any], str], rows: list[Mapping[str, Any]]) -> list[dict]:
        others = [trial for trial in rows if trial["number"] not in front]
        members = sorted(
            (trial for trial in rows if trial["number"] in front),
            key=lambda trial: (finite(trial.get(key)), -(finite(trial.get("val_accuracy")) or 0.0)),
        )
        return [
            dict(
                x=[finite(trial.get(key)) for trial in group],
                y=[finite(trial.get("val_accuracy")) for trial in group],
                # [trial number, formatted x]: the hover label shows the x value in its own units.
                customdata=[[trial["number"], formatter(trial.get(key))] for trial in group],
                text=[_hover_arch(trial) for trial in group],
            )
            for group in (others, members)
        ]

    hover = "trial %{customdata[0]}<br>val acc %{y:.1%}<br>%{customdata[1]}<br>%{text}<extra></extra>"
    key, title, _, formatter, rows = options[0]
    others, members = trace_data(key, formatter, rows)
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
    layout = _layout(xaxis=dict(title=dict(text=title), type=_axis_type([finite(t.get(key)) for t in rows])))
    if len(options) > 1:
        buttons = []
        for option_key, option_title, label, option_formatter, option_rows in options:
            data = trace_data(option_key, option_formatter, option_rows)
            restyle = {field: [trace[field] for trace in data] for field in ("x", "y", "customdata", "text")}
            axis_type = _axis_type([finite(t.get(option_key)) for t in option_rows])
            relayout = {"xaxis.title.text": option_title, "xaxis.type": axis_type}
            buttons.append(dict(label=label, method="update", args=[restyle, relayout]))
        layout["updatemenus"] = [
            dict(buttons=buttons, direction="down", active=0, showactive=True, x=0, xanchor="left", y=1.13,
                 yanchor="top")
        ]
        layout["margin"] = dict(l=60, r=20, t=70, b=50)
    figure.update_layout(**layout)
    return figure


def _progress_figure(completed: list[Mapping[str, Any]]) -> go.Figure:
    numbers = [trial["number"] for trial in completed]
    accuracies = [finite(trial.get("val_accuracy")) for trial in completed]
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
        accuracy = finite(point.get("val_accuracy"))
        if accuracy is None:
            continue
        epoch = finite(point.get("epoch"))
        epochs.append(index + 1 if epoch is None else epoch)
        accuracies.append(accuracy)
    return epochs, accuracies


def _curves_figure(completed: list[Mapping[str, Any]], final_curve: Any) -> go.Figure | None:
    with_curves = [trial for trial in completed if _curve_points(trial.get("curve"))[0]]
    with_curves.sort(key=lambda trial: (-finite(trial["val_accuracy"]), trial["number"]))
    traces = []
    for trial in with_curves[:TOP_CURVES]:
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
    figure.update_layout(**_layout(xaxis=dict(title=dict(text="epoch"))))
    return figure

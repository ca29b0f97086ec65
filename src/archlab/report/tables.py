"""The report's textual parts as plain data for the template: the run description, the trial tally, the best
architecture and the rows of the sortable trial table.

Values here are *unescaped* text; the Jinja2 template escapes every one of them (autoescape is on), so nothing
from the run (architectures, names, failure reasons) reaches the page as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archlab._urls import mask_password
from archlab.report._trials import arch_text, mapping, objective_names, shorten, state
from archlab.report.format import (
    MISSING,
    finite,
    format_count,
    format_flops,
    format_ms,
    format_percent,
    format_seconds,
)
from archlab.search import EARLY_STOPS
from archlab.search.halving import HALVED
from archlab.search.median_stopping import STOPPED

__all__ = ["COLUMNS", "Cell", "best_block", "choices", "run_facts", "trial_rows", "trial_tally"]

COLUMNS = ("trial", "state", "val acc", "test acc", "epochs", "params", "FLOPs", "latency", "cost", "reason",
           "arch")
#: how a trial's training ended, as the ``epochs`` cell's tooltip says it
STOPS = {HALVED: "stopped by successive halving at a rung",
         STOPPED: "stopped below the median of earlier curves",
         "max_seconds": "its time fidelity ran out", "epochs": "trained its full epochs",
         "steps": "trained its full steps", "early_stopping": "no validation gain for its patience"}
ARCH_CELL_CHARS = 60


@dataclass(frozen=True)
class Cell:
    """One ``<td>``: its text, the value the table sorts by (None: sorts last), a CSS class and a tooltip."""

    text: str
    sort: Any = None
    css: str = ""
    title: str | None = None




def run_facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs saying what was searched, in the order the page shows them."""
    run = mapping(summary.get("run"))
    facts = [
        (label, str(run[key]) if key != "storage" else mask_password(run[key]))
        for label, key in (
            ("space", "space"),
            ("data", "data"),
            ("strategy", "strategy"),
            ("seed", "seed"),
            ("started", "started"),
            ("storage", "storage"),
        )
        if run.get(key) is not None
    ]
    budget = [format_seconds(run["budget_s"])] if finite(run.get("budget_s")) is not None else []
    budget += [f"{run['n_trials']} trials"] if isinstance(run.get("n_trials"), int) else []
    if budget:  # the whole run's: search, final training, export and report
        facts.insert(3, ("budget", " or ".join(budget) + ", whichever ends first" * (len(budget) > 1)))
    objectives = objective_names(summary)
    if objectives:
        facts.insert(3, ("objectives", ", ".join(objectives)))
    return facts


def trial_tally(summary: Mapping[str, Any], trials: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(label, count) pairs: the run's own counts where it recorded them, else counted from the trials."""
    states = [state(trial) for trial in trials]
    counts = mapping(summary.get("trials"))
    tally = []
    for label, name in (("completed", "COMPLETE"), ("failed", "FAIL"), ("pruned", "PRUNED")):
        value = counts.get(label)
        tally.append((label, str(value if isinstance(value, int) else states.count(name))))
    if states.count("RUNNING"):
        tally.append(("running", str(states.count("RUNNING"))))
    tally.append(("in this report", str(len(trials))))
    if finite(summary.get("elapsed_s")) is not None:
        tally.append(("elapsed", format_seconds(summary["elapsed_s"])))
    return tally


def best_block(summary: Mapping[str, Any], completed: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The best architecture: heading, facts, the exported model's facts and the pretty-printed arch; None
    when there is none. Without a recorded best, the completed trial of highest validation accuracy."""
    best = summary.get("best")
    if not isinstance(best, Mapping):
        if not completed:
            return None
        best = max(completed, key=lambda trial: (finite(trial["val_accuracy"]), -trial["number"]))
    number = best.get("number")
    final = mapping(summary.get("final"))
    # best["val_accuracy"] is the exported model's: the final training's when it was used, else the trial's
    searched = mapping(best.get("search")) or best
    facts = [
        ("parameters", format_count(best.get("params")) + " params"),
        ("FLOPs", format_flops(best.get("flops"))),
        ("latency", format_ms(best.get("latency_ms")) + " at batch 1"),
        ("validation accuracy in the search", format_percent(searched.get("val_accuracy"))),
        ("test accuracy in the search", format_percent(searched.get("test_accuracy"))),
        ("training time in the search", format_seconds(searched.get("cost_s"))),
    ]
    used = bool(final.get("used"))
    exported = [
        ("validation accuracy", format_percent(best.get("val_accuracy"))),
        ("test accuracy", format_percent(best.get("test_accuracy"))),
    ]
    if used:
        exported += [("epochs", str(final["epochs"]) if final.get("epochs") is not None else MISSING),
                     ("training time", format_seconds(final.get("cost_s")))]
    what = ("the arch trained longer on the full training split, continuing from its trial's weights"
            if used else "the trial's weights from the search" + _why_not_final(final))
    arch = best.get("arch")
    return {
        "heading": "Best architecture" + (f" (trial {number})" if number is not None else ""),
        "facts": [(name, value) for name, value in facts if not value.startswith(MISSING)],
        "exported_heading": f"Exported model (best/): {what}",
        "exported": [(name, value) for name, value in exported if value != MISSING],
        "arch": arch_text(best, indent=2) if arch is not None else None,
    }


def _metric(trial: Mapping[str, Any], key: str, formatter: Callable[[Any], str]) -> Cell:
    return Cell(formatter(trial.get(key)), finite(trial.get(key)), "num")


def _epochs_cell(trial: Mapping[str, Any]) -> Cell:
    """The fidelity a trial reached: its epochs, and in the tooltip why its training ended."""
    epochs, stopped = trial.get("epochs"), trial.get("stopped")
    text = "" if epochs is None else str(epochs) + (" ✂" if stopped in EARLY_STOPS else "")
    return Cell(text, finite(epochs), "num", title=STOPS.get(str(stopped), stopped) if stopped else None)


def choices(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """How the search chose, from the summary's ``choices``: the portfolio's trials, the stopping rule and why
    the winner won (empty for a run that recorded none)."""
    info = mapping(summary.get("choices"))
    out = []
    for p in info.get("portfolio") or []:
        p = mapping(p)
        out.append((f"portfolio: {p.get('name')}", f"trial {p.get('number')}: {format_percent(p.get('val_accuracy'))}"
                    f" validation after {p.get('epochs')} epochs" + (f" ({STOPS.get(str(p['stopped']), p['stopped'])})"
                                                                      if p.get("stopped") else "")))
    if info.get("proposals"):
        out.append(("proposals", str(info["proposals"])))
    if info.get("stopping"):
        out.append(("early stopping", str(info["stopping"])))
    if info.get("precision"):
        out.append(("training precision", str(info["precision"])))
    if info.get("winner"):
        out.append(("why the winner won", str(info["winner"])))
    return out


def trial_rows(trials: list[Mapping[str, Any]], front: set[int]) -> list[dict[str, Any]]:
    """One row per trial, in trial order: ``{"pareto": bool, "cells": [Cell, ...]}`` under :data:`COLUMNS`."""
    rows = []
    for trial in trials:
        number = trial["number"]
        on_front = number in front
        trial_state = state(trial)
        arch = arch_text(trial)
        reason = trial.get("reason")

        cells = [
            Cell(f"{number} ★" if on_front else str(number), number),
            Cell(trial_state, trial_state, css=f"state-{trial_state.lower()}"),
            _metric(trial, "val_accuracy", format_percent),
            _metric(trial, "test_accuracy", format_percent),
            _epochs_cell(trial),
            _metric(trial, "params", format_count),
            _metric(trial, "flops", format_flops),
            _metric(trial, "latency_ms", format_ms),
            _metric(trial, "cost_s", format_seconds),
            Cell("" if reason is None else str(reason), None if reason is None else str(reason), "reason"),
            Cell(shorten(arch, ARCH_CELL_CHARS), arch or None, "arch", title=arch if arch else None),
        ]
        rows.append({"pareto": on_front, "cells": cells})
    return rows


def _why_not_final(final: Mapping[str, Any]) -> str:
    """Why the exported model is the search's: no final training, or one that was skipped, failed or lost."""
    if not final:
        return ""
    verb = {"skipped": "was skipped", "failed": "failed", "infeasible": "was infeasible"}.get(final.get("state"))
    if verb:
        return f" (the longer training {verb}: {final.get('reason')})"
    return " (the longer training scored lower on validation)"

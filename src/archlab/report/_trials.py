"""The report's reading of its input: checked trials, their states, and which of them are on the Pareto front.

A report is also written for runs that are still going, were interrupted, or recorded only part of their
metrics, so everything here tolerates missing values; only input of the wrong *type* (a summary that is not a
mapping, a trial without a number) is a :class:`~archlab.errors.UserError`.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from archlab.errors import UserError
from archlab.report.format import finite
from archlab.search._objectives import Objective, resolve_objectives
from archlab.search._pareto import pareto_mask

__all__ = [
    "arch_json",
    "arch_text",
    "checked",
    "front_numbers",
    "is_plottable",
    "mapping",
    "objective_names",
    "run_objectives",
    "shorten",
    "state",
]


def checked(
    summary: Mapping[str, Any] | None, trials: Sequence[Mapping[str, Any]] | None
) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    """The summary (``{}`` for None) and the trials sorted by number, each with an ``int`` number."""
    if summary is None:
        summary = {}
    if not isinstance(summary, Mapping):
        raise UserError(f"the report summary must be a mapping, not {type(summary).__name__}")
    if trials is None:
        trials = []
    if isinstance(trials, str | bytes) or not isinstance(trials, Sequence):
        raise UserError(f"the report trials must be a list of mappings, not {type(trials).__name__}")
    out = []
    for index, trial in enumerate(trials):
        if not isinstance(trial, Mapping):
            raise UserError(f"trial at position {index} must be a mapping, not {type(trial).__name__}")
        for key in ("number", "state"):
            if trial.get(key) is None:
                raise UserError(f"trial at position {index} has no {key!r}")
        if isinstance(trial["number"], bool) or not isinstance(trial["number"], numbers.Integral):
            raise UserError(f"trial at position {index} has a non-integer number {trial['number']!r}")
        out.append({**trial, "number": int(trial["number"])})
    out.sort(key=lambda trial: trial["number"])
    return summary, out


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (a summary part the run did not record)."""
    return value if isinstance(value, Mapping) else {}


def state(trial: Mapping[str, Any]) -> str:
    return str(trial.get("state")).upper()


def is_plottable(trial: Mapping[str, Any]) -> bool:
    """A completed trial with a finite validation accuracy: the trials the plots show."""
    return state(trial) == "COMPLETE" and finite(trial.get("val_accuracy")) is not None


def arch_json(arch: Any, indent: int | None = None) -> str:
    """An architecture as JSON text (compact unless ``indent``); ``""`` for None."""
    if arch is None:
        return ""
    separators = None if indent else (",", ":")
    try:
        return json.dumps(arch, indent=indent, separators=separators, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # a circular structure: fall back to its repr
        return repr(arch)


def arch_text(trial: Mapping[str, Any], indent: int | None = None) -> str:
    """How a trial's arch reads: its space's own string when the ledger kept one (``arch_str``: a NAS-Bench-201
    cell as ``|nor_conv_3x3~0|+|...|``), else its JSON."""
    text = trial.get("arch_str")
    return text if isinstance(text, str) and text else arch_json(trial.get("arch"), indent=indent)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _raw_objectives(summary: Mapping[str, Any]) -> list[Any]:
    raw = mapping(summary.get("run")).get("objectives")
    if raw is None or isinstance(raw, str | Mapping):
        return [] if raw is None else [raw]
    return list(raw) if isinstance(raw, Sequence) else []


def objective_names(summary: Mapping[str, Any]) -> list[str]:
    """What the run called its objectives: preset names as recorded, or the ``name`` of objective dicts."""
    names = []
    for item in _raw_objectives(summary):
        name = item.get("name") if isinstance(item, Mapping) else item
        if name is not None:
            names.append(str(name))
    return names


def run_objectives(summary: Mapping[str, Any]) -> list[Objective]:
    """The run's objectives (preset names or objective dicts, through
    :func:`archlab.search.resolve_objectives`); entries that do not resolve are skipped, so a report still
    renders for a run whose objectives this version does not know. Validation accuracy when none resolves."""
    resolved: list[Objective] = []
    for item in _raw_objectives(summary):
        try:
            resolved.extend(resolve_objectives([item]))
        except UserError:
            continue
    return resolved or list(resolve_objectives(["accuracy"]))


def _flag(value: Any) -> bool:
    return isinstance(value, bool | np.bool_) and bool(value)


def front_numbers(
    summary: Mapping[str, Any], trials: list[Mapping[str, Any]], completed: list[Mapping[str, Any]]
) -> set[int]:
    """Trial numbers on the Pareto front: as the run recorded it (trial flags or ``summary["pareto"]``), else
    computed with :func:`archlab.search.pareto_mask` over the run's objectives."""
    recorded = {trial["number"] for trial in trials if _flag(trial.get("pareto"))}
    for member in summary.get("pareto") or []:
        number = member.get("number") if isinstance(member, Mapping) else None
        if isinstance(number, numbers.Integral) and not isinstance(number, bool):
            recorded.add(int(number))
    if recorded or not completed:
        return recorded
    keys = list(dict.fromkeys((o.metric, o.direction) for o in run_objectives(summary)))
    rated = [trial for trial in completed if all(finite(trial.get(metric)) is not None for metric, _ in keys)]
    points = [[finite(trial.get(metric)) for metric, _ in keys] for trial in rated]
    mask = pareto_mask(points, [direction for _, direction in keys])
    return {trial["number"] for trial, on_front in zip(rated, mask, strict=True) if on_front}

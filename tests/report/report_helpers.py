"""Fixtures and parsers for the report tests: synthetic runs, the figure JSON a page embeds, its trial table."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
from _pareto_oracle import brute_force_front  # noqa: F401 (re-exported for the report tests)

from archlab.report import pareto_mask

# ---------------------------------------------------------------------------------------------------------
# Fixtures and parsing helpers


def make_trial(number, state="COMPLETE", **fields):
    trial = {"number": number, "state": state, "arch": {"stages": [{"mixer": "pool", "depth": number % 3}]}}
    trial.update(fields)
    return trial


def make_run(count=12, seed=0, metrics=("params", "flops", "latency_ms")):
    """A run with completed, failed and pruned trials; ``pareto`` flags set from (accuracy, latency)."""
    rng = np.random.default_rng(seed)
    trials = []
    for number in range(count):
        if number % 5 == 3:
            trials.append(make_trial(number, "FAIL", reason=f"out of memory in trial {number}"))
            continue
        if number % 5 == 4:
            trials.append(make_trial(number, "PRUNED", reason="pruned at epoch 2", val_accuracy=0.3))
            continue
        values = {
            "params": int(rng.integers(10_000, 2_000_000)),
            "flops": int(rng.integers(100_000, 500_000_000)),
            "latency_ms": float(rng.uniform(0.1, 5.0)),
        }
        accuracy = float(rng.uniform(0.5, 0.99))
        curve = [
            {
                "epoch": epoch,
                "train_loss": 1 / epoch,
                "val_loss": 1 / epoch,
                "val_accuracy": accuracy * epoch / 4,
            }
            for epoch in range(1, 5)
        ]
        trials.append(
            make_trial(
                number,
                val_accuracy=accuracy,
                test_accuracy=accuracy - 0.01,
                cost_s=float(rng.uniform(1, 100)),
                curve=curve,
                **{key: values[key] for key in metrics},
            )
        )
    completed = [t for t in trials if t["state"] == "COMPLETE"]
    if "latency_ms" in metrics:
        mask = pareto_mask(
            [[t["val_accuracy"], t["latency_ms"]] for t in completed], ["maximize", "minimize"]
        )
    else:
        mask = pareto_mask([[t["val_accuracy"]] for t in completed], ["maximize"])
    for trial, on_front in zip(completed, mask, strict=True):
        trial["pareto"] = on_front
    best = max(completed, key=lambda t: t["val_accuracy"])
    summary = {
        "run": {
            "space": "metaformer",
            "data": "digits",
            "strategy": "rea",
            "objectives": ["accuracy", "latency_ms"] if "latency_ms" in metrics else ["accuracy"],
            "seed": 0,
            "budget_s": 300.0,
            "n_trials": None,
            "started": "2025-01-01T00:00:00",
            "storage": "sqlite:///run.db",
        },
        "best": best,
        "pareto": [t for t in completed if t["pareto"]],
        "trials": {
            "completed": len(completed),
            "failed": sum(t["state"] == "FAIL" for t in trials),
            "pruned": sum(t["state"] == "PRUNED" for t in trials),
        },
        "elapsed_s": 312.5,
    }
    return summary, trials


def plot_json(page, name):
    """The (data, layout) of the plotly figure with div id ``archlab-<name>``, or None when absent."""
    start = page.find(f'"archlab-{name}",')  # the first argument of Plotly.newPlot
    if start < 0:
        return None
    decoder = json.JSONDecoder()
    position = page.index("[", start)
    data, position = decoder.raw_decode(page, position)
    position = page.index("{", position)
    layout, _ = decoder.raw_decode(page, position)
    return data, layout


def trace(data, name):
    matches = [t for t in data if t.get("name") == name]
    assert len(matches) == 1, [t.get("name") for t in data]
    return matches[0]


class TableParser(HTMLParser):
    """Rows of the trial table as lists of (attributes, text) per cell, with each row's class."""

    def __init__(self):
        super().__init__()
        self.rows, self.headers = [], []
        self._in_table = self._in_th = False
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "sortable" in (attrs.get("class") or ""):
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append({"class": attrs.get("class"), "cells": []})
        elif self._in_table and tag == "th":
            self._in_th = True
            self.headers.append("")
        elif self._in_table and tag == "td":
            self._cell = [attrs, ""]

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag == "th":
            self._in_th = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(tuple(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        elif self._in_th:
            self.headers[-1] += data


def table(page):
    parser = TableParser()
    parser.feed(page)
    rows = [row for row in parser.rows if row["cells"]]
    return parser.headers, rows

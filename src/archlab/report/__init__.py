"""The HTML report of a search run, and the Pareto-front helper the search runner shares with it.

``render_report(summary, trials)`` returns the text of a self-contained offline page (plotly.js inline);
``write_report(path, summary, trials)`` writes it atomically. ``pareto_mask(points, directions)`` says which
points are non-dominated under mixed "maximize" / "minimize" objectives.
"""

from archlab.report.html import render_report, write_report
from archlab.report.pareto import pareto_mask

__all__ = ["pareto_mask", "render_report", "write_report"]

"""archlab.report: the HTML report of a search run, and the number formatting shared by report and CLI.

``render_report(summary, trials)`` returns the text of a self-contained offline page (plotly.js inline);
``write_report(path, summary, trials)`` writes it atomically. :mod:`archlab.report.format` writes numbers for
people (``format_percent``, ``format_count``...), for the page and the terminal alike. ``pareto_mask`` is
:func:`archlab.search.pareto_mask`, re-exported for older callers.
"""

from archlab.report.format import (
    format_bytes,
    format_count,
    format_flops,
    format_int,
    format_ms,
    format_percent,
    format_seconds,
    format_shape,
)
from archlab.report.html import render_report, write_report
from archlab.search._pareto import pareto_mask

__all__ = [
    "format_bytes",
    "format_count",
    "format_flops",
    "format_int",
    "format_ms",
    "format_percent",
    "format_seconds",
    "format_shape",
    "pareto_mask",
    "render_report",
    "write_report",
]

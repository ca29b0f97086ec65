"""The ``archlab`` command: one typer app, one module per command group.

``archlab search`` (:mod:`archlab.cli.search`), ``archlab export`` (:mod:`archlab.cli.export`), ``archlab
compress`` (:mod:`archlab.cli.compress`), ``archlab
report`` (:mod:`archlab.cli.report`), ``archlab zoo list|profile`` (:mod:`archlab.cli.zoo`), ``archlab bench
nb201`` (:mod:`archlab.cli.bench`) and ``archlab proxies`` (:mod:`archlab.cli.proxies`) register
themselves on :data:`app`. The commands only parse options, call the library and print; the work (searching,
loading and exporting a model, measuring) is done by :mod:`archlab.study`, :mod:`archlab.measure` and
:mod:`archlab.zoo`, and numbers are written by :mod:`archlab.report.format`.

Exit codes: 0 success, 2 bad input (one line on stderr naming what was wrong), 1 internal failure, 130
interrupted. Domain imports happen inside the commands so that ``archlab --help`` stays fast.
"""

# The command groups register themselves on ``app`` when imported; the order here is the order of ``--help``.
from archlab.cli import search, export, compress, report, zoo, bench, proxies  # noqa: E402, F401, I001
from archlab.cli._app import app, flag_help, main

flag_help(app)

__all__ = ["app", "main"]

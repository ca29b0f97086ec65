"""archlab.bench: evaluators that look results up in a table instead of training, and the tables themselves.

:class:`TableEvaluator` answers an arch with its row of a table (an instant evaluator: the ledger writes each
trial once). :func:`synthetic_nb201_table` makes a NAS-Bench-201-sized table (6 edges x 5 operations, 15,625
archs) with a smooth, seeded accuracy landscape and per-cell training costs, for tests and for measuring the
search loop's own overhead without any training. :func:`load_nb201_table` reads the real NAS-Bench-201 table
(``nb201_robot.csv``) over the ``nb201`` space, with each cell's measured device latency and energy
(``hwnasbench360.parquet``). :func:`load_nb201_proxies` gives the zero-cost proxy scores archlab computed for a
sample of its cells (shipped with archlab). :func:`run_protocol` replays NAS-Bench-201's search protocol on it
(``archlab bench``).
"""

from archlab.bench._hwnas import HWNAS_FILE, HWNAS_TARGETS, hardware_column, load_hwnas_measurements
from archlab.bench._nb201 import NB201_COLUMNS, NB201_FILE, NB201_ROWS, load_nb201_table
from archlab.bench._protocol import (
    DATASETS,
    DEFAULT_BENCH_STRATEGY,
    PROTOCOL_KWARGS,
    PUBLISHED,
    PUBLISHED_NASWOT,
    ProtocolResult,
    front_hypervolume,
    run_protocol,
    table_front,
)
from archlab.bench._proxy_table import NB201_PROXY_FILES, ProxyTable, load_nb201_proxies
from archlab.bench._synthetic import NB201_OPERATIONS, synthetic_nb201_table
from archlab.bench._table import Table, TableEvaluator

__all__ = ["DATASETS", "DEFAULT_BENCH_STRATEGY", "HWNAS_FILE", "HWNAS_TARGETS", "NB201_COLUMNS", "NB201_FILE",
           "NB201_OPERATIONS", "NB201_PROXY_FILES", "NB201_ROWS", "PROTOCOL_KWARGS", "PUBLISHED",
           "PUBLISHED_NASWOT", "ProtocolResult", "ProxyTable", "Table",
           "TableEvaluator", "front_hypervolume", "hardware_column", "load_hwnas_measurements", "load_nb201_proxies",
           "load_nb201_table", "run_protocol", "synthetic_nb201_table", "table_front"]

"""archlab.bench: evaluators that look results up in a table instead of training, and the tables themselves.

:class:`TableEvaluator` answers an arch with its row of a table (an instant evaluator: the ledger writes each
trial once). :func:`synthetic_nb201_table` makes a NAS-Bench-201-sized table (6 edges x 5 operations, 15,625
archs) with a smooth, seeded accuracy landscape and per-cell training costs, for tests and for measuring the
search loop's own overhead without any training. :func:`load_nb201_table` reads the real NAS-Bench-201 table
(``nb201_robot.csv``) over the ``nb201`` space.
"""

from archlab.bench._nb201 import NB201_COLUMNS, NB201_FILE, NB201_ROWS, load_nb201_table
from archlab.bench._synthetic import NB201_OPERATIONS, synthetic_nb201_table
from archlab.bench._table import Table, TableEvaluator

__all__ = ["NB201_COLUMNS", "NB201_FILE", "NB201_OPERATIONS", "NB201_ROWS", "Table", "TableEvaluator",
           "load_nb201_table", "synthetic_nb201_table"]

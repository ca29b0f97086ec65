"""archlab.study: the ledger (an Optuna study), the evaluator and the search runner."""

from archlab.study._budget import parse_duration
from archlab.study._evaluator import Constraints, EvalResult, Evaluator
from archlab.study._ledger import Ledger, open_storage
from archlab.study._runner import (
    SearchConfig,
    load_run,
    make_space,
    rewrite_report,
    run_search,
    write_json,
    write_run_report,
)

__all__ = [
    "Constraints",
    "EvalResult",
    "Evaluator",
    "Ledger",
    "SearchConfig",
    "load_run",
    "make_space",
    "open_storage",
    "parse_duration",
    "rewrite_report",
    "run_search",
    "write_json",
    "write_run_report",
]

"""archlab.study: the open search loop and what it runs on.

:func:`search` runs any :class:`~archlab.search.Strategy` over any space with any :class:`Evaluator`, recording
in a :class:`Ledger` (an Optuna study in any storage, its only writer) under a :class:`Budget` (wall seconds,
simulated cost seconds, trials). :func:`run_search` is the main job built on it: search, train the winner
longer, export it and write the run folder and report.
"""

from archlab.study._artifacts import BestModel, export_best, load_best_model
from archlab.study._budget import Budget, BudgetClock, parse_duration
from archlab.study._config import SearchConfig, TrainingEvaluatorFactory, make_space, rebuild_space, space_pin
from archlab.study._evaluator import EvalResult, Evaluator, TrainingEvaluator, check_constraints, evaluator_factory
from archlab.study._folder import load_run, rewrite_report, write_json, write_run_report
from archlab.study._ledger import Ledger, PendingTrial, open_storage, to_record
from archlab.study._loop import SearchResult, best_record, search
from archlab.study._runner import run_search

__all__ = [
    "BestModel",
    "export_best",
    "load_best_model",
    "Budget",
    "BudgetClock",
    "EvalResult",
    "Evaluator",
    "Ledger",
    "PendingTrial",
    "SearchConfig",
    "SearchResult",
    "TrainingEvaluator",
    "TrainingEvaluatorFactory",
    "best_record",
    "check_constraints",
    "evaluator_factory",
    "load_run",
    "make_space",
    "open_storage",
    "parse_duration",
    "rebuild_space",
    "rewrite_report",
    "run_search",
    "search",
    "space_pin",
    "to_record",
    "write_json",
    "write_run_report",
]

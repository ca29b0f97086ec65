"""``run_search``: the main job — search a space under a budget, then train, export and report the winner.

It is a caller of the open loop (:func:`archlab.study.search`): whatever it is given by name (a dataset, a
predefined space, a strategy, preset objectives, as the CLI and :class:`SearchConfig` give them) it resolves into
the loop's objects, and whatever it is given as an object (a custom :class:`~archlab.space.Space`, any
:class:`~archlab.study.Evaluator`, a :class:`~archlab.study.Budget`, a :class:`~archlab.study.Ledger` or storage,
:class:`~archlab.search.Objective`\\ s, a :class:`~archlab.search.Strategy`) it passes on as it is.

A run folder holds ``run.json`` (the configuration and the pinned space), the ledger (``ledger.db`` unless
``storage`` names another Optuna storage), ``best/`` (``arch.json``, ``model.safetensors``, ``model.onnx``),
``report.html`` and ``summary.json``. A killed run is continued with ``resume=True``, which rebuilds the pinned
space, replays the ledger into the strategy, so no completed trial is lost and no arch is trained twice.

With the training evaluator, the budget is split: most of it for the search at the search fidelity, the rest
(``final_share``) to train the best arch longer on all the training data, starting from its trial's weights (the
final model is the better of the two by validation accuracy). Another evaluator's search is the whole run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archlab._io import atomic_write_bytes
from archlab._urls import restore_password
from archlab.data import Dataset, load_dataset
from archlab.errors import UserError
from archlab.proxies import ProxyScorer
from archlab.search import (
    EARLY_STOPS,
    MedianStopping,
    Strategy,
    SuccessiveHalving,
    TrialRecord,
    create_strategy,
    resolve_constraints,
    resolve_objectives,
    strategy_class,
)
from archlab.search.portfolio import portfolio
from archlab.space import Space
from archlab.study._artifacts import exportable
from archlab.study._budget import Budget
from archlab.study._config import (
    SearchConfig,
    TrainingEvaluatorFactory,
    check_fingerprint,
    final_train_config,
    make_space,
    rebuild_space,
    space_pin,
)
from archlab.study._evaluator import EvalResult, Evaluator, TrainingEvaluator
from archlab.study._folder import (
    RUN_FILE,
    SUMMARY_FILE,
    counts,
    default_run_dir,
    load_run,
    run_objectives,
    trial_summary,
    versions,
    write_json,
    write_run_report,
)
from archlab.study._ledger import Ledger
from archlab.study._lock import LOCK_FILE, RunLock
from archlab.study._loop import SearchResult, best_record, search
from archlab.train import describe_precision

__all__ = ["run_search", "tail_seconds"]

Progress = Callable[[dict[str, Any]], None]
ONESHOT_SHARE = 0.5  # of a timed search, for a one-shot strategy's supernet (the rest trains its proposals)


def run_search(cfg: SearchConfig | None = None, out: str | os.PathLike | None = None, *,
               space: Space | str | None = None, evaluator: Evaluator | None = None,
               budget: Budget | str | float | None = None, ledger: Ledger | Any = None,
               objectives: Sequence[Any] | None = None, constraints: Sequence[Any] | None = None,
               strategy: Strategy | str | None = None, data: str | Dataset | None = None, resume: bool = False,
               progress: Progress | None = None, report: bool = True, started: float | None = None,
               workers: int | None = None, executor: str | None = None,
               address: str | None = None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a search and return its summary (also in ``summary.json``).

    ``cfg`` gives the defaults by name; ``space`` (a :class:`Space` or a predefined space's name), ``evaluator``,
    ``budget`` (a :class:`Budget` or a duration), ``ledger`` (a :class:`Ledger`, an Optuna storage or URL),
    ``objectives``, ``constraints``, ``strategy`` (a name or a :class:`Strategy`) and ``data`` (a dataset name or
    a :class:`~archlab.data.Dataset`) override it. With ``out=None`` and an evaluator of its own the run writes no
    folder (the ledger is in memory unless one is given).

    A time budget (``cfg.budget_s``) covers the whole run from ``started`` (a ``time.perf_counter()`` value; by
    default the call, the CLI passes its process's start): loading, the search, the final training, export and
    report. The search gets what is left after the final training's share and the time export and report need.

    ``workers`` (trials side by side), ``executor`` (``local`` or ``ray``) and ``address`` (the Ray cluster) override
    the configuration's, a resumed run's too. The run folder is locked
    (:class:`~archlab.study._lock.RunLock`) from before anything is written in it until the run is over: a second
    search on the same folder meanwhile is a :class:`UserError` naming the process that holds it.
    """
    with ExitStack() as locks:
        return _run_search(cfg, out, locks, space=space, evaluator=evaluator, budget=budget, ledger=ledger,
                           objectives=objectives, constraints=constraints, strategy=strategy, data=data,
                           resume=resume, progress=progress, report=report, started=started, workers=workers,
                           executor=executor, address=address)


def _run_search(cfg: SearchConfig | None, out: str | os.PathLike | None, locks: ExitStack, *,
                space: Space | str | None, evaluator: Evaluator | None, budget: Budget | str | float | None,
                ledger: Ledger | Any, objectives: Sequence[Any] | None, constraints: Sequence[Any] | None,
                strategy: Strategy | str | None, data: str | Dataset | None, resume: bool,
                progress: Progress | None, report: bool, started: float | None,
                workers: int | None, executor: str | None, address: str | None) -> dict[str, Any]:
    started = time.perf_counter() if started is None else started
    emit: Progress = progress or (lambda e: None)
    run_info: dict[str, Any] | None = None
    if resume:
        if out is None:
            raise UserError("resume needs the run folder")
        run_info = load_run(out)
        locks.enter_context(RunLock(out))
        run_info = load_run(out)  # as the holder it was waiting for left it
        if "config" in run_info:
            saved = SearchConfig.from_dict(run_info["config"])
            if cfg is None and budget is None and (Path(out) / SUMMARY_FILE).is_file():
                try:  # finished, and no new budget: nothing to do
                    return json.loads((Path(out) / SUMMARY_FILE).read_text())
                except json.JSONDecodeError:
                    pass  # a corrupt summary is rebuilt below
            if cfg is not None:  # only the budget may be extended on resume
                saved = replace(saved, budget_s=cfg.budget_s, n_trials=cfg.n_trials)
            cfg = saved
    cfg = cfg or SearchConfig()
    if workers is not None and workers != cfg.workers:
        cfg = replace(cfg, workers=workers)
    if executor is not None and (executor, address or cfg.address) != (cfg.executor, cfg.address):
        cfg = replace(cfg, executor=executor, address=address or cfg.address)
    training = evaluator is None  # archlab's training evaluator (else the caller's own: no final training)
    if out is None and training:
        out = default_run_dir()
    out = Path(out) if out is not None else None
    if not resume and out is not None:
        _check_new_folder(out)

    # resolve everything that can be validated before a folder is written
    dataset: Dataset | None = None
    if training or not isinstance(space, Space):
        if not isinstance(data, Dataset):
            emit({"event": "stage", "what": f"loading {data or cfg.data}"})
        dataset = data if isinstance(data, Dataset) else load_dataset(data or cfg.data, seed=cfg.seed)
        cfg = cfg.resolve(len(dataset.y_train))
    if run_info is not None and not isinstance(space, Space):
        space = rebuild_space(run_info.get("space"))
    elif isinstance(space, Space):
        if run_info is not None:
            check_fingerprint(space, run_info.get("space"))
    else:
        if space is not None:
            cfg = replace(cfg, space=space)
        assert dataset is not None
        space = make_space(cfg, dataset.input_shape, dataset.num_classes, dataset.vocab_size)
    objs = resolve_objectives(objectives if objectives is not None else
                              (run_objectives(run_info) if run_info is not None else cfg.objectives))
    cons = resolve_constraints(constraints) if constraints is not None else cfg.constraint_list
    search_budget = Budget.parse(budget) if budget is not None else cfg.budget()
    if training:
        assert dataset is not None
        spec = getattr(space, "spec", None)  # a predefined space: workers rebuild it from its arguments
        factory = TrainingEvaluatorFactory(cfg.to_dict(), spec) if spec else None
        evaluator = TrainingEvaluator(space, dataset, cfg.trial_config(), cons, cfg.search_subset(), factory=factory)
    strat = strategy if isinstance(strategy, Strategy) else _make_strategy(
        strategy or cfg.strategy, cfg, space, dataset, objs, cons, training,
        search_budget.trials if budget is not None and search_budget.trials else cfg.expected_trials())

    led = ledger if isinstance(ledger, Ledger) else None
    if led is None:
        storage = restore_password(run_info["storage"], ledger if isinstance(ledger, str) else None) \
            if run_info is not None else (
            ledger if ledger is not None else cfg.storage if cfg.storage else
            f"sqlite:///{(out / 'ledger.db').resolve()}" if out is not None else None)
    created = False
    try:
        if out is not None and not resume:
            created = _make_folder(out)
            locks.enter_context(RunLock(out))
            _check_new_folder(out)  # nothing written by a run that held the folder meanwhile
        if led is None:
            led = Ledger(storage, objs, create=not resume, space=space)
        elif led.space is None:
            led.space = space
        if not resume:
            pin = space_pin(space)
            led.save_config(cfg.to_dict())
            led.pin_space(pin)
            if out is not None:
                write_json(out / RUN_FILE, {
                    "config": cfg.to_dict(), "storage": led.url,
                    "objectives": [o.to_dict() for o in objs], "constraints": [c.to_dict() for c in cons],
                    "budget": search_budget.to_dict(), "space": pin, "evaluator": type(evaluator).__name__,
                    "started": datetime.now(UTC).isoformat(timespec="seconds"),
                    "data": dataset.describe() if dataset is not None else None, "versions": versions()})
    except BaseException:
        if created and out is not None:
            shutil.rmtree(out, ignore_errors=True)
        raise

    if budget is None and training and cfg.budget_s is not None:  # what was spent before the search counts
        seconds = max(1.0, cfg.search_budget_s - tail_seconds(cfg) - (time.perf_counter() - started))
        search_budget = replace(search_budget, seconds=seconds)
    saver = _BestSaver(out, objs)
    stopper = _stopper(cfg) if training else None
    search_started = time.perf_counter()
    result = search(space, evaluator, strat, led, search_budget, constraints=cons, workers=cfg.workers,
                    executor=cfg.executor, address=cfg.address, trial_memory_mb=cfg.trial_memory_mb,
                    median_stopping=stopper, progress=progress, on_result=saver, resume=resume)
    # the run's clock: this session's time, and the searching of the sessions before it
    run_clock = started - max(0.0, result.elapsed_s - (time.perf_counter() - search_started))
    trials = led.trials()
    summary = _summary(cfg, led, trials, space, dataset, result, out)
    summary["strategy"] = strat.describe()  # what the strategy was, its warm start included
    summary["choices"] = _choices(strat, stopper, trials, led.objectives, result)
    summary["choices"]["precision"] = describe_precision(cfg.precision, "cpu", dataset.input_shape) if dataset else None
    if training and result.best is not None and out is not None:
        assert dataset is not None
        _finalize(summary, cfg, space, dataset, evaluator, result, out, run_clock, emit)
    elif result.best is None:
        emit({"event": "no_result"})
    summary["elapsed_s"] = time.perf_counter() - started
    if out is not None:
        summary["artifacts"] = {"run": str(out / RUN_FILE), "summary": str(out / SUMMARY_FILE),
                                "report": str(out / "report.html") if report else None,
                                "best": str(out / "best") if summary.get("best") and training else None}
        write_json(out / SUMMARY_FILE, summary)
        if report:
            emit({"event": "stage", "what": "writing report.html"})
            write_run_report(out, summary, led)
    return summary


def _check_new_folder(out: Path) -> None:
    """A new run's folder: absent, or an empty folder (the lock file of an earlier attempt aside)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise UserError(f"run folder {out} already exists and is not empty (use --resume {out} to continue)")


def _make_folder(out: Path) -> bool:
    """Create the run folder (and its parents); whether it was created. An unusable path is a UserError."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--out {out}: a part of the path is a file, not a folder") from None
    except PermissionError:
        raise UserError(f"--out {out}: not writable (permission denied)") from None
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return created


def tail_seconds(cfg: SearchConfig) -> float:
    """The seconds a run keeps for what follows its training: saving the model, exporting it to ONNX (and
    checking the export) and writing the report; about 2.5 s on a 2-core laptop, more for a bigger run's report."""
    assert cfg.budget_s is not None
    return (2.5 if cfg.export_onnx else 1.0) + 0.01 * cfg.budget_s


def _stopper(cfg: SearchConfig) -> MedianStopping | SuccessiveHalving | None:
    """The run's early-stopping rule (``cfg.stopping``)."""
    return {"asha": SuccessiveHalving, "median": MedianStopping}.get(cfg.stopping, lambda: None)()


def _with_portfolio(strategy: Strategy, cfg: SearchConfig, space: Space, training: bool) -> Strategy:
    """``strategy`` starting from the space's portfolio (:mod:`archlab.search.portfolio`) in a training run."""
    if cfg.portfolio and training:
        strategy.set_portfolio(portfolio(space, cfg.budget_s))
    return strategy


def _make_strategy(name: str, cfg: SearchConfig, space: Space, data: Dataset | None, objectives: Sequence[Any],
                   constraints: Sequence[Any], training: bool, expected_trials: int) -> Strategy:
    """Strategy ``name`` for the run. A strategy built on zero-cost proxies (a class attribute ``proxy_names``)
    gets a :class:`ProxyScorer` of them (``scorer=``); any other gets the proxies' warm start
    (:meth:`Strategy.set_warmstart`) with ``cfg.warmstart == "proxies"`` in an accuracy-only training run."""
    # ranking candidates may take a tenth of the search's budget (a sequence model takes ~1 s to score), a
    # quarter for a strategy that searches by the proxies (robot, naswot: its pool is what it scores in time)
    if getattr(strategy_class(name), "needs_training_data", False):  # a one-shot method trains a supernet
        extra = {} if data is None else {
            "data": (data.x_train, data.y_train), "batch_size": cfg.batch_size or 64, "epochs": cfg.epochs,
            "seconds": ONESHOT_SHARE * cfg.search_budget_s if cfg.search_budget_s is not None else None,
            "max_memory_mb": cfg.max_memory_mb}
        return create_strategy(name, space, seed=cfg.seed, objectives=objectives, constraints=constraints,
                               expected_trials=expected_trials, **extra)
    proxy_names = getattr(strategy_class(name), "proxy_names", None)
    share = 0.25 if proxy_names is not None else 0.1
    limit = share * cfg.search_budget_s if cfg.search_budget_s is not None else None
    if proxy_names is not None:
        extra = {} if data is None else {"scorer": ProxyScorer(space, data.x_train, data.y_train, names=proxy_names,
                                                               seed=cfg.seed, time_budget_s=limit)}
        strategy = create_strategy(name, space, seed=cfg.seed, objectives=objectives, constraints=constraints,
                                   expected_trials=expected_trials, **extra)
        return _with_portfolio(strategy, cfg, space, training)
    strategy = _with_portfolio(create_strategy(name, space, seed=cfg.seed, objectives=objectives,
                                               constraints=constraints, expected_trials=expected_trials),
                               cfg, space, training)
    if (cfg.warmstart == "proxies" and training and data is not None
            and [o.name for o in objectives] == ["accuracy"]):
        # proxies predict trainability, not cost: with cost objectives they would bias toward big archs. Under a
        # time fidelity they also favour archs too big to train for more than a few epochs in a trial, so the
        # candidates' FLOPs rank counts too ("-flops": cheaper is better).
        names = ("naswot", "snip", "-flops") if cfg.trial_seconds_effective() is not None else ("naswot", "snip")
        strategy.set_warmstart(ProxyScorer(space, data.x_train, data.y_train, names=names, seed=cfg.seed,
                                           time_budget_s=limit), expected_trials=expected_trials)
    return strategy


def _choices(strategy: Strategy, stopper: Any, trials: Sequence[dict[str, Any]], objectives: Sequence[Any],
             result: SearchResult) -> dict[str, Any]:
    """What the report says about how the search chose (from the ledger's ``trials``): the portfolio's trials, the
    early-stopping rule, and why the winner won."""
    rows = sorted(trials, key=lambda r: r["number"])
    names: dict[int, str] = {}
    start = []
    for name, arch in strategy.portfolio:
        row = next((r for r in rows if r.get("arch") == arch.to_dict()), None)  # its first trial
        if row is None:
            continue  # the budget ended before it ran
        names[row["number"]] = name
        start.append({"name": name, "number": row["number"], "state": row["state"],
                      **{k: row.get(k) for k in ("val_accuracy", "epochs", "stopped")}})
    rule = ("successive halving (ASHA): a trial goes past " + ", ".join(f"{r:.0%}" for r in stopper.rungs)
            + f" of its schedule only among the best 1/{stopper.reduction_factor} there"
            if isinstance(stopper, SuccessiveHalving) else
            "median stopping: a trial below the median of earlier curves at the same progress stops"
            if isinstance(stopper, MedianStopping) else "none: every trial trained to its fidelity")
    done = [r for r in rows if r["state"] == "COMPLETE"]
    cut = sum(1 for r in done if r.get("stopped") in EARLY_STOPS)
    winner = None
    if result.best is not None:
        best = next((r for r in rows if r["number"] == result.best.number), {})
        origin = f"the portfolio's {names[result.best.number]}" if result.best.number in names else \
            f"proposed by {strategy.name}"
        o = objectives[0]
        value = result.best.metrics.get(o.metric)
        shown = f"{value:.2%}" if o.metric == "val_accuracy" and value is not None else f"{value}"
        winner = (f"trial {result.best.number} ({origin}) has the best {o.name} ({shown}) of {len(done)} completed "
                  f"trials, after {best.get('epochs')} epochs; {cut} of them were stopped early")
    explain = getattr(strategy, "explain", None)
    return {"portfolio": start, "stopping": rule, "winner": winner,
            "proposals": explain() if callable(explain) else None}


class _BestSaver:
    """Keeps the best trial's weights on disk for the final training (``checkpoints/search_best.*``)."""

    def __init__(self, out: Path | None, objectives: Sequence[Any]) -> None:
        self.out, self.objectives = out, objectives
        self.best: TrialRecord | None = None

    def __call__(self, record: TrialRecord, result: EvalResult, weights: bytes | None) -> None:
        if not record.ok or self.out is None:
            return
        if self.best is not None and best_record([self.best, record], self.objectives) is not record:
            return
        self.best = record
        from archlab.export import save_weights

        ckpt = self.out / "checkpoints"
        if weights is not None:
            atomic_write_bytes(ckpt / "search_best.safetensors", weights)
        elif result.model is not None:
            save_weights(result.model, ckpt / "search_best.safetensors")
        else:
            return
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str, list, type(None)))}
        write_json(ckpt / "search_best.json", {"arch": record.arch.to_dict(), "metrics": metrics})


def _summary(cfg: SearchConfig, ledger: Ledger, trials: Sequence[dict[str, Any]], space: Space,
             data: Dataset | None, result: SearchResult, out: Path | None) -> dict[str, Any]:
    rows = {t["number"]: t for t in trials}
    objectives = ledger.objectives
    summary: dict[str, Any] = {
        "run": {**cfg.to_dict(), "objectives": [o.name for o in objectives], "storage": ledger.url,
                "out": str(out) if out is not None else None},
        "objectives": [o.to_dict() for o in objectives],
        "data": data.describe() if data is not None else None,
        "space": space.describe(),
        "trials": counts(list(rows.values())),
        "pareto": [trial_summary(rows[r.number], objectives) for r in result.pareto],
        "search": {"elapsed_s": result.elapsed_s, "cost_s": result.cost_s, "exhausted": result.exhausted},
    }
    if result.best is None:
        summary["best"] = None
        return summary
    best = trial_summary(rows[result.best.number], objectives)
    best["search"] = {k: best.get(k) for k in ("val_accuracy", "test_accuracy", "cost_s")}
    summary["best"] = best
    return summary


def _finalize(summary: dict[str, Any], cfg: SearchConfig, space: Space, data: Dataset, evaluator: Any,
              result: SearchResult, out: Path, started: float, progress: Progress) -> None:
    """Train the best arch longer on all the training data, then save and export the final model."""
    from archlab.export import check_onnx, export_onnx, load_weights, save_weights

    best = result.best
    assert best is not None
    best_summary = summary["best"]
    model = space.build(best.arch)
    ckpt = out / "checkpoints" / "search_best.safetensors"
    ckpt_meta = out / "checkpoints" / "search_best.json"
    have_ckpt = ckpt.is_file() and ckpt_meta.is_file() and \
        json.loads(ckpt_meta.read_text()).get("arch") == best.arch.to_dict()
    if have_ckpt:
        load_weights(model, ckpt)
    seconds = None
    if cfg.final_epochs and cfg.budget_s is not None:
        seconds = cfg.budget_s - (time.perf_counter() - started) - tail_seconds(cfg)
    if cfg.final_epochs and seconds is not None and seconds < 1.0:
        summary["final"] = {"state": "skipped", "reason": f"the budget is spent ({max(0.0, seconds):.1f} s left)",
                            "used": False}
    elif cfg.final_epochs:
        final_cfg = final_train_config(evaluator.config, data, cfg.final_epochs, seconds)
        progress({"event": "final_start", "number": best.number, "seconds": seconds, "epochs": cfg.final_epochs})
        full = TrainingEvaluator(space, data, final_cfg, measure=False)  # its costs are the trial's
        # the final training continues from the search's weights for the arch: nothing learned is thrown away
        final = full(best.arch, keep_model=True, init_weights=ckpt if have_ckpt else None, seconds=seconds,
                     on_epoch=lambda p: progress({"event": "final_epoch", **p}))
        if final.state == "complete":
            info: dict[str, Any] = {k: final.metrics.get(k) for k in ("val_accuracy", "test_accuracy", "epochs",
                                                                     "cost_s")}
            info["curve"] = final.curve
            info["config"] = final_cfg.to_dict()
            if not have_ckpt or final.metrics["val_accuracy"] >= best.metrics["val_accuracy"]:
                model = final.model
                info["used"] = True
                best_summary.update(val_accuracy=final.metrics["val_accuracy"],
                                    test_accuracy=final.metrics["test_accuracy"])
            else:
                info["used"] = False
        else:
            info = {"state": final.state, "reason": final.reason, "used": False}
        summary["final"] = info
    if best_summary.get("test_accuracy") is None:  # a winner stopped early had no test pass in its trial
        from archlab.train import evaluate

        best_summary["test_accuracy"] = evaluate(model, data.x_test, data.y_test)[1]
    best_dir = out / "best"
    previous = _previous_best(out)
    if previous is not None and (best_summary.get("val_accuracy") or 0.0) < previous["best"]["val_accuracy"]:
        # a resumed run never makes its model worse: the one saved before stays, with what was said about it
        summary["final"] = {**(summary.get("final") or {}), "used": False,
                            "kept_previous": {"number": previous["best"].get("number"),
                                              "val_accuracy": previous["best"]["val_accuracy"],
                                              "candidate_val_accuracy": best_summary.get("val_accuracy")}}
        summary["best"] = previous["best"]
        if previous.get("export") is not None:
            summary["export"] = previous["export"]
        return
    progress({"event": "stage", "what": "saving the best model" + (" and exporting it to ONNX" if cfg.export_onnx
                                                                   else "")})
    write_json(best_dir / "arch.json", best.arch.to_dict())
    save_weights(model, best_dir / "model.safetensors", metadata={"arch": best.arch.to_json()})
    if cfg.export_onnx:
        io = {"input_dtype": data.input_dtype, "vocab_size": data.vocab_size}
        exported, metadata = exportable(model, data.describe())
        export_onnx(exported, data.input_shape, best_dir / "model.onnx", metadata=metadata, **io)
        summary["export"] = {"onnx": str(best_dir / "model.onnx"),
                             "onnx_max_abs_diff": check_onnx(exported, best_dir / "model.onnx", data.input_shape,
                                                             **io),
                             "input": json.loads(metadata["archlab.input"])}


def _previous_best(out: Path) -> dict[str, Any] | None:
    """The summary of the model a finished run saved in ``out/best`` before it was resumed, when there is one
    with a validation accuracy (else ``None``)."""
    try:
        previous = json.loads((out / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    best = previous.get("best") if isinstance(previous, dict) else None
    if not isinstance(best, dict) or not isinstance(best.get("val_accuracy"), (int, float)):
        return None
    if not (out / "best" / "model.safetensors").is_file():
        return None
    return previous

"""``run_search``: the main job — search a space on a dataset under a budget, then train, export and report
the winner.

A run folder holds ``run.json`` (the configuration), the ledger (``ledger.db`` unless ``storage`` names
another Optuna storage), ``best/`` (``arch.json``, ``model.safetensors``, ``model.onnx``), ``report.html`` and
``summary.json``. Every file is written atomically; a killed run is continued with ``resume=True``, which
replays the ledger into the strategy, so no completed trial is lost and no arch is trained twice.

The budget is split: most of it for the search at the search fidelity, the rest (``final_share``) to train the
best arch longer on all the training data, starting from its trial's weights (the final model is the better of
the two by validation accuracy).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from archlab._io import atomic_write_bytes, atomic_write_text
from archlab.data import Dataset, load_dataset
from archlab.errors import UserError
from archlab.proxies import ProxyScorer
from archlab.search import (
    DEFAULT_STRATEGY,
    MedianStopping,
    OptunaStrategy,
    Strategy,
    TrialRecord,
    check_objectives,
    create_strategy,
    pareto_front,
)
from archlab.space import Arch, Space, create_space
from archlab.study._evaluator import Constraints, EvalResult, Evaluator
from archlab.study._ledger import Ledger
from archlab.study._pool import TrialPool
from archlab.train import TrainConfig

__all__ = ["SearchConfig", "load_run", "make_space", "rewrite_report", "run_search", "write_json"]

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
FINAL_LABEL_SMOOTHING = 0.1
FINAL_SHIFT = 1  # pixels of random translation in the final training (images of >= 16 pixels a side)


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search run (saved in ``run.json``)."""

    space: str = "metaformer"
    data: str = "digits"
    mixers: tuple[str, ...] | None = None  # restrict the space's mixer choice (None: every registered mixer)
    strategy: str = DEFAULT_STRATEGY
    objectives: tuple[str, ...] = ("accuracy",)
    budget_s: float | None = 180.0
    n_trials: int | None = None
    seed: int = 0
    epochs: int = 20
    trial_seconds: float | None = None  # time fidelity per trial; None = derived from the budget
    train_subset: int | None = None  # 0: all; None: all of a small training split, 10,000 of a large one
    trial_timeout_s: float | None = None
    final_epochs: int = 40  # 0 = no final retraining
    final_fraction: float | None = None  # None: 0.25, or 0.6 when the search trains on a subset
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    batch_size: int | None = None  # None: 32 for small training splits (<= 5,000), 128 for larger ones
    lr: float = 3e-3
    storage: str | None = None
    export_onnx: bool = True
    proxy_warmup: bool = True  # evolution's first population picked by zero-cost proxies (accuracy-only runs)
    median_stopping: bool = True  # stop a trial whose curve falls below the median of earlier trials' curves
    workers: int = 1  # trials trained side by side, each in its own process with its share of the cores

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", tuple(check_objectives(self.objectives)))
        if self.mixers is not None:
            object.__setattr__(self, "mixers", tuple(m.strip() for m in self.mixers if m.strip()))
            if not self.mixers:
                raise UserError("--mixers needs at least one mixer name")
        if self.budget_s is None and self.n_trials is None:
            raise UserError("give a time budget, a number of trials, or both")
        if self.budget_s is not None and not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise UserError(f"budget must be a positive duration, got {self.budget_s}")
        if self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if self.n_trials is not None and self.n_trials < 1:
            raise UserError(f"--trials must be >= 1, got {self.n_trials}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {self.epochs}")
        if self.final_epochs < 0:
            raise UserError(f"--final-epochs must be >= 0, got {self.final_epochs}")
        if self.final_fraction is not None and not 0.0 <= self.final_fraction < 1.0:
            raise UserError(f"final fraction must be in [0, 1), got {self.final_fraction}")
        if self.train_subset is not None and self.train_subset != 0 and self.train_subset < 10:
            raise UserError(f"--train-subset must be 0 (all) or >= 10, got {self.train_subset}")
        if (self.batch_size is not None and self.batch_size < 1) or not self.lr > 0:
            raise UserError("batch size must be >= 1 and learning rate > 0")
        Constraints(self.max_params, self.max_flops, self.max_latency_ms)

    @property
    def constraints(self) -> Constraints:
        return Constraints(self.max_params, self.max_flops, self.max_latency_ms)

    @property
    def final_share(self) -> float:
        """The share of the budget kept to train the best arch longer. A search on a subset of a large training
        split sees a fraction of the data, so the final model gets most of the budget to see all of it."""
        if not self.final_epochs:
            return 0.0
        if self.final_fraction is not None:
            return self.final_fraction
        return 0.6 if self.train_subset else 0.25

    @property
    def search_budget_s(self) -> float | None:
        if self.budget_s is None:
            return None
        return self.budget_s * (1.0 - self.final_share)

    def trial_seconds_effective(self) -> float | None:
        seconds = self.trial_seconds
        if seconds is None and self.search_budget_s is not None:
            seconds = max(5.0, self.search_budget_s / 10)  # at least ~10 trials fit in any budget
        return seconds

    def expected_trials(self) -> int:
        """A rough count of the evaluations the budget allows (sizes the evolution's population)."""
        guesses = [self.n_trials] if self.n_trials is not None else []
        seconds = self.trial_seconds_effective()
        if self.search_budget_s is not None and seconds:
            guesses.append(int(self.search_budget_s / seconds))
        return max(1, min(guesses)) if guesses else 100

    def trial_config(self) -> TrainConfig:
        seconds = self.trial_seconds_effective()
        limit = self.trial_timeout_s
        if limit is None and seconds is not None:
            limit = 3 * seconds + 60  # generous: the time fidelity already ends training on time
        return TrainConfig(epochs=self.epochs, max_seconds=seconds, time_limit_s=limit, seed=self.seed,
                           batch_size=self.batch_size or 32, lr=self.lr)

    def resolve(self, n_train: int) -> SearchConfig:
        """The configuration with its automatic settings made concrete for a training split of ``n_train``."""
        subset = self.train_subset
        if subset is None:
            subset = 10_000 if n_train > 20_000 else 0
        if subset >= n_train:
            subset = 0
        return replace(self, train_subset=subset, batch_size=self.batch_size or (32 if n_train <= 5000 else 128))

    def search_subset(self) -> int | None:
        return self.train_subset or None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        d["mixers"] = list(self.mixers) if self.mixers is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"run configuration has unknown keys {sorted(unknown)}")
        d = dict(d)
        for key in ("objectives", "mixers"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temporary file + rename)."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=str))


def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` of a run folder; a folder that is not an archlab run is a :class:`UserError`."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder")
    if not path.is_file():
        raise UserError(f"{run_dir} is not an archlab run folder (no {RUN_FILE})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt: {e}") from None
    if not isinstance(data, dict) or "config" not in data or "storage" not in data:
        raise UserError(f"{path} is not an archlab run description")
    return data


def _versions() -> dict[str, str]:
    import optuna

    import archlab

    return {"archlab": archlab.__version__, "torch": torch.__version__, "optuna": optuna.__version__,
            "python": platform.python_version()}


Progress = Callable[[dict[str, Any]], None]


class _Run:
    def __init__(self, cfg: SearchConfig, out: Path, data: Dataset, space: Space, strategy: Strategy,
                 ledger: Ledger, progress: Progress | None) -> None:
        self.cfg, self.out, self.data, self.space = cfg, out, data, space
        self.strategy, self.ledger = strategy, ledger
        self.progress = progress or (lambda event: None)
        self.trial_config = cfg.trial_config()
        self.evaluator = Evaluator(space, data, self.trial_config, cfg.constraints, cfg.search_subset())

    # -- phase 1: search
    def search(self) -> float:
        """Run trials until the budget is spent; returns the search time used, earlier sessions included."""
        cfg, ledger, strategy = self.cfg, self.ledger, self.strategy
        if isinstance(strategy, OptunaStrategy):
            strategy.attach(ledger.study)
        recovered = ledger.recover()
        records = ledger.records()
        strategy.rebuild(records)
        done_before = max((t.get("search_elapsed_s", 0.0) for t in ledger.trials()), default=0.0)
        t0 = time.perf_counter() - done_before
        self._size = self.space.size()
        self.progress({"event": "start", "resumed": bool(records) or recovered > 0, "trials": len(records),
                       "budget_s": cfg.search_budget_s, "n_trials": cfg.n_trials})
        best = self._best(records)
        stopper = self._median_stopping()
        pool = TrialPool(cfg.to_dict(), cfg.workers) if cfg.workers > 1 else None
        in_flight: dict[Future, tuple[Any, Arch]] = {}
        exhausted, restarts = False, 0
        try:
            while True:
                # start trials while a worker is free (one at a time, in this process, without a pool)
                while not exhausted and len(in_flight) < cfg.workers and self._may_start(t0, len(in_flight)):
                    arch = strategy.ask()
                    if arch in strategy.seen:  # the space is exhausted (or what is left of it is being trained)
                        exhausted = True
                        break
                    trial = ledger.start(self.space, arch, strategy)
                    trial_cfg = self.trial_config
                    if cfg.search_budget_s is not None and trial_cfg.max_seconds is not None:
                        remaining = max(1.0, cfg.search_budget_s - (time.perf_counter() - t0))
                        trial_cfg = replace(trial_cfg, max_seconds=min(trial_cfg.max_seconds, remaining))
                    self.progress({"event": "trial_start", "number": trial.number, "arch": arch.to_dict()})
                    if pool is None:
                        result = self.evaluator(arch, trial_cfg, keep_model=True,
                                                on_epoch=stopper.monitor() if stopper is not None else None)
                        best = self._finish(trial, arch, result, None, stopper, best, t0)
                    else:
                        strategy.seen.add(arch)  # never proposed again while it trains
                        in_flight[pool.submit(arch, trial_cfg, stopper)] = (trial, arch)
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    trial, arch = in_flight.pop(future)
                    try:
                        result, weights = future.result()
                    except BrokenProcessPool as e:  # a worker was killed (out of memory, signal)
                        broken = True
                        result, weights = EvalResult("failed", reason=f"worker process died ({e})"), None
                    best = self._finish(trial, arch, result, weights, stopper, best, t0)
                if broken and pool is not None:
                    for future, (trial, arch) in list(in_flight.items()):  # the pool took them all down
                        in_flight.pop(future)
                        result = EvalResult("failed", reason="worker process died (pool restarted)")
                        best = self._finish(trial, arch, result, None, stopper, best, t0)
                    restarts += 1
                    if restarts > 3:
                        raise RuntimeError("the search's worker processes keep dying; the trials so far are in the "
                                           "ledger (continue with --resume, perhaps with fewer --workers)")
                    pool.restart()
                elif done:
                    restarts = 0
        finally:
            if pool is not None:
                pool.close()
        return time.perf_counter() - t0

    def _may_start(self, t0: float, in_flight: int) -> bool:
        cfg = self.cfg
        n = len(self.strategy.history) + in_flight
        if cfg.n_trials is not None and n >= cfg.n_trials:
            return False
        if cfg.search_budget_s is not None and time.perf_counter() - t0 >= cfg.search_budget_s:
            return False
        return n < self._size

    def _finish(self, trial: Any, arch: Arch, result: EvalResult, weights: bytes | None,
                stopper: MedianStopping | None, best: TrialRecord | None, t0: float) -> TrialRecord | None:
        """Record a finished trial in the ledger and the strategy; returns the best record so far."""
        if stopper is not None and result.state == "complete":
            stopper.add(result.curve, result.metrics.get("stopped"))
        search_elapsed = time.perf_counter() - t0
        self.ledger.finish(trial, result.state, result.metrics, reason=result.reason, curve=result.curve,
                           extra={"search_elapsed_s": search_elapsed})
        record = TrialRecord(number=trial.number, arch=arch, state=result.state,
                             metrics={k: v for k, v in result.metrics.items() if not k.startswith("test_")},
                             reason=result.reason)
        self.strategy.tell(record)
        if result.state == "complete" and (best is None or _rank(record) > _rank(best)):
            best = record
            self._save_checkpoint(arch, result, weights)
        self.progress({"event": "trial", "number": trial.number, "state": result.state,
                       "val_accuracy": result.metrics.get("val_accuracy"), "reason": result.reason,
                       "best_val_accuracy": best.metrics["val_accuracy"] if best else None,
                       "best_number": best.number if best else None, "elapsed_s": search_elapsed,
                       "budget_s": self.cfg.search_budget_s, "done": len(self.strategy.history),
                       "n_trials": self.cfg.n_trials})
        return best

    def _median_stopping(self) -> MedianStopping | None:
        """The median-stopping rule, rebuilt from the ledger's finished trials (in trial order)."""
        if not self.cfg.median_stopping:
            return None
        stopper = MedianStopping()
        for row in self.ledger.trials():
            if row["state"] == "COMPLETE" and row.get("status", "complete") == "complete" \
                    and row.get("duplicate_of") is None:
                stopper.add(row.get("curve") or [], row.get("stopped"))
        return stopper

    @staticmethod
    def _best(records: list[TrialRecord]) -> TrialRecord | None:
        done = [r for r in records if r.ok]
        return max(done, key=_rank) if done else None

    def _save_checkpoint(self, arch: Arch, result: EvalResult, weights: bytes | None = None) -> None:
        """The best trial's weights (the model, or a worker's safetensors bytes), for the final training."""
        from archlab.export import save_weights

        ckpt = self.out / "checkpoints"
        if weights is not None:
            atomic_write_bytes(ckpt / "search_best.safetensors", weights)
        elif result.model is not None:
            save_weights(result.model, ckpt / "search_best.safetensors")
        else:
            return
        write_json(ckpt / "search_best.json", {"arch": arch.to_dict(), "metrics": _jsonable(result.metrics)})

    # -- phase 2: final training, export
    def finalize(self, started: float, search_elapsed: float) -> dict[str, Any]:
        from archlab.export import check_onnx, export_onnx, load_weights, save_weights

        cfg, ledger = self.cfg, self.ledger
        records = ledger.records()
        rows = {t["number"]: t for t in ledger.trials()}
        best = self._best(records)
        summary: dict[str, Any] = {
            "run": {**cfg.to_dict(), "storage": ledger.url, "out": str(self.out)},
            "data": self.data.describe(),
            "space": self.space.describe(),
            "trials": _counts(ledger.trials()),
        }
        front = pareto_front(records, cfg.objectives)
        summary["pareto"] = [_trial_summary(rows[r.number]) for r in front]
        if best is None:
            summary["best"] = None
            self.progress({"event": "no_result"})
            return summary
        best_row = rows[best.number]
        best_summary = _trial_summary(best_row)
        best_summary["search"] = {k: best_summary.get(k) for k in ("val_accuracy", "test_accuracy", "cost_s")}
        model = self.space.build(best.arch)
        ckpt = self.out / "checkpoints" / "search_best.safetensors"
        ckpt_meta = self.out / "checkpoints" / "search_best.json"
        have_ckpt = ckpt.is_file() and ckpt_meta.is_file() and \
            json.loads(ckpt_meta.read_text()).get("arch") == best.arch.to_dict()
        if have_ckpt:
            load_weights(model, ckpt)
        final_info: dict[str, Any] | None = None
        if cfg.final_epochs:
            seconds = None
            if cfg.budget_s is not None:
                spent = max(time.perf_counter() - started, search_elapsed)  # this session, or all sessions
                reserve = 5.0 + 0.01 * cfg.budget_s  # final evaluation, export and report
                seconds = max(5.0, cfg.budget_s - spent - reserve)
            final_cfg = final_train_config(self.trial_config, self.data, cfg.final_epochs, seconds)
            self.progress({"event": "final_start", "number": best.number, "seconds": seconds,
                           "epochs": cfg.final_epochs})
            full = Evaluator(self.space, self.data, final_cfg, Constraints(), None)
            # the final training continues from the search's weights for the arch: nothing learned is thrown away
            result = full(best.arch, keep_model=True, init_weights=ckpt if have_ckpt else None,
                          on_epoch=lambda p: self.progress({"event": "final_epoch", **p}))
            if result.state == "complete":
                final_info = {k: result.metrics.get(k) for k in ("val_accuracy", "test_accuracy", "epochs",
                                                                "cost_s")}
                final_info["curve"] = result.curve
                final_info["config"] = final_cfg.to_dict()
                if not have_ckpt or result.metrics["val_accuracy"] >= best.metrics["val_accuracy"]:
                    model = result.model
                    final_info["used"] = True
                    best_summary.update(val_accuracy=result.metrics["val_accuracy"],
                                        test_accuracy=result.metrics["test_accuracy"])
                else:
                    final_info["used"] = False
            else:
                final_info = {"state": result.state, "reason": result.reason, "used": False}
            summary["final"] = final_info
        best_dir = self.out / "best"
        write_json(best_dir / "arch.json", best.arch.to_dict())
        save_weights(model, best_dir / "model.safetensors", metadata={"arch": best.arch.to_json()})
        if cfg.export_onnx:
            io = {"input_dtype": self.data.input_dtype, "vocab_size": self.data.vocab_size}
            export_onnx(model, self.data.input_shape, best_dir / "model.onnx", **io)
            summary["export"] = {"onnx": str(best_dir / "model.onnx"),
                                 "onnx_max_abs_diff": check_onnx(model, best_dir / "model.onnx",
                                                                 self.data.input_shape, **io)}
        summary["best"] = best_summary
        return summary


def final_train_config(trial_config: TrainConfig, data: Dataset, epochs: int, seconds: float | None) -> TrainConfig:
    """The final training's config: a trial's, for ``epochs`` or ``seconds``, without early stopping.

    It runs many more epochs than a trial, on all the data, so it is regularised against overfitting in those
    epochs: label smoothing (0.1, Szegedy et al. 2016), random one-pixel shifts of images of 16 pixels or more,
    and, on data whose labels survive a mirror image, random flips."""
    return replace(trial_config, epochs=epochs, max_seconds=seconds, time_limit_s=None, patience=None,
                   augment_flip=data.flip_invariant, augment_shift=final_shift(data.input_shape),
                   label_smoothing=FINAL_LABEL_SMOOTHING)


def final_shift(input_shape: tuple[int, ...]) -> int:
    """The final training's random translation: one pixel on images of at least 16 pixels a side (a pixel is
    a small move there, not on 8x8 digits); none on other inputs."""
    return FINAL_SHIFT if len(input_shape) == 3 and min(input_shape[1:]) >= 16 else 0


def _rank(r: TrialRecord) -> tuple[float, float, float]:
    """Best = highest validation accuracy, then fewest parameters, then earliest (all deterministic: latency,
    which varies from run to run, never breaks a tie)."""
    return (r.metrics["val_accuracy"], -r.metrics.get("params", 0), -r.number)


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, list, type(None)))}


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    c = {"completed": 0, "failed": 0, "infeasible": 0, "duplicates": 0, "interrupted": 0}
    for t in rows:
        if t.get("duplicate_of") is not None:
            c["duplicates"] += 1
        elif t.get("reason") == "interrupted":
            c["interrupted"] += 1
        elif t["state"] == "FAIL":
            c["failed"] += 1
        elif t["state"] == "COMPLETE":
            c["infeasible" if t.get("status") == "infeasible" else "completed"] += 1
    return c


def _trial_summary(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("val_accuracy", "test_accuracy", "params", "flops", "latency_ms", "cost_s", "epochs")
    return {"number": row["number"], "arch": row.get("arch"), **{k: row.get(k) for k in keys}}


def run_search(cfg: SearchConfig | None = None, out: str | os.PathLike | None = None, *, resume: bool = False,
               progress: Progress | None = None, report: bool = True) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a search and return its summary (also in ``summary.json``)."""
    started = time.perf_counter()
    if out is None:
        out = Path("runs") / datetime.now().strftime("search-%Y%m%d-%H%M%S")
    out = Path(out)
    created = False
    if resume:
        run = load_run(out)
        saved = SearchConfig.from_dict(run["config"])
        if cfg is None and (out / SUMMARY_FILE).is_file():  # finished, and no new budget: nothing to do
            try:
                return json.loads((out / SUMMARY_FILE).read_text())
            except json.JSONDecodeError:
                pass  # a corrupt summary is rebuilt below
        if cfg is not None:  # only the budget may be extended on resume
            saved = replace(saved, budget_s=cfg.budget_s, n_trials=cfg.n_trials)
        cfg = saved
        storage = run["storage"]
    else:
        cfg = cfg or SearchConfig()
        if out.exists() and any(out.iterdir()):
            raise UserError(f"run folder {out} already exists and is not empty (use --resume {out} to continue)")
        storage = cfg.storage or f"sqlite:///{(out / 'ledger.db').resolve()}"
    # validate everything that can be validated before a folder is written
    data = load_dataset(cfg.data, seed=cfg.seed)
    cfg = cfg.resolve(len(data.y_train))
    space = make_space(cfg, data.input_shape, data.num_classes, data.vocab_size)
    extra: dict[str, Any] = {}
    if cfg.proxy_warmup and cfg.strategy == "rea" and tuple(cfg.objectives) == ("accuracy",):
        # proxies predict trainability, not cost: with cost objectives they would bias toward big archs. Under a
        # time fidelity they also favour archs too big to train for more than a few epochs in a trial, so the
        # candidates' FLOPs rank counts too ("-flops": cheaper is better).
        names = ("naswot", "snip", "-flops") if cfg.trial_seconds_effective() is not None else ("naswot", "snip")
        extra["scorer"] = ProxyScorer(space, data.x_train, data.y_train, names=names, seed=cfg.seed)
    strategy = create_strategy(cfg.strategy, space, seed=cfg.seed, objectives=cfg.objectives,
                               constrained=cfg.constraints.active, expected_trials=cfg.expected_trials(), **extra)
    if not resume:
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
    try:
        ledger = Ledger(storage, cfg.objectives, create=not resume)
        if not resume:
            ledger.save_config(cfg.to_dict())
            write_json(out / RUN_FILE, {"config": cfg.to_dict(), "storage": storage,
                                        "started": datetime.now(UTC).isoformat(timespec="seconds"),
                                        "data": data.describe(), "space": space.describe(),
                                        "versions": _versions()})
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    runner = _Run(cfg, out, data, space, strategy, ledger, progress)
    summary = runner.finalize(started, runner.search())
    summary["elapsed_s"] = time.perf_counter() - started
    summary["artifacts"] = {"run": str(out / RUN_FILE), "summary": str(out / SUMMARY_FILE),
                            "report": str(out / "report.html") if report else None,
                            "best": str(out / "best") if summary.get("best") else None}
    write_json(out / SUMMARY_FILE, summary)
    if report:
        write_run_report(out, summary, ledger)
    return summary


def make_space(cfg: SearchConfig, input_shape: tuple[int, ...], num_classes: int,
               vocab_size: int | None = None) -> Space:
    """The run's space (with its mixer restriction, if any); ``vocab_size`` for token-id data."""
    kwargs: dict[str, Any] = {"mixers": list(cfg.mixers)} if cfg.mixers is not None else {}
    if vocab_size is not None:
        kwargs["vocab_size"] = vocab_size
    return create_space(cfg.space, input_shape=input_shape, num_classes=num_classes, **kwargs)


def rewrite_report(run_dir: str | os.PathLike) -> Path:
    """(Re)write ``run_dir/report.html`` from the ledger: for a finished run from its summary, for a run that is
    still going or was interrupted from the trials recorded so far."""
    out = Path(run_dir)
    run = load_run(out)
    cfg = SearchConfig.from_dict(run["config"])
    ledger = Ledger(run["storage"], cfg.objectives, create=False)
    summary_file = out / SUMMARY_FILE
    if summary_file.is_file():
        try:
            summary = json.loads(summary_file.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{summary_file} is corrupt") from None
    else:
        rows = {t["number"]: t for t in ledger.trials()}
        front = pareto_front(ledger.records(), cfg.objectives)
        summary = {"run": {**cfg.to_dict(), "storage": run["storage"], "out": str(out)},
                   "trials": _counts(ledger.trials()), "best": None,
                   "pareto": [_trial_summary(rows[r.number]) for r in front], "elapsed_s": None}
    return write_run_report(out, summary, ledger)


def write_run_report(out: Path, summary: dict[str, Any], ledger: Ledger) -> Path:
    from archlab.report import write_report

    front = {p["number"] for p in summary.get("pareto", [])}
    trials = []
    for t in ledger.trials():
        row = dict(t)
        row["pareto"] = t["number"] in front
        trials.append(row)
    report_summary = dict(summary)
    report_summary["run"] = {**summary["run"], "budget": summary["run"].get("budget_s")}
    return write_report(out / "report.html", report_summary, trials)

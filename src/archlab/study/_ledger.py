"""The ledger: every trial of a search, kept in an Optuna study in any Optuna storage.

Each trial's Optuna params are the arch's decisions (so Optuna's samplers and ``optuna-dashboard`` read it
as a normal study), and its user attributes hold the arch as JSON, every metric, the learning curve and the
reason of a failure. SQLite commits each trial when it finishes, so a crash or a kill loses only the trial that
was running; :meth:`Ledger.recover` marks such trials as interrupted when a run resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from archlab.errors import StorageError
from archlab.search import OBJECTIVES, Strategy, TrialRecord
from archlab.space import Arch, Space

__all__ = ["Ledger", "open_storage"]

STUDY_NAME = "archlab"
CONFIG_ATTR = "archlab_run"
INTERRUPTED = "interrupted"
TEST_KEYS = ("test_accuracy", "test_loss")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: any SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``) or
    ``journal:///path/to/file.log`` for Optuna's append-only journal file."""
    try:
        if url.startswith("journal://"):
            path = Path(url[len("journal://"):])
            if not path.parent.is_dir():
                raise StorageError(f"storage {url!r}: folder {path.parent} does not exist")
            backend = optuna.storages.journal.JournalFileBackend(str(path))
            return optuna.storages.JournalStorage(backend)
        if "://" not in url:
            raise StorageError(f"storage {url!r} is not a URL (try sqlite:///run.db or journal:///run.log)")
        engine_kwargs: dict[str, Any] = {}
        if url.startswith(("postgresql", "mysql")):
            engine_kwargs["connect_args"] = {"connect_timeout": 5}
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            if str(path) not in ("", ":memory:") and not path.parent.is_dir():
                raise StorageError(f"storage {url!r}: folder {path.parent} does not exist")
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except StorageError:
        raise
    except Exception as e:  # sqlalchemy / driver errors: unreachable host, missing driver, bad URL
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot open storage {url!r}: {msg}") from None


class Ledger:
    """One search's study: trials in, :class:`TrialRecord`\\ s and report rows out."""

    def __init__(self, storage: str, objectives: Sequence[str], *, create: bool,
                 study_name: str = STUDY_NAME) -> None:
        self.url = storage
        self.objectives = list(objectives)
        store = open_storage(storage)
        directions = [OBJECTIVES[o][1] for o in self.objectives]
        try:
            if create:
                self.study = optuna.create_study(storage=store, study_name=study_name, directions=directions,
                                                 load_if_exists=False)
            else:
                self.study = optuna.load_study(storage=store, study_name=study_name)
        except optuna.exceptions.DuplicatedStudyError:
            raise StorageError(f"storage {storage!r} already holds a study named {study_name!r}; "
                               "use --resume or another storage") from None
        except KeyError:
            raise StorageError(f"storage {storage!r} holds no archlab study {study_name!r}") from None
        except StorageError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StorageError(f"cannot use storage {storage!r}: {msg}") from None
        logging.getLogger("optuna").setLevel(logging.WARNING)

    # -- run configuration
    def save_config(self, config: dict[str, Any]) -> None:
        self.study.set_user_attr(CONFIG_ATTR, config)

    def config(self) -> dict[str, Any] | None:
        return self.study.user_attrs.get(CONFIG_ATTR)

    # -- trials
    def start(self, space: Space, arch: Arch, strategy: Strategy) -> optuna.Trial:
        """An Optuna trial carrying ``arch`` (the strategy's own pending trial, or a new one)."""
        pending = getattr(strategy, "pending_trial", None)
        trial = pending(arch) if pending is not None else None
        if trial is None:
            self.study.sampler = optuna.samplers.RandomSampler(seed=0)  # every param is fixed by the queue
            self.study.enqueue_trial(space.to_params(arch))
            trial = self.study.ask()
            got = space.suggest(trial)
            if got != arch:
                raise RuntimeError(f"ledger: enqueued arch came back different ({got} != {arch})")
        trial.set_user_attr("arch", arch.to_dict())
        return trial

    def finish(self, trial: optuna.Trial, state: str, metrics: dict[str, Any], *, reason: str | None = None,
               curve: list[dict[str, float]] | None = None, extra: dict[str, Any] | None = None) -> None:
        for k, v in {**metrics, **(extra or {})}.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("status", state)
        if reason:
            trial.set_user_attr("reason", reason)
        if curve:
            trial.set_user_attr("curve", curve)
        if state == "failed":
            self.study.tell(trial, state=TrialState.FAIL)
            return
        # an infeasible arch is never trained: it scores zero accuracy, its measured costs stay as they are
        values = [0.0 if (state == "infeasible" and o == "accuracy") else float(metrics[OBJECTIVES[o][0]])
                  for o in self.objectives]
        self.study.tell(trial, values)

    def recover(self) -> int:
        """Mark trials left running or queued by a killed process as failed ("interrupted")."""
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            optuna.Trial(self.study, t._trial_id).set_user_attr("reason", INTERRUPTED)
            self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            n += 1
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        for _ in waiting:
            trial = self.study.ask()
            trial.set_user_attr("reason", INTERRUPTED)
            self.study.tell(trial, state=TrialState.FAIL)
            n += 1
        return n

    def trials(self) -> list[dict[str, Any]]:
        """Every trial as a plain dict (for reports and summaries), in trial order."""
        out = []
        for t in self.study.get_trials(deepcopy=False):
            row = dict(t.user_attrs)
            row["number"] = t.number
            row["state"] = t.state.name
            row["duplicate_of"] = t.user_attrs.get("duplicate_of")
            out.append(row)
        return out

    def records(self) -> list[TrialRecord]:
        """Evaluations a strategy has been told about: finished, not interrupted, not duplicates."""
        out = []
        for t in self.study.get_trials(deepcopy=False):
            a = t.user_attrs
            if "arch" not in a or "duplicate_of" in a or a.get("reason") == INTERRUPTED:
                continue
            if t.state == TrialState.COMPLETE:
                state = a.get("status", "complete")
            elif t.state == TrialState.FAIL:
                state = "failed"
            else:
                continue
            metrics = {k: v for k, v in a.items()
                       if k in ("val_accuracy", "val_loss", "params", "flops", "latency_ms", "cost_s",
                                "constraints") and k not in TEST_KEYS}
            out.append(TrialRecord(number=t.number, arch=Arch(a["arch"]), state=state, metrics=metrics,
                                   reason=a.get("reason")))
        return out

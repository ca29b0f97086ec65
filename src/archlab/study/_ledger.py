"""The ledger: every trial of a search, kept in an Optuna study in any Optuna storage. It is the only writer.

Each trial's Optuna params are the arch's decisions and its values the objectives, so ``optuna-dashboard`` reads
a ledger as a normal study. Everything else about the trial is ONE JSON user attribute, ``archlab``: the arch, the
state, every metric, the learning curve, the reason of a failure and what the proposing strategy asked to keep
(:meth:`Strategy.memo`). One function, :func:`to_record`, turns that attribute into the
:class:`~archlab.search.TrialRecord` a strategy is told — live and on resume — so a resumed strategy sees exactly
what the live one saw.

Storages: ``None`` (or ``"memory"``) for a ledger in memory (benchmark loops; :meth:`Ledger.save_to` writes it
out at the end), which keeps its trials as plain payloads and builds its Optuna study (in Optuna's in-memory
storage) only when something asks for it: the study an Optuna-backed ledger would have built. Any SQLAlchemy URL,
``journal:///path.log``, or a storage object. SQLite files run in WAL mode with ``synchronous=NORMAL``: a commit
survives a crash or a kill of the process (not a power cut), at a fraction of the cost of a full sync. A trial of
a slow evaluator is written when it starts (running) and when it ends, so a kill loses only running trials, which
:meth:`Ledger.recover` marks as interrupted on resume; a trial of an instant evaluator (a table lookup) is written
once, when it is done.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState, create_trial

from archlab._urls import drop_password, mask_password, restore_password
from archlab.errors import StorageError
from archlab.search import Objective, TrialRecord, resolve_objectives
from archlab.search.optuna_samplers import param_distributions, params_and_distributions
from archlab.space import Arch, Space
from archlab.study._evaluator import EvalResult

__all__ = ["RECORD_ATTR", "Ledger", "PendingTrial", "open_storage", "to_record"]

STUDY_NAME = "archlab"
RECORD_ATTR = "archlab"  # the trial's JSON record
CONFIG_ATTR = "archlab_run"
SPACE_ATTR = "archlab_space"
INTERRUPTED = "interrupted"
_HIDDEN_PREFIX = "test_"  # metrics a strategy is never shown
_MEMORY = ("memory", "inmemory", ":memory:")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sqlite_pragmas(storage: optuna.storages.RDBStorage) -> None:
    from sqlalchemy import event

    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections made before the listener get the pragmas when reopened


class _LedgerRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, less one query per parameter of every new trial: Optuna looks up an earlier trial's
    distribution of the parameter to check that they are compatible; the ledger, the study's only writer, checks it
    against the distribution it last wrote for that name in this process instead (still with Optuna's check)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written: dict[str, Any] = {}

    def _set_trial_param_without_commit(self, session: Any, trial_id: int, param_name: str,
                                        param_value_internal: float, distribution: Any,
                                        previous_distribution: Any = None) -> None:
        if previous_distribution is None:
            previous_distribution = self._written.get(param_name)
        super()._set_trial_param_without_commit(session, trial_id, param_name, param_value_internal, distribution,
                                                previous_distribution)
        self._written[param_name] = distribution


def open_storage(storage: str | BaseStorage | None) -> BaseStorage:
    """An Optuna storage: ``None`` / ``"memory"`` (in memory), any SQLAlchemy URL (``sqlite:///...``,
    ``postgresql://...``), ``journal:///path/to/file.log`` (Optuna's append-only journal file), or a storage
    object, returned as it is."""
    if isinstance(storage, BaseStorage):
        return storage
    if storage is None or storage in _MEMORY:
        return optuna.storages.InMemoryStorage()
    if not isinstance(storage, str):
        raise StorageError(f"a storage is a URL or an Optuna storage object, got {type(storage).__name__}")
    url, shown = restore_password(storage), mask_password(storage)  # a user-only URL takes $ARCHLAB_STORAGE_PASSWORD
    try:
        if url.startswith("journal://"):
            path = Path(url[len("journal://"):])
            if not path.parent.is_dir():
                raise StorageError(f"storage {shown!r}: folder {path.parent} does not exist")
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        if "://" not in url:
            raise StorageError(f"storage {shown!r} is not a URL (try sqlite:///run.db or journal:///run.log)")
        engine_kwargs: dict[str, Any] = {}
        if url.startswith(("postgresql", "mysql")):
            engine_kwargs["connect_args"] = {"connect_timeout": 5}
        file_db = False
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            file_db = str(path) not in ("", ":memory:")
            if file_db and not path.parent.is_dir():
                raise StorageError(f"storage {shown!r}: folder {path.parent} does not exist")
        rdb = _LedgerRDBStorage(url, engine_kwargs=engine_kwargs)
        if file_db:
            _sqlite_pragmas(rdb)
        return rdb
    except StorageError:
        raise
    except Exception as e:  # sqlalchemy / driver errors: unreachable host, missing driver, bad URL
        msg = mask_password(str(e).strip().splitlines()[0]) if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot open storage {shown!r}: {msg}") from None


_AS_IS = frozenset({str, int, float, bool, type(None)})  # the types JSON gives back as they were


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists, numpy numbers Python numbers), so that a record read back from
    any storage equals the one made live. Plain dicts, lists, tuples and scalars are copied here (a JSON round
    trip costs more than the rest of an instant trial); anything else makes that round trip."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is list or kind is tuple:
        return [_plain(v) for v in value]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:  # JSON turns keys into text (and may merge two of them)
                return _json_plain(value)
            out[k] = _plain(v)
        return out
    return _json_plain(value)


def _json_plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _payload(arch: Arch, result: EvalResult, extra: dict[str, Any] | None,
             memo: dict[str, Any] | None, space: Space | None = None) -> dict[str, Any]:
    """The ``archlab`` attribute of a finished trial (before :meth:`Ledger._values` checks its objectives). A
    space with a codec of its own (``to_string``: a NAS-Bench-201 cell string) also gives the arch's text."""
    payload: dict[str, Any] = {"arch": arch.to_dict(), "state": result.state, "metrics": result.metrics}
    to_string = getattr(space, "to_string", None)
    if to_string is not None:
        payload["arch_str"] = to_string(arch)
    if result.reason:
        payload["reason"] = result.reason
    if result.curve:
        payload["curve"] = result.curve
    if memo:
        payload["memo"] = memo
    if extra:
        payload.update(extra)
    return _plain(payload)


def to_record(number: int, payload: dict[str, Any], arch: Arch | None = None) -> TrialRecord:
    """The :class:`TrialRecord` a strategy is told for a stored trial (test metrics left out). ``arch``: the live
    arch whose JSON form ``payload["arch"]`` is (equal to the arch built from it, which is not built again)."""
    metrics = {k: v for k, v in payload.get("metrics", {}).items() if not k.startswith(_HIDDEN_PREFIX)}
    return TrialRecord(number=number, arch=Arch(payload["arch"]) if arch is None else arch, state=payload["state"],
                       metrics=metrics, reason=payload.get("reason"), memo=payload.get("memo"))


@dataclass
class PendingTrial:
    """A trial of the ledger: ``number`` once it is marked running, ``trial_id`` once that is written to the
    storage (a memory ledger keeps a running trial to itself; an instant trial is written only when done)."""

    arch: Arch
    trial_id: int | None = None
    number: int | None = None


class Ledger:
    """One search's study: trials in, :class:`TrialRecord`\\ s and report rows out.

    ``Ledger(None)`` / ``Ledger("memory")`` / :meth:`Ledger.memory` make a :class:`_MemoryLedger`."""

    def __new__(cls, storage: str | BaseStorage | None = None, *args: Any, **kwargs: Any) -> Ledger:
        if cls is Ledger and (storage is None or (isinstance(storage, str) and storage in _MEMORY)):
            cls = _MemoryLedger
        return super().__new__(cls)

    def __getnewargs__(self) -> tuple[Any, ...]:  # copy / pickle rebuild the class they copy
        return (self.__dict__.get("storage"),)

    def __init__(self, storage: str | BaseStorage | None = None, objectives: Sequence[Any] = ("accuracy",), *,
                 create: bool = True, study_name: str = STUDY_NAME, space: Space | None = None) -> None:
        # the URL as it is recorded and shown: without its password (archlab._urls)
        self.url = drop_password(storage) if isinstance(storage, str) else (
            "memory" if storage is None else type(storage).__name__)
        self.objectives: tuple[Objective, ...] = resolve_objectives(objectives)
        self.space = space
        self.storage = open_storage(storage)
        directions = [o.direction for o in self.objectives]
        try:
            if create:
                self.study = optuna.create_study(storage=self.storage, study_name=study_name, directions=directions,
                                                 load_if_exists=False)
            else:
                self.study = optuna.load_study(storage=self.storage, study_name=study_name)
        except optuna.exceptions.DuplicatedStudyError:
            raise StorageError(f"storage {self.url!r} already holds a study named {study_name!r}; "
                               "use --resume or another storage") from None
        except KeyError:
            raise StorageError(f"storage {self.url!r} holds no archlab study {study_name!r}") from None
        except Exception as e:
            msg = mask_password(str(e).strip().splitlines()[0]) if str(e).strip() else type(e).__name__
            raise StorageError(f"cannot use storage {self.url!r}: {msg}") from None
        self._study_id = self.study._study_id
        # the ledger is the study's only writer, so the next trial's number is the count so far (asking the storage
        # for it costs an extra query per trial on an RDB)
        self._next_number = len(self.study.get_trials(deepcopy=False))
        self._params_of: dict[Arch, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._space_distributions: dict[str, Any] | None = None

    @classmethod
    def memory(cls, objectives: Sequence[Any] = ("accuracy",), space: Space | None = None) -> Ledger:
        """A ledger in memory (write it out with :meth:`save_to`)."""
        return cls(None, objectives, space=space)

    # -- run configuration and the pinned space
    def _set_attr(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, _plain(value))

    def _attr(self, key: str) -> Any:
        return self.study.user_attrs.get(key)

    def save_config(self, config: dict[str, Any]) -> None:
        self._set_attr(CONFIG_ATTR, config)

    def config(self) -> dict[str, Any] | None:
        return self._attr(CONFIG_ATTR)

    def pin_space(self, spec: dict[str, Any]) -> None:
        """Record the resolved space of the run (what rebuilds it, and its fingerprint)."""
        self._set_attr(SPACE_ATTR, spec)

    def pinned_space(self) -> dict[str, Any] | None:
        return self._attr(SPACE_ATTR)

    # -- writing trials
    def _params(self, arch: Arch) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.space is None:
            return {}, {}
        got = self._params_of.get(arch)
        if got is None:
            if self._space_distributions is None:
                self._space_distributions = param_distributions(self.space)
            got = self._params_of[arch] = params_and_distributions(self.space, arch, self._space_distributions)
        return got

    def start(self, arch: Arch, *, mark_running: bool = True) -> PendingTrial:
        """A trial for ``arch``; with ``mark_running`` it is written now as running (so a kill shows it)."""
        if not mark_running:
            return PendingTrial(arch)
        params, distributions = self._params(arch)
        template = create_trial(state=TrialState.RUNNING, params=params, distributions=distributions,
                                user_attrs={RECORD_ATTR: {"arch": arch.to_dict(), "state": "running"}})
        trial_id = self.storage.create_new_trial(self._study_id, template_trial=template)
        return PendingTrial(arch, trial_id, self._take_number())

    def _take_number(self) -> int:
        number, self._next_number = self._next_number, self._next_number + 1
        return number

    def finish(self, pending: PendingTrial, result: EvalResult, *, extra: dict[str, Any] | None = None,
               memo: dict[str, Any] | None = None) -> TrialRecord:
        """Write the result of ``pending`` and return the record a strategy is told."""
        arch = pending.arch
        payload = _payload(arch, result, extra, memo, self.space)
        state, values = self._values(payload)
        if pending.trial_id is None:
            params, distributions = self._params(arch)
            frozen = create_trial(state=state, values=values, params=params, distributions=distributions,
                                  user_attrs={RECORD_ATTR: payload})
            self.storage.create_new_trial(self._study_id, template_trial=frozen)
            number = self._take_number()
        else:
            self.storage.set_trial_user_attr(pending.trial_id, RECORD_ATTR, payload)
            self.storage.set_trial_state_values(pending.trial_id, state, values)
            number = pending.number
        return to_record(number, payload, arch)

    def add(self, arch: Arch, result: EvalResult, **kw: Any) -> TrialRecord:
        """Write a finished trial in one go."""
        return self.finish(PendingTrial(arch), result, **kw)

    def _values(self, payload: dict[str, Any]) -> tuple[TrialState, list[float] | None]:
        if payload["state"] == "failed":
            return TrialState.FAIL, None
        metrics = payload["metrics"]
        values = []
        for o in self.objectives:
            v = metrics.get(o.metric)
            if v is None:
                if payload["state"] == "complete":
                    payload["state"], payload["reason"] = "failed", f"no metric {o.metric!r} for objective {o.name!r}"
                    return TrialState.FAIL, None
                v = o.worst  # an infeasible arch, never trained
            v = float(v)
            if math.isnan(v):
                payload["state"], payload["reason"] = "failed", f"objective {o.name!r} ({o.metric}) is NaN"
                return TrialState.FAIL, None
            values.append(v)
        return TrialState.COMPLETE, values

    def recover(self) -> int:
        """Mark trials left running by a killed process as failed ("interrupted")."""
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            payload = dict(t.user_attrs.get(RECORD_ATTR) or {})
            payload.update(state="failed", reason=INTERRUPTED)
            self.storage.set_trial_user_attr(t._trial_id, RECORD_ATTR, payload)
            self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
        return n

    # -- reading
    def _stored(self) -> list[tuple[int, str, dict[str, Any]]]:
        return [(t.number, t.state.name, t.user_attrs.get(RECORD_ATTR) or {})
                for t in self.study.get_trials(deepcopy=False)]

    def records(self) -> list[TrialRecord]:
        """Evaluations a strategy has been told about: finished and not interrupted, in trial order."""
        return [to_record(number, p) for number, state, p in self._stored()
                if state in ("COMPLETE", "FAIL") and "arch" in p and p.get("reason") != INTERRUPTED
                and p.get("state") in ("complete", "failed", "infeasible")]

    def trials(self) -> list[dict[str, Any]]:
        """Every trial as a flat dict (metrics, arch, curve, status, reason, number, Optuna state), for reports."""
        rows = []
        for number, state, p in self._stored():
            row = {k: v for k, v in p.items() if k not in ("metrics", "state")}
            row.update(p.get("metrics", {}))
            row.update(number=number, state=state, status=p.get("state"))
            rows.append(row)
        return rows

    def save_to(self, storage: str | BaseStorage, study_name: str = STUDY_NAME) -> Ledger:
        """Copy this ledger (trials and run attributes) to another storage; returns the copy."""
        target = Ledger(storage, self.objectives, create=True, study_name=study_name, space=self.space)
        for key, value in self.study.user_attrs.items():
            target.study.set_user_attr(key, value)
        target.study.add_trials(self.study.get_trials(deepcopy=False))
        return target


class _MemoryLedger(Ledger):
    """A ledger in memory: its trials are plain rows (arch, Optuna state name, payload, values, start and end times)
    until something asks for :attr:`study` or :attr:`storage` (or :meth:`save_to` copies it); then it builds the
    Optuna study the eager ledger would have built (same numbers, states, values, params, attributes and times)
    and writes everything after to that study, as an eager in-memory ledger does. A trial started running is kept
    only here (a killed process loses the memory anyway) but takes its number when it starts, as it would there."""

    def __init__(self, storage: str | None = None, objectives: Sequence[Any] = ("accuracy",), *,
                 create: bool = True, study_name: str = STUDY_NAME, space: Space | None = None) -> None:
        self.url = drop_password(storage) if isinstance(storage, str) else "memory"
        self.objectives = resolve_objectives(objectives)
        self.space = space
        if not create:
            raise StorageError(f"storage {self.url!r} holds no archlab study {study_name!r}")
        self._study_name = study_name
        self._study: optuna.Study | None = None
        self._rows: list[list[Any]] = []  # [arch, state name, payload, values, datetime_start, datetime_complete]
        self._attrs: dict[str, Any] = {}
        self._trial_ids: list[int] = []  # by number, once the study is built
        self._next_number = 0
        self._params_of = {}
        self._space_distributions = None

    @property
    def study(self) -> optuna.Study:  # type: ignore[override]
        if self._study is None:
            storage = optuna.storages.InMemoryStorage()
            study = optuna.create_study(storage=storage, study_name=self._study_name,
                                        directions=[o.direction for o in self.objectives])
            for key, value in self._attrs.items():
                study.set_user_attr(key, value)
            self._trial_ids = [storage.create_new_trial(study._study_id, template_trial=t) for t in self._frozen()]
            self._study, self._study_id = study, study._study_id
        return self._study

    @property
    def storage(self) -> BaseStorage:  # type: ignore[override]
        return self.study._storage

    def _frozen(self) -> list[optuna.trial.FrozenTrial]:
        trials = []
        for arch, state, payload, values, started, completed in self._rows:
            params, distributions = self._params(arch)
            t = create_trial(state=TrialState[state], values=values, params=params, distributions=distributions,
                             user_attrs={RECORD_ATTR: payload})
            t.datetime_start, t.datetime_complete = started, completed
            trials.append(t)
        return trials

    def _set_attr(self, key: str, value: Any) -> None:
        if self._study is not None:
            return super()._set_attr(key, value)
        self._attrs[key] = _plain(value)

    def _attr(self, key: str) -> Any:
        return super()._attr(key) if self._study is not None else _plain(self._attrs.get(key))

    def start(self, arch: Arch, *, mark_running: bool = True) -> PendingTrial:
        if self._study is not None or not mark_running:
            return super().start(arch, mark_running=mark_running)
        self._rows.append([arch, "RUNNING", {"arch": arch.to_dict(), "state": "running"}, None, datetime.now(),
                           None])
        return PendingTrial(arch, None, self._take_number())

    def finish(self, pending: PendingTrial, result: EvalResult, *, extra: dict[str, Any] | None = None,
               memo: dict[str, Any] | None = None) -> TrialRecord:
        if self._study is not None:
            if pending.trial_id is None and pending.number is not None:  # started running before the study was built
                pending = PendingTrial(pending.arch, self._trial_ids[pending.number], pending.number)
            return super().finish(pending, result, extra=extra, memo=memo)
        arch = pending.arch
        payload = _payload(arch, result, extra, memo, self.space)
        state, values = self._values(payload)
        now = datetime.now()
        if pending.number is None:
            number = self._take_number()
            self._rows.append([arch, state.name, payload, values, now, now])
        else:
            number, row = pending.number, self._rows[pending.number]
            if row[1] != "RUNNING":  # as Optuna refuses it
                raise optuna.exceptions.UpdateFinishedTrialError(f"trial {number} has already finished")
            row[1:] = [state.name, payload, values, row[4], now]
        return to_record(number, payload, arch)

    def recover(self) -> int:
        if self._study is not None:
            return super().recover()
        n = 0
        for row in self._rows:
            if row[1] == "RUNNING":
                row[1:] = ["FAIL", {**row[2], "state": "failed", "reason": INTERRUPTED}, None, row[4], datetime.now()]
                n += 1
        return n

    def _stored(self) -> list[tuple[int, str, dict[str, Any]]]:
        if self._study is not None:
            return super()._stored()
        return [(number, row[1], row[2]) for number, row in enumerate(self._rows)]

    def save_to(self, storage: str | BaseStorage, study_name: str = STUDY_NAME) -> Ledger:
        if self._study is not None:
            return super().save_to(storage, study_name)
        target = Ledger(storage, self.objectives, create=True, study_name=study_name, space=self.space)
        for key, value in self._attrs.items():
            target.study.set_user_attr(key, value)
        target.study.add_trials(self._frozen())
        return target

"""One writer per run folder: a lock held for as long as a search writes the folder.

``run_search`` takes :class:`RunLock` on ``FOLDER/.lock`` before it writes anything and keeps it until the run is
over, so a second ``archlab search --resume FOLDER`` (or a second ``--out FOLDER``) started meanwhile stops at once
with an error naming the process that holds the folder, instead of two processes writing one ledger. The lock is an
advisory ``flock`` on the open file: the kernel releases it when its process ends in any way (SIGKILL included),
so the lock of a dead process is taken over without a stale-lock rule. The file itself only says who holds it
(pid, host, command, start time) and stays behind. Where ``fcntl`` is missing (Windows) the file is created
exclusively and a file left by a process that no longer runs on this host is taken over. ``flock`` does not lock
across machines on every network file system: on shared storage use one run folder per machine.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archlab.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class RunLock:
    """The write lock of run folder ``folder`` (which must exist); :meth:`acquire` raises a :class:`UserError`
    naming the holder when another process has it. Use as a context manager, or :meth:`release` when done."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says about its last holder (``None`` if there is no readable one)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _busy(self) -> UserError:
        who = self.holder() or {}
        pid, host = who.get("pid", "?"), who.get("host", "?")
        since = who.get("started", "?")
        command = who.get("command") or "another process"
        return UserError(f"run folder {self.path.parent} is in use by process {pid} on {host} ({command!s:.120}, "
                         f"since {since}); wait for it to end or stop it, then try again")

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        try:
            if fcntl is not None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise self._busy() from None
            else:  # pragma: no cover - Windows
                fd = self._acquire_exclusive()
        except PermissionError:
            raise UserError(f"run folder {self.path.parent} is not writable") from None
        except OSError as e:
            raise UserError(f"cannot lock run folder {self.path.parent}: {e.strerror or e}") from None
        self._fd = fd
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else ""
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command[:300],
                  "started": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        return self

    def _acquire_exclusive(self) -> int:  # pragma: no cover - Windows
        for _ in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                who = self.holder() or {}
                if who.get("host") == socket.gethostname() and isinstance(who.get("pid"), int) \
                        and not _alive(who["pid"]):
                    self.path.unlink(missing_ok=True)  # left by a process that is gone
                    continue
                raise self._busy() from None
        raise self._busy()

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is None:  # pragma: no cover - Windows
            os.close(fd)
            self.path.unlink(missing_ok=True)
            return
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

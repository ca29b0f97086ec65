"""A memory limit per trial: a soft address-space limit (``RLIMIT_AS``) around each trial, where the platform has one.

``--trial-memory MB`` lets a trial grow its process's address space by at most MB megabytes over what the process
had mapped when the trial started: an allocation past it fails inside the trial (``MemoryError``, or torch's
"can't allocate memory" RuntimeError), which fails that trial with its reason, and the search goes on, instead of
the kernel's out-of-memory killer ending the whole search. The previous limit is restored after every trial. The
limit is on address space, not resident memory: it is generous for what a trial touches (a process maps more than
it uses), and meant to catch a runaway arch, not to account bytes. On platforms without ``resource`` (Windows) or
without ``/proc/self/statm`` it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = ["mapped_bytes", "trial_memory_limit"]


def mapped_bytes() -> int | None:
    """This process's address space in bytes (``/proc/self/statm``), or ``None`` where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def trial_memory_limit(megabytes: float | None) -> Iterator[None]:
    """Within the block, the address space may grow by ``megabytes`` at most (``None``: no limit)."""
    if megabytes is None or resource is None:
        yield
        return
    base = mapped_bytes()
    if base is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = base + int(megabytes * 2**20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

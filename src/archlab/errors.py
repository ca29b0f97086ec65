"""Errors that archlab reports to its user.

A :class:`UserError` is raised for bad input (an unknown name, a malformed space, data of the wrong shape,
an unreachable storage, a corrupt file). The CLI prints its message on one line and exits with code 2;
anything else is an internal failure (exit code 1).
"""

from __future__ import annotations

import re


class UserError(ValueError):
    """Bad input from the user: the message says, in one line, what was wrong (line breaks in it, such as a
    quoted library message's, are joined with spaces)."""

    def __str__(self) -> str:
        return re.sub(r"\s*\n\s*", " ", super().__str__()).strip()


class SpaceError(UserError):
    """A malformed space declaration, or an architecture that does not belong to its space."""


class DataError(UserError):
    """A dataset that cannot be found, read or used (unknown name, one class, mismatched shapes...)."""


class StorageError(UserError):
    """A ledger storage that cannot be reached or opened."""


class WorkersDied(RuntimeError):
    """The search's worker processes kept dying (out of memory, killed); the trials done so far are in the ledger."""

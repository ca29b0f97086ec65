"""Storage URLs and their passwords: a password is used to connect and never printed or saved.

A database URL such as ``postgresql://user:secret@host/db`` is shown as ``postgresql://user:***@host/db``
(:func:`mask_password`, for messages and reports) and saved as ``postgresql://user@host/db``
(:func:`drop_password`, in ``run.json``, ``summary.json`` and the ledger's configuration). The password comes at
run time only (:func:`restore_password`): from the URL given (``--storage``, again on resume), else, for a URL with
a user and no password (a new run's or a saved one), from ``$ARCHLAB_STORAGE_PASSWORD``; without either, the
database driver's own sources apply (PostgreSQL's ``PGPASSWORD`` and ``~/.pgpass``).
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

__all__ = ["PASSWORD_ENV", "drop_password", "mask_password", "restore_password"]

#: The environment variable a resumed run reads a storage password from.
PASSWORD_ENV = "ARCHLAB_STORAGE_PASSWORD"

# scheme://user:password@ — anywhere in a text (an error message may quote the URL)
_CREDENTIALS = re.compile(r"(\b[A-Za-z][\w+.-]*://[^:/@\s'\"]+):([^@\s'\"]*)@")


def mask_password(text: object) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1:***@", str(text))


def drop_password(url: str) -> str:
    """``url`` without its password (the user name stays)."""
    return _CREDENTIALS.sub(r"\1@", url)


def _has_user_only(url: str) -> bool:
    return re.match(r"^[A-Za-z][\w+.-]*://[^:/@\s]+@", url) is not None


def restore_password(saved: str, given: str | None = None) -> str:
    """The URL to connect to for a run saved with ``saved`` (a URL without password): ``given`` when it names the
    same storage (its password is used), else ``saved`` with ``$ARCHLAB_STORAGE_PASSWORD`` when that is set and
    ``saved`` has a user, else ``saved`` as it is."""
    if given is not None and drop_password(given) == drop_password(saved):
        return given
    password = os.environ.get(PASSWORD_ENV)
    if password and _has_user_only(saved):
        scheme, rest = saved.split("://", 1)
        user, host = rest.split("@", 1)
        return f"{scheme}://{user}:{quote(password, safe='')}@{host}"
    return saved

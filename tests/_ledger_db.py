"""Reading a run's SQLite ledger from a test while another process writes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def completed_trials(db: Path) -> int:
    """How many trials of the ledger at ``db`` are COMPLETE (0 while the file does not exist or is locked)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("select count(*) from trials where state='COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0

"""Parsing budgets and durations: ``180s``, ``30m``, ``1h30m``, ``2.5m``, ``90`` (seconds)."""

from __future__ import annotations

import re

from archlab.errors import UserError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)?", re.IGNORECASE)
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, None: 1.0}


def parse_duration(text: str | float | int, what: str = "budget") -> float:
    """Seconds in ``text``; a negative, zero or unparseable value is a :class:`UserError`."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        if s.startswith("-"):
            raise UserError(f"{what} {text!r} is negative; give a positive duration like 180s, 30m or 1h")
        pos, seconds, parts = 0, 0.0, 0
        while pos < len(s):
            m = _PART.match(s, pos)
            if not m or m.end() == pos:
                raise UserError(f"cannot parse {what} {text!r}; use a duration like 180s, 30m, 1h30m")
            unit = m.group(2)
            if unit is None and m.end() != len(s):
                raise UserError(f"cannot parse {what} {text!r}; use a duration like 180s, 30m, 1h30m")
            seconds += float(m.group(1)) * _SCALE[unit]
            pos, parts = m.end(), parts + 1
        if parts == 0:
            raise UserError(f"{what} is empty; use a duration like 180s, 30m or 1h")
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"{what} {text!r} must be a positive duration")
    return seconds

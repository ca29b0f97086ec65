"""How archlab writes numbers for people: the one formatter behind the HTML report and the terminal.

Every function takes whatever a ledger or a summary holds (an int, a float, None, NaN, even a string) and
returns text; a missing or non-finite value becomes :data:`MISSING` rather than an exception, because a
report or a table must still render for a run that recorded only part of its metrics. The defaults are the
report's style (``"98.3 %"``, ``"12.3k"``); the keyword options give the terminal's denser style
(``format_percent(v, digits=2, space="")`` → ``"98.34%"``) from the same code.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MISSING",
    "finite",
    "format_bytes",
    "format_count",
    "format_flops",
    "format_int",
    "format_ms",
    "format_percent",
    "format_seconds",
    "format_shape",
    "si_prefix",
]

#: What a missing value reads as (an en dash).
MISSING = "–"

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def finite(value: Any) -> float | None:
    """The value as a float, or None when it is missing, a bool, not a number, or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def si_prefix(value: float, giga: str = "G") -> tuple[float, str]:
    """``value`` scaled to its largest SI prefix (k, M, G, T) and that prefix; ``giga`` renames G (``"B"`` for
    billions of parameters)."""
    for factor, prefix in _PREFIXES:
        if abs(value) >= factor:
            return value / factor, giga if prefix == "G" else prefix
    return value, ""


def format_count(value: Any, digits: int = 1, giga: str = "G", missing: str = MISSING) -> str:
    """A count with an SI prefix: ``12345`` → ``"12.3k"``, ``1234567`` → ``"1.2M"``, ``950`` → ``"950"``."""
    number = finite(value)
    if number is None:
        return missing
    scaled, prefix = si_prefix(number, giga)
    return f"{scaled:.{digits}f}{prefix}" if prefix else f"{number:.0f}"


def format_int(value: Any, missing: str = MISSING) -> str:
    """An exact count with thousands separators: ``11915176`` → ``"11,915,176"``."""
    number = finite(value)
    return missing if number is None else f"{round(number):,}"


def format_flops(value: Any, digits: int = 1, missing: str = MISSING) -> str:
    """FLOPs with an SI prefix and unit: ``1.2e6`` → ``"1.2 MFLOPs"``."""
    number = finite(value)
    if number is None:
        return missing
    scaled, prefix = si_prefix(number)
    return f"{scaled:.{digits}f} {prefix}FLOPs" if prefix else f"{number:.0f} FLOPs"


def format_ms(value: Any, unit: bool = True, missing: str = MISSING) -> str:
    """Milliseconds, three significant digits below a second: ``0.4512`` → ``"0.451 ms"``; ``unit=False``
    leaves out the ``" ms"`` (for a column whose header names the unit)."""
    number = finite(value)
    if number is None:
        return missing
    text = f"{number:.3g}" if abs(number) < 1000 else f"{number:.0f}"
    return f"{text} ms" if unit else text


def format_percent(value: Any, digits: int = 1, space: str = " ", missing: str = MISSING) -> str:
    """An accuracy in 0..1 as a percentage: ``0.9834`` → ``"98.3 %"`` (``digits=2, space=""``: ``"98.34%"``)."""
    number = finite(value)
    return missing if number is None else f"{100 * number:.{digits}f}{space}%"


def format_seconds(value: Any, missing: str = MISSING) -> str:
    """A duration: ``42.3`` → ``"42.3 s"``, ``192`` → ``"3 min 12 s"``, ``3720`` → ``"1 h 2 min"``."""
    number = finite(value)
    if number is None:
        return missing
    if number < 60:
        return f"{number:.1f} s"
    seconds = round(number)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def format_bytes(value: Any, missing: str = MISSING) -> str:
    """A size in binary units: ``3 * 2**20`` → ``"3.00 MiB"``."""
    number = finite(value)
    if number is None:
        return missing
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(number) >= factor:
            return f"{number / factor:.2f} {unit}"
    return f"{number:.0f} B"


def format_shape(shape: Any, missing: str = MISSING) -> str:
    """An input shape: ``(3, 224, 224)`` → ``"3×224×224"``."""
    return "×".join(map(str, shape)) if shape else missing

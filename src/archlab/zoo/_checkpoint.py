"""Loading other implementations' checkpoints: the key renames that models apply in ``_load_from_state_dict``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def rename_keys(state_dict: dict[str, Any], prefix: str, aliases: Mapping[str, str]) -> None:
    """In place: each ``prefix + old`` key of ``aliases`` becomes ``prefix + new``. Where both are present (a
    checkpoint that stores a tied tensor under both names), the archlab name's entry is kept and the alias dropped."""
    for old, new in aliases.items():
        if prefix + old in state_dict:
            value = state_dict.pop(prefix + old)
            state_dict.setdefault(prefix + new, value)

"""Import every module of a zoo sub-package, so that adding a file is all it takes to register its parts."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def import_submodules(package: ModuleType) -> list[str]:
    """Import each public module of ``package`` (sorted, so registration order is stable); return their names."""
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package.__name__}.{name}")
    return names

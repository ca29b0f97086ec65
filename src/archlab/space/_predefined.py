"""Registry of predefined spaces: ``create_space(name, input_shape=..., num_classes=...)``.

The zoo's style: a module of :mod:`archlab.space` registers its spaces with :func:`register_space`, and every
public module of the package is imported on first use of the registry, so a new space is a new file and nothing
else. ``create_space`` records on the space (``space.spec``) the arguments that rebuild it exactly, defaults
resolved: ``create_space(**space.spec)`` gives a space of the same :meth:`~archlab.space.Space.fingerprint` even
after the zoo has grown (the ledger pins a run's space with both).
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

from archlab.errors import SpaceError
from archlab.space._arch import freeze, thaw
from archlab.space._space import Space

__all__ = ["create_space", "list_spaces", "register_space"]

_SPACES: dict[str, Callable[..., Space]] = {}
_discovered = False


def register_space(name: str):
    """Register ``factory(*, input_shape, num_classes, **kw) -> Space`` under ``name``.

    A factory that resolves a default from the state of the world (the mixers registered today) sets
    ``space.spec`` to those resolved keyword arguments (``{"mixers": [...]}``); :func:`create_space` completes it.
    """

    def deco(factory: Callable[..., Space]) -> Callable[..., Space]:
        if name in _SPACES and _SPACES[name] is not factory:
            raise SpaceError(f"space {name!r} is already registered")
        _SPACES[name] = factory
        return factory

    return deco


def _discover() -> None:
    """Import every public module of :mod:`archlab.space` once (as ``archlab.zoo._discover`` does for the zoo).

    Not that helper itself: importing anything under :mod:`archlab.zoo` imports torch and every model, which
    listing spaces does not need.
    """
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("archlab.space")
    for name in sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{package.__name__}.{name}")
    _discovered = True


def list_spaces(pattern: str = "*") -> list[str]:
    _discover()
    return sorted(n for n in _SPACES if fnmatch.fnmatchcase(n, pattern))


def _plain(value: Any) -> Any:
    """``value`` as plain JSON (tuples as lists) when it is JSON, else as it is."""
    try:
        return thaw(freeze(value))
    except SpaceError:
        return value


def create_space(name: str, *, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> Space:
    """The predefined space ``name`` for data of ``input_shape`` (C, H, W) and ``num_classes`` classes.

    The space's ``spec`` holds ``name``, ``input_shape``, ``num_classes`` and every keyword, with the defaults
    the factory resolved made explicit, so that ``create_space(**space.spec)`` rebuilds the same space.
    """
    _discover()
    if name not in _SPACES:
        raise SpaceError(f"unknown space {name!r}; known: {', '.join(sorted(_SPACES))}")
    factory = _SPACES[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            takes = sorted(k for k in params if k not in ("input_shape", "num_classes"))
            raise SpaceError(f"space {name!r} does not take {', '.join(unknown)} (it takes: "
                             f"{', '.join(takes) or 'nothing more'})")
    space = factory(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    resolved = {**kwargs, **(space.spec or {})}
    space.spec = {"name": name, "input_shape": list(input_shape), "num_classes": num_classes,
                  **{k: _plain(v) for k, v in resolved.items()}}
    return space

"""Registry of predefined spaces: ``create_space(name, input_shape=..., num_classes=...)``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from archlab.errors import SpaceError
from archlab.space._space import Space

__all__ = ["create_space", "list_spaces", "register_space"]

_SPACES: dict[str, Callable[..., Space]] = {}


def register_space(name: str):
    """Register ``factory(*, input_shape, num_classes, **kw) -> Space`` under ``name``."""

    def deco(factory: Callable[..., Space]) -> Callable[..., Space]:
        _SPACES[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    from archlab.space import ascan, metaformer, sequence  # noqa: F401  (registers "ascan", "metaformer", "sequence")


def list_spaces(pattern: str = "*") -> list[str]:
    _load_builtin()
    return sorted(n for n in _SPACES if fnmatch.fnmatchcase(n, pattern))


def create_space(name: str, *, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> Space:
    """The predefined space ``name`` for data of ``input_shape`` (C, H, W) and ``num_classes`` classes."""
    _load_builtin()
    if name not in _SPACES:
        raise SpaceError(f"unknown space {name!r}; known: {', '.join(sorted(_SPACES))}")
    return _SPACES[name](input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)

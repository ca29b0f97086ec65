"""Module decisions: a module factory whose settings are decisions, decoded to the factory with them bound.

``module("mamba", create_mamba, d_state=choice([8, 16, 32]))`` is a struct of the settings (genotype
``{"d_state": 16}``; with no settings ``{}``) that decodes to :class:`Bound` ``("mamba", create_mamba,
{"d_state": 16})``, a callable that builds the module. Inside a branch of ``choice({...})`` the genotype is the
branch's usual ``{"option": "mamba", "d_state": 16}`` (``{"option": "gla"}`` with no settings), and decoding the
choice gives the chosen :class:`Bound`. A :class:`Bound` can also be a plain option of a leaf choice (its name is
the genotype). So ``space.build(arch)`` and a supernet (every option's factory, from
:meth:`~archlab.space.Space.decisions`) read one declaration.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from archlab.errors import SpaceError
from archlab.space._arch import FrozenDict
from archlab.space._structure import Struct, _fields

__all__ = ["Bound", "Module"]


class Bound:
    """A module factory with chosen settings: ``bound(*args, **kw)`` is ``func(*args, **settings, **kw)``.

    ``name`` says which module (it is also ``__name__``, so a ``choice`` of bound factories records the name);
    ``settings`` are the chosen values. Equal when name, factory and settings are.
    """

    __slots__ = ("func", "name", "settings")

    def __init__(self, name: str, func: Callable[..., Any], settings: Mapping[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name or not callable(func):
            raise SpaceError(f"Bound({name!r}, {func!r}): needs a non-empty name and a callable factory")
        self.name, self.func = name, func
        self.settings = settings if isinstance(settings, FrozenDict) else FrozenDict(settings or {})

    @property
    def __name__(self) -> str:  # instances are named after their module
        return self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **{**self.settings, **kwargs})

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Bound) and other.name == self.name and other.func == self.func
                and other.settings == self.settings)

    def __hash__(self) -> int:
        return hash((self.name, self.settings))

    def __repr__(self) -> str:
        return f"Bound({self.name!r}{''.join(f', {k}={v!r}' for k, v in self.settings.items())})"


class Module(Struct):
    """A module factory and its settings: the settings are searched as a struct's fields, decoding gives a
    :class:`Bound` factory. A module may have no settings (one genotype, ``{}``)."""

    is_module = True

    _allow_empty = True

    def __init__(self, name: str, factory: Callable[..., Any], settings: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not name or not callable(factory):
            raise SpaceError(f"module({name!r}, ...): needs a non-empty name and a callable factory")
        super().__init__(settings)
        self.name, self.factory = name, factory

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        if not self.fields:  # one genotype; draw as a constant does, so seeded searches replay as before
            return a if rng.random() < 0.5 else b
        return super().crossover(a, b, rng)

    def decode(self, g: Any) -> Bound:
        d = _fields(g)
        return Bound(self.name, self.factory, FrozenDict._of({k: n.decode(d[k]) for k, n in self._items}))

    def signature(self) -> Any:
        return {"module": self.name, **super().signature()}

"""The nodes of the search-space language, and the functions that declare them.

A space is a tree of decisions. Each node knows how to sample a genotype, check one, list and apply its
one-step mutations, cross two genotypes over, count and enumerate its genotypes, encode a genotype as a
fixed-length vector, and ask an Optuna trial for one (``suggest``), so every search strategy — archlab's own
or Optuna's samplers — works on the same declaration.

Genotypes are plain JSON values:

========================  ====================================================================
node                      genotype
========================  ====================================================================
``choice([3, 5, 7])``     the chosen value (``5``)
``choice([nn.ReLU, ..])`` the chosen callable's name (``"ReLU"``); ``decode`` gives the callable
``choice({"a": {...}})``  a branch: ``{"option": "a", **fields}`` (or ``{"option": k, "value": v}``)
``integer(1, 4)``         an ``int``
``real(1e-4, 1e-1)``      a ``float``
``repeat(node, count)``   a list of the node's genotypes, of the chosen length
``optional(node)``        ``None`` or the node's genotype
``dict(...)`` (struct)    an object with one entry per field
``module(n, f, **kw)``    an object of the settings ``kw``; ``decode`` gives ``f`` with them bound
========================  ====================================================================

The nodes live in :mod:`~archlab.space._node` (the base), :mod:`~archlab.space._leaves` (constants and ranges),
:mod:`~archlab.space._choice`, :mod:`~archlab.space._structure` (repeats, optional parts, structs) and
:mod:`~archlab.space._module` (module factories); this module gathers them under one name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from archlab.space._choice import Choice
from archlab.space._leaves import Constant, Integer, Real
from archlab.space._module import Bound, Module
from archlab.space._node import Decision, Node
from archlab.space._structure import Optional, Repeat, Struct, as_node

__all__ = [
    "Bound",
    "Choice",
    "Constant",
    "Decision",
    "Integer",
    "Module",
    "Node",
    "Optional",
    "Real",
    "Repeat",
    "Struct",
    "as_node",
    "choice",
    "integer",
    "module",
    "optional",
    "real",
    "repeat",
]


def choice(options: Sequence[Any] | Mapping[str, Any]) -> Choice:
    """One of ``options`` (values, callables, or sub-spaces; a dict names them)."""
    return Choice(options)


def integer(low: int, high: int, step: int = 1) -> Integer:
    """An integer in ``[low, high]`` with the given ``step``."""
    return Integer(low, high, step)


def real(low: float, high: float, log: bool = False) -> Real:
    """A real number in ``[low, high]``, log-uniform if ``log``."""
    return Real(low, high, log)


def repeat(node: Any, count: int | Integer | Choice) -> Repeat:
    """``node`` repeated ``count`` times (an int, ``integer(...)`` or ``choice([...])``)."""
    return Repeat(node, count)


def module(name: str, factory: Callable[..., Any], **settings: Any) -> Module:
    """A module ``factory`` whose keyword ``settings`` are decisions (or constants); it decodes to a
    :class:`Bound` factory with the chosen settings, named ``name``."""
    return Module(name, factory, settings)


def optional(node: Any, p: float = 0.5) -> Optional:
    """``node`` or nothing (``None``); ``p`` is the probability of presence when sampling."""
    return Optional(node, p)


"""The base of the search-space nodes, the decision descriptor, and the helpers every node shares.

A node's operations come in families: generation and checking (``sample``, ``check``, ``extreme``), search moves
(``sites``, ``mutate``, ``crossover``), counting (``size``, ``enumerate``), surrogate inputs (``encode``), Optuna
(``suggest``, ``params``, ``decisions``) and pinning (``signature``). :class:`ParamsTrial` answers ``suggest``
from a params dict, which is how :meth:`~archlab.space.Space.from_params` inverts ``to_params`` with no second
walk of the tree to keep in step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from archlab.errors import SpaceError

__all__ = ["Condition", "Decision", "Node", "ParamsTrial"]

_PRIMITIVES = (type(None), bool, int, float, str)
EXTREMES = ("min", "max")

# (param path, the values of that param under which a decision is active)
Condition = tuple[str, tuple[Any, ...]]


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps ``True``, ``1`` and ``1.0`` apart (as JSON does)."""
    return type(a) is type(b) and a == b


def _is_json_constant(value: Any) -> bool:
    if isinstance(value, _PRIMITIVES):
        return not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, (list, tuple)):
        return all(_is_json_constant(v) for v in value)
    return False


@dataclass(frozen=True)
class Decision:
    """One decision of a space, over its maximal structure (what a supernet must hold).

    ``path`` is the Optuna param name that :meth:`~archlab.space.Space.suggest` and ``to_params`` use
    (``"stages.2.mixer"``, ``"stages.count"``, ``"extra.present"``, ``"layers.0<mamba>.d_state"``). ``kind`` is
    ``"choice"`` (``options`` are the values an arch records: option keys, counts, or ``(False, True)`` for an
    optional part's presence), ``"integer"`` (``low``, ``high``, ``step``) or ``"real"`` (``low``, ``high``,
    ``log``). The decision is made only when every ``(path, values)`` of ``conditions`` holds: the param at
    ``path`` took one of ``values`` (the repeat is long enough, the branch was chosen, the optional part is
    present). ``node`` is the declaring node (for instance to reach a choice's callables).
    """

    path: str
    kind: str
    options: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    conditions: tuple[Condition, ...] = ()
    node: Node | None = field(default=None, compare=False, repr=False)

    def values(self) -> tuple[Any, ...]:
        """Every value the decision can take (a choice's options, an integer range's steps); a real range has no
        finite list and raises :class:`SpaceError`."""
        if self.kind == "choice":
            return tuple(self.options)
        if self.kind == "integer":
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise SpaceError(f"decision {self.path!r} is a real range: its values cannot be listed")

    def distribution(self) -> Any:
        """The matching ``optuna.distributions`` object (what a study records for ``path``)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.options))
        if self.kind == "integer":
            return IntDistribution(int(self.low), int(self.high), step=self.step or 1)
        return FloatDistribution(self.low, self.high, log=self.log)


class ParamsTrial:
    """A stand-in for an Optuna trial that answers each ``suggest_*`` from a params dict, checking the value."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        if not isinstance(params, Mapping):
            raise SpaceError(f"from_params: params must be a mapping of names to values, got {type(params).__name__}")
        self.params = params
        self.used: set[str] = set()

    def _get(self, name: str) -> Any:
        if name not in self.params:
            raise SpaceError(f"from_params: missing param {name!r}")
        self.used.add(name)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        value = self._get(name)
        if not any(_same(value, c) for c in choices):
            raise SpaceError(f"from_params: param {name!r} = {value!r} is not one of {choices!r}")
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        value = self._get(name)
        if not (isinstance(value, int) and not isinstance(value, bool)) or value not in range(low, high + 1, step):
            raise SpaceError(f"from_params: param {name!r} = {value!r} is not an integer in [{low}, {high}] "
                             f"step {step}")
        return value

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        value = self._get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
            raise SpaceError(f"from_params: param {name!r} = {value!r} is not a number in [{low}, {high}]")
        return value

    def unused(self) -> list[str]:
        return sorted(str(k) for k in self.params if k not in self.used)


# the node classes a declaration turns into (filled by the modules that define them, which ``archlab.space``
# imports): ``as_node`` lives here so that a choice of sub-spaces and a struct of choices need not import each other
_DECLARATION_NODES: dict[str, type] = {}


def as_node(value: Any, where: str = "") -> Node:
    """Turn a declaration (node, ``dict`` of fields, or JSON constant) into a node."""
    if isinstance(value, Node):
        return value
    if isinstance(value, Mapping):
        return _DECLARATION_NODES["struct"](value)
    if _is_json_constant(value):
        return _DECLARATION_NODES["constant"](value)
    at = f" at {where!r}" if where else ""
    raise SpaceError(f"cannot use {value!r}{at} in a space: use choice(), integer(), real(), repeat(), "
                     "optional(), a dict, or a JSON constant")


class Node:
    """A decision (or a fixed part) of a space. Subclasses implement every method below.

    ``is_struct`` marks nodes whose genotype is an object of named fields (a branch of a choice then carries them
    beside its ``option`` key); ``is_module`` marks nodes that decode to a bound factory.

    ``fixed_sites`` is the number of mutation sites when it does not depend on the genotype (leaves, and
    structs of leaves), else ``None``: the hot path then skips counting them arch by arch.
    """

    fixed_sites: int | None = None
    is_struct: bool = False
    is_module: bool = False

    def sample(self, rng: random.Random) -> Any:
        raise NotImplementedError

    def check(self, g: Any, path: str) -> None:
        """Raise :class:`SpaceError` naming ``path`` if ``g`` is not a genotype of this node."""
        raise NotImplementedError

    def decode(self, g: Any) -> Any:
        """The value a model builder sees (callables resolved)."""
        return g

    def sites(self, g: Any) -> int:
        """How many decisions of ``g`` can be changed by one mutation."""
        return 0

    def mutate(self, g: Any, site: int, rng: random.Random) -> Any:
        """Change decision number ``site`` (``0 <= site < sites(g)``) to another allowed value."""
        raise IndexError(site)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        return a if rng.random() < 0.5 else b

    def size(self) -> int | float:
        """Number of distinct genotypes (``math.inf`` for continuous nodes)."""
        raise NotImplementedError

    def enumerate(self) -> Iterator[Any]:
        raise NotImplementedError

    def extreme(self, which: str) -> Any:
        """The smallest (``"min"``) or largest (``"max"``) genotype; see :meth:`archlab.space.Space.extreme`."""
        raise NotImplementedError

    @property
    def encoding_size(self) -> int:
        raise NotImplementedError

    def encode(self, g: Any) -> list[float]:
        """A fixed-length vector; ``g=None`` (an inactive part) encodes as zeros."""
        raise NotImplementedError

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for a genotype (define-by-run; names are stable paths)."""
        raise NotImplementedError

    def params(self, g: Any, name: str) -> dict[str, Any]:
        """The Optuna parameters that ``suggest`` would record for genotype ``g``."""
        raise NotImplementedError

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        """Every decision ``suggest`` can ask for under ``name``, over the maximal structure."""
        raise NotImplementedError

    def signature(self) -> Any:
        """A JSON value describing the declaration (kinds, options, ranges, names), for fingerprints."""
        raise NotImplementedError

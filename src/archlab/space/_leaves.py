"""The leaf nodes of the search-space language: constants, integer ranges and real ranges."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

from archlab.errors import SpaceError
from archlab.space._node import _DECLARATION_NODES, Condition, Decision, Node, _is_json_constant, _same

__all__ = ["Constant", "Integer", "Real"]


class Constant(Node):
    """A fixed part of a space (a literal in a ``dict``); it is stored in the genotype as it is."""

    fixed_sites = 0

    def __init__(self, value: Any) -> None:
        if not _is_json_constant(value):
            raise SpaceError(f"constant {value!r} is not a JSON value; wrap decisions in choice()/repeat()")
        self.value = list(value) if isinstance(value, tuple) else value

    def _frozen(self) -> Any:
        return tuple(self.value) if isinstance(self.value, list) else self.value

    def sample(self, rng: random.Random) -> Any:
        return self._frozen()

    def check(self, g: Any, path: str) -> None:
        want = self._frozen()
        if isinstance(want, tuple):
            ok = isinstance(g, (tuple, list)) and len(g) == len(want) and all(map(_same, g, want))
        else:
            ok = _same(g, want)
        if not ok:
            raise SpaceError(f"{path}: expected the constant {self.value!r}, got {g!r}")

    def size(self) -> int:
        return 1

    def enumerate(self) -> Iterator[Any]:
        yield self._frozen()

    def extreme(self, which: str) -> Any:
        return self._frozen()

    @property
    def encoding_size(self) -> int:
        return 0

    def encode(self, g: Any) -> list[float]:
        return []

    def suggest(self, trial: Any, name: str) -> Any:
        return self._frozen()

    def params(self, g: Any, name: str) -> dict[str, Any]:
        return {}

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        return []

    def signature(self) -> Any:
        return {"constant": self.value}


class Integer(Node):
    """An integer in ``[low, high]`` on a grid of ``step``; its one-step neighbours are ``g ± step``."""

    def __init__(self, low: int, high: int, step: int = 1) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step)):
            raise SpaceError(f"integer({low!r}, {high!r}, step={step!r}): bounds and step must be integers")
        if step < 1 or high < low or (high - low) % step:
            raise SpaceError(f"integer({low}, {high}, step={step}): need low <= high, step >= 1 dividing the range")
        self.low, self.high, self.step = low, high, step
        self.fixed_sites = 1 if high > low else 0

    def values(self) -> range:
        return range(self.low, self.high + 1, self.step)

    def sample(self, rng: random.Random) -> int:
        return rng.choice(self.values())

    def check(self, g: Any, path: str) -> None:
        if not (isinstance(g, int) and not isinstance(g, bool)) or g not in self.values():
            raise SpaceError(f"{path}: {g!r} is not an integer in [{self.low}, {self.high}] step {self.step}")

    def neighbours(self, g: int) -> list[int]:
        return [v for v in (g - self.step, g + self.step) if self.low <= v <= self.high]

    def sites(self, g: Any) -> int:
        return self.fixed_sites

    def mutate(self, g: int, site: int, rng: random.Random) -> int:
        return rng.choice(self.neighbours(g))

    def size(self) -> int:
        return len(self.values())

    def enumerate(self) -> Iterator[int]:
        yield from self.values()

    def extreme(self, which: str) -> int:
        return self.low if which == "min" else self.high

    @property
    def encoding_size(self) -> int:
        return 1

    def encode(self, g: Any) -> list[float]:
        if g is None:
            return [0.0]
        return [(g - self.low) / (self.high - self.low) if self.high > self.low else 1.0]

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step)

    def params(self, g: Any, name: str) -> dict[str, Any]:
        return {name: g}

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        return [Decision(name, "integer", low=self.low, high=self.high, step=self.step, conditions=conditions,
                         node=self)]

    def signature(self) -> Any:
        return {"integer": [self.low, self.high, self.step]}


class Real(Node):
    """A real number in ``[low, high]`` (log-uniform when ``log``); a mutation is a Gaussian step."""

    fixed_sites = 1

    def __init__(self, low: float, high: float, log: bool = False) -> None:
        if not (math.isfinite(low) and math.isfinite(high) and low < high) or (log and low <= 0):
            raise SpaceError(f"real({low!r}, {high!r}, log={log}): need finite low < high (and low > 0 if log)")
        self.low, self.high, self.log = float(low), float(high), log

    def _to_unit(self, g: float) -> float:
        if self.log:
            return (math.log(g) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (g - self.low) / (self.high - self.low)

    def _from_unit(self, u: float) -> float:
        u = min(1.0, max(0.0, u))
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return min(self.high, max(self.low, value))  # exp/log rounding must not step outside the range

    def sample(self, rng: random.Random) -> float:
        return self._from_unit(rng.random())

    def check(self, g: Any, path: str) -> None:
        if not isinstance(g, (int, float)) or isinstance(g, bool) or not (self.low <= g <= self.high):
            raise SpaceError(f"{path}: {g!r} is not a number in [{self.low}, {self.high}]")

    def sites(self, g: Any) -> int:
        return 1

    def mutate(self, g: float, site: int, rng: random.Random) -> float:
        u = self._to_unit(g)
        while True:
            new = self._from_unit(u + rng.gauss(0.0, 0.1))
            if new != g:
                return new

    def size(self) -> float:
        return math.inf

    def enumerate(self) -> Iterator[float]:
        raise SpaceError("a space with real() ranges cannot be enumerated")

    def extreme(self, which: str) -> float:
        return self.low if which == "min" else self.high

    @property
    def encoding_size(self) -> int:
        return 1

    def encode(self, g: Any) -> list[float]:
        return [0.0] if g is None else [self._to_unit(g)]

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def params(self, g: Any, name: str) -> dict[str, Any]:
        return {name: g}

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        return [Decision(name, "real", low=self.low, high=self.high, log=self.log, conditions=conditions, node=self)]

    def signature(self) -> Any:
        return {"real": [self.low, self.high], "log": self.log}


_DECLARATION_NODES["constant"] = Constant

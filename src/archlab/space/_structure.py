"""The structure nodes of the search-space language: repeats, optional parts and structs (named fields)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping
from typing import Any

from archlab.errors import SpaceError
from archlab.space._arch import FrozenDict
from archlab.space._choice import Choice
from archlab.space._leaves import Integer
from archlab.space._node import _DECLARATION_NODES, Condition, Decision, Node, as_node

__all__ = ["Optional", "Repeat", "Struct", "as_node"]


def _fields(g: Any) -> dict[str, Any]:
    """The plain dict behind a struct genotype (a FrozenDict's own dict: read it, never change it)."""
    return g._data if type(g) is FrozenDict else g


class Repeat(Node):
    """A node repeated a searchable number of times; each repetition makes its own decisions."""

    def __init__(self, node: Any, count: int | Integer | Choice) -> None:
        self.node = as_node(node)
        if isinstance(count, int) and not isinstance(count, bool):
            count = Integer(count, count)
        if isinstance(count, Choice):
            if count.branch or not all(isinstance(k, int) and not isinstance(k, bool) for k in count.keys):
                raise SpaceError("repeat(count=choice([...])): the options must be integers")
        elif not isinstance(count, Integer):
            raise SpaceError(f"repeat(): count must be an int, integer() or choice() of ints, got {count!r}")
        self.count = count
        self.counts = sorted(count.keys) if isinstance(count, Choice) else list(count.values())
        if self.counts[0] < 0:
            raise SpaceError("repeat(): counts must be >= 0")
        if len(self.counts) == 1 and self.node.fixed_sites is not None:
            self.fixed_sites = self.counts[0] * self.node.fixed_sites

    def sample(self, rng: random.Random) -> tuple:
        n = self.count.sample(rng)
        return tuple(self.node.sample(rng) for _ in range(n))

    def check(self, g: Any, path: str) -> None:
        if not isinstance(g, (tuple, list)):
            raise SpaceError(f"{path}: expected a list, got {g!r}")
        if len(g) not in self.counts:
            raise SpaceError(f"{path}: {len(g)} repetitions; allowed counts are {self.counts}")
        for i, item in enumerate(g):
            self.node.check(item, f"{path}[{i}]")

    def decode(self, g: Any) -> tuple:
        return tuple(self.node.decode(item) for item in g)

    def sites(self, g: Any) -> int:
        if self.fixed_sites is not None:
            return self.fixed_sites
        k = self.node.fixed_sites
        items = len(g) * k if k is not None else sum(self.node.sites(item) for item in g)
        return self.count.sites(len(g)) + items

    def mutate(self, g: Any, site: int, rng: random.Random) -> tuple:
        own = self.count.sites(len(g))
        if site < own:
            n = self.count.mutate(len(g), 0, rng)
            return tuple(g[:n]) + tuple(self.node.sample(rng) for _ in range(n - len(g)))
        site -= own
        k = self.node.fixed_sites
        if k:  # every item has k sites: find the item by division
            i, site = divmod(site, k)
            return tuple(g[:i]) + (self.node.mutate(g[i], site, rng),) + tuple(g[i + 1:])
        for i, item in enumerate(g):
            k = self.node.sites(item)
            if site < k:
                return tuple(g[:i]) + (self.node.mutate(item, site, rng),) + tuple(g[i + 1:])
            site -= k
        raise IndexError(site)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> tuple:
        n = len(a) if rng.random() < 0.5 else len(b)
        out = []
        for i in range(n):
            if i < len(a) and i < len(b):
                out.append(self.node.crossover(a[i], b[i], rng))
            else:
                out.append(a[i] if i < len(a) else b[i])
        return tuple(out)

    def size(self) -> int | float:
        s = self.node.size()
        return sum(s ** n for n in self.counts)

    def enumerate(self) -> Iterator[tuple]:
        for n in self.counts:
            yield from itertools.product(*(list(self.node.enumerate()) for _ in range(n)))

    def extreme(self, which: str) -> tuple:
        """The fewest (``"min"``) or most (``"max"``) repetitions, each at its own extreme."""
        n = self.counts[0] if which == "min" else self.counts[-1]
        return tuple(self.node.extreme(which) for _ in range(n))

    @property
    def encoding_size(self) -> int:
        return 1 + self.counts[-1] * (1 + self.node.encoding_size)

    def encode(self, g: Any) -> list[float]:
        lo, hi = self.counts[0], self.counts[-1]
        if g is None:
            return [0.0] * self.encoding_size
        out = [(len(g) - lo) / (hi - lo) if hi > lo else 1.0]
        for i in range(hi):
            out += [1.0] + self.node.encode(g[i]) if i < len(g) else [0.0] * (1 + self.node.encoding_size)
        return out

    def suggest(self, trial: Any, name: str) -> tuple:
        n = self.count.suggest(trial, f"{name}.count") if len(self.counts) > 1 else self.counts[0]
        return tuple(self.node.suggest(trial, f"{name}.{i}") for i in range(n))

    def params(self, g: Any, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {f"{name}.count": len(g)} if len(self.counts) > 1 else {}
        for i, item in enumerate(g):
            out.update(self.node.params(item, f"{name}.{i}"))
        return out

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        """The count (if it varies), then the decisions of every repetition up to the largest count."""
        varies = len(self.counts) > 1
        out = self.count.decisions(f"{name}.count", conditions) if varies else []
        for i in range(self.counts[-1]):
            when = conditions
            if varies and i >= self.counts[0]:  # repetition i exists when the count is above i
                when = conditions + ((f"{name}.count", tuple(c for c in self.counts if c > i)),)
            out += self.node.decisions(f"{name}.{i}", when)
        return out

    def signature(self) -> Any:
        return {"repeat": self.node.signature(), "count": self.count.signature()}


class Optional(Node):
    """A part that is present (its genotype) or absent (``None``)."""

    def __init__(self, node: Any, p: float = 0.5) -> None:
        self.node = as_node(node)
        if not 0.0 < p < 1.0:
            raise SpaceError(f"optional(p={p}): the probability of presence must be in (0, 1)")
        self.p = p

    def sample(self, rng: random.Random) -> Any:
        return self.node.sample(rng) if rng.random() < self.p else None

    def check(self, g: Any, path: str) -> None:
        if g is not None:
            self.node.check(g, path)

    def decode(self, g: Any) -> Any:
        return None if g is None else self.node.decode(g)

    def sites(self, g: Any) -> int:
        return 1 + (0 if g is None else self.node.sites(g))

    def mutate(self, g: Any, site: int, rng: random.Random) -> Any:
        if site == 0:
            return self.node.sample(rng) if g is None else None
        return self.node.mutate(g, site - 1, rng)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        if a is not None and b is not None:
            return self.node.crossover(a, b, rng)
        return a if rng.random() < 0.5 else b

    def size(self) -> int | float:
        return 1 + self.node.size()

    def enumerate(self) -> Iterator[Any]:
        yield None
        yield from self.node.enumerate()

    def extreme(self, which: str) -> Any:
        """Absent for ``"min"``; present, at its largest, for ``"max"``."""
        return None if which == "min" else self.node.extreme(which)

    @property
    def encoding_size(self) -> int:
        return 1 + self.node.encoding_size

    def encode(self, g: Any) -> list[float]:
        return [0.0 if g is None else 1.0] + self.node.encode(g)

    def suggest(self, trial: Any, name: str) -> Any:
        present = trial.suggest_categorical(f"{name}.present", [False, True])
        return self.node.suggest(trial, name) if present else None

    def params(self, g: Any, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {f"{name}.present": g is not None}
        if g is not None:
            out.update(self.node.params(g, name))
        return out

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        flag = f"{name}.present"
        return [Decision(flag, "choice", options=(False, True), conditions=conditions, node=self),
                *self.node.decisions(name, conditions + ((flag, (True,)),))]

    def signature(self) -> Any:
        return {"optional": self.node.signature(), "p": self.p}


class Struct(Node):
    """Named fields, each a node or a constant; the genotype is an object with one entry per field."""

    is_struct = True
    _allow_empty = False  # a module (see archlab.space._module) may have no settings

    def __init__(self, fields: Mapping[str, Any]) -> None:
        if not isinstance(fields, Mapping) or not (fields or self._allow_empty):
            raise SpaceError("a space (or a dict inside one) needs at least one field")
        self.fields: dict[str, Node] = {}
        for k, v in fields.items():
            if not isinstance(k, str) or not k or any(c in k for c in ".<>[]"):
                raise SpaceError(f"field name {k!r} must be a non-empty string without . < > [ ]")
            self.fields[k] = as_node(v, k)
        self._items = tuple(self.fields.items())
        fixed = [n.fixed_sites for n in self.fields.values()]
        self._owners: list[tuple[str, Node, int]] | None = None
        if all(f is not None for f in fixed):  # site -> (field, node, site in the field), for O(1) mutation
            self.fixed_sites = sum(fixed)
            self._owners = [(k, n, j) for k, n in self._items for j in range(n.fixed_sites)]

    def sample(self, rng: random.Random) -> Any:
        return FrozenDict._of({k: n.sample(rng) for k, n in self._items})

    def check(self, g: Any, path: str) -> None:
        if not isinstance(g, Mapping):
            raise SpaceError(f"{path}: expected an object with fields {list(self.fields)}, got {g!r}")
        missing = [k for k in self.fields if k not in g]
        extra = [k for k in g if k not in self.fields]
        if missing:
            raise SpaceError(f"{path}: missing field(s) {missing}")
        if extra:
            raise SpaceError(f"{path}: unknown field(s) {extra}")
        for k, n in self._items:
            n.check(g[k], f"{path}.{k}")

    def decode(self, g: Any) -> Any:
        d = _fields(g)
        return FrozenDict._of({k: n.decode(d[k]) for k, n in self._items})

    def sites(self, g: Any) -> int:
        if self.fixed_sites is not None:
            return self.fixed_sites
        d = _fields(g)
        return sum(n.sites(d[k]) for k, n in self._items)

    def mutate(self, g: Any, site: int, rng: random.Random) -> Any:
        d = _fields(g)
        if self._owners is not None:
            k, n, site = self._owners[site]
        else:
            for k, n in self._items:  # k and n are used after the loop
                s = n.sites(d[k])
                if site < s:
                    break
                site -= s
            else:
                raise IndexError(site)
        out = dict(d)
        out[k] = n.mutate(d[k], site, rng)
        return FrozenDict._of(out)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        da, db = _fields(a), _fields(b)
        return FrozenDict._of({k: n.crossover(da[k], db[k], rng) for k, n in self._items})

    def size(self) -> int | float:
        return math.prod(n.size() for n in self.fields.values())

    def enumerate(self) -> Iterator[Any]:
        names = list(self.fields)
        for combo in itertools.product(*(list(self.fields[k].enumerate()) for k in names)):
            yield FrozenDict._of(dict(zip(names, combo, strict=True)))

    def extreme(self, which: str) -> Any:
        return FrozenDict._of({k: n.extreme(which) for k, n in self._items})

    @property
    def encoding_size(self) -> int:
        return sum(n.encoding_size for n in self.fields.values())

    def encode(self, g: Any) -> list[float]:
        out: list[float] = []
        for k, n in self._items:
            out += n.encode(None if g is None else g[k])
        return out

    def suggest(self, trial: Any, name: str) -> Any:
        prefix = f"{name}." if name else ""
        return FrozenDict._of({k: n.suggest(trial, prefix + k) for k, n in self._items})

    def params(self, g: Any, name: str) -> dict[str, Any]:
        prefix = f"{name}." if name else ""
        d = _fields(g)
        out: dict[str, Any] = {}
        for k, n in self._items:
            out.update(n.params(d[k], prefix + k))
        return out

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        prefix = f"{name}." if name else ""
        return [d for k, n in self._items for d in n.decisions(prefix + k, conditions)]

    def signature(self) -> Any:
        return {"struct": [[k, n.signature()] for k, n in self._items]}


_DECLARATION_NODES["struct"] = Struct

"""The nodes of the search-space language.

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
========================  ====================================================================
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from archlab.errors import SpaceError

__all__ = [
    "Choice",
    "Constant",
    "Integer",
    "Node",
    "Optional",
    "Real",
    "Repeat",
    "Struct",
    "as_node",
    "choice",
    "integer",
    "optional",
    "real",
    "repeat",
]

_PRIMITIVES = (type(None), bool, int, float, str)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps ``True``, ``1`` and ``1.0`` apart (as JSON does)."""
    return type(a) is type(b) and a == b


def _is_json_constant(value: Any) -> bool:
    if isinstance(value, _PRIMITIVES):
        return not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, (list, tuple)):
        return all(_is_json_constant(v) for v in value)
    return False


class Node:
    """A decision (or a fixed part) of a space. Subclasses implement every method below."""

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


class Constant(Node):
    """A fixed part of a space (a literal in a ``dict``); it is stored in the genotype as it is."""

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

    @property
    def encoding_size(self) -> int:
        return 0

    def encode(self, g: Any) -> list[float]:
        return []

    def suggest(self, trial: Any, name: str) -> Any:
        return self._frozen()

    def params(self, g: Any, name: str) -> dict[str, Any]:
        return {}


class Integer(Node):
    """An integer in ``[low, high]`` on a grid of ``step``; its one-step neighbours are ``g ± step``."""

    def __init__(self, low: int, high: int, step: int = 1) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step)):
            raise SpaceError(f"integer({low!r}, {high!r}, step={step!r}): bounds and step must be integers")
        if step < 1 or high < low or (high - low) % step:
            raise SpaceError(f"integer({low}, {high}, step={step}): need low <= high, step >= 1 dividing the range")
        self.low, self.high, self.step = low, high, step

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
        return 1 if self.high > self.low else 0

    def mutate(self, g: int, site: int, rng: random.Random) -> int:
        return rng.choice(self.neighbours(g))

    def size(self) -> int:
        return len(self.values())

    def enumerate(self) -> Iterator[int]:
        yield from self.values()

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


class Real(Node):
    """A real number in ``[low, high]`` (log-uniform when ``log``); a mutation is a Gaussian step."""

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

    @property
    def encoding_size(self) -> int:
        return 1

    def encode(self, g: Any) -> list[float]:
        return [0.0] if g is None else [self._to_unit(g)]

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def params(self, g: Any, name: str) -> dict[str, Any]:
        return {name: g}


def _option_key(option: Any, index: int) -> Any:
    if isinstance(option, _PRIMITIVES):
        return option
    if callable(option) and not isinstance(option, Node):
        return getattr(option, "__name__", None) or type(option).__name__
    return index


class Choice(Node):
    """One of several options.

    Options that are values or callables make a leaf decision (the genotype is the value, or the callable's
    name). Options that are sub-spaces (a ``dict``, a node, a list of nodes) make a *branch*: the genotype
    records the chosen ``option`` key and the branch's own decisions. Pass a ``dict`` of ``name -> option``
    to name options explicitly.
    """

    def __init__(self, options: Sequence[Any] | Mapping[str, Any]) -> None:
        if isinstance(options, Mapping):
            keys, raw = list(options.keys()), list(options.values())
            if not all(isinstance(k, str) for k in keys):
                raise SpaceError("choice({...}): option names must be strings")
        elif isinstance(options, (list, tuple, range)):
            raw = list(options)
            keys = [_option_key(o, i) for i, o in enumerate(raw)]
        else:
            raise SpaceError(f"choice() takes a list or a dict of options, got {type(options).__name__}")
        if not raw:
            raise SpaceError("choice() needs at least one option")
        for i, k in enumerate(keys):
            if any(_same(k, other) for other in keys[:i]):
                raise SpaceError(f"choice(): option {k!r} appears twice")
        self.keys = keys
        self.branch = any(isinstance(o, (Node, Mapping)) or (isinstance(o, (list, tuple)) and
                                                              not _is_json_constant(o)) for o in raw)
        if self.branch:
            self.options = [as_node(o) for o in raw]
            for node in self.options:
                if isinstance(node, Struct) and "option" in node.fields:
                    raise SpaceError("a branch of choice() cannot have a field named 'option'")
        else:
            for o in raw:
                if not (isinstance(o, _PRIMITIVES) or callable(o)):
                    raise SpaceError(f"choice(): option {o!r} is neither a value, a callable nor a sub-space")
            self.options = raw

    def _index(self, key: Any) -> int:
        for i, k in enumerate(self.keys):
            if _same(k, key):
                return i
        return -1

    # -- branch helpers
    def _wrap(self, i: int, sub: Any) -> Any:
        from archlab.space._arch import FrozenDict

        node = self.options[i]
        if isinstance(node, Struct):
            return FrozenDict({"option": self.keys[i], **sub})
        if isinstance(node, Constant):
            return FrozenDict({"option": self.keys[i]})
        return FrozenDict({"option": self.keys[i], "value": sub})

    def _unwrap(self, g: Mapping) -> tuple[int, Any]:
        i = self._index(g["option"])
        node = self.options[i]
        if isinstance(node, Struct):
            return i, {k: v for k, v in g.items() if k != "option"}
        if isinstance(node, Constant):
            return i, node.sample(random.Random(0))
        return i, g["value"]

    def sample(self, rng: random.Random) -> Any:
        i = rng.randrange(len(self.keys))
        if self.branch:
            return self._wrap(i, self.options[i].sample(rng))
        return self.keys[i]

    def check(self, g: Any, path: str) -> None:
        if not self.branch:
            if self._index(g) < 0:
                raise SpaceError(f"{path}: {g!r} is not one of the options {self.keys!r}")
            return
        if not isinstance(g, Mapping) or "option" not in g:
            raise SpaceError(f"{path}: expected a branch {{'option': ...}} of {self.keys!r}, got {g!r}")
        i = self._index(g["option"])
        if i < 0:
            raise SpaceError(f"{path}: option {g['option']!r} is not one of {self.keys!r}")
        node = self.options[i]
        extra = set(g) - {"option"} - (set(node.fields) if isinstance(node, Struct) else
                                       set() if isinstance(node, Constant) else {"value"})
        if extra:
            raise SpaceError(f"{path}: unexpected entries {sorted(extra)} for option {g['option']!r}")
        if not isinstance(node, (Struct, Constant)) and "value" not in g:
            raise SpaceError(f"{path}: option {g['option']!r} needs a 'value'")
        node.check(self._unwrap(g)[1], f"{path}<{g['option']}>")

    def decode(self, g: Any) -> Any:
        if not self.branch:
            return self.options[self._index(g)]
        from archlab.space._arch import FrozenDict

        i, sub = self._unwrap(g)
        node = self.options[i]
        dec = node.decode(sub)
        if isinstance(node, Struct):
            return FrozenDict({"option": self.keys[i], **dec})
        return FrozenDict({"option": self.keys[i], "value": dec})

    def sites(self, g: Any) -> int:
        own = 1 if len(self.keys) > 1 else 0
        if not self.branch:
            return own
        i, sub = self._unwrap(g)
        return own + self.options[i].sites(sub)

    def mutate(self, g: Any, site: int, rng: random.Random) -> Any:
        own = 1 if len(self.keys) > 1 else 0
        if site < own:
            current = self._index(g["option"] if self.branch else g)
            i = rng.choice([j for j in range(len(self.keys)) if j != current])
            return self._wrap(i, self.options[i].sample(rng)) if self.branch else self.keys[i]
        i, sub = self._unwrap(g)
        return self._wrap(i, self.options[i].mutate(sub, site - own, rng))

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        if self.branch and _same(a["option"], b["option"]):
            i, sa = self._unwrap(a)
            _, sb = self._unwrap(b)
            return self._wrap(i, self.options[i].crossover(sa, sb, rng))
        return a if rng.random() < 0.5 else b

    def size(self) -> int | float:
        if not self.branch:
            return len(self.keys)
        return sum(node.size() for node in self.options)

    def enumerate(self) -> Iterator[Any]:
        if not self.branch:
            yield from self.keys
            return
        for i, node in enumerate(self.options):
            for sub in node.enumerate():
                yield self._wrap(i, sub)

    @property
    def encoding_size(self) -> int:
        n = len(self.keys)
        return n + (sum(node.encoding_size for node in self.options) if self.branch else 0)

    def encode(self, g: Any) -> list[float]:
        onehot = [0.0] * len(self.keys)
        if not self.branch:
            if g is not None:
                onehot[self._index(g)] = 1.0
            return onehot
        if g is None:
            return onehot + [0.0] * sum(node.encoding_size for node in self.options)
        i, sub = self._unwrap(g)
        onehot[i] = 1.0
        rest: list[float] = []
        for j, node in enumerate(self.options):
            rest += node.encode(sub if j == i else None)
        return onehot + rest

    def _optuna_keys(self) -> list[Any]:
        return list(self.keys)

    def suggest(self, trial: Any, name: str) -> Any:
        key = trial.suggest_categorical(name, self._optuna_keys()) if len(self.keys) > 1 else self.keys[0]
        if not self.branch:
            return key
        i = self._index(key)
        return self._wrap(i, self.options[i].suggest(trial, f"{name}<{key}>"))

    def params(self, g: Any, name: str) -> dict[str, Any]:
        key = g["option"] if self.branch else g
        out = {name: key} if len(self.keys) > 1 else {}
        if self.branch:
            i, sub = self._unwrap(g)
            out.update(self.options[i].params(sub, f"{name}<{key}>"))
        return out


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
        return self.count.sites(len(g)) + sum(self.node.sites(item) for item in g)

    def mutate(self, g: Any, site: int, rng: random.Random) -> tuple:
        own = self.count.sites(len(g))
        if site < own:
            n = self.count.mutate(len(g), 0, rng)
            return tuple(g[:n]) + tuple(self.node.sample(rng) for _ in range(n - len(g)))
        site -= own
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


class Struct(Node):
    """Named fields, each a node or a constant; the genotype is an object with one entry per field."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        if not isinstance(fields, Mapping) or not fields:
            raise SpaceError("a space (or a dict inside one) needs at least one field")
        self.fields: dict[str, Node] = {}
        for k, v in fields.items():
            if not isinstance(k, str) or not k or any(c in k for c in ".<>[]"):
                raise SpaceError(f"field name {k!r} must be a non-empty string without . < > [ ]")
            self.fields[k] = as_node(v, k)

    def sample(self, rng: random.Random) -> Any:
        from archlab.space._arch import FrozenDict

        return FrozenDict({k: n.sample(rng) for k, n in self.fields.items()})

    def check(self, g: Any, path: str) -> None:
        if not isinstance(g, Mapping):
            raise SpaceError(f"{path}: expected an object with fields {list(self.fields)}, got {g!r}")
        missing = [k for k in self.fields if k not in g]
        extra = [k for k in g if k not in self.fields]
        if missing:
            raise SpaceError(f"{path}: missing field(s) {missing}")
        if extra:
            raise SpaceError(f"{path}: unknown field(s) {extra}")
        for k, n in self.fields.items():
            n.check(g[k], f"{path}.{k}")

    def decode(self, g: Any) -> Any:
        from archlab.space._arch import FrozenDict

        return FrozenDict({k: n.decode(g[k]) for k, n in self.fields.items()})

    def sites(self, g: Any) -> int:
        return sum(n.sites(g[k]) for k, n in self.fields.items())

    def mutate(self, g: Any, site: int, rng: random.Random) -> Any:
        from archlab.space._arch import FrozenDict

        for k, n in self.fields.items():
            s = n.sites(g[k])
            if site < s:
                return FrozenDict({**g, k: n.mutate(g[k], site, rng)})
            site -= s
        raise IndexError(site)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        from archlab.space._arch import FrozenDict

        return FrozenDict({k: n.crossover(a[k], b[k], rng) for k, n in self.fields.items()})

    def size(self) -> int | float:
        return math.prod(n.size() for n in self.fields.values())

    def enumerate(self) -> Iterator[Any]:
        from archlab.space._arch import FrozenDict

        names = list(self.fields)
        for combo in itertools.product(*(list(self.fields[k].enumerate()) for k in names)):
            yield FrozenDict(dict(zip(names, combo, strict=True)))

    @property
    def encoding_size(self) -> int:
        return sum(n.encoding_size for n in self.fields.values())

    def encode(self, g: Any) -> list[float]:
        out: list[float] = []
        for k, n in self.fields.items():
            out += n.encode(None if g is None else g[k])
        return out

    def suggest(self, trial: Any, name: str) -> Any:
        from archlab.space._arch import FrozenDict

        prefix = f"{name}." if name else ""
        return FrozenDict({k: n.suggest(trial, prefix + k) for k, n in self.fields.items()})

    def params(self, g: Any, name: str) -> dict[str, Any]:
        prefix = f"{name}." if name else ""
        out: dict[str, Any] = {}
        for k, n in self.fields.items():
            out.update(n.params(g[k], prefix + k))
        return out


def as_node(value: Any, where: str = "") -> Node:
    """Turn a declaration (node, ``dict`` of fields, or JSON constant) into a node."""
    if isinstance(value, Node):
        return value
    if isinstance(value, Mapping):
        return Struct(value)
    if _is_json_constant(value):
        return Constant(value)
    at = f" at {where!r}" if where else ""
    raise SpaceError(f"cannot use {value!r}{at} in a space: use choice(), integer(), real(), repeat(), "
                     "optional(), a dict, or a JSON constant")


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


def optional(node: Any, p: float = 0.5) -> Optional:
    """``node`` or nothing (``None``); ``p`` is the probability of presence when sampling."""
    return Optional(node, p)


CallableOption = Callable[..., Any]

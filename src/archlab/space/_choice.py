"""``choice``: one of several options, a leaf decision (values, callables) or a branch (sub-spaces)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from archlab.errors import SpaceError
from archlab.space._arch import FrozenDict
from archlab.space._leaves import Constant
from archlab.space._node import _PRIMITIVES, Condition, Decision, Node, _is_json_constant, _same, as_node

__all__ = ["Choice"]

_STRUCT, _CONST, _VALUE = 0, 1, 2  # how a branch stores its option's genotype (see Choice._wrap)


def _option_key(option: Any, index: int) -> Any:
    if isinstance(option, _PRIMITIVES):
        return option
    if callable(option) and not isinstance(option, Node):
        return getattr(option, "__name__", None) or type(option).__name__
    return index


def _is_number(key: Any) -> bool:
    return isinstance(key, (int, float)) and not isinstance(key, bool)


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
        self._pos = {(type(k), k): i for i, k in enumerate(keys)}  # typed, so 1, 1.0 and True stay apart
        self._own = 1 if len(keys) > 1 else 0
        self.branch = any(isinstance(o, (Node, Mapping)) or (isinstance(o, (list, tuple)) and
                                                              not _is_json_constant(o)) for o in raw)
        if self.branch:
            self.options = [as_node(o) for o in raw]
            for node in self.options:
                if node.is_struct and "option" in node.fields:
                    raise SpaceError("a branch of choice() cannot have a field named 'option'")
            self._kinds = [_STRUCT if n.is_struct else _CONST if isinstance(n, Constant) else _VALUE
                           for n in self.options]
            self._modules = [n.is_module for n in self.options]  # decode to their bound factory
        else:
            for o in raw:
                if not (isinstance(o, _PRIMITIVES) or callable(o)):
                    raise SpaceError(f"choice(): option {o!r} is neither a value, a callable nor a sub-space")
            self.options = raw
            self.fixed_sites = self._own

    def _index(self, key: Any) -> int:
        try:
            return self._pos.get((type(key), key), -1)
        except TypeError:  # an unhashable value is no option
            return -1

    # -- branch helpers
    def _wrap(self, i: int, sub: Any) -> Any:
        kind = self._kinds[i]
        if kind == _STRUCT:
            data = {"option": self.keys[i]}
            data.update(sub._data if type(sub) is FrozenDict else sub)
            return FrozenDict._of(data)
        if kind == _CONST:
            return FrozenDict._of({"option": self.keys[i]})
        return FrozenDict._of({"option": self.keys[i], "value": sub})

    def _unwrap(self, g: Mapping) -> tuple[int, Any]:
        i = self._index(g["option"])
        kind = self._kinds[i]
        if kind == _STRUCT:
            return i, {k: v for k, v in g.items() if k != "option"}
        if kind == _CONST:
            return i, self.options[i].extreme("min")
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
        node, kind = self.options[i], self._kinds[i]
        extra = set(g) - {"option"} - (set(node.fields) if kind == _STRUCT else set() if kind == _CONST else
                                       {"value"})
        if extra:
            raise SpaceError(f"{path}: unexpected entries {sorted(extra)} for option {g['option']!r}")
        if kind == _VALUE and "value" not in g:
            raise SpaceError(f"{path}: option {g['option']!r} needs a 'value'")
        node.check(self._unwrap(g)[1], f"{path}<{g['option']}>")

    def decode(self, g: Any) -> Any:
        if not self.branch:
            return self.options[self._index(g)]
        i, sub = self._unwrap(g)
        dec = self.options[i].decode(sub)
        if self._modules[i]:
            return dec
        if self._kinds[i] == _STRUCT:
            return FrozenDict({"option": self.keys[i], **dec})
        return FrozenDict({"option": self.keys[i], "value": dec})

    def sites(self, g: Any) -> int:
        if not self.branch:
            return self._own
        i = self._index(g["option"])
        fixed = self.options[i].fixed_sites
        if fixed is not None:
            return self._own + fixed
        return self._own + self.options[i].sites(self._unwrap(g)[1])

    def mutate(self, g: Any, site: int, rng: random.Random) -> Any:
        own = self._own
        if site < own:
            current = self._index(g["option"] if self.branch else g)
            i = rng.randrange(len(self.keys) - 1)  # any other option: draws as rng.choice(the others) does
            if i >= current:
                i += 1
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

    def extreme(self, which: str) -> Any:
        """Numbers: the smallest or largest; other options (names, branches): the first or the last."""
        if not self.branch:
            numbers = all(_is_number(k) for k in self.keys) and all(_is_number(o) for o in self.options)
            if numbers:
                return (min if which == "min" else max)(self.keys)
            return self.keys[0 if which == "min" else -1]
        i = 0 if which == "min" else len(self.keys) - 1
        return self._wrap(i, self.options[i].extreme(which))

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

    def suggest(self, trial: Any, name: str) -> Any:
        key = trial.suggest_categorical(name, list(self.keys)) if self._own else self.keys[0]
        if not self.branch:
            return key
        i = self._index(key)
        return self._wrap(i, self.options[i].suggest(trial, f"{name}<{key}>"))

    def params(self, g: Any, name: str) -> dict[str, Any]:
        key = g["option"] if self.branch else g
        out = {name: key} if self._own else {}
        if self.branch:
            i, sub = self._unwrap(g)
            out.update(self.options[i].params(sub, f"{name}<{key}>"))
        return out

    def decisions(self, name: str, conditions: tuple[Condition, ...]) -> list[Decision]:
        out = [Decision(name, "choice", options=tuple(self.keys), conditions=conditions, node=self)] if self._own \
            else []
        if self.branch:
            for key, node in zip(self.keys, self.options, strict=True):
                when = conditions + ((name, (key,)),) if self._own else conditions
                out += node.decisions(f"{name}<{key}>", when)
        return out

    def signature(self) -> Any:
        if not self.branch:
            return {"choice": list(self.keys), "callables": [k for k, o in zip(self.keys, self.options, strict=True)
                                                              if callable(o)]}
        return {"choice": list(self.keys), "branches": [node.signature() for node in self.options]}

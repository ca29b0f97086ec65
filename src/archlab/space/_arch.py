"""The architecture genotype: an immutable, hashable, JSON-exact value.

An :class:`Arch` holds the choices made in a :class:`~archlab.space.Space` as a tree of JSON values
(``None``, ``bool``, ``int``, ``float``, ``str``, lists and string-keyed objects). Lists are frozen to
tuples and objects to :class:`FrozenDict`, so an ``Arch`` can key a dict or a set. Two archs are equal when
their canonical JSON text is equal, which keeps ``1`` and ``1.0`` apart, as JSON does.

Search strategies make archs by the hundred thousand, so the hot path is cheap: the canonical text is written
only when first needed (``key``, hashing, equality), and an arch made by a :class:`~archlab.space.Space`
(``sample``, ``mutate``, ``crossover``, ...) remembers that space, which then skips re-checking it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from archlab.errors import SpaceError

__all__ = ["Arch", "FrozenDict", "freeze", "thaw"]

_SCALARS = frozenset({type(None), bool, int, float, str})


class FrozenDict(Mapping):
    """A read-only, hashable mapping that keeps insertion order."""

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[str, Any] | None = None, /, **kw: Any) -> None:
        data = dict(items or {})
        data.update(kw)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_hash", None)

    @classmethod
    def _of(cls, data: dict[str, Any]) -> FrozenDict:
        """Wrap ``data`` (already frozen, and owned by the caller from now on) without copying: the hot path."""
        self = object.__new__(cls)
        _set_data(self, data)
        _set_hash(self, None)
        return self

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, "_hash", hash(tuple(self._data.items())))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == dict(other)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenDict is immutable")

    def __reduce__(self) -> tuple[Any, ...]:  # pickling (archs sent to worker processes)
        return (FrozenDict, (self._data,))

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"


_set_data = FrozenDict.__dict__["_data"].__set__  # slot setters: bypass the immutability guard when building
_set_hash = FrozenDict.__dict__["_hash"].__set__


def freeze(value: Any, path: str = "arch") -> Any:
    """Turn a JSON-like value into its immutable form, checking that it is JSON-representable."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpaceError(f"{path}: {value} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpaceError(f"{path}: key {k!r} is not a string")
            out[k] = freeze(v, f"{path}.{k}" if k.isidentifier() else f"{path}[{k!r}]")  # a message is one line
        return FrozenDict(out)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v, f"{path}[{i}]") for i, v in enumerate(value))
    raise SpaceError(f"{path}: {type(value).__name__} value {value!r} is not JSON-serialisable")


def thaw(value: Any) -> Any:
    """The plain-Python (dict / list) form of a frozen value."""
    if type(value) in _SCALARS:
        return value
    if type(value) is FrozenDict:
        return {k: thaw(v) for k, v in value._data.items()}
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


class Arch(Mapping):
    """One architecture: the values chosen at every decision of a space.

    ``arch["stages"][0]["mixer"]`` reads a choice; ``arch.to_json()`` / ``Arch.from_json`` round-trip
    exactly; ``arch.key`` is the canonical text used for equality, hashing and de-duplication.
    """

    __slots__ = ("_tree", "_key", "_space")

    def __init__(self, tree: Mapping[str, Any]) -> None:
        frozen = freeze(tree)
        if not isinstance(frozen, FrozenDict):
            raise SpaceError("an Arch is a mapping of names to chosen values")
        _set_tree(self, frozen)
        _set_key(self, None)
        _set_space(self, None)

    @classmethod
    def _trusted(cls, tree: FrozenDict, space: object | None = None) -> Arch:
        """An arch of an already-frozen ``tree`` that ``space`` made or checked: no freezing, no checks.

        Only :class:`~archlab.space.Space` calls this, with trees its nodes built; ``space`` then accepts the
        arch back without validating it again.
        """
        self = object.__new__(cls)
        _set_tree(self, tree)
        _set_key(self, None)
        _set_space(self, space)
        return self

    @property
    def tree(self) -> FrozenDict:
        return self._tree

    @property
    def key(self) -> str:
        """The canonical JSON text (sorted keys, no spaces), written on first use."""
        key = self._key
        if key is None:
            key = _KEY_ENCODER.encode(self._tree._data)
            _set_key(self, key)
        return key

    def __getitem__(self, name: str) -> Any:
        return self._tree[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree)

    def __len__(self) -> int:
        return len(self._tree)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Arch):
            return False
        return other._tree is self._tree or other.key == self.key

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Arch is immutable")

    def __reduce__(self) -> tuple[Any, ...]:  # pickling (archs sent to worker processes)
        return (Arch, (self.to_dict(),))

    def __repr__(self) -> str:
        return f"Arch({self.to_json()})"

    def to_dict(self) -> dict[str, Any]:
        return thaw(self._tree)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpaceError(f"arch JSON is malformed: {e.msg} at line {e.lineno} column {e.colno}") from None
        if not isinstance(data, dict):
            raise SpaceError("arch JSON must be an object of names to chosen values")
        return cls(data)


def _plain(value: Any) -> Any:
    """What JSON writes for a frozen value it has no rule for: a FrozenDict's dict (tuples are lists already)."""
    if isinstance(value, FrozenDict):
        return value._data
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# the canonical text: sorted keys, no spaces; one encoder for all archs (making one per call costs more than
# the encoding); ensure_ascii as json.dumps does by default, so keys stay what they always were
_KEY_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_plain)
_set_tree = Arch.__dict__["_tree"].__set__
_set_key = Arch.__dict__["_key"].__set__
_set_space = Arch.__dict__["_space"].__set__

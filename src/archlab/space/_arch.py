"""The architecture genotype: an immutable, hashable, JSON-exact value.

An :class:`Arch` holds the choices made in a :class:`~archlab.space.Space` as a tree of JSON values
(``None``, ``bool``, ``int``, ``float``, ``str``, lists and string-keyed objects). Lists are frozen to
tuples and objects to :class:`FrozenDict`, so an ``Arch`` can key a dict or a set. Two archs are equal when
their canonical JSON text is equal, which keeps ``1`` and ``1.0`` apart, as JSON does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from archlab.errors import SpaceError

__all__ = ["Arch", "FrozenDict", "freeze", "thaw"]


class FrozenDict(Mapping):
    """A read-only, hashable mapping that keeps insertion order."""

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[str, Any] | None = None, /, **kw: Any) -> None:
        data = dict(items or {})
        data.update(kw)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_hash", None)

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
            out[k] = freeze(v, f"{path}.{k}")
        return FrozenDict(out)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v, f"{path}[{i}]") for i, v in enumerate(value))
    raise SpaceError(f"{path}: {type(value).__name__} value {value!r} is not JSON-serialisable")


def thaw(value: Any) -> Any:
    """The plain-Python (dict / list) form of a frozen value."""
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

    __slots__ = ("_tree", "_key")

    def __init__(self, tree: Mapping[str, Any]) -> None:
        frozen = freeze(tree)
        if not isinstance(frozen, FrozenDict):
            raise SpaceError("an Arch is a mapping of names to chosen values")
        object.__setattr__(self, "_tree", frozen)
        object.__setattr__(self, "_key", json.dumps(thaw(frozen), sort_keys=True, separators=(",", ":")))

    @property
    def tree(self) -> FrozenDict:
        return self._tree

    @property
    def key(self) -> str:
        return self._key

    def __getitem__(self, name: str) -> Any:
        return self._tree[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree)

    def __len__(self) -> int:
        return len(self._tree)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and other._key == self._key

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

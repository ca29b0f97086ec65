"""``Space``: a declared set of architectures and the operations every search strategy needs.

Declare a space with the node constructors of :mod:`archlab.space._nodes` and a ``build`` function that turns
the chosen values into an ``nn.Module``::

    space = Space(build,
                  stages=repeat(dict(mixer=choice(["pooling", "attention"]), depth=integer(1, 3)),
                                count=integer(1, 3)),
                  norm=choice(["groupnorm", "batchnorm"]))
    arch = space.sample(seed=0)
    model = space.build(arch)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from archlab.errors import SpaceError
from archlab.space._arch import Arch, FrozenDict
from archlab.space._nodes import Struct

__all__ = ["Space", "as_rng"]

Seed = int | random.Random | np.random.Generator | None


def as_rng(seed: Seed) -> random.Random:
    """A ``random.Random`` from an int seed, an existing generator, or ``None`` (fresh entropy)."""
    if isinstance(seed, random.Random):
        return seed
    if isinstance(seed, np.random.Generator):
        return random.Random(int(seed.integers(0, 2**63 - 1)))
    if seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
        return random.Random(seed)
    raise SpaceError(f"seed must be an int, a random.Random or a numpy Generator, got {type(seed).__name__}")


class Space:
    """A search space: named decisions plus a ``build(arch) -> nn.Module`` function."""

    def __init__(self, build: Callable[[Mapping[str, Any]], Any] | None = None, /, *,
                 name: str = "custom", **fields: Any) -> None:
        if build is not None and not callable(build):
            raise SpaceError("Space(build, **fields): build must be callable (or None)")
        self.name = name
        self._build = build
        self.root = Struct(fields)

    # -- membership
    def validate(self, arch: Arch | Mapping[str, Any] | str) -> Arch:
        """Return ``arch`` as an :class:`Arch` of this space, or raise :class:`SpaceError` saying why not."""
        if isinstance(arch, str):
            arch = Arch.from_json(arch)
        elif not isinstance(arch, Arch):
            if not isinstance(arch, Mapping):
                raise SpaceError(f"an arch is a mapping of names to values, got {type(arch).__name__}")
            arch = Arch(arch)
        self.root.check(arch.tree, self.name)
        return arch

    def __contains__(self, arch: object) -> bool:
        try:
            self.validate(arch)  # type: ignore[arg-type]
        except SpaceError:
            return False
        return True

    # -- generation
    def sample(self, seed: Seed = None) -> Arch:
        """A uniformly random decision at every node (not uniform over archs when repeats vary)."""
        return Arch(self.root.sample(as_rng(seed)))

    def mutate(self, arch: Arch, seed: Seed = None) -> Arch:
        """A one-step neighbour: exactly one decision changed (a repeat count grows or shrinks by one step)."""
        arch = self.validate(arch)
        rng = as_rng(seed)
        n = self.root.sites(arch.tree)
        if n == 0:
            raise SpaceError(f"space {self.name!r} has a single architecture: nothing to mutate")
        return Arch(self.root.mutate(arch.tree, rng.randrange(n), rng))

    def crossover(self, a: Arch, b: Arch, seed: Seed = None) -> Arch:
        """Uniform crossover: each decision from either parent (recursively where both have it)."""
        a, b = self.validate(a), self.validate(b)
        return Arch(self.root.crossover(a.tree, b.tree, as_rng(seed)))

    def size(self) -> int | float:
        """The number of distinct archs (an exact int; ``math.inf`` with ``real()`` ranges)."""
        return self.root.size()

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Arch]:
        """Every arch of the space, when there are at most ``limit`` of them."""
        n = self.size()
        if n > limit:
            shown = "infinitely many" if n == math.inf else f"{n:,}"
            raise SpaceError(f"space {self.name!r} has {shown} archs, more than the enumeration limit {limit:,}")
        for tree in self.root.enumerate():
            yield Arch(tree)

    # -- surrogate models
    @property
    def encoding_size(self) -> int:
        return self.root.encoding_size

    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector: one-hot choices, scaled integers, presence flags of optional parts."""
        arch = self.validate(arch)
        return np.asarray(self.root.encode(arch.tree), dtype=np.float64)

    # -- Optuna
    def suggest(self, trial: Any) -> Arch:
        """Ask an Optuna trial for an arch (define-by-run; conditional parts become conditional params)."""
        return Arch(self.root.suggest(trial, ""))

    def to_params(self, arch: Arch) -> dict[str, Any]:
        """The Optuna params that :meth:`suggest` records for ``arch`` (for ``study.enqueue_trial``)."""
        arch = self.validate(arch)
        return self.root.params(arch.tree, "")

    # -- models
    def decode(self, arch: Arch) -> FrozenDict:
        """The read-only values a builder sees (callable options resolved)."""
        arch = self.validate(arch)
        return self.root.decode(arch.tree)

    def build(self, arch: Arch, **kwargs: Any) -> Any:
        """``build(decoded arch, **kwargs)``: the model for ``arch``."""
        if self._build is None:
            raise SpaceError(f"space {self.name!r} has no build function")
        return self._build(self.decode(arch), **kwargs)

    def describe(self) -> dict[str, Any]:
        size = self.size()
        return {"name": self.name, "size": size if size != math.inf else "infinite",
                "encoding_size": self.encoding_size}

    def __repr__(self) -> str:
        return f"Space(name={self.name!r}, fields={list(self.root.fields)})"


"""``Space``: a declared set of architectures and the operations every search strategy needs.

Declare a space with the node constructors of :mod:`archlab.space._nodes` and a ``build`` function that turns
the chosen values into an ``nn.Module``::

    space = Space(build,
                  stages=repeat(dict(mixer=choice(["pooling", "attention"]), depth=integer(1, 3)),
                                count=integer(1, 3)),
                  norm=choice(["groupnorm", "batchnorm"]))
    arch = space.sample(seed=0)
    model = space.build(arch)

An arch the space made (``sample``, ``mutate``, ``crossover``, ``enumerate``, ``suggest``, ``from_params``,
``extreme``) or already validated carries a private mark of that space, so passing it back (the inner loop of
every search strategy) costs no second check.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from archlab.errors import SpaceError
from archlab.space._arch import Arch, FrozenDict, _set_space
from archlab.space._node import EXTREMES, Decision, ParamsTrial
from archlab.space._structure import Struct

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
    """A search space: named decisions plus a ``build(arch) -> nn.Module`` function.

    ``spec`` is ``None`` for a space declared by hand; :func:`~archlab.space.create_space` sets it to the keyword
    arguments that rebuild the same space (``create_space(**space.spec)``), defaults resolved.
    """

    def __init__(self, build: Callable[[Mapping[str, Any]], Any] | None = None, /, *,
                 name: str = "custom", **fields: Any) -> None:
        if build is not None and not callable(build):
            raise SpaceError("Space(build, **fields): build must be callable (or None)")
        self.name = name
        self._build = build
        self.root = Struct(fields)
        self.spec: dict[str, Any] | None = None

    # -- membership
    def validate(self, arch: Arch | Mapping[str, Any] | str) -> Arch:
        """Return ``arch`` as an :class:`Arch` of this space, or raise :class:`SpaceError` saying why not."""
        if isinstance(arch, Arch):
            if arch._space is self:
                return arch
        elif isinstance(arch, str):
            arch = Arch.from_json(arch)
        else:
            if not isinstance(arch, Mapping):
                raise SpaceError(f"an arch is a mapping of names to values, got {type(arch).__name__}")
            arch = Arch(arch)
        self.root.check(arch.tree, self.name)
        _mark(arch, self)
        return arch

    def _own(self, arch: Arch) -> Arch:
        """``arch`` itself when this space made or checked it (the hot path), else :meth:`validate`."""
        return arch if isinstance(arch, Arch) and arch._space is self else self.validate(arch)

    def __contains__(self, arch: object) -> bool:
        try:
            self.validate(arch)  # type: ignore[arg-type]
        except SpaceError:
            return False
        return True

    # -- generation
    def sample(self, seed: Seed = None) -> Arch:
        """A uniformly random decision at every node (not uniform over archs when repeats vary)."""
        return Arch._trusted(self.root.sample(seed if type(seed) is random.Random else as_rng(seed)), self)

    def sample_distinct(self, n: int, seed: Seed = None) -> Iterator[Arch]:
        """Up to ``n`` distinct archs (fewer when the space has fewer), in the order one generator draws them:
        :meth:`sample` repeated, repeats skipped, for at most ``100 * n + 1000`` draws. Lazy, so a caller can stop
        early; the first ``k`` are the same for every ``n >= k``."""
        rng = seed if type(seed) is random.Random else as_rng(seed)
        seen: set[Arch] = set()
        for _ in range(100 * n + 1000):
            if len(seen) >= n:
                return
            arch = self.sample(rng)
            if arch not in seen:
                seen.add(arch)
                yield arch

    def mutate(self, arch: Arch, seed: Seed = None) -> Arch:
        """A one-step neighbour: exactly one decision changed (a repeat count grows or shrinks by one step)."""
        tree = self._own(arch)._tree
        rng = seed if type(seed) is random.Random else as_rng(seed)
        root = self.root
        n = root.fixed_sites
        if n is None:
            n = root.sites(tree)
        if n == 0:
            raise SpaceError(f"space {self.name!r} has a single architecture: nothing to mutate")
        return Arch._trusted(root.mutate(tree, rng.randrange(n), rng), self)

    def neighbors(self, arch: Arch) -> list[Arch]:
        """Every arch one decision away from ``arch`` (each other value of each decision it makes, in
        :meth:`decisions` order), the neighbourhood of local search. A change that would need decisions the arch
        does not make (a longer repeat, another branch) is left out; :meth:`mutate` draws those. Real ranges have
        no finite neighbourhood and are skipped."""
        params = self.to_params(self._own(arch))
        out: list[Arch] = []
        for d in self.decisions():
            if d.path not in params or d.kind == "real":
                continue
            for value in d.values():
                if value == params[d.path]:
                    continue
                try:
                    out.append(self.from_params({**params, d.path: value}))
                except SpaceError:
                    continue
        return out

    def crossover(self, a: Arch, b: Arch, seed: Seed = None) -> Arch:
        """Uniform crossover: each decision from either parent (recursively where both have it)."""
        ta, tb = self._own(a)._tree, self._own(b)._tree
        rng = seed if type(seed) is random.Random else as_rng(seed)
        return Arch._trusted(self.root.crossover(ta, tb, rng), self)

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
            yield Arch._trusted(tree, self)

    def extreme(self, which: str) -> Arch:
        """The smallest (``"min"``) or largest (``"max"``) arch, by one rule applied at every node.

        Integer and real ranges take their low / high end; repeats their fewest / most repetitions (each one at
        the same extreme); optional parts are absent for ``"min"`` and present for ``"max"``; a choice whose
        options are all numbers takes the smallest / largest number, any other choice (names, callables,
        branches) its first / last option as declared, a branch at the same extreme.
        """
        if which not in EXTREMES:
            raise SpaceError(f"extreme(): which must be 'min' or 'max', got {which!r}")
        return Arch._trusted(self.root.extreme(which), self)

    # -- surrogate models
    @property
    def encoding_size(self) -> int:
        return self.root.encoding_size

    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector: one-hot choices, scaled integers, presence flags of optional parts."""
        return np.asarray(self.root.encode(self._own(arch)._tree), dtype=np.float64)

    # -- Optuna
    def suggest(self, trial: Any) -> Arch:
        """Ask an Optuna trial for an arch (define-by-run; conditional parts become conditional params)."""
        return Arch._trusted(self.root.suggest(trial, ""), self)

    def to_params(self, arch: Arch) -> dict[str, Any]:
        """The Optuna params that :meth:`suggest` records for ``arch`` (for ``study.enqueue_trial``)."""
        return self.root.params(self._own(arch)._tree, "")

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        """The arch whose :meth:`to_params` are ``params`` (an Optuna trial's ``params``): the inverse.

        Every param the arch needs must be there with an allowed value, and no other param may be.
        """
        trial = ParamsTrial(params)
        tree = self.root.suggest(trial, "")
        unused = trial.unused()
        if unused:
            raise SpaceError(f"from_params: unknown param(s) {unused} for space {self.name!r}")
        self.root.check(tree, self.name)
        return Arch._trusted(tree, self)

    def decisions(self) -> list[Decision]:
        """Every decision of the space over its maximal structure, in :meth:`suggest`'s order.

        Each :class:`~archlab.space.Decision` names its Optuna param (``path``), its kind and options or range,
        and the conditions under which it is made: repeats are unrolled to their largest count (repetition
        ``i`` conditional on ``<repeat>.count`` being above ``i``), every branch of a choice is listed
        (conditional on the choice taking that branch), optional parts are conditional on ``<path>.present``.
        What a supernet must hold, and a study's full set of distributions.
        """
        return self.root.decisions("", ())

    def fingerprint(self) -> str:
        """A short, stable hex digest of the decision tree: fields, node kinds, options, ranges, counts.

        Equal for two spaces that declare the same decisions in the same order; it ignores the space's name
        and its build function (two spaces with one fingerprint give the same archs, encodings and params).
        """
        text = json.dumps(self.root.signature(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- models
    def decode(self, arch: Arch) -> FrozenDict:
        """The read-only values a builder sees (callable options resolved)."""
        return self.root.decode(self._own(arch)._tree)

    def build(self, arch: Arch, **kwargs: Any) -> Any:
        """``build(decoded arch, **kwargs)``: the model for ``arch``."""
        if self._build is None:
            raise SpaceError(f"space {self.name!r} has no build function")
        return self._build(self.decode(arch), **kwargs)

    def supernet(self, mode: str = "darts", **kwargs: Any) -> Any:
        """The weight-sharing form of the space (:class:`archlab.search.oneshot.Supernet`): one instance of every
        option of every module decision, run as a single path (``"spos"``), a softmax-weighted mixture
        (``"darts"``) or a Gumbel-softmax sample (``"gdas"``); ``extract(arch)`` gives ``build(arch)`` with the
        inherited weights. A space whose other decisions change structure raises :class:`SpaceError`."""
        from archlab.search.oneshot._supernet import Supernet  # torch is imported only when a supernet is made

        return Supernet(self, mode, **kwargs)

    def describe(self) -> dict[str, Any]:
        size = self.size()
        return {"name": self.name, "size": size if size != math.inf else "infinite",
                "encoding_size": self.encoding_size}

    def __repr__(self) -> str:
        return f"Space(name={self.name!r}, fields={list(self.root.fields)})"


def _mark(arch: Arch, space: Space) -> None:
    """Remember on ``arch`` that ``space`` checked it (a private cache slot; the arch's value is unchanged)."""
    _set_space(arch, space)

"""A Space compiled into a weight-sharing supernet: one instance of every candidate of every module decision.

The space's own build function makes the supernet: it is called with a decoding in which each module decision
(a choice among factories: callables, :class:`~archlab.space.Bound` options, or branches that are settings-free
``module(...)`` declarations) is a :class:`MixedFactory`. Wherever the build calls that factory, the mixed
factory builds every candidate with the same arguments and returns them in a :class:`LayerChoice`, which sits in
the network exactly where the chosen module would, so ``space.build(arch)`` and the supernet share parameter
names below the choice (``cells.0.layers.3.op.1.weight`` there is ``cells.0.layers.3.candidates.2.op.1.weight``
here). A decision met several times (a cell repeated ``N`` times) shares one set of architecture parameters, as
DARTS shares ``alpha`` across cells.

One forward runs one of three ways (:attr:`Supernet.mode`, or ``arch=`` for a single path in any mode):

- ``"spos"``: the single path of the arch set by :meth:`Supernet.set_arch` (each candidate of its own);
- ``"darts"``: every candidate, weighted by ``softmax(alpha)`` of its decision;
- ``"gdas"``: one candidate per decision, drawn by Gumbel-softmax at temperature :attr:`Supernet.tau` once per
  forward (shared by every place of the decision), its output times the hard one-hot weight whose gradient is
  the soft one's (straight-through), the other weights added as they are (zero in value, not in gradient), as
  ``GDAS_Cell``'s ``forward_gdas`` of D-X-Y/AutoDL-Projects does.

Decisions that change structure (repeat counts, optional parts, integer and real ranges, value choices, module
settings) cannot be mixed this way: :func:`compile_space` raises :class:`~archlab.errors.SpaceError` naming them
(elastic depth and width are Once-for-All's supernet, not this one).

This module imports nothing of :mod:`archlab.space._space` (``Space.supernet`` imports it lazily), so the space
is typed ``Any`` here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import SpaceError
from archlab.space._arch import FrozenDict
from archlab.space._choice import Choice
from archlab.space._node import Node
from archlab.space._structure import Optional, Repeat, Struct

__all__ = ["MODES", "LayerChoice", "MixedFactory", "Supernet", "compile_space", "gumbel_softmax_hard"]

MODES = ("spos", "darts", "gdas")


class MixedFactory:
    """Stands in for one module decision's factory: calling it builds every candidate (same arguments) into a
    :class:`LayerChoice` for decision ``path``. ``keys`` are the option keys an arch records."""

    def __init__(self, path: str, keys: tuple[Any, ...], factories: tuple[Callable[..., Any], ...]) -> None:
        self.path, self.keys, self.factories = path, keys, factories
        self.controller: _Controller | None = None  # set by the Supernet that owns the build
        self.__name__ = f"mixed[{path}]"

    def __call__(self, *args: Any, **kwargs: Any) -> LayerChoice:
        if self.controller is None:
            raise SpaceError(f"the mixed factory of {self.path!r} can only be called while a Supernet is built")
        candidates = [factory(*args, **kwargs) for factory in self.factories]
        for key, module in zip(self.keys, candidates, strict=True):
            if not isinstance(module, nn.Module):
                raise SpaceError(f"decision {self.path!r}: option {key!r} built a {type(module).__name__}, not an "
                                 "nn.Module; a supernet mixes modules only")
        return LayerChoice(self.path, self.keys, candidates, self.controller)

    def __repr__(self) -> str:
        return f"MixedFactory({self.path!r}, {list(self.keys)})"


def _fixed(node: Node) -> Any:
    return node.decode(node.extreme("min"))


def _mix(node: Node, path: str, mixed: dict[str, MixedFactory], unmixable: list[str]) -> Any:
    """The decoded value a builder sees, each module decision replaced by its :class:`MixedFactory`; the paths of
    decisions that cannot be mixed go to ``unmixable`` (the walk mirrors ``Node.decisions``' naming)."""
    if node.size() == 1:  # constants, settings-free modules, one-option choices: nothing to decide
        return _fixed(node)
    if isinstance(node, Choice):
        if not node.branch and all(callable(o) for o in node.options):
            factories = tuple(node.options)
        elif node.branch and all(o.is_module and o.size() == 1 for o in node.options):
            factories = tuple(_fixed(o) for o in node.options)
        else:
            unmixable.extend(d.path for d in node.decisions(path, ()))
            return None
        mixed[path] = MixedFactory(path, tuple(node.keys), factories)
        return mixed[path]
    if isinstance(node, Struct) and not node.is_module:
        prefix = f"{path}." if path else ""
        return FrozenDict({k: _mix(n, prefix + k, mixed, unmixable) for k, n in node.fields.items()})
    if isinstance(node, Repeat) and len(node.counts) == 1:
        return tuple(_mix(node.node, f"{path}.{i}", mixed, unmixable) for i in range(node.counts[0]))
    if isinstance(node, Optional):
        unmixable.append(f"{path}.present")
        _mix(node.node, path, mixed, unmixable)
        return None
    unmixable.extend(d.path for d in node.decisions(path, ()))
    return None


def compile_space(space: Any) -> tuple[FrozenDict, dict[str, MixedFactory]]:
    """The supernet's decoding of ``space`` (a :class:`~archlab.space.Space`) and its mixed factories by decision
    path; :class:`SpaceError` naming every decision that is not a choice among module factories."""
    mixed: dict[str, MixedFactory] = {}
    unmixable: list[str] = []
    decoded = _mix(space.root, "", mixed, unmixable)
    if unmixable:
        raise SpaceError(f"space {space.name!r} cannot be compiled into a supernet: the decision(s) {unmixable} "
                         "are not choices among module factories (structure, sizes and values cannot be mixed; "
                         "elastic depth and width are Once-for-All's supernet)")
    if not mixed:
        raise SpaceError(f"space {space.name!r} has no module decision (a choice among factories) to mix")
    return decoded, mixed


def gumbel_softmax_hard(logits: torch.Tensor, tau: float,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """GDAS's sample: ``(hard weights, index)``. ``probs = softmax((log_softmax(logits) + g) / tau)`` with Gumbel
    noise ``g``; the hard weights are ``one_hot(argmax) - probs.detach() + probs`` (one-hot in value, the soft
    gradient). Redrawn while the noise is infinite, as the reference does."""
    log_probs = logits.log_softmax(-1)
    while True:
        noise = torch.empty_like(logits).exponential_(generator=generator)
        gumbels = -noise.log()
        probs = F.softmax((log_probs + gumbels) / tau, dim=-1)
        if torch.isfinite(gumbels).all() and torch.isfinite(probs).all():
            break
    index = int(probs.argmax())
    hard = torch.zeros_like(probs)
    hard[index] = 1.0
    return hard - probs.detach() + probs, index


class _Controller:
    """What every :class:`LayerChoice` of one supernet reads during a forward (kept off the module tree)."""

    def __init__(self) -> None:
        self.path_index: dict[str, int] | None = None  # a single path: decision -> candidate index
        self.weights: dict[str, torch.Tensor] = {}  # darts: softmax(alpha); gdas: hard weights
        self.sampled: dict[str, int] = {}  # gdas: the drawn candidate of each decision


class LayerChoice(nn.Module):
    """Every candidate of decision :attr:`path` at one place of the network (``candidates[i]`` is option
    ``keys[i]``); the owning supernet's forward mode decides which run and how they combine."""

    def __init__(self, path: str, keys: tuple[Any, ...], candidates: list[nn.Module], controller: _Controller) -> None:
        super().__init__()
        self.path, self.keys = path, keys
        self.candidates = nn.ModuleList(candidates)
        self._controller = controller

    def extra_repr(self) -> str:
        return f"path={self.path!r}, keys={list(self.keys)}"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        c = self._controller
        if c.path_index is not None:
            return self.candidates[c.path_index[self.path]](*args, **kwargs)
        weights = c.weights[self.path]
        if self.path in c.sampled:  # gdas: only the drawn candidate runs; the others add their (zero) weights
            index = c.sampled[self.path]
            out = weights[index] * self.candidates[index](*args, **kwargs)
            for i in range(len(self.candidates)):
                if i != index:
                    out = out + weights[i]
            return out
        out = None
        for w, candidate in zip(weights, self.candidates, strict=True):
            term = w * candidate(*args, **kwargs)
            out = term if out is None else out + term
        return out


class Supernet(nn.Module):
    """The weight-sharing form of ``space``: :attr:`model` is the space's network with a :class:`LayerChoice` at
    every module decision; :attr:`alpha` holds one vector of architecture parameters per decision
    (:attr:`decisions`, in the space's order), drawn as DARTS draws them, ``alpha_init * randn``.

    ``supernet(x)`` runs the :attr:`mode`'s forward; ``supernet(x, arch=a)`` the single path of ``a``.
    :meth:`extract` gives ``space.build(arch)`` with the inherited weights; :meth:`derive` the arch of largest
    ``alpha`` at every decision.
    """

    def __init__(self, space: Any, mode: str = "darts", *, tau: float = 10.0, alpha_init: float = 1e-3,
                 seed: int | None = None, **build_kwargs: Any) -> None:
        super().__init__()
        if mode not in MODES:
            raise SpaceError(f"supernet mode must be one of {list(MODES)}, got {mode!r}")
        if space._build is None:
            raise SpaceError(f"space {space.name!r} has no build function")
        decoded, mixed = compile_space(space)
        self.space, self.mode, self.tau = space, mode, tau
        self._build_kwargs = build_kwargs
        self._controller = _Controller()
        for factory in mixed.values():
            factory.controller = self._controller
        self.model = space._build(decoded, **build_kwargs)
        if not isinstance(self.model, nn.Module):
            raise SpaceError(f"space {space.name!r}: build gave a {type(self.model).__name__}, not an nn.Module")
        self._choices = [m for m in self.model.modules() if isinstance(m, LayerChoice)]
        used = {m.path for m in self._choices}
        self.decisions = [path for path in mixed if path in used]  # a decision the build never met has no alpha
        self._keys = {path: mixed[path].keys for path in self.decisions}
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.alpha = nn.ParameterList(
            nn.Parameter(alpha_init * torch.randn(len(self._keys[p]), generator=gen)) for p in self.decisions)
        self._arch: Any = None
        self._last_sample: dict[str, int] = {}
        #: how ``"darts"`` weighs the candidates: ``"softmax"`` (DARTS), or ``"max_w"`` (sharpDARTS' Max-W
        #: weighting, ``1 - max(w) + w_i`` with ``w = softmax(alpha)`` and ``max(w)`` without gradient)
        self.mix = "softmax"

    # -- parameters
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (``alpha``), one vector per decision."""
        return list(self.alpha)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter but ``alpha``: the weights the candidates share."""
        return list(self.model.parameters())

    def alpha_of(self, path: str) -> torch.Tensor:
        return self.alpha[self.decisions.index(path)]

    def probabilities(self) -> dict[str, dict[Any, float]]:
        """``softmax(alpha)`` of every decision, keyed by option."""
        with torch.no_grad():
            return {p: dict(zip(self._keys[p], F.softmax(a, -1).tolist(), strict=True))
                    for p, a in zip(self.decisions, self.alpha, strict=True)}

    # -- paths
    def _path_index(self, arch: Any) -> dict[str, int]:
        params = self.space.to_params(self.space.validate(arch))
        return {p: self._keys[p].index(params[p]) for p in self.decisions}

    def set_arch(self, arch: Any) -> None:
        """The single path that ``"spos"`` forwards run (until set again)."""
        self._arch = self._path_index(arch)

    def sample_arch(self, seed: Any = None) -> Any:
        """A uniformly random arch of the space, set as the single path (SPOS's uniform path sampling)."""
        arch = self.space.sample(seed)
        self.set_arch(arch)
        return arch

    def sampled_arch(self) -> Any:
        """The arch of the last ``"gdas"`` forward's draw (the path whose output that forward gave)."""
        if not self._last_sample:
            raise SpaceError("sampled_arch(): no 'gdas' forward has drawn a path yet")
        params = {p: self._keys[p][i] for p, i in self._last_sample.items()}
        for path, keys in _unmet(self.space, self._keys):
            params[path] = keys[0]
        return self.space.from_params(params)

    def forward(self, *args: Any, arch: Any = None, **kwargs: Any) -> Any:
        c = self._controller
        c.weights, c.sampled, c.path_index = {}, {}, None
        if arch is not None:
            c.path_index = self._path_index(arch)
        elif self.mode == "spos":
            if self._arch is None:
                raise SpaceError("a 'spos' supernet runs a single path: call set_arch(arch) or pass arch=")
            c.path_index = self._arch
        elif self.mode == "darts":
            c.weights = {p: F.softmax(a, -1) for p, a in zip(self.decisions, self.alpha, strict=True)}
            if self.mix == "max_w":
                c.weights = {p: 1.0 - w.max().detach() + w for p, w in c.weights.items()}
        else:
            for p, a in zip(self.decisions, self.alpha, strict=True):
                c.weights[p], c.sampled[p] = gumbel_softmax_hard(a, self.tau)
            self._last_sample = dict(c.sampled)
        try:
            return self.model(*args, **kwargs)
        finally:
            c.path_index = None

    # -- results
    def derive(self) -> Any:
        """The arch taking, at every decision, the option of largest ``alpha`` (all options count, ``none``
        included, as DARTS' ``genotype`` does on NAS-Bench-201)."""
        with torch.no_grad():
            params = {p: self._keys[p][int(a.argmax())] for p, a in zip(self.decisions, self.alpha, strict=True)}
        for path, keys in _unmet(self.space, self._keys):
            params[path] = keys[0]
        return self.space.from_params(params)

    def extract(self, arch: Any) -> nn.Module:
        """``space.build(arch)`` with the supernet's weights of ``arch``'s single path (and its BatchNorm
        statistics) loaded, on the supernet's device and in its dtype: its outputs equal ``supernet(x, arch=arch)``."""
        index = self._path_index(arch)
        model = self.space.build(self.space.validate(arch), **self._build_kwargs)
        first = next(self.model.parameters(), None)
        if first is not None:
            model = model.to(device=first.device, dtype=first.dtype)
        state = {}
        for name, tensor in self.model.state_dict().items():
            mapped = _single_path_name(self.model, name, index)
            if mapped is not None:
                state[mapped] = tensor.clone()
        model.load_state_dict(state, strict=True)
        return model

    def snapshot(self) -> Supernet:
        """A deep copy of the supernet (weights, ``alpha``, mode), without the last forward's mixing weights,
        which are tensors of that forward's graph and cannot be copied."""
        c = self._controller
        saved = c.weights
        c.weights = {}
        try:
            return copy.deepcopy(self)
        finally:
            c.weights = saved

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, decisions={self.decisions}"


def _unmet(space: Any, keys: Mapping[str, tuple[Any, ...]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Decisions of the space that the build never called (no alpha): they take their first option."""
    for d in space.decisions():
        if d.path not in keys:
            yield d.path, tuple(d.options)


def _single_path_name(model: nn.Module, name: str, index: Mapping[str, int]) -> str | None:
    """The state-dict name in ``space.build(arch)`` of supernet entry ``name``, or ``None`` when it belongs to a
    candidate off the path: every ``<choice>.candidates.<i>`` on the way is dropped if ``i`` is the path's."""
    parts = name.split(".")
    out: list[str] = []
    module: nn.Module | None = model
    i = 0
    while i < len(parts):
        if isinstance(module, LayerChoice):
            chosen = int(parts[i + 1])
            if parts[i] != "candidates" or chosen != index[module.path]:
                return None
            module = module.candidates[chosen]
            i += 2
            continue
        out.append(parts[i])
        module = module._modules.get(parts[i]) if module is not None else None
        i += 1
    return ".".join(out)

"""The zoo's registries: models and token mixers, looked up by name (timm-style).

``register_model`` / ``create_model`` / ``list_models`` follow timm's registry; token mixers have their own
registry because search spaces choose among them (``list_mixers``), and each mixer declares the tensor
layout it works on:

- ``"image"`` mixers map ``(B, C, H, W) -> (B, C, H, W)``;
- ``"sequence"`` mixers map ``(B, L, C) -> (B, L, C)``.

Model families adapt between layouts (see :mod:`archlab.zoo.models.metaformer`), so every registered mixer
can be chosen in every space that takes mixers.

A mixer also declares its searchable ``settings`` (``{"d_state": (8, 16, 32)}``: keyword -> the values a space
may choose among), so a space reads its decisions from the registry rather than guessing from the factory's
signature, and :meth:`MixerSpec.bind` turns a choice into a factory with those settings fixed.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from archlab.errors import UserError

__all__ = [
    "MixerSpec",
    "create_mixer",
    "create_model",
    "get_mixer_spec",
    "list_mixers",
    "list_models",
    "register_mixer",
    "register_model",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_MODEL_INFO: dict[str, dict[str, Any]] = {}
_MIXERS: dict[str, MixerSpec] = {}
LAYOUTS = ("image", "sequence")


@dataclass(frozen=True)
class MixerSpec:
    """A registered token mixer: ``factory(dim, *, resolution=None, **kw) -> nn.Module``."""

    name: str
    factory: Callable[..., nn.Module]
    layout: str
    paper: str
    causal: bool = False  # output at position t depends only on positions <= t (sequence models, decoding)
    # searchable keywords -> the values a space may choose (read-only; the first value is not a default)
    settings: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def bind(self, **settings: Any) -> functools.partial:
        """The factory with chosen ``settings`` fixed: ``spec.bind(d_state=16)(dim)`` builds the mixer.

        Only declared settings may be bound, to the declared values, so a bound factory is always one a space
        could have chosen.
        """
        for k, v in settings.items():
            if k not in self.settings:
                raise UserError(f"mixer {self.name!r} has no searchable setting {k!r}; "
                                f"declared: {sorted(self.settings) or 'none'}")
            if not any(type(v) is type(o) and v == o for o in self.settings[k]):
                raise UserError(f"mixer {self.name!r}: {k}={v!r} is not one of {list(self.settings[k])}")
        return functools.partial(self.factory, **settings)


def _check_settings(name: str, settings: Mapping[str, Sequence[Any]] | None) -> Mapping[str, tuple[Any, ...]]:
    """Settings as a read-only mapping of keyword -> tuple of JSON scalars, or a ValueError saying what is wrong."""
    out: dict[str, tuple[Any, ...]] = {}
    for k, values in (settings or {}).items():
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(f"mixer {name!r}: setting name {k!r} must be a keyword name")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"mixer {name!r}: setting {k!r} needs a non-empty list of values, got {values!r}")
        for v in values:
            if not isinstance(v, (bool, int, float, str)) or (isinstance(v, float) and not math.isfinite(v)):
                raise ValueError(f"mixer {name!r}: setting {k!r} value {v!r} is not a JSON scalar")
        out[k] = tuple(values)
    return MappingProxyType(out)


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None,
                   family: str = "", paper: str = "", input_shape: tuple[int, ...] | None = None,
                   input_dtype: str = "float"):
    """Register a model constructor under ``name`` (default: the function's name).

    ``input_shape`` is the shape of one default input without the batch dimension (``(3, 224, 224)`` for an
    ImageNet model, ``(1024,)`` token ids with ``input_dtype="long"`` for a language model): what
    ``archlab zoo list`` / ``profile`` measure at.
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _MODELS and _MODELS[key] is not f:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = f
        _MODEL_INFO[key] = {"family": family or f.__module__.rsplit(".", 1)[-1], "paper": paper,
                            "input_shape": tuple(input_shape) if input_shape is not None else None,
                            "input_dtype": input_dtype}
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword overrides."""
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known: {', '.join(list_models()) or 'none'}")
    return _MODELS[name](**kwargs)


def model_info(name: str) -> dict[str, Any]:
    """``family``, ``paper``, ``input_shape`` (or None) and ``input_dtype`` of a registered model."""
    if name not in _MODEL_INFO:
        raise UserError(f"unknown model {name!r}")
    return dict(_MODEL_INFO[name])


def register_mixer(name: str, *, layout: str, paper: str = "", causal: bool = False,
                   settings: Mapping[str, Sequence[Any]] | None = None):
    """Register a token-mixer factory ``f(dim, *, resolution=None, **kw)`` under ``name``.

    ``causal=True`` marks a mixer whose output at sequence position t depends only on positions <= t (Mamba,
    GLA, LMU, ...): spaces for images leave those out unless asked for by name. ``settings`` declares the
    factory keywords a space may search and their values (``{"d_state": (8, 16, 32)}``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    checked = _check_settings(name, settings)

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MIXERS and _MIXERS[name].factory is not f:
            raise ValueError(f"mixer {name!r} is already registered")
        _MIXERS[name] = MixerSpec(name=name, factory=f, layout=layout, paper=paper, causal=causal,
                                  settings=checked)
        return f

    return deco


def list_mixers(pattern: str = "*", layout: str | None = None, causal: bool | None = None) -> list[str]:
    """Registered mixer names, sorted; optionally only those of one ``layout`` or causality."""
    return sorted(
        n for n, s in _MIXERS.items()
        if fnmatch.fnmatchcase(n, pattern) and (layout is None or s.layout == layout)
        and (causal is None or s.causal == causal)
    )


def get_mixer_spec(name: str) -> MixerSpec:
    if name not in _MIXERS:
        raise UserError(f"unknown mixer {name!r}; known: {', '.join(list_mixers()) or 'none'}")
    return _MIXERS[name]


def create_mixer(name: str, dim: int, **kwargs: Any) -> nn.Module:
    """Build the registered mixer ``name`` for ``dim`` channels, in its own layout."""
    return get_mixer_spec(name).factory(dim, **kwargs)

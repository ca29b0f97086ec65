"""The zoo's registries: models and token mixers, looked up by name (timm-style).

``register_model`` / ``create_model`` / ``list_models`` follow timm's registry; token mixers have their own
registry because search spaces choose among them (``list_mixers``), and each mixer declares the tensor
layout it works on:

- ``"image"`` mixers map ``(B, C, H, W) -> (B, C, H, W)``;
- ``"sequence"`` mixers map ``(B, L, C) -> (B, L, C)``.

Model families adapt between layouts (see :mod:`archlab.zoo.models.metaformer`), so every registered mixer
can be chosen in every space that takes mixers.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
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


def register_mixer(name: str, *, layout: str, paper: str = "", causal: bool = False):
    """Register a token-mixer factory ``f(dim, *, resolution=None, **kw)`` under ``name``.

    ``causal=True`` marks a mixer whose output at sequence position t depends only on positions <= t (Mamba,
    GLA, LMU, ...): spaces for images leave those out unless asked for by name.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MIXERS and _MIXERS[name].factory is not f:
            raise ValueError(f"mixer {name!r} is already registered")
        _MIXERS[name] = MixerSpec(name=name, factory=f, layout=layout, paper=paper, causal=causal)
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

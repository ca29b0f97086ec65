"""The ``sequence`` space: sequence models whose token mixer is chosen layer by layer.

Each layer of a :class:`archlab.zoo.models.sequence.SequenceModel` picks its own causal sequence mixer (by
default every one registered in :mod:`archlab.zoo`: attention, GLA, Mamba, SSD, LMU, S4D, ... at the time the
space is made), so mixing them gives hybrids (Jamba-style attention + SSM stacks) with no extra declaration. The
depth is a searchable repeat; the width and the MLP ratio are shared by all layers.

Each mixer's searchable settings, as it declares them in the zoo (``register_mixer(..., settings=...)``), become
conditional decisions inside its branch of the per-layer choice, so an arch carries only the decisions its
mixers use: ``d_state`` for Mamba's SSM state, SSD's per-head state and S4D's ``N``, ``memory_size`` for the
LMU's Legendre order. A layer's genotype reads ``{"option": "mamba", "d_state": 16}`` or ``{"option": "gla"}``,
and decodes to the mixer's factory with those settings bound (a :class:`~archlab.space.Bound`).
The space's own arguments (``d_states``, ``orders``, ``state_sizes``) override the declared state sizes.

Inputs: token ids with ``input_shape=(L,)`` and ``vocab_size`` set, or float series ``input_shape=(C, L)``.
``task="classify"`` builds ``sequence_classifier`` (``num_classes`` logits from the last position);
``task="lm"`` builds ``sequence_lm`` (per-token logits over ``vocab_size``; ``num_classes`` is not used).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from archlab.errors import SpaceError
from archlab.space._nodes import Node, choice, integer, module, repeat
from archlab.space._predefined import register_space
from archlab.space._space import Space

__all__ = ["DEFAULT_D_STATES", "DEFAULT_ORDERS", "DEFAULT_WIDTHS", "TASKS", "sequence_space", "state_kwarg"]

DEFAULT_WIDTHS = (32, 48, 64, 96, 128)
DEFAULT_D_STATES = (8, 16, 32)  # what the zoo's SSM mixers declare for d_state
DEFAULT_ORDERS = (16, 32, 64)  # and the LMU for memory_size
TASKS = ("classify", "lm")
# a state-size setting -> which of the space's arguments overrides its declared values
_STATE_KWARGS = {"d_state": "d_states", "memory_size": "orders", "order": "orders"}


def state_kwarg(mixer: str) -> str | None:
    """The setting that sizes ``mixer``'s state (``d_state``, ``memory_size``, ``order``), or ``None``.

    Read from the settings the mixer declares in the zoo's registry, the first state-size one.
    """
    from archlab import zoo

    return next((k for k in zoo.get_mixer_spec(mixer).settings if k in _STATE_KWARGS), None)


def _positive_ints(what: str, values: Sequence[int]) -> list[int]:
    values = list(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise SpaceError(f"the sequence space: {what} must be a non-empty list of positive ints, got {values!r}")
    return values


@register_space("sequence")
def sequence_space(*, input_shape: tuple[int, ...], num_classes: int, mixers: Sequence[str] | None = None,
                   widths: Sequence[int] = DEFAULT_WIDTHS, max_depth: int = 4, vocab_size: int | None = None,
                   task: str = "classify", d_states: Sequence[int] | None = None,
                   orders: Sequence[int] | None = None, state_sizes: Mapping[str, Sequence[int]] | None = None,
                   mlp_ratios: Sequence[float] = (0, 2, 4), norm: str = "layernorm",
                   mixer_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> Space:
    """The sequence space for inputs of ``input_shape`` (``(L,)`` token ids or ``(C, L)`` series).

    Each mixer's state size is chosen among the values it declares in the zoo, unless ``d_states`` (the
    choices of ``d_state`` for every mixer that has one) or ``orders`` (of ``memory_size`` / ``order``) are
    given; ``state_sizes`` overrides them per mixer name (an empty list fixes the mixer's default). Other
    declared settings are searched as declared. ``mixer_kwargs`` gives fixed keywords per mixer name (e.g.
    ``{"gla": {"mode": "recurrent"}}``). The returned space's ``spec`` names every mixer and its state sizes,
    so it rebuilds the same space after new mixers are registered.
    """
    from archlab import zoo

    shape = tuple(input_shape)
    if task not in TASKS:
        raise SpaceError(f"the sequence space: task must be one of {TASKS}, got {task!r}")
    if len(shape) == 1:
        if vocab_size is None:
            raise SpaceError(f"the sequence space: input shape {shape} is token ids (L,) and needs vocab_size")
        in_chans, seq_len = None, shape[0]
    elif len(shape) == 2:
        if vocab_size is not None:
            raise SpaceError(f"the sequence space: input shape {shape} is a float series (C, L); vocab_size is "
                             "for token ids (L,)")
        in_chans, seq_len = shape
    else:
        raise SpaceError(f"the sequence space takes token ids (L,) or series (C, L), got input shape {shape}")
    if task == "lm" and vocab_size is None:
        raise SpaceError("the sequence space: task 'lm' predicts tokens and needs input_shape (L,) and vocab_size")
    if not isinstance(max_depth, int) or max_depth < 1:
        raise SpaceError(f"the sequence space: max_depth must be a positive int, got {max_depth!r}")
    widths = _positive_ints("widths", widths)
    overrides = {"d_states": None if d_states is None else _positive_ints("d_states", d_states),
                 "orders": None if orders is None else _positive_ints("orders", orders)}
    if not mlp_ratios or any(r < 0 for r in mlp_ratios):
        raise SpaceError(f"the sequence space: mlp_ratios must be a non-empty list of ratios >= 0, got {mlp_ratios}")
    state_sizes = dict(state_sizes or {})
    mixer_kwargs = {k: dict(v) for k, v in (mixer_kwargs or {}).items()}

    names = list(mixers) if mixers is not None else zoo.list_mixers(layout="sequence", causal=True)
    if not names:
        raise SpaceError("the sequence space needs at least one mixer")
    for m in names:
        spec = zoo.get_mixer_spec(m)
        if spec.layout != "sequence" or (task == "lm" and not spec.causal):
            raise SpaceError(f"the sequence space: mixer {m!r} is not a causal sequence mixer "
                             f"(layout {spec.layout!r}, causal={spec.causal})")
    for m in list(state_sizes) + list(mixer_kwargs):
        if m not in names:
            raise SpaceError(f"the sequence space: settings given for mixer {m!r}, which is not among {names}")

    branches: dict[str, Node | dict[str, Any]] = {}
    resolved_sizes: dict[str, list[int]] = {}
    for m in names:
        settings = {k: list(v) for k, v in zoo.get_mixer_spec(m).settings.items()}
        key = state_kwarg(m)
        if key is None:
            if m in state_sizes and list(state_sizes[m]):
                raise SpaceError(f"the sequence space: mixer {m!r} has no state size (d_state, memory_size or "
                                 "order)")
        else:  # per mixer, else the space's argument for this kind of state, else what the mixer declares
            values = settings[key]
            if m in state_sizes:
                values = list(state_sizes[m])
            elif overrides[_STATE_KWARGS[key]] is not None:
                values = overrides[_STATE_KWARGS[key]]
            resolved_sizes[m] = _positive_ints(f"state sizes of {m!r}", values) if values else []
            settings[key] = resolved_sizes[m]
        factory = zoo.get_mixer_spec(m).factory
        if mixer_kwargs.get(m):
            factory = functools.partial(factory, **mixer_kwargs[m])
        # a module, even with no decision, keeps the choice a branch (genotype {"option": name}); the layer
        # decodes to the mixer's factory with its chosen settings
        branches[m] = module(m, factory, **{k: choice(v) for k, v in settings.items() if v})

    model = "sequence_lm" if task == "lm" else "sequence_classifier"

    def build(arch: Mapping[str, Any]):
        # each layer decodes to its mixer's Bound factory; the sequence models take mixers by name and keywords
        layers = [{"mixer": f.name, **mixer_kwargs.get(f.name, {}), **f.settings} for f in arch["layers"]]
        kw: dict[str, Any] = dict(layers=layers, dim=arch["width"], mlp_ratio=arch["mlp_ratio"], norm=norm,
                                  seq_len=seq_len)
        if task == "lm":
            return zoo.create_model(model, vocab_size=vocab_size, **kw)
        return zoo.create_model(model, num_classes=num_classes, vocab_size=vocab_size, in_chans=in_chans, **kw)

    space = Space(
        build,
        name="sequence",
        layers=repeat(choice(branches), count=integer(1, max_depth)),
        width=choice(widths),
        mlp_ratio=choice(list(mlp_ratios)),
    )
    space.spec = {"mixers": names, "state_sizes": resolved_sizes}  # defaults resolved (see create_space)
    return space

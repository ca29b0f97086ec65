"""The ``ascan`` space: hybrid convolution/attention MetaFormers, with AsCAN's asymmetric layout as a prior.

Paper: Kag et al., "AsCAN: Asymmetric Convolution-Attention Networks for Efficient Recognition and
Generation", NeurIPS 2024. There is no official code; this space is reconstructed from the paper's abstract:
a hybrid network whose stages hold convolution blocks (C) and transformer blocks (T), asymmetric in that early
stages hold more C blocks and later stages more T blocks.

A *layout* gives each stage its blocks as a string of ``C`` and ``T``: within a stage the C blocks come
first, e.g. ``"CC-CT-TT"`` for three stages. The space searches the layout (1 to ``max_depth`` blocks per stage,
any C/T split), one width per stage, the MLP ratio and the norm. A C block is a MetaFormer block with the
``conv_mixer`` (default ConvFormer's ``"sepconv"``), a T block one with the ``attn_mixer`` (default
``"attention"``); both share the MetaFormer block's norm and channel MLP, so a layout changes only the mixers.

``prior="asymmetric"`` (the default) keeps only layouts whose attention share ``#T / #blocks`` never decreases
from one stage to the next; ``prior=None`` allows every layout.

A stage with both block types is a MetaFormer stage with one mixer per block (``"mixers"`` in
:meth:`archlab.zoo.models.metaformer.MetaFormer.from_stages`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from archlab.errors import SpaceError
from archlab.space._nodes import choice, repeat
from archlab.space._predefined import register_space
from archlab.space._space import Space
from archlab.space.metaformer import DEFAULT_WIDTHS, STEMS, max_stages, stem_strides

__all__ = ["PRIORS", "ascan_space", "attention_shares", "is_asymmetric", "layouts", "stage_options"]

PRIORS = ("asymmetric", None)


def stage_options(max_depth: int) -> list[str]:
    """Every stage of 1..``max_depth`` blocks, C blocks before T blocks: ``["C", "T", "CC", "CT", "TT", ...]``."""
    if max_depth < 1:
        raise SpaceError(f"ascan: max_depth must be >= 1, got {max_depth}")
    return ["C" * (depth - attn) + "T" * attn for depth in range(1, max_depth + 1) for attn in range(depth + 1)]


def attention_shares(layout: str) -> list[Fraction]:
    """The fraction of T blocks in each stage of a layout such as ``"CC-CT-TT"``."""
    stages = layout.split("-")
    if not layout or any(not s or set(s) - {"C", "T"} or "TC" in s for s in stages):
        raise SpaceError(f"ascan: a layout is stages of C blocks then T blocks joined by '-', got {layout!r}")
    return [Fraction(s.count("T"), len(s)) for s in stages]


def is_asymmetric(layout: str) -> bool:
    """Whether the attention share never decreases from one stage to the next (AsCAN's prior)."""
    shares = attention_shares(layout)
    return all(a <= b for a, b in itertools.pairwise(shares))


def layouts(num_stages: int, max_depth: int, prior: str | None = "asymmetric") -> list[str]:
    """All layouts of ``num_stages`` stages allowed by ``prior``, in a fixed order."""
    if prior not in PRIORS:
        raise SpaceError(f"ascan: unknown prior {prior!r}; known: {', '.join(map(repr, PRIORS))}")
    if num_stages < 1:
        raise SpaceError(f"ascan: needs at least one stage, got {num_stages}")
    every = ("-".join(p) for p in itertools.product(stage_options(max_depth), repeat=num_stages))
    return [lay for lay in every if prior is None or is_asymmetric(lay)]


def _build(arch: Mapping[str, Any], *, in_chans: int, num_classes: int, image_size: tuple[int, int],
           default_stride: int, conv_mixer: str, attn_mixer: str) -> Any:
    from archlab import zoo

    patch, stride, pad = STEMS[arch.get("stem_stride", default_stride)]
    kinds = {"C": conv_mixer, "T": attn_mixer}
    return zoo.create_model(
        "metaformer",
        stages=[{"mixers": [kinds[k] for k in blocks], "depth": len(blocks), "width": w}
                for blocks, w in zip(arch["layout"].split("-"), arch["widths"], strict=True)],
        in_chans=in_chans, num_classes=num_classes, image_size=image_size, mlp_ratio=arch["mlp_ratio"],
        norm=arch["norm"], in_patch_size=patch, in_stride=stride, in_pad=pad)


@register_space("ascan")
def ascan_space(*, input_shape: tuple[int, ...], num_classes: int, prior: str | None = "asymmetric",
                widths: Sequence[int] = DEFAULT_WIDTHS, max_depth: int = 2, stages: int | None = None,
                conv_mixer: str = "sepconv", attn_mixer: str = "attention") -> Space:
    """AsCAN-style hybrid space for images of ``input_shape`` = (C, H, W).

    ``stages`` defaults to as many as fit (see :func:`archlab.space.metaformer.max_stages`), at most 3.
    """
    from archlab import zoo
    from archlab.zoo.layers.norms import NORMS

    if len(input_shape) != 3:
        raise SpaceError(f"the ascan space takes images (C, H, W), got input shape {tuple(input_shape)}")
    in_chans, height, width = input_shape
    for name in (conv_mixer, attn_mixer):
        zoo.get_mixer_spec(name)
    if not widths:
        raise SpaceError("ascan: widths must not be empty")
    strides = stem_strides((height, width))
    num_stages = stages if stages is not None else min(3, max_stages((height, width), strides[0]))
    allowed = layouts(num_stages, max_depth, prior)

    def build(arch: Mapping[str, Any]) -> Any:
        return _build(arch, in_chans=in_chans, num_classes=num_classes, image_size=(height, width),
                      default_stride=strides[0], conv_mixer=conv_mixer, attn_mixer=attn_mixer)

    extra: dict[str, Any] = {"stem_stride": choice(strides)} if len(strides) > 1 else {}
    return Space(
        build,
        name="ascan",
        layout=choice(allowed),
        widths=repeat(choice(list(widths)), count=num_stages),
        mlp_ratio=choice([2, 3, 4]),
        norm=choice(list(NORMS)),
        **extra,
    )

"""The ``metaformer`` space: MetaFormer backbones whose token mixer is chosen per stage.

MetaFormer (Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022) separates a block's
token mixer from the rest of the block. This space searches the number of stages, each stage's token mixer,
depth and width, and the MLP ratio and norm shared by all blocks. The mixer choice is every mixer registered
in :mod:`archlab.zoo` at the time the space is made (except causal sequence mixers, which only see the
tokens before them), so each new zoo mixer grows the space with no change here; the space's ``spec`` lists the
mixers it was made with, so ``create_space(**space.spec)`` rebuilds that same space later.

For images larger than 16 pixels the stem's stride is a decision too (2: a 3x3 stem; 4: PoolFormer's 7x7
stem), which trades resolution, and so accuracy, against compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archlab.errors import SpaceError
from archlab.space._nodes import Bound, choice, integer, repeat
from archlab.space._predefined import register_space
from archlab.space._space import Space

DEFAULT_WIDTHS = (16, 24, 32, 48, 64, 96, 128)


STEMS = {1: (3, 1, 1), 2: (3, 2, 1), 4: (7, 4, 2)}  # stride -> (patch, stride, padding)


def stem_strides(image_size: Sequence[int]) -> list[int]:
    """Stem strides searched for an image size: keep small images whole, let larger ones be cut 2x or 4x."""
    return [1] if min(image_size) <= 16 else [2, 4]


def max_stages(image_size: Sequence[int], stem_stride: int, limit: int = 4) -> int:
    """How many stages fit: each stage after the first halves the map, which must stay at least 2x2."""
    side = -(-min(image_size) // stem_stride)
    n = 1
    while n < limit and side >= 4:
        side = (side + 1) // 2
        n += 1
    return n


@register_space("metaformer")
def metaformer_space(*, input_shape: tuple[int, ...], num_classes: int, mixers: Sequence[str] | None = None,
                     widths: Sequence[int] = DEFAULT_WIDTHS, max_depth: int = 3,
                     stages: int | None = None) -> Space:
    """MetaFormer space for images of ``input_shape`` = (C, H, W)."""
    from archlab import zoo

    if len(input_shape) != 3:
        raise SpaceError(f"the metaformer space takes images (C, H, W), got input shape {tuple(input_shape)}")
    in_chans, height, width = input_shape
    # causal sequence mixers (Mamba, GLA, ...) only see the tokens before them: no use for classifying a whole
    # image, so the default leaves them out; naming them in ``mixers`` still puts them in.
    names = list(mixers) if mixers is not None else zoo.list_mixers(causal=False)
    # each option is the mixer's factory, named after it: the genotype records the name, decoding gives the factory
    mixer_factories = [Bound(m, zoo.get_mixer_spec(m).factory) for m in names]
    strides = stem_strides((height, width))
    n_max = stages or max_stages((height, width), strides[0])

    def build(arch: Mapping[str, Any]):
        patch, stride, pad = STEMS[arch.get("stem_stride", strides[0])]
        return zoo.create_model(
            "metaformer",
            stages=[{**s, "mixer": s["mixer"].name} for s in arch["stages"]],  # a stage's mixer decodes to a Bound
            in_chans=in_chans,
            num_classes=num_classes,
            image_size=(height, width),
            mlp_ratio=arch["mlp_ratio"],
            norm=arch["norm"],
            in_patch_size=patch,
            in_stride=stride,
            in_pad=pad,
        )

    from archlab.zoo.layers.norms import NORMS

    extra: dict[str, Any] = {"stem_stride": choice(strides)} if len(strides) > 1 else {}
    space = Space(
        build,
        name="metaformer",
        stages=repeat(dict(mixer=choice(mixer_factories), depth=integer(1, max_depth), width=choice(list(widths))),
                      count=integer(1, n_max)),
        mlp_ratio=choice([2, 3, 4]),
        norm=choice(list(NORMS)),
        **extra,
    )
    space.spec = {"mixers": names}  # the mixers of today, made explicit (see create_space)
    return space

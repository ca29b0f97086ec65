"""The ``image`` space: the default space of an image search, from the textbook CNN to the token mixers.

A net of this space (:class:`archlab.zoo.models.stagenet.StageNet`) is an optional strided stem and 2-4 stages,
each of one block family at its own depth and width, every stage after the first at half the resolution of the
one before. The space is built so that the strong simple answers are points of it, which the ``metaformer``
space's early downsampling ruled out on small inputs:

- the first stage works at full resolution (no stem) or at half (a stride-2 stem) on inputs up to 32 pixels,
  and its blocks are the convolutional families that pay at a high resolution: plain conv-BN-ReLU (VGG,
  SimpleNet), ResNet's basic block, UniRepLKNet's block, and ConvFormer's separable convolution (``sepconv``);
- the later stages add every registered non-causal token mixer (PoolFormer's pooling, attention, WaveMix, ...),
  which work on maps of at most half the input's side, where global mixing costs a quarter as much.

So the textbook Fashion-MNIST CNN (conv-BN-ReLU 32, 32, pool, 64, 64, pool, 128, global average pool, linear)
is the arch ``{"stem_stride": 1, "first": conv 2x32, "rest": [conv 2x64, conv 1x128], ...}``, and a small ResNet
``{"stem_stride": 1, "first": residual 2x16, "rest": [residual 2x32, residual 2x64]}``
(:data:`archlab.search.portfolio` holds these and others as a search's first trials).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archlab.errors import SpaceError
from archlab.space._nodes import choice, integer, repeat
from archlab.space._predefined import register_space
from archlab.space._space import Space
from archlab.space.metaformer import max_stages

#: the block families of the first stage (the ones that pay at full or half resolution)
FIRST_BLOCKS = ("conv", "residual", "unireplknet", "sepconv")
WIDTHS = (16, 24, 32, 48, 64, 96, 128, 192)


def image_stem_strides(image_size: Sequence[int]) -> list[int]:
    """Stem strides for an input size: whole up to 16 pixels, whole or halved up to 32, halved or quartered above."""
    side = min(image_size)
    return [1] if side <= 16 else [1, 2] if side <= 32 else [2, 4]


@register_space("image")
def image_space(*, input_shape: tuple[int, ...], num_classes: int, mixers: Sequence[str] | None = None,
                widths: Sequence[int] = WIDTHS, max_depth: int = 3) -> Space:
    """The ``image`` space for images of ``input_shape`` = (C, H, W); ``mixers`` restricts the token mixers of
    the later stages (default: every registered non-causal mixer)."""
    from archlab import zoo
    from archlab.zoo.models.stagenet import CONV_BLOCKS

    if len(input_shape) != 3:
        raise SpaceError(f"the image space takes images (C, H, W), got input shape {tuple(input_shape)}")
    in_chans, height, width = input_shape
    names = list(mixers) if mixers is not None else zoo.list_mixers(causal=False)
    for name in names:
        zoo.get_mixer_spec(name)  # an unknown mixer is named now, not when an arch is built
    strides = image_stem_strides((height, width))
    n_max = max_stages((height, width), max(strides))
    if n_max < 2:
        raise SpaceError(f"the image space needs inputs of at least 4 pixels a side, got {height}x{width}")
    first_blocks = [b for b in FIRST_BLOCKS if b in CONV_BLOCKS or b in names]
    rest_blocks = list(CONV_BLOCKS) + [m for m in names if m not in CONV_BLOCKS]

    def build(arch: Mapping[str, Any]):
        return zoo.create_model("stagenet", stages=[dict(arch["first"]), *map(dict, arch["rest"])],
                                in_chans=in_chans, num_classes=num_classes, image_size=(height, width),
                                stem_stride=arch["stem_stride"], mlp_ratio=arch["mlp_ratio"])

    def stage(blocks: list[str]) -> dict[str, Any]:
        return dict(block=choice(blocks), depth=integer(1, max_depth), width=choice(list(widths)))

    space = Space(build, name="image", stem_stride=choice(strides), first=stage(first_blocks),
                  rest=repeat(stage(rest_blocks), count=integer(1, n_max - 1)), mlp_ratio=choice([2, 4]))
    space.spec = {"mixers": names}
    return space

"""Token mixers: importing this package imports every module in it, and each module registers its mixers
(see :func:`archlab.zoo.list_mixers`). A new mixer is a new file here; nothing else needs editing."""

import sys

from archlab.zoo._discover import import_submodules

import_submodules(sys.modules[__name__])

from archlab.zoo.mixers.attention import Attention  # noqa: E402
from archlab.zoo.mixers.mlp_mixer import TokenMixingMlp  # noqa: E402
from archlab.zoo.mixers.pooling import Pooling  # noqa: E402
from archlab.zoo.mixers.sepconv import SepConv  # noqa: E402

__all__ = ["Attention", "Pooling", "SepConv", "TokenMixingMlp"]

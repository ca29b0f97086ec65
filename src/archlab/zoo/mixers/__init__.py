"""Token mixers: importing this package registers each of them (see :func:`archlab.zoo.list_mixers`)."""

from archlab.zoo.mixers import attention, mlp_mixer, pooling, sepconv  # noqa: F401  (registers mixers)
from archlab.zoo.mixers.attention import Attention
from archlab.zoo.mixers.mlp_mixer import TokenMixingMlp
from archlab.zoo.mixers.pooling import Pooling
from archlab.zoo.mixers.sepconv import SepConv

__all__ = ["Attention", "Pooling", "SepConv", "TokenMixingMlp"]

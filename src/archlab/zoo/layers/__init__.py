"""Shared building blocks of the zoo (norms, channel MLPs, stochastic depth, patch embedding, causal
convolutions, head counts, ...), used by mixers and model families; each module cites its paper."""

from archlab.zoo.layers.causal_conv import causal_conv_with_history, causal_depthwise_conv
from archlab.zoo.layers.drop import DropPath
from archlab.zoo.layers.heads import default_num_heads, dividing_heads
from archlab.zoo.layers.mlp import Mlp, StarReLU
from archlab.zoo.layers.norms import NORMS, LayerNorm2d, create_norm
from archlab.zoo.layers.patch import PatchEmbed

__all__ = [
    "NORMS",
    "DropPath",
    "LayerNorm2d",
    "Mlp",
    "PatchEmbed",
    "StarReLU",
    "causal_conv_with_history",
    "causal_depthwise_conv",
    "create_norm",
    "default_num_heads",
    "dividing_heads",
]

"""Shared building blocks of the zoo (norms, channel MLPs, ...), used by mixers and model families."""

from archlab.zoo.layers.mlp import Mlp, StarReLU
from archlab.zoo.layers.norms import NORMS, LayerNorm2d, create_norm

__all__ = ["NORMS", "LayerNorm2d", "Mlp", "StarReLU", "create_norm"]

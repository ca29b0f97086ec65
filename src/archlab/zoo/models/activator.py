"""Activator: a ViT-like patch classifier whose blocks use a GLU (the Activator gating unit) instead of attention.

Paper: Abdullah & Aydin, "Activator: GLU Activation Function as the Core Component of a Vision Transformer",
arXiv 2405.15953, 2024. Names follow Abdullah-88/Activator ``activator.py`` (``ActivatorBlock``: ``norm``,
``actgu``, ``ffn.net``; ``ACTIVATOR.model``) and ``train.py`` ``ACTIVATORImageClassification`` (``patcher``,
``classifier``), so the reference's checkpoints load with a plain ``load_state_dict``.

Block (reference, including its single ``norm`` used before both branches)::

    x = x + actgu(norm(x))
    x = x + ffn(norm(x))          # absent in the "only GEGLU" variant (activator_only_GEGLU.py)

Model: a ``patch_size`` x ``patch_size`` stride-``patch_size`` conv (``patcher``), the blocks on the patch
tokens, global average pooling, ``classifier``. There is no positional embedding and no operation between
tokens, so the logits do not change when the patches of an image are shuffled: the model sees a bag of
patches. Configurations are the reference's CIFAR-10 scripts (``train.py`` / ``train_only_GEGLU.py``): 32x32
input, patch 4, ``d_model`` 256, ``d_ffn`` 512, 4 layers, dropout 0.5:

- ``activator_cifar``: blocks with the feed-forward MLP (2,650,890 parameters at 10 classes);
- ``activator_only_geglu_cifar``: without it (1,599,242 parameters at 10 classes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.mixers.activator import ActivatorGatingUnit

__all__ = ["Activator", "ActivatorBlock", "FeedForward", "activator_cifar", "activator_only_geglu_cifar"]

_PAPER = "Activator: GLU Activation Function as the Core Component of a Vision Transformer (Abdullah & Aydin, 2024)"


class FeedForward(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` (the reference's ``net``)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ActivatorBlock(nn.Module):
    """``x + actgu(norm(x))`` then (with ``ffn``) ``x + ffn(norm(x))``, one LayerNorm for both, on ``(B, L, d)``."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float = 0.0, ffn: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.actgu = ActivatorGatingUnit(d_model, d_ffn)
        self.ffn = FeedForward(d_model, d_ffn, dropout) if ffn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.actgu(self.norm(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm(x))
        return x


class Activator(nn.Module):
    """Patch embedding, ``num_layers`` :class:`ActivatorBlock`s, mean over patches, linear classifier."""

    def __init__(self, *, patch_size: int = 4, in_channels: int = 3, num_classes: int = 10, d_model: int = 256,
                 d_ffn: int = 512, num_layers: int = 4, dropout: float = 0.5, ffn: bool = True,
                 name: str = "activator") -> None:
        super().__init__()
        for key, value in (("patch_size", patch_size), ("in_channels", in_channels), ("num_classes", num_classes),
                           ("d_model", d_model), ("d_ffn", d_ffn), ("num_layers", num_layers)):
            if value < 1:
                raise UserError(f"{name}: {key} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.name = name
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.patcher = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.model = nn.Sequential(*[ActivatorBlock(d_model, d_ffn, dropout, ffn) for _ in range(num_layers)])
        self.classifier = nn.Linear(d_model, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens after the blocks, ``(B, L, d_model)`` in row-major patch order."""
        p = self.patch_size
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % p or x.shape[3] % p:
            raise UserError(f"{self.name}: expected input (B, {self.in_channels}, H, W) with H and W multiples of "
                            f"{p}, got {tuple(x.shape)}")
        tokens = self.patcher(x).flatten(2).transpose(1, 2)
        return self.model(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x).mean(dim=1))


@register_model(family="activator", paper=_PAPER, input_shape=(3, 32, 32))
def activator_cifar(**kwargs: Any) -> Activator:
    """Activator for 32x32 CIFAR-10 images (reference ``train.py``); keywords of :class:`Activator` override."""
    return Activator(**{"name": "activator_cifar", **kwargs})


@register_model(family="activator", paper=_PAPER, input_shape=(3, 32, 32))
def activator_only_geglu_cifar(**kwargs: Any) -> Activator:
    """Activator without the feed-forward MLP (reference ``train_only_GEGLU.py``)."""
    return Activator(**{"name": "activator_only_geglu_cifar", "ffn": False, **kwargs})

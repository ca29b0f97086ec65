"""Activator's gating unit (AGU): a per-token GLU used in place of attention.

Paper: Abdullah & Aydin, "Activator: GLU Activation Function as the Core Component of a Vision Transformer",
arXiv 2405.15953, 2024. Names follow Abdullah-88/Activator ``activator.py`` ``ActivatorGatingUnit``
(``proj_1``, ``proj_2``, ``proj_3``, ``gelu``, ``norm``)::

    y = proj_3( norm(gelu(proj_1(x))) * norm(proj_2(x)) )

with ONE LayerNorm (over the hidden width) shared by both branches, as in the reference.

The AGU acts on each token separately: it does not mix tokens at all. The Activator model is therefore a bag
of patches (see :mod:`archlab.zoo.models.activator`). As the ``"activator"`` MetaFormer token mixer it maps a
``(B, C, H, W)`` map pixel by pixel; in that space the spatial mixing comes only from the stem and the strided
downsampling convolutions between stages.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer

__all__ = ["ActivatorGatingUnit", "ActivatorMixer", "create_activator"]

_PAPER = "Activator: GLU Activation Function as the Core Component of a Vision Transformer (Abdullah & Aydin, 2024)"


class ActivatorGatingUnit(nn.Module):
    """``proj_3(LN(GELU(proj_1 x)) * LN(proj_2 x))`` on the last axis of ``(..., dim)`` tokens."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        if dim < 1 or hidden_dim < 1:
            raise UserError(f"activator: dim and hidden_dim must be >= 1, got {dim} and {hidden_dim}")
        self.proj_1 = nn.Linear(dim, hidden_dim)
        self.proj_2 = nn.Linear(dim, hidden_dim)
        self.proj_3 = nn.Linear(hidden_dim, dim)
        self.gelu = nn.GELU()
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.norm(self.gelu(self.proj_1(x)))
        v = self.norm(self.proj_2(x))
        return self.proj_3(u * v)


class ActivatorMixer(nn.Module):
    """The AGU applied at every pixel of a ``(B, C, H, W)`` map (no token mixing)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.actgu = ActivatorGatingUnit(dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise UserError(f"activator: expected input (B, {self.dim}, H, W), got {tuple(x.shape)}")
        return self.actgu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@register_mixer("activator", layout="image", paper=_PAPER)
def create_activator(dim: int, *, resolution: tuple[int, int] | None = None, hidden_ratio: float = 2.0,
                     hidden_dim: int | None = None) -> ActivatorMixer:
    """Activator gating unit as a (per-pixel) mixer; hidden width ``hidden_dim`` or ``int(dim * hidden_ratio)``.

    The default ratio 2 is the reference's (``d_ffn`` 512 for ``d_model`` 256). ``resolution`` is unused.
    """
    hidden = int(dim * hidden_ratio) if hidden_dim is None else hidden_dim
    if hidden < 1:
        raise UserError(f"activator: the hidden width must be >= 1, got {hidden} for dim {dim}")
    return ActivatorMixer(dim, hidden)

"""CRATE's two layers: multi-head subspace self-attention (MSSA) and the ISTA sparse-coding step.

Paper: Yu, Buchanan, Pai, Chu, Wu, Tong, Haeffele, Ma, "White-Box Transformers via Sparse Rate Reduction",
NeurIPS 2023. Names and defaults follow Ma-Lab-Berkeley/CRATE ``model/crate.py``: ``Attention`` (here
:class:`MSSA`; submodules ``qkv``, ``attend``, ``dropout``, ``to_out``) and ``FeedForward`` (here :class:`ISTA`;
one parameter ``weight``, ``step_size`` 0.1, ``lambd`` 0.1), so the reference's checkpoints load unchanged.

- MSSA compresses tokens against learned subspaces ``U_h``: ``w_h = U_h^T z`` is used as query, key *and* value
  (one projection, ``qkv``), ``out = W_o concat_h[softmax(w_h w_h^T / sqrt(d)) w_h]``.
- ISTA sparsifies against a dictionary ``D`` (``weight``): one proximal-gradient step of the non-negative LASSO
  ``min_{a >= 0} 1/2 ||z - D a||^2 + lambda ||a||_1`` started at ``a = z``:
  ``ReLU(z + eta (D^T z - D^T D z) - eta lambda)``.

The ``"mssa"`` mixer is MSSA on the image layout (the map's pixels are the tokens); the number of heads is
derived from ``dim`` as for ``attention``.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.heads import default_num_heads

__all__ = ["ISTA", "MSSA", "create_mssa"]

_PAPER = "White-Box Transformers via Sparse Rate Reduction (Yu et al., NeurIPS 2023)"


class MSSA(nn.Module):
    """Multi-head subspace self-attention on ``(B, L, dim)`` tokens or a ``(B, dim, H, W)`` map.

    ``heads`` subspaces of ``dim_head`` dimensions each; ``to_out`` is the reference's ``Sequential(Linear,
    Dropout)``, or ``Identity`` when there is one head spanning all of ``dim`` (as in the reference).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        if heads < 1 or dim_head < 1:
            raise UserError(f"mssa: heads and dim_head must be >= 1, got {heads} and {dim_head}")
        inner_dim = dim_head * heads
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head ** -0.5
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        # One projection for query, key and value: the subspace bases U_1..U_K stacked.
        self.qkv = nn.Linear(dim, inner_dim, bias=False)
        project_out = not (heads == 1 and dim_head == dim)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout)) if project_out \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            batch, channels, height, width = x.shape
            out = self._tokens(x.flatten(2).transpose(1, 2))
            return out.transpose(1, 2).reshape(batch, channels, height, width)
        return self._tokens(x)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        w = self.qkv(x).reshape(batch, length, self.heads, self.dim_head).transpose(1, 2)
        attn = self.dropout(self.attend((w @ w.transpose(-1, -2)) * self.scale))
        out = (attn @ w).transpose(1, 2).reshape(batch, length, self.heads * self.dim_head)
        return self.to_out(out)


class ISTA(nn.Module):
    """One ISTA step against the dictionary ``weight`` (``D``, ``dim x dim``) on ``(..., dim)`` tokens."""

    def __init__(self, dim: int, step_size: float = 0.1, lambd: float = 0.1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dim))
        nn.init.kaiming_uniform_(self.weight)  # the reference's init (default a=0)
        self.step_size = step_size
        self.lambd = lambd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Row-vector tokens: x @ D^T is D x, and (D x) @ D is D^T D x.
        dtd_x = (x @ self.weight.t()) @ self.weight
        dt_x = x @ self.weight
        return torch.relu(x + self.step_size * (dt_x - dtd_x) - self.step_size * self.lambd)


@register_mixer("mssa", layout="image", paper=_PAPER)
def create_mssa(dim: int, *, resolution: tuple[int, int] | None = None, head_dim: int = 32,
                num_heads: int | None = None, dropout: float = 0.0) -> MSSA:
    """MSSA over the pixels of a ``(B, dim, H, W)`` map; heads as for ``attention`` (``dim // head_dim``).

    The subspaces together span ``dim`` (``heads * dim_head == dim``), as in every published CRATE.
    """
    if head_dim < 1:
        raise UserError(f"mssa: head_dim must be >= 1, got {head_dim}")
    heads = default_num_heads(dim, head_dim) if num_heads is None else num_heads
    if heads < 1 or dim % heads:
        raise UserError(f"mssa: dim {dim} is not divisible by num_heads {heads}")
    return MSSA(dim, heads=heads, dim_head=dim // heads, dropout=dropout)

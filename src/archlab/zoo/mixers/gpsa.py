"""Gated positional self-attention (GPSA), ConViT's soft convolutional token mixer.

Paper: d'Ascoli, Touvron, Leavitt, Morcos, Biroli and Sagun, "ConViT: Improving Vision Transformers with Soft
Convolutional Inductive Biases", ICML 2021. Names follow facebookresearch/convit ``convit.py`` and its port in
timm ``timm/models/convit.py`` (``GPSA``: ``qk``, ``v``, ``proj``, ``pos_proj``, ``gating_param``, the
non-persistent ``rel_indices``), so that ConViT checkpoints load with a plain ``load_state_dict``.

Each head h mixes a content attention and a positional one through a learned gate λ_h::

    A_h = (1 - σ(λ_h)) softmax(Q_h K_hᵀ / √d) + σ(λ_h) softmax(r_ijᵀ v_pos,h),   r_ij = (δx, δy, δx² + δy²)

where (δx, δy) is the offset from query patch i to key patch j and ``v_pos,h`` is row h of ``pos_proj``. With
``v_pos,h = α (2Δx_h, 2Δy_h, -1)`` the positional score is ``-α ‖δ - Δ_h‖²`` plus a constant, a softmax peaked at
offset Δ_h: the "local init" puts the heads on a √H×√H grid of offsets around the query (the first
``isqrt(H)²`` heads when H is not a square, as the reference does; the others keep their random init), sets the
value projection to the identity, and λ_h = 1 so that every head starts mostly positional, like a convolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.heads import default_num_heads

__all__ = ["GPSA", "GPSAMixer", "create_gpsa", "relative_positions"]

_PAPER = ("ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases "
          "(d'Ascoli et al., ICML 2021)")


def relative_positions(grid_size: tuple[int, int]) -> torch.Tensor:
    """``(1, N, N, 3)`` with entry ``[0, n, m] = (δx, δy, δx² + δy²)`` from token n to token m, N = H·W.

    Tokens are row-major (token n at row ``n // W``, column ``n % W``); δx is the column offset, δy the row
    offset, as in the reference's ``get_rel_indices`` (which covers square grids only; this covers any H×W).
    """
    height, width = grid_size
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    dx = (cols[None, :] - cols[:, None]).float()
    dy = (rows[None, :] - rows[:, None]).float()
    return torch.stack((dx, dy, dx ** 2 + dy ** 2), dim=-1).unsqueeze(0)


class GPSA(nn.Module):
    """Gated positional self-attention over a ``(B, N, C)`` sequence of row-major patches of a ``grid_size`` map.

    Args:
        dim: token width; must be divisible by ``num_heads``.
        num_heads: attention heads; the first ``isqrt(num_heads)²`` get a local initialisation.
        qkv_bias: biases on ``qk`` and ``v`` (the reference has none).
        locality_strength: α, how sharply the initial positional attention peaks at each head's offset.
        use_local_init: apply the local initialisation (identity ``v``, offset ``pos_proj``).
        grid_size: ``(H, W)`` of the patch grid; when ``None``, N must be a square number (the reference's
            assumption) and the grid is inferred from it.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, locality_strength: float = 1.0, use_local_init: bool = True,
                 grid_size: tuple[int, int] | None = None, name: str = "gpsa") -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise UserError(f"{name}: dim {dim} is not divisible by num_heads {num_heads}")
        self.name = name
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.locality_strength = locality_strength
        self.qk = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.pos_proj = nn.Linear(3, num_heads)
        self.proj_drop = nn.Dropout(proj_drop)
        # σ(1) ≈ 0.73: every head starts mostly positional (reference init)
        self.gating_param = nn.Parameter(torch.ones(num_heads))
        self.grid_size: tuple[int, int] | None = None
        # Non-persistent: the relative positions are a function of the grid, not weights, and the reference's
        # checkpoints do not hold them.
        self.register_buffer("rel_indices", torch.zeros(1, 0, 0, 3), persistent=False)
        if grid_size is not None:
            self.set_grid_size(grid_size)
        for layer in (self.qk, self.v, self.proj, self.pos_proj):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        if use_local_init:
            self.local_init()

    def set_grid_size(self, grid_size: tuple[int, int]) -> None:
        """Build the relative positions for an ``(H, W)`` patch grid."""
        height, width = grid_size
        if height < 1 or width < 1:
            raise UserError(f"{self.name}: grid size must be positive, got {tuple(grid_size)}")
        self.grid_size = (int(height), int(width))
        self.rel_indices = relative_positions(self.grid_size).to(self.qk.weight)

    def local_init(self) -> None:
        """The reference's local init: identity values; heads on a √H×√H grid of offsets (see :meth:`head_offsets`)."""
        with torch.no_grad():
            self.v.weight.copy_(torch.eye(self.dim))
            weight = self.pos_proj.weight
            for head, (dx, dy) in enumerate(self.head_offsets()):
                # -‖δ - Δ‖² = -(δx²+δy²) + 2Δx·δx + 2Δy·δy - ‖Δ‖²; the constant drops out of the softmax
                weight[head, 0] = 2 * dx
                weight[head, 1] = 2 * dy
                weight[head, 2] = -1
            weight *= self.locality_strength

    def head_offsets(self) -> list[tuple[float, float]]:
        """``(Δx, Δy)`` each locally initialised head attends to at init, in head order.

        Head ``p = h1 + k·h2`` (k = isqrt(H)) gets ``Δx = h2 - c``, ``Δy = h1 - c`` with ``c = (k - 1) / 2``: for odd
        k the offsets are the integer k×k neighbourhood; for even k they fall half-way between patches, so the
        positional attention at init is shared equally by the 2×2 patches around each offset (as in the reference).
        """
        k = math.isqrt(self.num_heads)
        center = (k - 1) / 2
        return [(p // k - center, p % k - center) for p in range(k * k)]

    def positional_attention(self) -> torch.Tensor:
        """``softmax(r_ijᵀ v_pos,h)`` over keys j: ``(H, N, N)``, independent of the input."""
        self._require_grid()
        return self.pos_proj(self.rel_indices).permute(0, 3, 1, 2).softmax(dim=-1)[0]

    def get_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gated attention ``A`` for a ``(B, N, C)`` input: ``(B, H, N, N)``, rows summing to one."""
        batch, length, dim = x.shape
        qk = self.qk(x).reshape(batch, length, 2, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = qk.unbind(0)
        patch_score = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        pos_score = self.pos_proj(self.rel_indices).permute(0, 3, 1, 2).softmax(dim=-1)
        gate = torch.sigmoid(self.gating_param).view(1, -1, 1, 1)
        attn = (1.0 - gate) * patch_score + gate * pos_score
        # a convex mix of two distributions already sums to one; the reference renormalises anyway (rounding)
        attn = attn / attn.sum(dim=-1, keepdim=True)
        return self.attn_drop(attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise UserError(f"{self.name}: expected input (B, N, {self.dim}), got {tuple(x.shape)}")
        batch, length, dim = x.shape
        if self.grid_size is None or self.grid_size[0] * self.grid_size[1] != length:
            side = math.isqrt(length)
            if side * side != length:
                grid = "no grid" if self.grid_size is None else f"a {self.grid_size[0]}x{self.grid_size[1]} grid"
                raise UserError(f"{self.name}: {length} tokens do not fit {grid}, and are not a square number")
            self.set_grid_size((side, side))
        attn = self.get_attention(x)
        v = self.v(x).reshape(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)
        x = (attn @ v).transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(x))

    def _require_grid(self) -> None:
        if self.grid_size is None:
            raise UserError(f"{self.name}: no grid size yet; pass grid_size or call set_grid_size")


class GPSAMixer(GPSA):
    """GPSA as an image token mixer: ``(B, C, H, W) -> (B, C, H, W)``, the map's pixels as row-major tokens.

    The relative positions follow the input's ``(H, W)``: built for ``resolution`` up front, rebuilt if a map of
    another size arrives (GPSA's parameters do not depend on the grid).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise UserError(f"{self.name}: expected input (B, {self.dim}, H, W), got {tuple(x.shape)}")
        batch, channels, height, width = x.shape
        if self.grid_size != (height, width):
            self.set_grid_size((height, width))
        out = super().forward(x.flatten(2).transpose(1, 2))
        return out.transpose(1, 2).reshape(batch, channels, height, width)


@register_mixer("gpsa", layout="image", paper=_PAPER)
def create_gpsa(dim: int, *, resolution: tuple[int, int] | None = None, head_dim: int = 16,
                num_heads: int | None = None, qkv_bias: bool = False, attn_drop: float = 0.0,
                proj_drop: float = 0.0, locality_strength: float = 1.0, use_local_init: bool = True) -> GPSAMixer:
    """GPSA mixer for ``dim`` channels on ``resolution`` maps.

    ``num_heads`` defaults to ``dim // head_dim`` reduced to a divisor of ``dim`` (attention's rule). The default
    ``head_dim`` is 16 rather than attention's 32 so that the widths of the search spaces (32-128) get 2-8 heads:
    with a single head GPSA has one positional offset, the query's own patch, and little of a convolution left.
    """
    if head_dim < 1:
        raise UserError(f"gpsa: head_dim must be >= 1, got {head_dim}")
    heads = default_num_heads(dim, head_dim) if num_heads is None else num_heads
    return GPSAMixer(dim, num_heads=heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                     locality_strength=locality_strength, use_local_init=use_local_init,
                     grid_size=None if resolution is None else tuple(resolution))

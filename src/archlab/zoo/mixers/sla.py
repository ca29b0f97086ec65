"""SLAB's simplified linear attention (SLA) as a token mixer, and the SLAB transformer block.

Paper: Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear Attention and Progressive
Re-parameterized Batch Normalization", ICML 2024. Names follow xinghaochen/SLAB
``classification/models/slab_swin.py`` / ``slab_deit.py`` (``SimplifiedLinearAttention`` with ``qkv``,
``attn_drop``, ``proj``, ``proj_drop``, ``dwc``, ``positional_encoding``; ``Block`` with ``norm1``, ``attn``,
``norm2``, ``mlp`` (``fc1``, ``act``, ``fc2``)), so SLAB checkpoints load unchanged.

Per head, with ReLU feature maps::

    Q = ReLU(x W_q),  K = ReLU(x W_k + P),  V = x W_v
    O = Q (K^T V) / (Q . sum_j K_j + 1e-6) + DWConv5x5(V)

``P`` is a learned positional encoding of one vector per token (so the mixer is built for one resolution), and
the 5x5 depthwise conv over V, whose weights are shared by all heads as in the reference, restores the local
detail that the low-rank linear attention map loses. Both products associate: ``Q (K^T V)`` costs
``O(N d^2)`` and ``(Q K^T) V`` costs ``O(N^2 d)``; as in the reference the cheaper is chosen (``order="auto"``)
and the attention is computed in fp32 even under autocast, since the normaliser is a long sum.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.heads import default_num_heads
from archlab.zoo.layers.prepbn import LinearNorm, RepBN, fold_repbn_into_linear, prepbn

__all__ = ["SLABBlock", "SLAMixer", "SimplifiedLinearAttention", "create_sla"]

ORDERS = ("auto", "linear", "quadratic")


class SimplifiedLinearAttention(nn.Module):
    """SLA over ``(B, N, C)`` tokens of an ``H x W`` grid in row-major order (``N = H * W``).

    Args:
        dim: channels C.
        resolution: the token grid ``(H, W)``; sizes ``P`` and the depthwise conv's map.
        num_heads: heads; must divide ``dim``.
        qkv_bias: bias of the ``qkv`` Linear (the reference's Swin/DeiT models use True).
        kernel_size: of the depthwise conv over V (5 in the reference).
        order: ``"linear"`` for ``Q (K^T V)``, ``"quadratic"`` for ``(Q K^T) V``, ``"auto"`` for the cheaper.
    """

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, kernel_size: int = 5, order: str = "auto") -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise UserError(f"sla: dim {dim} is not divisible by num_heads {num_heads}")
        if len(resolution) != 2 or min(resolution) < 1:
            raise UserError(f"sla: resolution must be (H, W) of positive sizes, got {resolution}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise UserError(f"sla: kernel_size must be a positive odd integer, got {kernel_size}")
        if order not in ORDERS:
            raise UserError(f"sla: order must be one of {', '.join(ORDERS)}, got {order!r}")
        self.dim, self.num_heads, self.order = dim, num_heads, order
        self.resolution = (int(resolution[0]), int(resolution[1]))
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        # Kept for checkpoint compatibility: the reference defines it but never applies it (no attention map).
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size=kernel_size, groups=head_dim, padding=kernel_size // 2)
        # Zeros, as in the reference: at init K = ReLU(x W_k), and position is learned only as far as it helps.
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.resolution[0] * self.resolution[1], dim))

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, order: str | None = None) -> torch.Tensor:
        """``Q K^T V / (Q . sum K + 1e-6)`` for ``(B*heads, N, d)`` non-negative q, k, in fp32."""
        order = order or self.order
        if order not in ORDERS:
            raise UserError(f"sla: order must be one of {', '.join(ORDERS)}, got {order!r}")
        n_q, n_k, c, d = q.shape[-2], k.shape[-2], k.shape[-1], v.shape[-1]
        if order == "auto":
            # The reference's cost rule: N^2 (c + d) multiply-adds for (QK^T)V against c d 2N for Q(K^TV).
            order = "linear" if n_q * n_k * (c + d) > c * d * (n_q + n_k) else "quadratic"
        with torch.autocast(device_type=q.device.type, enabled=False):
            q, k, v = q.float(), k.float(), v.float()
            z = 1.0 / (q @ k.sum(dim=1, keepdim=True).transpose(1, 2) + 1e-6)  # (B*h, N, 1)
            if order == "linear":
                out = q @ (k.transpose(1, 2) @ v)
            else:
                out = (q @ k.transpose(1, 2)) @ v
            return out * z

    def forward(self, x: torch.Tensor, order: str | None = None) -> torch.Tensor:
        height, width = self.resolution
        if x.dim() != 3 or x.shape[1] != height * width or x.shape[2] != self.dim:
            raise UserError(f"sla: expected input (B, {height * width}, {self.dim}) for a {height}x{width} grid, "
                            f"got {tuple(x.shape)}")
        batch, length, channels = x.shape
        heads, head_dim = self.num_heads, channels // self.num_heads
        q, k, v = self.qkv(x).reshape(batch, length, 3, channels).unbind(2)
        q = torch.relu(q)
        k = torch.relu(k + self.positional_encoding)

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, N, h*d) -> (B*h, N, d), the reference's "(b h) n c"
            return t.reshape(batch, length, heads, head_dim).transpose(1, 2).reshape(batch * heads, length, head_dim)

        q, k, v = split(q), split(k), split(v)
        out = self.attention(q, k, v, order).to(v.dtype)
        local = self.dwc(v.transpose(1, 2).reshape(batch * heads, head_dim, height, width))
        out = out + local.flatten(2).transpose(1, 2)
        out = out.reshape(batch, heads, length, head_dim).transpose(1, 2).reshape(batch, length, channels)
        return self.proj_drop(self.proj(out))


class SLAMixer(SimplifiedLinearAttention):
    """SLA on a ``(B, C, H, W)`` map (the zoo's image layout); same parameters as the sequence form."""

    def forward(self, x: torch.Tensor, order: str | None = None) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.dim, *self.resolution):
            raise UserError(f"sla: expected input (B, {self.dim}, {self.resolution[0]}, {self.resolution[1]}), "
                            f"got {tuple(x.shape)}")
        batch, channels, height, width = x.shape
        out = super().forward(x.flatten(2).transpose(1, 2), order)
        return out.transpose(1, 2).reshape(batch, channels, height, width)


@register_mixer("sla", layout="image",
                paper="SLAB: Efficient Transformers with Simplified Linear Attention and Progressive "
                      "Re-parameterized Batch Normalization (Guo et al., ICML 2024)")
def create_sla(dim: int, *, resolution: tuple[int, int] | None = None, head_dim: int = 32,
               num_heads: int | None = None, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
               kernel_size: int = 5, order: str = "auto") -> SLAMixer:
    """SLA mixer for a ``resolution = (H, W)`` map (required: P has one vector per token).

    ``num_heads`` defaults to ``dim // head_dim`` (32, as in SLAB-Swin), reduced to a divisor of ``dim``.
    """
    if resolution is None:
        raise UserError("sla: needs resolution=(H, W), the token grid its positional encoding is sized for")
    if head_dim < 1:
        raise UserError(f"sla: head_dim must be >= 1, got {head_dim}")
    heads = default_num_heads(dim, head_dim) if num_heads is None else num_heads
    return SLAMixer(dim, tuple(resolution), heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                    kernel_size=kernel_size, order=order)


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` on ``(B, N, C)`` tokens (the reference's ``Mlp``, with Linears)."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SLABBlock(nn.Module):
    """A SLAB transformer block on ``(B, N, C)``: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    ``norm`` is ``"prepbn"`` (SLAB: :func:`archlab.zoo.layers.prepbn.prepbn` with ``step`` iterations),
    ``"repbn"`` or ``"layernorm"``; ``attn`` is ``"sla"`` or ``"softmax"`` (the zoo's multi-head attention, for
    comparison). :meth:`reparameterize` folds the eval-mode RepBNs into ``attn.qkv`` and ``mlp.fc1``.
    """

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, mlp_ratio: float = 4.0,
                 norm: str = "prepbn", attn: str = "sla", step: int = 60000, qkv_bias: bool = True) -> None:
        super().__init__()
        norms = {"prepbn": lambda d: prepbn(d, step=step), "repbn": RepBN,
                 "layernorm": lambda d: nn.LayerNorm(d, eps=1e-6)}
        if norm not in norms:
            raise UserError(f"slab block: norm must be one of {', '.join(norms)}, got {norm!r}")
        if attn not in ("sla", "softmax"):
            raise UserError(f"slab block: attn must be 'sla' or 'softmax', got {attn!r}")
        self.norm1 = norms[norm](dim)
        if attn == "sla":
            self.attn: nn.Module = SimplifiedLinearAttention(dim, resolution, num_heads, qkv_bias=qkv_bias)
        else:
            from archlab.zoo.mixers.attention import Attention

            self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norms[norm](dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    @torch.no_grad()
    def reparameterize(self) -> None:
        """For inference: fold each (P)RepBN into the Linear after it and drop the norm (in place)."""
        for norm_name, parent, linear_name in (("norm1", self.attn, "qkv"), ("norm2", self.mlp, "fc1")):
            norm = getattr(self, norm_name)
            if isinstance(norm, RepBN | LinearNorm):
                setattr(parent, linear_name, fold_repbn_into_linear(norm, getattr(parent, linear_name)))
                setattr(self, norm_name, nn.Identity())

"""FIT (Far-reaching Interleaved Transformers) as an image token mixer.

Paper: Chen and Li, "FIT: Far-reaching Interleaved Transformers", arXiv 2023. The mechanism follows
google-research/pix2seq ``architectures/transformers.py`` class ``FIT`` (TF/Keras), and so do the names:
``x_pos_emb``, ``latent_pos_emb``, ``x_network``, ``l2x_cross_attn``, ``l_network``, ``x2l_cross_attn``,
``x_output_ln``; transformer layers hold ``mha_ln``/``mha``/``ffn_ln``/``ffn`` and cross-attention layers
``cross_ln``/``enc_ln``/``cross_mha`` (pre-LayerNorm on queries and on the attended sequence, residual, no MLP,
as the reference's ``TransformerDecoderLayer(self_attention=False, use_mlp=False, use_enc_ln=True)``).

Tokens are split into ``t`` groups of ``n`` tokens, each group with ``m`` learned latents. A layer string such
as ``"(2)4(2)"`` lists blocks ``(L)G``: per block, ``L`` local transformer layers act on each group's tokens
separately; if ``G > 0``, each group's latents read their own group's tokens by cross-attention, ``G`` global
transformer layers run over all ``t * m`` latents, and (except in the last block) each group's tokens read
their own group's latents. A trailing ``(L)`` is ``(L)0``; only the last block may have ``G = 0``. Attention
costs ``t n^2`` (local) plus ``(t m)^2`` (global) per channel, instead of ``(t n)^2``.

As a token mixer on a ``(B, C, H, W)`` map, a group is a ``window_size x window_size`` window (row-major
windows, row-major tokens inside). Rule for the window: by default ``window_size = round((H W) ** (1/6))``
(at least 1), i.e. ``n ~ L^(1/3)`` tokens per group for ``L = H W`` tokens, the choice for which the cost
``L n + (L m / n)^2`` grows as ``L^(4/3)``. A map whose sides do not divide evenly is zero-padded at the
bottom and right to whole windows (Swin's rule: padded tokens take part in attention unmasked) and the
output is cropped back. ``m = latents_per_group`` defaults to 1 and latents have the map's width ``dim``.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.heads import default_num_heads, dividing_heads
from archlab.zoo.mixers.attention import Attention

__all__ = ["FIT", "create_fit", "fit_cost", "parse_layers"]

_LAYERS_RE = re.compile(r"^(\(\d+\)\d+)+$")


def parse_layers(layers: str) -> list[tuple[int, int]]:
    """``"(2)4(2)"`` -> ``[(2, 4), (2, 0)]``: (local layers, global layers) per block, as the reference."""
    spec = (layers + "0" if layers.endswith(")") else layers) if isinstance(layers, str) else ""
    if not _LAYERS_RE.match(spec):
        raise UserError(f"fit: layers must look like '(L)G(L)G...', e.g. '(1)1(0)'; got {layers!r}")
    blocks = [tuple(int(v) for v in re.findall(r"\d+", b)) for b in re.findall(r"\(\d+\)\d+", spec)]
    if any(g == 0 for _, g in blocks[:-1]):
        raise UserError(f"fit: only the last block of {layers!r} may have 0 global layers")
    return blocks  # type: ignore[return-value]


def fit_cost(length: int, group_size: int, latents_per_group: int = 1) -> float:
    """The attention cost ``t n^2 + (t m)^2`` of one local and one global layer, ``t = L / n`` groups."""
    groups = length / group_size
    return groups * group_size ** 2 + (groups * latents_per_group) ** 2


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dense2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.act(self.dense1(x)))


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention + MLP over ``(B, L, C)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, fused: bool) -> None:
        super().__init__()
        self.mha_ln = nn.LayerNorm(dim, eps=1e-6)
        self.mha = Attention(dim, num_heads=num_heads, qkv_bias=True, fused=fused)
        self.ffn_ln = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = _FeedForward(dim, max(1, int(dim * mlp_ratio)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mha(self.mha_ln(x))
        return x + self.ffn(self.ffn_ln(x))


class _CrossMHA(nn.Module):
    def __init__(self, dim_q: int, dim_kv: int, width: int, num_heads: int, fused: bool) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.fused = num_heads, width // num_heads, fused
        self.q = nn.Linear(dim_q, width)
        self.k = nn.Linear(dim_kv, width)
        self.v = nn.Linear(dim_kv, width)
        self.proj = nn.Linear(width, dim_q)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q(x)), self._heads(self.k(enc)), self._heads(self.v(enc))
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:  # written out, so that FLOP counters see the two products
            out = ((q * self.head_dim ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class _CrossAttentionLayer(nn.Module):
    """``x + attn(LN(x), LN(enc))``: queries from ``x`` read ``enc``."""

    def __init__(self, dim_q: int, dim_kv: int, width: int, num_heads: int, fused: bool) -> None:
        super().__init__()
        self.cross_ln = nn.LayerNorm(dim_q, eps=1e-6)
        self.enc_ln = nn.LayerNorm(dim_kv, eps=1e-6)
        self.cross_mha = _CrossMHA(dim_q, dim_kv, width, num_heads, fused)

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        return x + self.cross_mha(self.cross_ln(x), self.enc_ln(enc))


class FIT(nn.Module):
    """FIT over a ``(B, dim, H, W)`` map of a fixed ``resolution``; see the module docstring."""

    def __init__(self, dim: int, resolution: tuple[int, int], *, layers: str = "(1)1(0)",
                 window_size: int | None = None, latents_per_group: int = 1, latent_dim: int | None = None,
                 head_dim: int = 32, mlp_ratio: float = 4.0, fused: bool = True) -> None:
        super().__init__()
        height, width = resolution
        latent_dim = dim if latent_dim is None else latent_dim
        if min(dim, height, width, latent_dim, head_dim, latents_per_group) < 1 or mlp_ratio <= 0:
            raise UserError(f"fit: dim, resolution, latent_dim, head_dim, latents_per_group must be >= 1 and "
                            f"mlp_ratio > 0; got dim={dim}, resolution={resolution}, latent_dim={latent_dim}, "
                            f"head_dim={head_dim}, latents_per_group={latents_per_group}, mlp_ratio={mlp_ratio}")
        if window_size is None:
            window_size = max(1, round((height * width) ** (1 / 6)))
        if window_size < 1:
            raise UserError(f"fit: window_size must be >= 1, got {window_size}")
        self.layer_configs = parse_layers(layers)
        self.dim, self.latent_dim, self.resolution = dim, latent_dim, (height, width)
        self.window_size = window_size
        self.grid = (math.ceil(height / window_size), math.ceil(width / window_size))
        self.num_groups = self.grid[0] * self.grid[1]
        self.group_size = window_size * window_size
        self.latents_per_group = latents_per_group
        x_heads = default_num_heads(dim, head_dim)
        l_heads = default_num_heads(latent_dim, head_dim)
        # As the reference: cross-attention uses the smaller head count and width of the two sides.
        self.cross_width = min(dim, latent_dim)
        cross_heads = dividing_heads(min(x_heads, l_heads), self.cross_width)
        self.x_heads, self.l_heads, self.cross_heads = x_heads, l_heads, cross_heads

        self.x_pos_emb = nn.Parameter(torch.zeros(self.group_size, dim))
        nn.init.trunc_normal_(self.x_pos_emb, std=0.02)
        uses_latents = any(g > 0 for _, g in self.layer_configs)
        if uses_latents:
            self.latent_pos_emb = nn.Parameter(torch.zeros(self.num_groups * latents_per_group, latent_dim))
            nn.init.trunc_normal_(self.latent_pos_emb, std=0.02)
        else:  # a purely local FIT has no latents (the reference builds them but never reads them)
            self.register_parameter("latent_pos_emb", None)
        self.x_network = nn.ModuleDict()
        self.l2x_cross_attn = nn.ModuleDict()
        self.l_network = nn.ModuleDict()
        self.x2l_cross_attn = nn.ModuleDict()
        last = len(self.layer_configs) - 1
        for i, (n_local, n_global) in enumerate(self.layer_configs):
            key = str(i)
            self.x_network[key] = nn.ModuleList(
                _EncoderLayer(dim, x_heads, mlp_ratio, fused) for _ in range(n_local))
            if n_global > 0:
                self.l2x_cross_attn[key] = _CrossAttentionLayer(latent_dim, dim, self.cross_width, cross_heads,
                                                                fused)
                self.l_network[key] = nn.ModuleList(
                    _EncoderLayer(latent_dim, l_heads, mlp_ratio, fused) for _ in range(n_global))
                if i < last:
                    self.x2l_cross_attn[key] = _CrossAttentionLayer(dim, latent_dim, self.cross_width,
                                                                    cross_heads, fused)
        self.x_output_ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.dim, *self.resolution):
            raise UserError(f"fit: expected input (B, {self.dim}, {self.resolution[0]}, {self.resolution[1]}), "
                            f"got {tuple(x.shape)}")
        batch, dim, height, width = x.shape
        ws, (gh, gw) = self.window_size, self.grid
        t, n, m = self.num_groups, self.group_size, self.latents_per_group
        x = F.pad(x, (0, gw * ws - width, 0, gh * ws - height))
        # (B, C, gh, ws, gw, ws) -> (B * t, n, C): one row per window, its tokens in row-major order
        x = x.reshape(batch, dim, gh, ws, gw, ws).permute(0, 2, 4, 3, 5, 1).reshape(batch * t, n, dim)
        x = x + self.x_pos_emb
        latents = None
        if self.latent_pos_emb is not None:
            latents = self.latent_pos_emb.expand(batch, -1, -1).reshape(batch * t, m, self.latent_dim)
        last = len(self.layer_configs) - 1
        for i, (_, n_global) in enumerate(self.layer_configs):
            key = str(i)
            for layer in self.x_network[key]:
                x = layer(x)
            if n_global > 0:
                latents = self.l2x_cross_attn[key](latents, x)
                latents = latents.reshape(batch, t * m, self.latent_dim)
                for layer in self.l_network[key]:
                    latents = layer(latents)
                latents = latents.reshape(batch * t, m, self.latent_dim)
                if i < last:
                    x = self.x2l_cross_attn[key](x, latents)
        x = self.x_output_ln(x)
        x = x.reshape(batch, gh, gw, ws, ws, dim).permute(0, 5, 1, 3, 2, 4).reshape(batch, dim, gh * ws, gw * ws)
        return x[:, :, :height, :width]

    def attention_flops(self, batch: int = 1) -> int:
        """FLOPs of the attention products ``Q K^T`` and ``A V`` (2 per multiply-add) for one forward pass.

        Local layers: ``4 B t n^2 C``; global layers: ``4 B (t m)^2 d``; each cross-attention between a group's
        ``n`` tokens and ``m`` latents: ``4 B t n m w`` with ``w`` the cross-attention width.
        """
        t, n, m = self.num_groups, self.group_size, self.latents_per_group
        last = len(self.layer_configs) - 1
        total = 0
        for i, (n_local, n_global) in enumerate(self.layer_configs):
            total += n_local * 4 * batch * t * n * n * self.dim
            if n_global > 0:
                crosses = 2 if i < last else 1
                total += crosses * 4 * batch * t * m * n * self.cross_width
                total += n_global * 4 * batch * (t * m) ** 2 * self.latent_dim
        return total

    def extra_repr(self) -> str:
        return (f"layers={self.layer_configs}, window_size={self.window_size}, groups={self.num_groups}, "
                f"latents_per_group={self.latents_per_group}")


@register_mixer("fit", layout="image", paper="FIT: Far-reaching Interleaved Transformers (Chen, Li, arXiv 2023)")
def create_fit(dim: int, *, resolution: tuple[int, int] | None = None, layers: str = "(1)1(0)",
               window_size: int | None = None, latents_per_group: int = 1, latent_dim: int | None = None,
               head_dim: int = 32, mlp_ratio: float = 4.0, fused: bool = True) -> FIT:
    """FIT mixer for a ``resolution = (H, W)`` map (required: the latents are one set per window)."""
    if resolution is None:
        raise UserError("fit: needs resolution=(H, W), the map size it will see")
    return FIT(dim, tuple(resolution), layers=layers, window_size=window_size,  # type: ignore[arg-type]
               latents_per_group=latents_per_group, latent_dim=latent_dim, head_dim=head_dim,
               mlp_ratio=mlp_ratio, fused=fused)

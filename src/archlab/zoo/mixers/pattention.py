"""TokenFormer's Pattention (token-parameter attention) and the attention block built from it.

Paper: Wang, Fan, Naeem, Xian, Lenssen, Wang, Tombari, Schiele, "TokenFormer: Rethinking Transformer Scaling with
Tokenized Model Parameters", ICLR 2025. Names and defaults follow Haiyang-W/TokenFormer
``megatron/model/tokenformer.py``: ``Pattention`` (``key_param_tokens`` ``(n, d_in)``,
``value_param_tokens`` ``(n, d_out)``, ``norm_activation_type``) and ``ParallelSelfAttention`` (``query``,
``key``, ``value``, ``proj`` are Pattention layers; ``qkv_slot_num`` / ``proj_slot_num`` parameter tokens).

``Pattention(X) = Theta(X K_P^T) V_P``, with ``Theta`` one of the reference's three normalisations, applied
along the parameter-token axis (``n`` entries per input token):

- ``"l2_norm_gelu"`` (the reference's default): ``GELU(s / ||s||_2 * tau)``;
- ``"gelu_l2_norm"``: ``GELU(s) / ||GELU(s)||_2 * tau``;
- ``"softmax"``: ``exp(s) / ||exp(s)||_1 * n`` = ``n * softmax(s)`` (computed stably as the latter).

``tau = sqrt(n)`` in the reference. Incremental scaling (:meth:`Pattention.grow`) appends parameter tokens with
zero keys: a zero key gives score 0, which the GELU normalisations map to exactly 0 and which leaves ``||s||_2``
unchanged, so the new value tokens cannot change the output -- but ``tau = sqrt(n)`` would grow with ``n`` and
rescale every old score by ``sqrt(n_new / n_old)``. ``grow(keep_scale=True)`` (the default) therefore freezes
``tau`` at the old ``sqrt(n)``, which preserves the function exactly; ``keep_scale=False`` follows the
reference's formula (the function changes by that rescaling). With ``"softmax"`` a zero key contributes
``exp(0) = 1`` and growth cannot preserve the function, so it is refused. (The reference's checkpoint loader,
``megatron/checkpointing.py``, is reported to copy old tokens into the prefix and leave new ones at the new
model's init -- not checked here; the paper's text zero-initialises new keys, which is what this module does.)

The ``"pattention"`` image mixer is the TokenFormer attention block without causal masking or rotary
embeddings (images here carry no positions in the mixer, as for ``attention``); heads from ``dim`` as for
``attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.heads import default_num_heads

__all__ = ["NORM_ACTIVATIONS", "Pattention", "TokenFormerAttention", "create_pattention"]

_PAPER = "TokenFormer: Rethinking Transformer Scaling with Tokenized Model Parameters (Wang et al., ICLR 2025)"
NORM_ACTIVATIONS = ("l2_norm_gelu", "gelu_l2_norm", "softmax")


def nonlinear_norm_func(scores: torch.Tensor, normalize_type: str, scale: float | None = None) -> torch.Tensor:
    """``Theta`` over the last axis; ``scale`` is ``tau`` (``sqrt(n)`` when ``None``; unused by softmax)."""
    n = scores.shape[-1]
    tau = math.sqrt(n) if scale is None else scale
    if normalize_type == "softmax":
        return torch.softmax(scores, dim=-1) * n
    if normalize_type == "gelu_l2_norm":
        act = F.gelu(scores)
        return act / torch.linalg.vector_norm(act, dim=-1, keepdim=True) * tau
    if normalize_type == "l2_norm_gelu":
        return F.gelu(scores / torch.linalg.vector_norm(scores, dim=-1, keepdim=True) * tau)
    raise UserError(f"pattention: unknown norm_activation_type {normalize_type!r}; "
                    f"known: {', '.join(NORM_ACTIVATIONS)}")


class Pattention(nn.Module):
    """Attention of input tokens ``(..., d_in)`` to ``param_token_num`` learnable key/value parameter tokens."""

    def __init__(self, input_channels: int, output_channels: int, param_token_num: int,
                 norm_activation_type: str = "l2_norm_gelu", key_init_std: float = 0.02,
                 value_init_std: float = 0.02) -> None:
        super().__init__()
        if min(input_channels, output_channels, param_token_num) < 1:
            raise UserError(f"pattention: channels and param_token_num must be >= 1, got {input_channels}, "
                            f"{output_channels}, {param_token_num}")
        if norm_activation_type not in NORM_ACTIVATIONS:
            raise UserError(f"pattention: unknown norm_activation_type {norm_activation_type!r}; "
                            f"known: {', '.join(NORM_ACTIVATIONS)}")
        self.param_token_num = param_token_num
        self.param_key_dim = input_channels
        self.param_value_dim = output_channels
        self.norm_activation_type = norm_activation_type
        # tau of Theta; None = sqrt(current n), as in the reference. grow(keep_scale=True) pins it.
        self.token_scale: float | None = None
        # The reference's 150M config initialises keys with "normal" (std 0.02); values use GPT-NeoX's
        # wang_init, which depends on the depth of the whole network -- a mixer does not know it, so std 0.02.
        self.key_param_tokens = nn.Parameter(torch.randn(param_token_num, input_channels) * key_init_std)
        self.value_param_tokens = nn.Parameter(torch.randn(param_token_num, output_channels) * value_init_std)

    def extra_repr(self) -> str:
        return (f"{self.param_key_dim} -> {self.param_value_dim}, tokens={self.param_token_num}, "
                f"{self.norm_activation_type}, tau={self.token_scale or 'sqrt(n)'}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = x @ self.key_param_tokens.t()
        weights = nonlinear_norm_func(scores, self.norm_activation_type, self.token_scale)
        return weights @ self.value_param_tokens

    @torch.no_grad()
    def grow(self, new_token_num: int, keep_scale: bool = True, value_init_std: float = 0.02) -> None:
        """Append parameter tokens up to ``new_token_num``: zero keys, small random values (see module doc)."""
        old = self.param_token_num
        if new_token_num < old:
            raise UserError(f"pattention: cannot grow from {old} to fewer ({new_token_num}) parameter tokens")
        if self.norm_activation_type == "softmax":
            raise UserError("pattention: growth preserves the function only for the GELU normalisations, "
                            "not 'softmax' (a zero key still gets weight exp(0))")
        keys, values = self.key_param_tokens, self.value_param_tokens
        extra = new_token_num - old
        self.key_param_tokens = nn.Parameter(torch.cat([keys, keys.new_zeros(extra, keys.shape[1])]))
        self.value_param_tokens = nn.Parameter(torch.cat(
            [values, torch.randn(extra, values.shape[1], dtype=values.dtype, device=values.device)
             * value_init_std]))
        if keep_scale and self.token_scale is None:
            self.token_scale = math.sqrt(old)
        elif not keep_scale:
            self.token_scale = None
        self.param_token_num = new_token_num


class TokenFormerAttention(nn.Module):
    """Multi-head self-attention whose query/key/value/output projections are Pattention layers.

    Takes ``(B, L, dim)`` tokens or a ``(B, dim, H, W)`` map (its pixels as tokens); no masking.
    """

    def __init__(self, dim: int, num_heads: int, qkv_slot_num: int, proj_slot_num: int,
                 norm_activation_type: str = "l2_norm_gelu", attention_dropout: float = 0.0) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise UserError(f"pattention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout_p = attention_dropout
        self.query = Pattention(dim, dim, qkv_slot_num, norm_activation_type)
        self.key = Pattention(dim, dim, qkv_slot_num, norm_activation_type)
        self.value = Pattention(dim, dim, qkv_slot_num, norm_activation_type)
        self.proj = Pattention(dim, dim, proj_slot_num, norm_activation_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            batch, channels, height, width = x.shape
            out = self._tokens(x.flatten(2).transpose(1, 2))
            return out.transpose(1, 2).reshape(batch, channels, height, width)
        return self._tokens(x)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))

    def grow(self, qkv_slot_num: int, proj_slot_num: int, keep_scale: bool = True) -> None:
        """Incremental scaling of all four Pattention layers (see :meth:`Pattention.grow`)."""
        for layer in (self.query, self.key, self.value):
            layer.grow(qkv_slot_num, keep_scale=keep_scale)
        self.proj.grow(proj_slot_num, keep_scale=keep_scale)


@register_mixer("pattention", layout="image", paper=_PAPER)
def create_pattention(dim: int, *, resolution: tuple[int, int] | None = None, head_dim: int = 32,
                      num_heads: int | None = None, qkv_slot_num: int | None = None,
                      proj_slot_num: int | None = None, norm_activation_type: str = "l2_norm_gelu",
                      attention_dropout: float = 0.0) -> TokenFormerAttention:
    """TokenFormer attention for ``dim`` channels; slot numbers default to ``dim`` (the reference's 150M
    configuration, ``configs/tokenformer/150M_train_pile.yml``, uses ``qkv_slot_num = proj_slot_num = hidden_size``)."""
    if head_dim < 1:
        raise UserError(f"pattention: head_dim must be >= 1, got {head_dim}")
    heads = default_num_heads(dim, head_dim) if num_heads is None else num_heads
    return TokenFormerAttention(dim, heads, qkv_slot_num or dim, proj_slot_num or dim, norm_activation_type,
                                attention_dropout)

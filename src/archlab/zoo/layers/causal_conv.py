"""Causal depthwise convolutions that continue across calls: the short convolution in front of a recurrent mixer.

Used by Mamba (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", COLM 2024), Mamba-2's
SSD (Dao & Gu, "Transformers are SSMs", ICML 2024), gated linear attention's short convolution and the streaming
Conformer's convolution module. The reference (state-spaces/mamba, ``causal_conv1d``) pads ``K - 1`` zeros on the
left; here the previous call's last inputs stand in their place, so a sequence may be fed in pieces.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["causal_conv_with_history", "causal_depthwise_conv"]


def causal_depthwise_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` (depthwise, kernel K) on ``x`` ``(B, C, K - 1 + L)`` whose first ``K - 1`` steps are history:
    ``(B, C, L)``, equal to ``conv(x_new)[..., :L]`` when the history is zero.

    Written as K shifted products: the same arithmetic as ``F.conv1d(groups=C)``, whose float64 CPU path loops
    over the C groups one by one (tens of times slower).
    """
    kernel = conv.weight.shape[-1]
    length = x.shape[-1] - kernel + 1
    out = sum(conv.weight[:, 0, k, None] * x[..., k:k + length] for k in range(kernel))
    return out if conv.bias is None else out + conv.bias[:, None]


def causal_conv_with_history(x: torch.Tensor, history: torch.Tensor | None, conv: nn.Conv1d
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv`` (depthwise, kernel K) on ``x`` ``(B, C, L)`` continuing after ``history`` ``(B, C, K)``, the
    previous call's last K inputs (newest last; ``None``: zeros, a fresh sequence). Returns the output
    ``(B, C, L)`` and the next call's history, the last K inputs, reaching back into ``history`` if ``L < K``.
    The caller checks the history's shape."""
    kernel = conv.weight.shape[-1]
    if history is None:
        history = torch.zeros_like(x[..., :1]).expand(-1, -1, kernel)
    # The last K - 1 inputs of the previous call stand where conv1d's zero padding would be.
    out = causal_depthwise_conv(torch.cat([history[..., 1:], x], dim=-1), conv)
    return out, torch.cat([history, x[..., -kernel:]], dim=-1)[..., -kernel:]

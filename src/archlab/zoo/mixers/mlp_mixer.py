"""MLP-Mixer's token-mixing MLP as a token mixer.

Paper: Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", 2021. Names follow timm's
``MixerBlock.mlp_tokens`` (an ``Mlp`` with ``fc1``, ``act``, ``fc2``): the same MLP is applied to every
channel, along the token axis, so each output token is a learned function of all ``H * W`` input tokens.
Because its weights are indexed by token position, it is built for one resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer

__all__ = ["TokenMixingMlp", "create_token_mixing_mlp"]


class TokenMixingMlp(nn.Module):
    """``fc2(act(fc1(.)))`` across the ``L`` tokens of a ``(B, L, C)`` sequence, shared over channels."""

    def __init__(self, num_tokens: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.fc1 = nn.Linear(num_tokens, hidden_features)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, num_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.num_tokens:
            raise UserError(f"mlp mixer: built for {self.num_tokens} tokens, got an input of {x.shape[1]}")
        x = x.transpose(1, 2)  # the Linears act on the last axis, which must be the token axis
        x = self.fc2(self.drop(self.act(self.fc1(x))))
        return self.drop(x).transpose(1, 2)


@register_mixer("mlp", layout="sequence",
                paper="MLP-Mixer: An all-MLP Architecture for Vision (Tolstikhin et al., 2021)")
def create_token_mixing_mlp(dim: int, *, resolution: tuple[int, int] | None = None, expansion: float = 2.0,
                            drop: float = 0.0) -> TokenMixingMlp:
    """Token-mixing MLP for ``resolution = (H, W)`` (required) over ``H * W`` tokens.

    The hidden width is ``max(1, int(H * W * expansion))``. ``dim`` is unused: the MLP is shared by all
    channels.
    """
    if resolution is None:
        raise UserError("mlp mixer: needs resolution=(H, W), the token grid it mixes over")
    height, width = resolution
    if height < 1 or width < 1:
        raise UserError(f"mlp mixer: resolution must be positive, got {resolution}")
    num_tokens = height * width
    return TokenMixingMlp(num_tokens, max(1, int(num_tokens * expansion)), drop=drop)

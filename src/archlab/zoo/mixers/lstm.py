"""An LSTM as a causal sequence token mixer: the recurrent baseline the selective SSMs are measured against.

Paper: Hochreiter and Schmidhuber, "Long Short-Term Memory", Neural Computation 1997. The module is
``torch.nn.LSTM`` (one layer, hidden size = the model width, names ``weight_ih_l0`` ... as PyTorch's), so a
sequence model built from it is the "same-size LSTM" of the Mamba paper's synthetic-task comparisons.

``forward(x, state=None, return_state=False)`` and ``step(x_t, state)`` follow the other sequence mixers: the
state is the ``(h, c)`` pair, each ``(1, B, dim)``, so a sequence fed in pieces equals one long call.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer

__all__ = ["LSTMMixer", "create_lstm"]


class LSTMMixer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.lstm = nn.LSTM(dim, dim, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                return_state: bool = False):
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise UserError(f"lstm: expected input (B, L, {self.dim}), got {tuple(x.shape)}")
        out, new_state = self.lstm(x, state)
        return (out, new_state) if return_state else out

    def step(self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Decode one token ``x_t`` of shape ``(B, dim)``; returns ``(y_t, (h, c))``."""
        if x_t.dim() != 2 or x_t.shape[-1] != self.dim:
            raise UserError(f"lstm: step expects (B, {self.dim}), got {tuple(x_t.shape)}")
        out, state = self.forward(x_t[:, None], state, return_state=True)
        return out[:, 0], state


@register_mixer("lstm", layout="sequence", causal=True, paper="Long Short-Term Memory (Hochreiter & Schmidhuber, "
                "Neural Computation 1997)")
def create_lstm(dim: int, *, resolution: tuple[int, int] | None = None) -> LSTMMixer:
    """A one-layer LSTM of width ``dim`` (``resolution`` is not needed: the recurrence takes any length)."""
    return LSTMMixer(dim)

"""Leaky integrate-and-fire (LIF) spiking neurons over a time axis, trained with a surrogate gradient.

Paper: Fang, Yu, Chen, Masquelier, Huang and Tian, "Incorporating Learnable Membrane Time Constant to Enhance
Learning of Spiking Neural Networks", ICCV 2021, and the SpikingJelly framework (Fang et al., Science Advances 2023)
whose ``clock_driven.neuron.MultiStepLIFNode`` the spiking LMUFormer uses (zeyuliu1037/LMUFormer
``src/utilities/util.py``: ``get_act('spike', tau=2.0, detach_reset=True)``). Defaults are SpikingJelly's:
``v_threshold = 1``, hard reset to ``v_reset = 0``, ``decay_input=True``, and the sigmoid surrogate with
``alpha = 4``.

Per channel, at every step ``t`` of the time axis (for LMUFormer, the frames of the sequence)::

    h_t = v_{t-1} + (x_t - (v_{t-1} - v_reset)) / tau      charge (leak towards v_reset, decayed input)
    s_t = Heaviside(h_t - v_threshold)                     fire: 0 or 1
    v_t = h_t * (1 - s_t) + v_reset * s_t                  hard reset (s_t detached when detach_reset)

The forward pass emits exact 0/1 spikes; the backward pass replaces the Heaviside step's derivative with that of
``sigmoid(alpha * x)``, i.e. ``alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))``. The membrane ``v`` carries over
calls (``v0`` / ``return_state``), so a sequence fed in pieces gives the same spikes as in one call.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import UserError

__all__ = ["MultiStepLIF", "sigmoid_surrogate_spike"]


class _SigmoidSurrogateSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * sig * (1 - sig), None


def sigmoid_surrogate_spike(x: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """``Heaviside(x)`` (1 where ``x >= 0``, as SpikingJelly's ``heaviside``) with the gradient of
    ``sigmoid(alpha * x)``."""
    return _SigmoidSurrogateSpike.apply(x, alpha)


class MultiStepLIF(nn.Module):
    """LIF neurons over ``(B, C, T)`` (time last, the layout of LMUFormer's ``Conv1d`` features); returns spikes of
    the same shape, and with ``return_state`` the membrane ``(B, C)`` after the last step."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0, detach_reset: bool = True,
                 alpha: float = 4.0) -> None:
        super().__init__()
        if tau <= 1.0:
            raise UserError(f"lif: tau must be > 1 (the membrane keeps 1 - 1/tau of itself), got {tau}")
        if v_threshold <= v_reset:
            raise UserError(f"lif: v_threshold {v_threshold} must be above v_reset {v_reset}")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = float(v_reset)
        self.detach_reset = detach_reset
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor, v0: torch.Tensor | None = None, return_state: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3:
            raise UserError(f"lif: expected input (B, C, T), got {tuple(x.shape)}")
        v = x.new_full(x.shape[:2], self.v_reset) if v0 is None else v0
        if v.shape != x.shape[:2]:
            raise UserError(f"lif: membrane state {tuple(v.shape)} does not match input {tuple(x.shape)}")
        spikes = []
        for t in range(x.shape[-1]):
            h = v + (x[..., t] - (v - self.v_reset)) / self.tau
            s = sigmoid_surrogate_spike(h - self.v_threshold, self.alpha)
            r = s.detach() if self.detach_reset else s
            v = h * (1 - r) + self.v_reset * r
            spikes.append(s)
        out = torch.stack(spikes, dim=-1) if spikes else x.clone()
        return (out, v) if return_state else out

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"detach_reset={self.detach_reset}, alpha={self.alpha}")

"""RepBN and progressive re-parameterised BatchNorm (PRepBN) for token sequences.

Paper: Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear Attention and Progressive
Re-parameterized Batch Normalization", ICML 2024. Names follow xinghaochen/SLAB
``classification/models/prepbn.py`` (``RepBN`` with ``alpha``, ``bn``; ``LinearNorm`` with ``norm1``,
``norm2`` and the buffers ``warm``, ``iter``, ``total_step``), so SLAB checkpoints load unchanged.

- ``RepBN(x) = BN(x) + alpha * x`` over the channels of ``(B, N, C)`` tokens, ``alpha`` initialised to 1.
- ``LinearNorm`` blends two norms while training: ``lambda * norm1(x) + (1 - lambda) * norm2(x)``, with
  ``lambda = r0 * iter / total_step`` and ``iter`` counting down by one per training forward from
  ``total_step`` to 0 (so lambda goes 1 -> 0 linearly over ``step`` forwards, then stays 0), after ``warm``
  forwards of ``norm1`` alone. In eval it is ``norm2`` alone. PRepBN is ``LinearNorm(LN, RepBN)``
  (:func:`prepbn`); the reference's DeiT and Swin models use ``step=60000``.
- In eval RepBN is a per-channel affine map, which :func:`fold_repbn_into_linear` folds into the Linear that
  follows it, so inference pays nothing for the norm.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from archlab.errors import UserError

__all__ = ["LinearNorm", "RepBN", "fold_repbn_into_linear", "prepbn", "prepbn_lambda"]


class RepBN(nn.Module):
    """``BN(x) + alpha * x`` over the last (channel) axis of ``(B, N, C)`` tokens."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.size(-1) != self.bn.num_features:
            raise UserError(f"repbn: expected input (B, N, {self.bn.num_features}), got {tuple(x.shape)}")
        x = x.transpose(1, 2)
        return (self.bn(x) + self.alpha * x).transpose(1, 2)

    @torch.no_grad()
    def eval_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` per channel with ``RepBN(x) = x * scale + shift`` in eval mode."""
        bn_scale = self.bn.weight / (self.bn.running_var + self.bn.eps).sqrt()
        return bn_scale + self.alpha, self.bn.bias - self.bn.running_mean * bn_scale


def prepbn_lambda(iteration: int, total_steps: int, warm: int = 0, r0: float = 1.0) -> float:
    """lambda (weight of the LayerNorm) at training forward ``iteration`` (0-based) of :class:`LinearNorm`.

    1 during the ``warm`` first forwards (norm1 alone), then ``r0 * (total_steps - t) / total_steps`` at the
    t-th forward after warm-up, reaching 0 at ``t = total_steps`` and staying there.
    """
    if total_steps < 1 or warm < 0 or iteration < 0:
        raise UserError(f"prepbn: need total_steps >= 1, warm >= 0, iteration >= 0; got {total_steps}, {warm}, "
                        f"{iteration}")
    if iteration < warm:
        return 1.0
    return r0 * max(total_steps - (iteration - warm), 0) / total_steps


class LinearNorm(nn.Module):
    """Blend of two norms whose weight moves linearly from ``norm1`` to ``norm2`` over training."""

    def __init__(self, dim: int, norm1: Callable[[int], nn.Module], norm2: Callable[[int], nn.Module],
                 warm: int = 0, step: int = 300000, r0: float = 1.0) -> None:
        super().__init__()
        if step < 1 or warm < 0:
            raise UserError(f"prepbn: step must be >= 1 and warm >= 0, got step={step}, warm={warm}")
        # Buffers, so that a resumed run continues the schedule where it stopped.
        self.register_buffer("warm", torch.tensor(warm))
        self.register_buffer("iter", torch.tensor(step))
        self.register_buffer("total_step", torch.tensor(step))
        self.r0 = r0
        self.norm1 = norm1(dim)
        self.norm2 = norm2(dim)

    @property
    def lamda(self) -> float:
        """The weight of ``norm1`` the next training forward will use."""
        if int(self.warm) > 0:
            return 1.0
        return self.r0 * int(self.iter) / int(self.total_step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.norm2(x)
        if int(self.warm) > 0:
            self.warm.sub_(1)
            return self.norm1(x)
        lamda = self.lamda
        if int(self.iter) > 0:
            self.iter.sub_(1)
        return lamda * self.norm1(x) + (1.0 - lamda) * self.norm2(x)


def prepbn(dim: int, *, step: int = 60000, warm: int = 0, r0: float = 1.0, ln_eps: float = 1e-6) -> LinearNorm:
    """PRepBN: ``LinearNorm`` from ``LayerNorm(dim, eps=ln_eps)`` to :class:`RepBN` over ``step`` forwards.

    ``step=60000`` and ``ln_eps=1e-6`` are the reference's DeiT settings (its Swin uses eps 1e-5).
    """
    return LinearNorm(dim, norm1=lambda d: nn.LayerNorm(d, eps=ln_eps), norm2=RepBN, warm=warm, step=step, r0=r0)


@torch.no_grad()
def fold_repbn_into_linear(norm: RepBN | LinearNorm, linear: nn.Linear) -> nn.Linear:
    """A new Linear equal to ``linear(norm(x))`` with ``norm`` in eval mode (RepBN, or PRepBN's RepBN).

    ``RepBN(x) = x * s + t`` per channel, so ``W (x * s + t) + b = (W diag(s)) x + (W t + b)``.
    """
    repbn = norm.norm2 if isinstance(norm, LinearNorm) else norm
    if not isinstance(repbn, RepBN):
        raise UserError(f"fold_repbn_into_linear: expected a RepBN or PRepBN, got {type(norm).__name__}")
    if linear.in_features != repbn.bn.num_features:
        raise UserError(f"fold_repbn_into_linear: the Linear takes {linear.in_features} features, the norm gives "
                        f"{repbn.bn.num_features}")
    scale, shift = repbn.eval_affine()
    folded = nn.Linear(linear.in_features, linear.out_features, bias=True).to(linear.weight.device,
                                                                              linear.weight.dtype)
    folded.weight.copy_(linear.weight * scale)
    bias = linear.bias if linear.bias is not None else torch.zeros_like(folded.bias)
    folded.bias.copy_(linear.weight @ shift + bias)
    return folded

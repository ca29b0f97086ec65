"""Initialisations of the Mamba block: the mimetic start, and the language model's GPT-2-style scheme.

Papers: Trockman, Harutyunyan, Kolter, Kumar & Bhojanapalli, "Mimetic Initialization Helps State Space Models
Learn to Recall" (2024), for :func:`mimetic_init_`; Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces" (COLM 2024), whose state-spaces/mamba ``mamba_ssm/models/mixer_seq_simple.py`` (``_init_weights``,
commit 52f57d6) :func:`init_lm_weights_` follows. The block's own reference initialisation (S4D-Real ``A``,
log-uniform ``delta``) stays in :class:`archlab.zoo.mixers.mamba.block.Mamba`.

Mimetic initialisation (``Mamba(..., mimetic=True)`` or :func:`mimetic_init_`). Read as linear
attention, the block's SSM gives output ``t`` the sum over ``s <= t`` of ``(C_t . B_s) * exp(sum delta * A) *
delta_s x_s``: ``C`` plays the query, ``B`` the key and the decay a causal mask. Recall is hard to learn from the
reference initialisation, whose ``A = -(n + 1)`` lets most of the state decay within tens of steps and whose
random ``C`` and ``B`` projections are unrelated. The mimetic start makes the SSM begin as linear attention that
remembers: ``A`` near zero and ``C``'s rows of ``x_proj`` equal to ``B``'s, so that ``C_t . B_s`` is a positive
semi-definite similarity of positions ``t`` and ``s``, as ``W_Q W_K^T`` is close to a positive identity in trained
attention. Everything else keeps the reference initialisation. The size of ``A`` (``a_scale = 0.01``: at
``delta = 0.1`` at most 0.1 % of the state decays per step) is archlab's choice from short multi-query recall
probes (``benchmarks/synthetic_tasks.py``, BENCHMARKS.md), not a constant copied from the paper.

Two optional additions of archlab's, not the paper's, give that linear attention a key to look up. Multi-query
recall asks for the value that *followed* a key, so the score must match a query's own token against the token
*before* an earlier position, as an induction head does. ``conv_shift`` makes the convolution's taps on the current
and the previous token positive in every channel, so ``B`` and ``C`` both mix the two tokens. ``shifted_keys``
builds the lookup exactly: half the channels of the convolution pass the current token, the other half (their
``in_proj`` rows tied to the first half's) the previous one, and ``x_proj`` reads ``B`` from the previous-token
half and ``C`` from the current-token half through one matrix. Then ``B_s = C_{s-1}``: position ``s`` is keyed by
the token before it, and ``C_t . B_s`` is largest where that token is the query's. On MQAR only ``shifted_keys``
takes every seed past the plateau on which the model answers by elimination (BENCHMARKS.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.errors import UserError

__all__ = ["MIMETIC_A_SCALE", "init_lm_weights_", "is_mamba", "mimetic_init_"]

# the parts (with the reference's names) that make a module a Mamba mixer; checked by name, not by class, because
# the block calls these initialisations, so this module cannot import it
MAMBA_PARTS = ("in_proj", "conv1d", "x_proj", "dt_proj", "A_log", "D", "out_proj")


def is_mamba(module: nn.Module) -> bool:
    """Whether ``module`` has a Mamba mixer's parts."""
    return all(hasattr(module, part) for part in MAMBA_PARTS)


MIMETIC_A_SCALE = 0.01  # A[d, n] = -0.01 (n + 1) / d_state: at most 1e-3 of decay per step at delta = 0.1


def mimetic_init_(mixer: nn.Module, a_scale: float = MIMETIC_A_SCALE, conv_shift: float = 0.0,
                  shifted_keys: bool = False) -> nn.Module:
    """Re-initialise ``mixer`` in place to start as linear attention that remembers (Trockman et al., 2024).

    ``A[d, n] = -a_scale * (n + 1) / d_state`` (the reference's S4D-Real ordering, shrunk into ``(0, a_scale]``)
    and ``x_proj``'s ``C`` rows set equal to its ``B`` rows. ``conv_shift > 0`` (archlab's addition, not the
    paper's; 0 by default) also makes the convolution's taps on the current and the previous token positive,
    ``|w| + conv_shift``, so that a position's ``B`` starts with the previous token's features as well as its own:
    the key a value follows then meets the same key's ``C`` when it is asked, as H3's shift SSM arranges.
    ``shifted_keys=True`` (archlab's addition too; instead of ``conv_shift``) builds that lookup exactly: the
    convolution passes the current token on the first ``d_inner // 2`` channels and the previous token on the next
    ``d_inner // 2`` (one tap of 1 each, no bias, and an odd last channel's taps at 0; ``in_proj``'s rows for the
    second half tied to the first half's), and ``x_proj`` reads ``B`` from the previous-token half and ``C`` from
    the current-token half with the same matrix (its ``B`` rows' first columns), so that ``B`` at each position
    equals ``C`` at the position before.
    ``dt_proj``, ``out_proj``, ``D`` and ``x_proj``'s delta rows are left as they are, and so are ``in_proj``, the
    other taps and ``x_proj``'s ``B`` rows unless ``shifted_keys`` rewrites them. Returns ``mixer``.
    """
    if not is_mamba(mixer):
        raise UserError(f"mimetic_init_: expected a Mamba mixer, got {type(mixer).__name__}")
    if not a_scale > 0:
        raise UserError(f"mimetic_init_: a_scale must be > 0, got {a_scale}")
    if not conv_shift >= 0:
        raise UserError(f"mimetic_init_: conv_shift must be >= 0, got {conv_shift}")
    if (conv_shift or shifted_keys) and mixer.d_conv < 2:
        raise UserError("mimetic_init_: conv_shift and shifted_keys need d_conv >= 2 (a tap on the previous token)")
    if conv_shift and shifted_keys:
        raise UserError("mimetic_init_: conv_shift and shifted_keys are two different starts for the convolution; "
                        "pick one")
    if shifted_keys and mixer.d_inner < 2:
        raise UserError("mimetic_init_: shifted_keys needs d_inner >= 2 (a current-token and a previous-token half)")
    r, n = mixer.dt_rank, mixer.d_state
    with torch.no_grad():
        a = torch.arange(1, n + 1, dtype=torch.float32, device=mixer.A_log.device) * (a_scale / n)
        mixer.A_log.copy_(torch.log(a).expand_as(mixer.A_log))
        mixer.x_proj.weight[r + n:] = mixer.x_proj.weight[r:r + n]
        if conv_shift:
            # the causal convolution's last tap reads the current token, the one before it the previous token
            taps = mixer.conv1d.weight[:, 0, -2:]
            taps.copy_(taps.abs() + conv_shift)
        if shifted_keys:
            _shift_keys_(mixer)
    return mixer


def _shift_keys_(mixer: nn.Module) -> None:
    """``mimetic_init_``'s ``shifted_keys`` start (under ``no_grad``): ``B_s = C_{s-1}`` at every position."""
    r, n, half = mixer.dt_rank, mixer.d_state, mixer.d_inner // 2
    current, previous = slice(0, half), slice(half, 2 * half)
    conv = mixer.conv1d
    conv.weight.zero_()
    conv.weight[current, 0, -1] = 1.0  # the last tap reads the current token
    conv.weight[previous, 0, -2] = 1.0  # the one before it the previous token
    if conv.bias is not None:
        conv.bias.zero_()
    mixer.in_proj.weight[previous] = mixer.in_proj.weight[current]  # the x half of in_proj comes first
    if mixer.in_proj.bias is not None:
        mixer.in_proj.bias[previous] = mixer.in_proj.bias[current]
    w = mixer.x_proj.weight[r:r + n, current].clone()
    mixer.x_proj.weight[r:].zero_()
    mixer.x_proj.weight[r:r + n, previous] = w  # B: the previous token's features
    mixer.x_proj.weight[r + n:, current] = w  # C: the current token's, through the same matrix


def init_lm_weights_(module: nn.Module, n_layer: int, initializer_range: float = 0.02,
                     rescale_prenorm_residual: bool = True, n_residuals_per_layer: int = 1) -> None:
    """The reference LM's GPT-2-style scheme, for one ``module`` of a model of ``n_layer`` blocks (apply to all).

    Zero linear biases (except ``dt_proj``'s), ``N(0, initializer_range)`` embeddings, and each residual branch's
    output projection shrunk by ``1/sqrt(#residual branches)``.
    """
    if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    if rescale_prenorm_residual and is_mamba(module):
        nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
        with torch.no_grad():
            module.out_proj.weight /= math.sqrt(n_residuals_per_layer * n_layer)

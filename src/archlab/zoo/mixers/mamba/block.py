"""The Mamba block (the selective state-space mixer), its decoding state, and its registration as a mixer.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752 (2023),
COLM 2024. Module and parameter names, shapes and initialisation follow state-spaces/mamba
``mamba_ssm/modules/mamba_simple.py`` at commit 52f57d6 (``Mamba``), so the published checkpoints' mixer weights
load with a plain ``load_state_dict``.

The block projects the input to ``x`` and a gate ``z``, runs ``x`` through a causal depthwise convolution
(:mod:`archlab.zoo.layers.causal_conv`) and the selective scan (:mod:`archlab.zoo.mixers.mamba.scan`, whose
docstring gives the recurrence), gates with ``silu(z)`` and projects back. ``Mamba(..., mimetic=True)`` starts
from the mimetic initialisation of :mod:`archlab.zoo.mixers.mamba.init`.

State across calls: ``Mamba.forward(x, state, return_state=True)`` continues from a :class:`MambaState`
(``None`` = start of a sequence) and returns the state after the last token, so a long sequence may be fed in
pieces of any length, and mixed with :meth:`Mamba.step` (one token with a constant-size cache: the last
``d_conv`` conv inputs and the SSM state, the reference's decoding path). States are returned as new tensors,
never updated in place (the reference's ``InferenceParams`` cache is updated in place; this functional form is
also what ONNX tracing needs).

Not implemented from the reference: the fused CUDA/Triton kernels (``mamba_inner_fn``, ``causal_conv1d``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.causal_conv import causal_conv_with_history
from archlab.zoo.mixers.mamba.init import mimetic_init_
from archlab.zoo.mixers.mamba.scan import at_least_f32, scan_dtype, selective_scan_ref, selective_scan_time_major

__all__ = ["PAPER", "SCANS", "Mamba", "MambaState", "create_mamba"]

PAPER = "Mamba: Linear-Time Sequence Modeling with Selective State Spaces (Gu & Dao, COLM 2024)"


class MambaState(NamedTuple):
    """The decoding cache of one :class:`Mamba` layer: constant size, whatever the sequence length.

    ``conv_state``: ``(B, d_inner, d_conv)``, the last ``d_conv`` inputs of the causal convolution, newest last;
    ``ssm_state``: ``(B, d_inner, d_state)``, the SSM state ``h`` after the last token.
    """

    conv_state: torch.Tensor
    ssm_state: torch.Tensor


SCANS = ("chunked", "sequential")


class Mamba(nn.Module):
    """The Mamba block (mixer) on ``(B, L, d_model)`` sequences; names and init as the reference's ``Mamba``.

    ``scan`` picks the training form: ``"chunked"`` (default) or ``"sequential"`` (:func:`selective_scan_ref`);
    both give the same outputs. ``chunk_size=None`` uses ``ceil(sqrt(L))``. ``mimetic=True`` starts from
    :func:`mimetic_init_` instead of the reference's ``A`` and ``C`` projection (for learning recall from scratch),
    with ``mimetic_conv_shift`` as its ``conv_shift`` and ``mimetic_shifted_keys`` as its ``shifted_keys``.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: float = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 layer_idx: int | None = None, scan: str = "chunked", chunk_size: int | None = None,
                 mimetic: bool = False, mimetic_conv_shift: float = 0.0, mimetic_shifted_keys: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if d_model < 1 or d_state < 1 or d_conv < 1 or expand <= 0 or int(expand * d_model) < 1:
            raise UserError(f"mamba: d_model, d_state, d_conv and expand must be positive, got d_model={d_model}, "
                            f"d_state={d_state}, d_conv={d_conv}, expand={expand}")
        if not 0 < dt_min <= dt_max:
            raise UserError(f"mamba: expected 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if dt_init not in ("random", "constant"):
            raise UserError(f"mamba: dt_init must be 'random' or 'constant', got {dt_init!r}")
        if scan not in SCANS:
            raise UserError(f"mamba: scan must be one of {SCANS}, got {scan!r}")
        if chunk_size is not None and chunk_size < 1:
            raise UserError(f"mamba: chunk_size must be >= 1, got {chunk_size}")
        if dt_rank != "auto" and (not isinstance(dt_rank, int) or dt_rank < 1):
            raise UserError(f"mamba: dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.layer_idx = layer_idx
        self.scan = scan
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        # Keeps the variance of delta's pre-activation independent of dt_rank at initialisation.
        dt_init_std = self.dt_rank ** -0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(dt_init_std)
            else:
                self.dt_proj.weight.uniform_(-dt_init_std, dt_init_std)
            # softplus(bias) is log-uniform in [dt_min, dt_max]: the bias is its inverse softplus.
            dt = torch.exp(torch.rand(self.d_inner, device=device) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]  # kept by the LM's _init_weights

        # S4D-Real initialisation, A[d, n] = -(n + 1); kept in float32 as in the reference.
        a = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)
        if mimetic:
            mimetic_init_(self, conv_shift=mimetic_conv_shift, shifted_keys=mimetic_shifted_keys)
        elif mimetic_conv_shift or mimetic_shifted_keys:
            raise UserError("mamba: mimetic_conv_shift and mimetic_shifted_keys are parts of the mimetic "
                            "initialisation; set mimetic=True")

    def _check_input(self, x: torch.Tensor, ndim: int) -> None:
        if x.ndim != ndim or x.shape[-1] != self.d_model:
            shape = "(B, L, d_model)" if ndim == 3 else "(B, d_model)"
            raise UserError(f"mamba: expected input {shape} with d_model={self.d_model}, got {tuple(x.shape)}")

    def forward(self, hidden_states: torch.Tensor, state: MambaState | None = None, return_state: bool = False):
        """``(B, L, d_model) -> (B, L, d_model)``, continuing from ``state`` (``None``: a fresh sequence).

        With ``return_state=True`` returns ``(out, state_after_last_token)``.
        """
        self._check_input(hidden_states, 3)
        if state is not None:
            self._check_state(state, hidden_states.shape[0])
        x, z, dt, B, C, conv_state = self.ssm_inputs(hidden_states, None if state is None else state.conv_state)
        A = -torch.exp(at_least_f32(self.A_log))
        h0 = None if state is None else state.ssm_state
        if self.scan == "chunked":
            y, last = selective_scan_time_major(x, dt, A, B, C, at_least_f32(self.D), z,
                                                at_least_f32(self.dt_proj.bias), True, h0, self.chunk_size)
        else:
            y, last = selective_scan_ref(x.transpose(1, 2), dt.transpose(1, 2), A, B.transpose(1, 2),
                                         C.transpose(1, 2), at_least_f32(self.D), z.transpose(1, 2),
                                         at_least_f32(self.dt_proj.bias), True, True, h0)
            y = y.transpose(1, 2)
        out = self.out_proj(y)
        if not return_state:
            return out
        return out, MambaState(conv_state, last.to(self._state_dtype(hidden_states)))

    def ssm_inputs(self, hidden_states: torch.Tensor, conv_history: torch.Tensor | None = None):
        """The selective scan's inputs for ``(B, L, d_model)`` input: ``(u, z, dt, B, C)``, each ``(B, L, .)``, with
        ``dt`` before its bias and softplus, then the convolution's new ``conv_state`` (``conv_history``: a state's
        ``conv_state``)."""
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        history = None if conv_history is None else conv_history.to(x.dtype)
        # (B, d_inner, L) for the depthwise convolution
        conv_out, conv_state = causal_conv_with_history(x.transpose(1, 2), history, self.conv1d)
        x = self.act(conv_out).transpose(1, 2)  # (B, L, d_inner)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # the bias is added inside the scan, as in the reference
        return x, z, dt, B, C, conv_state

    def _state_dtype(self, x: torch.Tensor) -> torch.dtype:
        return scan_dtype(x, self.A_log)

    def _check_state(self, state: MambaState, batch: int) -> None:
        conv_shape = (batch, self.d_inner, self.d_conv)
        ssm_shape = (batch, self.d_inner, self.d_state)
        if tuple(state.conv_state.shape) != conv_shape or tuple(state.ssm_state.shape) != ssm_shape:
            raise UserError(f"mamba: expected a state with conv_state {conv_shape} and ssm_state {ssm_shape}, got "
                            f"{tuple(state.conv_state.shape)} and {tuple(state.ssm_state.shape)}")

    def step(self, hidden_states: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """Decode one token: ``(B, 1, d_model)`` or ``(B, d_model)`` -> same shape, and the next state."""
        squeeze = hidden_states.ndim == 3
        if squeeze:
            if hidden_states.shape[1] != 1:
                raise UserError(f"mamba: step takes one token, got input {tuple(hidden_states.shape)}")
            hidden_states = hidden_states[:, 0]
        self._check_input(hidden_states, 2)
        self._check_state(state, hidden_states.shape[0])
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        conv_state = torch.cat([state.conv_state[..., 1:].to(x.dtype), x.unsqueeze(-1)], dim=-1)
        x = (conv_state * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = self.act(x)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dtype = self._state_dtype(hidden_states)
        dt = F.softplus(F.linear(dt, self.dt_proj.weight, self.dt_proj.bias)).to(dtype)
        A = -torch.exp(self.A_log.to(dtype))
        xs, B, C = x.to(dtype), B.to(dtype), C.to(dtype)
        ssm_state = torch.exp(dt.unsqueeze(-1) * A) * state.ssm_state.to(dtype) \
            + (dt * xs).unsqueeze(-1) * B.unsqueeze(1)
        y = (ssm_state @ C.unsqueeze(-1)).squeeze(-1) + self.D.to(dtype) * xs
        y = (y * F.silu(z.to(dtype))).to(hidden_states.dtype)
        out = self.out_proj(y)
        return (out.unsqueeze(1) if squeeze else out), MambaState(conv_state, ssm_state)

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int | None = None,
                                 dtype: torch.dtype | None = None) -> MambaState:
        """A zero :class:`MambaState` (the start of a sequence); ``max_seqlen`` is unused: the cache is
        constant-size (kept for the reference's signature)."""
        device = self.out_proj.weight.device
        conv = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device,
                           dtype=dtype or self.conv1d.weight.dtype)
        ssm = torch.zeros(batch_size, self.d_inner, self.d_state, device=device,
                          dtype=dtype or scan_dtype(self.dt_proj.weight, self.A_log))
        return MambaState(conv, ssm)


@register_mixer("mamba", layout="sequence", causal=True, paper=PAPER, settings={"d_state": (8, 16, 32)})
def create_mamba(dim: int, *, resolution: tuple[int, int] | None = None, d_state: int = 16, d_conv: int = 4,
                 expand: float = 2, dt_rank: int | str = "auto", scan: str = "chunked",
                 chunk_size: int | None = None, **kwargs) -> Mamba:
    """A :class:`Mamba` mixer for ``dim`` channels (causal: position t sees positions <= t only).

    ``resolution`` is not needed; other keyword arguments go to :class:`Mamba`.
    """
    return Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank, scan=scan,
                 chunk_size=chunk_size, **kwargs)

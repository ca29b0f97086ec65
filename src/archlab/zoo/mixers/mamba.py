"""Mamba: the selective state-space block, its three scans, and the Mamba language model.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752 (2023),
COLM 2024. Module and parameter names, shapes and initialisation follow state-spaces/mamba
``mamba_ssm/modules/mamba_simple.py`` at commit 52f57d6 (``Mamba``, ``Block``) and
``mamba_ssm/models/mixer_seq_simple.py`` (``MixerModel``, ``MambaLMHeadModel``, ``_init_weights``), so the
published ``state-spaces/mamba-*`` checkpoints load with a plain ``load_state_dict``, as do Hugging Face's
``state-spaces/mamba-*-hf`` ones (``backbone.embeddings``); a test loads a ``transformers`` ``MambaForCausalLM``
and gets its logits.

The selective SSM, per channel ``d`` of the inner width and state index ``n``::

    delta_t = softplus(dt_proj(x_proj(x_t)[:dt_rank]))          (dt_proj.bias is the delta bias)
    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n] + delta_t[d] * B_t[n] * x_t[d]
    y_t[d] = sum_n C_t[n] * h_t[d, n] + D[d] * x_t[d],  then  y_t * silu(z_t)

with ``A = -exp(A_log)``. Three forms compute it:

- :func:`selective_scan_ref`: the sequential loop of the reference's ``selective_scan_ref`` (same arguments and
  layout); the ground truth.
- :func:`selective_scan_chunked`: the form used for training. The sequence is cut into chunks of ``T`` steps
  (``T = ceil(sqrt(L))`` by default) and all chunks are processed side by side: (1) each chunk's recurrence
  from a zero state gives its final state (``T`` steps); (2) the true state entering each chunk is carried
  across chunks with the chunk's total decay ``exp(sum delta * A)`` (``L / T`` steps); (3) each chunk is run
  again from its true incoming state, reading out ``y`` (``T`` steps). That is about ``3 sqrt(L)`` sequential
  steps instead of ``L``, with the reference's memory order (``(B, L, D, N)``), and only exponentials of
  non-positive numbers (``delta > 0``, ``A < 0``), so nothing overflows however strong the decay. Unlike
  Mamba-2's SSD (:mod:`archlab.zoo.mixers.ssd`), the decay here differs per ``(d, n)``, so a masked
  ``T x T`` decay-matrix form cannot use matrix products and would cost ``T`` times more work and memory.
- :meth:`Mamba.step`: one token with a constant-size cache (:class:`MambaState`: the last ``d_conv`` conv
  inputs and the SSM state), the reference's decoding path.

State across calls: ``Mamba.forward(x, state, return_state=True)`` continues from a :class:`MambaState`
(``None`` = start of a sequence) and returns the state after the last token, so a long sequence may be fed in
pieces of any length, and mixed with :meth:`Mamba.step`. States are returned as new tensors, never updated in
place (the reference's ``InferenceParams`` cache is updated in place; this functional form is also what ONNX
tracing needs).

Mimetic initialisation (``Mamba(..., mimetic=True)`` or :func:`mimetic_init_`): Trockman, Harutyunyan, Kolter,
Kumar & Bhojanapalli, "Mimetic Initialization Helps State Space Models Learn to Recall" (2024). Read as linear
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

Not implemented from the reference: the fused CUDA/Triton kernels (``mamba_inner_fn``, ``causal_conv1d``),
complex-valued ``A``, input-independent ``B``/``C`` in the scans, and the LM's ``residual_in_fp32`` /
``fused_add_norm`` options (GPU speed options that do not change parameters; the residual stays in the model's
dtype).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._checkpoint import rename_keys
from archlab.zoo._registry import register_mixer, register_model
from archlab.zoo.layers.decoding import greedy_continue

__all__ = [
    "Block",
    "Mamba",
    "MambaLMHeadModel",
    "MambaState",
    "MixerModel",
    "mimetic_init_",
    "selective_scan_chunked",
    "selective_scan_ref",
]

PAPER = "Mamba: Linear-Time Sequence Modeling with Selective State Spaces (Gu & Dao, COLM 2024)"


class MambaState(NamedTuple):
    """The decoding cache of one :class:`Mamba` layer: constant size, whatever the sequence length.

    ``conv_state``: ``(B, d_inner, d_conv)``, the last ``d_conv`` inputs of the causal convolution, newest last;
    ``ssm_state``: ``(B, d_inner, d_state)``, the SSM state ``h`` after the last token.
    """

    conv_state: torch.Tensor
    ssm_state: torch.Tensor


# --- the selective scan ----------------------------------------------------------------------------------

def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    # The reference scans in float32 whatever the input; float64 inputs stay float64 so tests can be exact.
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _at_least_f32(t: torch.Tensor) -> torch.Tensor:
    # The reference's `.float()` on A, D and the delta bias, without demoting a float64 model.
    return t if t.dtype == torch.float64 else t.float()


def _check_scan_shapes(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor) -> None:
    if u.ndim != 3 or delta.shape != u.shape:
        raise UserError(f"selective_scan: expected u and delta of shape (B, D, L), got {tuple(u.shape)} and "
                        f"{tuple(delta.shape)}")
    batch, dim, length = u.shape
    if A.ndim != 2 or A.shape[0] != dim:
        raise UserError(f"selective_scan: expected A of shape ({dim}, N), got {tuple(A.shape)}")
    expected = (batch, A.shape[1], length)
    if tuple(B.shape) != expected or tuple(C.shape) != expected:
        raise UserError(f"selective_scan: expected B and C of shape {expected} (input-dependent), got "
                        f"{tuple(B.shape)} and {tuple(C.shape)}")


def selective_scan_ref(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                       delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                       return_last_state: bool = False, initial_state: torch.Tensor | None = None):
    """The selective scan as a plain loop over time: the reference's ``selective_scan_ref``.

    Shapes (the reference's channel-first layout): ``u``, ``delta``, ``z``: ``(B, D, L)``; ``A``: ``(D, N)``;
    ``B``, ``C``: ``(B, N, L)``; ``D``, ``delta_bias``: ``(D,)``; ``initial_state``: ``(B, D, N)`` (an
    addition: the reference always starts from zero). Returns ``out`` ``(B, D, L)`` in ``u``'s dtype, and the
    last state ``(B, D, N)`` if ``return_last_state``.
    """
    _check_scan_shapes(u, delta, A, B, C)
    dtype_in, dtype = u.dtype, _compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(dtype)
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    h = A.new_zeros((batch, dim, dstate)) if initial_state is None else initial_state.to(dtype)
    ys = []
    # unbind rather than the reference's indexing: same values, but the backward of an indexed slice writes a
    # zero tensor of the full (B, D, L, N) size at every step, which makes the loop quadratic in L.
    for a_t, bu_t, c_t in zip(delta_a.unbind(2), delta_b_u.unbind(2), C.unbind(2), strict=True):
        h = a_t * h + bu_t
        ys.append(torch.einsum("bdn,bn->bd", h, c_t))
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D.to(dtype)[..., None]
    if z is not None:
        out = out * F.silu(z.to(dtype))
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out


def default_chunk_size(length: int) -> int:
    """``ceil(sqrt(length))``: minimises the ``T + length / T`` sequential steps of the chunked scan."""
    return max(1, math.isqrt(max(length, 1) - 1) + 1)


def _chunked_scan_core(delta: torch.Tensor, A: torch.Tensor, du: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = exp(delta_t A) * h_{t-1} + (delta_t u_t) B_t``, ``y_t = sum_n C_t[n] h_t[:, n]``, chunk by chunk.

    Chunk-major layout, so that every per-step slice is contiguous: ``delta``, ``du`` (= delta * u):
    ``(T, B, n_chunks, D)`` (position ``t`` of every chunk in row ``t``); ``A``: ``(D, N)`` (<= 0); ``B``, ``C``:
    ``(T, B, n_chunks, N)``; ``h0``: ``(B, D, N)`` or ``None``. Returns ``y`` ``(T, B, n_chunks, D)`` and the
    state after the last position.

    The per-step decays and inputs ``(B, n_chunks, D, N)`` are formed inside the loop, one step at a time, never
    as ``(L, D, N)`` tensors: at long lengths the memory traffic of those, not the number of sequential steps,
    is what costs (twice as slow at L = 4,096 when they were materialised).
    """
    # (unbind, not indexing in the loops: each indexed slice's backward would write a zero tensor of the full
    # size, which makes a loop quadratic.)
    decays = [torch.exp(d.unsqueeze(-1) * A) for d in delta.unbind(0)]
    inputs = [x.unsqueeze(-1) * b for x, b in zip(du.unbind(0), B.unsqueeze(-2).unbind(0), strict=True)]

    # 1. each chunk's own final state, from a zero state, all chunks side by side: T steps
    h = inputs[0]
    for t in range(1, len(decays)):
        h = decays[t] * h + inputs[t]
    # decay across a whole chunk, from the sum of its deltas: the exponent is <= 0, nothing overflows
    chunk_decay = torch.exp(delta.sum(0).unsqueeze(-1) * A)

    # 2. the true state entering each chunk, carried across chunk boundaries: n_chunks steps
    state = torch.zeros_like(h[:, 0]) if h0 is None else h0
    starts = []
    for end_state, end_decay in zip(h.unbind(1), chunk_decay.unbind(1), strict=True):
        starts.append(state)
        state = end_decay * state + end_state
    h = torch.stack(starts, dim=1)

    # 3. run every chunk again from its true incoming state, reading out y at each step: T steps
    ys = []
    for a_t, bx_t, c_t in zip(decays, inputs, C.unsqueeze(-1).unbind(0), strict=True):
        h = a_t * h + bx_t
        ys.append((h @ c_t).squeeze(-1))
    return torch.stack(ys, dim=0), state


def _selective_scan_time_major(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                               C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                               delta_bias: torch.Tensor | None, delta_softplus: bool,
                               initial_state: torch.Tensor | None,
                               chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    # u, delta, z: (B, L, D); B, C: (B, L, N): the layout the Mamba block produces.
    dtype_in, dtype = u.dtype, _compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)
    if delta_softplus:
        delta = F.softplus(delta)
    length = u.shape[1]
    chunk = default_chunk_size(length) if chunk_size is None else min(chunk_size, length)
    n_chunks = (length + chunk - 1) // chunk  # not -(-a // b): the ONNX exporter truncates it
    pad = n_chunks * chunk - length

    def chunk_major(t: torch.Tensor) -> torch.Tensor:
        # (B, L, X) -> (T, B, n_chunks, X); padding the end with delta = 0 gives decay exp(0) = 1 and zero
        # input, which leaves the state after position L - 1 unchanged.
        t = F.pad(t, (0, 0, 0, pad)) if pad else t
        return t.reshape(-1, n_chunks, chunk, t.shape[-1]).permute(2, 0, 1, 3).contiguous()

    delta_c, du_c, B_c, C_c = (chunk_major(t) for t in (delta, delta * u, B, C))
    h0 = None if initial_state is None else initial_state.to(dtype)
    y, last = _chunked_scan_core(delta_c, A, du_c, B_c, C_c, h0)
    y = y.permute(1, 2, 0, 3).reshape(-1, n_chunks * chunk, y.shape[-1])[:, :length]
    if D is not None:
        y = y + u * D.to(dtype)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(dtype_in), last


def selective_scan_chunked(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                           delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                           return_last_state: bool = False, initial_state: torch.Tensor | None = None,
                           chunk_size: int | None = None):
    """The selective scan of :func:`selective_scan_ref` (same arguments and layout), computed by chunks.

    ``chunk_size`` (default ``ceil(sqrt(L))``) sets the chunk length; any ``L`` works (the last chunk is
    padded internally).
    """
    _check_scan_shapes(u, delta, A, B, C)
    if chunk_size is not None and chunk_size < 1:
        raise UserError(f"selective_scan: chunk_size must be >= 1, got {chunk_size}")
    y, last = _selective_scan_time_major(
        u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
        None if z is None else z.transpose(1, 2), delta_bias, delta_softplus, initial_state, chunk_size)
    out = y.transpose(1, 2)
    return (out, last) if return_last_state else out


# --- the Mamba block -------------------------------------------------------------------------------------

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
        A = -torch.exp(_at_least_f32(self.A_log))
        h0 = None if state is None else state.ssm_state
        if self.scan == "chunked":
            y, last = _selective_scan_time_major(x, dt, A, B, C, _at_least_f32(self.D), z,
                                                 _at_least_f32(self.dt_proj.bias), True, h0, self.chunk_size)
        else:
            y, last = selective_scan_ref(x.transpose(1, 2), dt.transpose(1, 2), A, B.transpose(1, 2),
                                         C.transpose(1, 2), _at_least_f32(self.D), z.transpose(1, 2),
                                         _at_least_f32(self.dt_proj.bias), True, True, h0)
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
        return _compute_dtype(x, self.A_log)

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
                          dtype=dtype or _compute_dtype(self.dt_proj.weight, self.A_log))
        return MambaState(conv, ssm)


MIMETIC_A_SCALE = 0.01  # A[d, n] = -0.01 (n + 1) / d_state: at most 1e-3 of decay per step at delta = 0.1


def mimetic_init_(mixer: Mamba, a_scale: float = MIMETIC_A_SCALE, conv_shift: float = 0.0,
                  shifted_keys: bool = False) -> Mamba:
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
    if not isinstance(mixer, Mamba):
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


def _shift_keys_(mixer: Mamba) -> None:
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


@register_mixer("mamba", layout="sequence", causal=True, paper=PAPER)
def create_mamba(dim: int, *, resolution: tuple[int, int] | None = None, d_state: int = 16, d_conv: int = 4,
                 expand: float = 2, dt_rank: int | str = "auto", scan: str = "chunked",
                 chunk_size: int | None = None, **kwargs) -> Mamba:
    """A :class:`Mamba` mixer for ``dim`` channels (causal: position t sees positions <= t only).

    ``resolution`` is not needed; other keyword arguments go to :class:`Mamba`.
    """
    return Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank, scan=scan,
                 chunk_size=chunk_size, **kwargs)


# --- the Mamba language model ----------------------------------------------------------------------------

class Block(nn.Module):
    """The reference's add -> norm -> mixer block: returns the mixer output and the running residual."""

    def __init__(self, dim: int, mixer: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer
        self.norm = norm

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor | None = None,
                state: MambaState | None = None) -> tuple[torch.Tensor, torch.Tensor, MambaState]:
        residual = hidden_states if residual is None else hidden_states + residual
        out, new_state = self.mixer(self.norm(residual), state, return_state=True)
        return out, residual, new_state

    def step(self, hidden_states: torch.Tensor, residual: torch.Tensor | None,
             state: MambaState) -> tuple[torch.Tensor, torch.Tensor, MambaState]:
        residual = hidden_states if residual is None else hidden_states + residual
        out, new_state = self.mixer.step(self.norm(residual), state)
        return out, residual, new_state


def _init_weights(module: nn.Module, n_layer: int, initializer_range: float = 0.02,
                  rescale_prenorm_residual: bool = True, n_residuals_per_layer: int = 1) -> None:
    # The reference's GPT-2-style scheme: zero linear biases (except dt_proj's), N(0, 0.02) embeddings, and
    # each residual branch's output projection shrunk by 1/sqrt(#residual branches).
    if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    if rescale_prenorm_residual and isinstance(module, Mamba):
        nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
        with torch.no_grad():
            module.out_proj.weight /= math.sqrt(n_residuals_per_layer * n_layer)


class MixerModel(nn.Module):
    """Token embedding, ``n_layer`` Mamba blocks and a final norm (the reference's ``MixerModel``)."""

    def __init__(self, d_model: int, n_layer: int, vocab_size: int, ssm_cfg: dict | None = None,
                 norm_epsilon: float = 1e-5, rms_norm: bool = True) -> None:
        super().__init__()
        ssm_cfg = dict(ssm_cfg or {})
        self.embedding = nn.Embedding(vocab_size, d_model)

        def norm() -> nn.Module:
            return nn.RMSNorm(d_model, eps=norm_epsilon) if rms_norm else nn.LayerNorm(d_model, eps=norm_epsilon)

        self.layers = nn.ModuleList(
            Block(d_model, Mamba(d_model, layer_idx=i, **ssm_cfg), norm()) for i in range(n_layer))
        self.norm_f = norm()
        for m in self.modules():
            _init_weights(m, n_layer)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Hugging Face's MambaForCausalLM (the ``state-spaces/mamba-*-hf`` checkpoints) calls the embedding
        # ``embeddings``; every other name is the reference's.
        rename_keys(state_dict, prefix, {"embeddings.weight": "embedding.weight"})
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, input_ids: torch.Tensor, states: list[MambaState] | None = None
                ) -> tuple[torch.Tensor, list[MambaState]]:
        hidden, residual = self.embedding(input_ids), None
        new_states = []
        for i, layer in enumerate(self.layers):
            hidden, residual, s = layer(hidden, residual, None if states is None else states[i])
            new_states.append(s)
        residual = hidden if residual is None else hidden + residual
        return self.norm_f(residual), new_states

    def step(self, input_ids: torch.Tensor, states: list[MambaState]) -> tuple[torch.Tensor, list[MambaState]]:
        hidden, residual = self.embedding(input_ids), None
        new_states = []
        for layer, state in zip(self.layers, states, strict=True):
            hidden, residual, s = layer.step(hidden, residual, state)
            new_states.append(s)
        residual = hidden if residual is None else hidden + residual
        return self.norm_f(residual), new_states


class MambaLMHeadModel(nn.Module):
    """The Mamba language model: ``backbone`` (:class:`MixerModel`) and a tied ``lm_head``.

    ``forward(input_ids (B, L)) -> logits (B, L, V)`` (``V`` = ``vocab_size`` rounded up to a multiple of
    ``pad_vocab_size_multiple``, as in the reference). ``step`` decodes one token per sequence from the states
    that ``forward(..., return_state=True)`` or ``allocate_inference_cache`` gave.
    """

    def __init__(self, d_model: int, n_layer: int, vocab_size: int, pad_vocab_size_multiple: int = 1,
                 ssm_cfg: dict | None = None, norm_epsilon: float = 1e-5, rms_norm: bool = True,
                 tie_embeddings: bool = True) -> None:
        super().__init__()
        if d_model < 1 or n_layer < 1 or vocab_size < 1 or pad_vocab_size_multiple < 1:
            raise UserError(f"mamba_lm: d_model, n_layer, vocab_size and pad_vocab_size_multiple must be >= 1, "
                            f"got {d_model}, {n_layer}, {vocab_size}, {pad_vocab_size_multiple}")
        if vocab_size % pad_vocab_size_multiple:
            vocab_size += pad_vocab_size_multiple - vocab_size % pad_vocab_size_multiple
        self.vocab_size = vocab_size
        self.backbone = MixerModel(d_model, n_layer, vocab_size, ssm_cfg=ssm_cfg, norm_epsilon=norm_epsilon,
                                   rms_norm=rms_norm)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def _check_ids(self, input_ids: torch.Tensor, ndim: int) -> None:
        if input_ids.ndim != ndim or input_ids.dtype not in (torch.int64, torch.int32):
            shape = "(B, L)" if ndim == 2 else "(B,)"
            raise UserError(f"mamba_lm: expected integer token ids {shape}, got {tuple(input_ids.shape)} "
                            f"{input_ids.dtype}")

    def forward(self, input_ids: torch.Tensor, states: list[MambaState] | None = None, return_state: bool = False):
        """Logits ``(B, L, V)``; with ``return_state=True`` also the per-layer states after the last token."""
        self._check_ids(input_ids, 2)
        hidden, new_states = self.backbone(input_ids, states)
        logits = self.lm_head(hidden)
        return (logits, new_states) if return_state else logits

    def step(self, input_ids: torch.Tensor, states: list[MambaState]) -> tuple[torch.Tensor, list[MambaState]]:
        """One token per sequence ``(B,)`` -> logits ``(B, V)`` and the next states."""
        self._check_ids(input_ids, 1)
        hidden, new_states = self.backbone.step(input_ids, states)
        return self.lm_head(hidden), new_states

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int | None = None,
                                 dtype: torch.dtype | None = None) -> list[MambaState]:
        return [layer.mixer.allocate_inference_cache(batch_size, max_seqlen, dtype) for layer in
                self.backbone.layers]

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding: the prompt in one call, then one :meth:`step` per new token."""
        logits, states = self(input_ids, return_state=True)
        return greedy_continue(input_ids, logits, states, self.step, max_new_tokens)


def _lm(d_model: int, n_layer: int, vocab_size: int, pad_vocab_size_multiple: int, **kwargs) -> MambaLMHeadModel:
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is not None:  # the zoo's common name for the output size
        vocab_size = num_classes
    return MambaLMHeadModel(d_model, n_layer, vocab_size, pad_vocab_size_multiple=pad_vocab_size_multiple,
                            **kwargs)


@register_model(family="mamba", paper=PAPER, input_shape=(1024,), input_dtype="long")
def mamba_lm(d_model: int = 256, n_layer: int = 4, vocab_size: int = 256, pad_vocab_size_multiple: int = 1,
             **kwargs) -> MambaLMHeadModel:
    """A Mamba language model of any size (``num_classes`` is accepted as ``vocab_size``)."""
    return _lm(d_model, n_layer, vocab_size, pad_vocab_size_multiple, **kwargs)


# The published checkpoints (state-spaces/mamba-*): GPT-NeoX tokenizer, vocabulary 50277 padded to 50280.
def _published(d_model: int, n_layer: int):
    def make(**kwargs) -> MambaLMHeadModel:
        kwargs.setdefault("vocab_size", 50277)
        kwargs.setdefault("pad_vocab_size_multiple", 8)
        return _lm(kwargs.pop("d_model", d_model), kwargs.pop("n_layer", n_layer), kwargs.pop("vocab_size"),
                   kwargs.pop("pad_vocab_size_multiple"), **kwargs)

    return make


for _name, (_d, _n) in {"mamba_130m": (768, 24), "mamba_370m": (1024, 48), "mamba_790m": (1536, 48),
                        "mamba_1_4b": (2048, 48), "mamba_2_8b": (2560, 64)}.items():
    register_model(_published(_d, _n), name=_name, family="mamba", paper=PAPER, input_shape=(1024,),
                   input_dtype="long")

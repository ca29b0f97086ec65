"""The selective scan of Mamba, in two forms: a sequential reference and a chunked one for training.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752 (2023),
COLM 2024; the reference is state-spaces/mamba ``mamba_ssm/ops/selective_scan_interface.py`` at commit 52f57d6.

The selective SSM, per channel ``d`` of the inner width and state index ``n``::

    delta_t = softplus(dt_proj(x_proj(x_t)[:dt_rank]))          (dt_proj.bias is the delta bias)
    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n] + delta_t[d] * B_t[n] * x_t[d]
    y_t[d] = sum_n C_t[n] * h_t[d, n] + D[d] * x_t[d],  then  y_t * silu(z_t)

with ``A = -exp(A_log)``. Three forms compute it; the first two live here, the third is
:meth:`archlab.zoo.mixers.mamba.block.Mamba.step`:

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
  :func:`selective_scan_time_major` is the same scan on the block's own ``(B, L, .)`` layout.
- ``Mamba.step``: one token with a constant-size cache, the reference's decoding path.

Not implemented from the reference: the fused CUDA kernels, complex-valued ``A`` and input-independent
``B``/``C``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from archlab.errors import UserError

__all__ = ["default_chunk_size", "selective_scan_chunked", "selective_scan_ref", "selective_scan_time_major"]


def scan_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """The dtype a scan computes in: float32 whatever the input, as the reference, but float64 stays float64 (so
    tests can be exact)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def at_least_f32(t: torch.Tensor) -> torch.Tensor:
    """The reference's ``.float()`` on ``A``, ``D`` and the delta bias, without demoting a float64 model."""
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
    dtype_in, dtype = u.dtype, scan_dtype(u, delta, A, B, C)
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


def selective_scan_time_major(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                              C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                              delta_bias: torch.Tensor | None, delta_softplus: bool,
                              initial_state: torch.Tensor | None,
                              chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`selective_scan_chunked` on the layout the Mamba block produces: ``u``, ``delta``, ``z``:
    ``(B, L, D)``; ``B``, ``C``: ``(B, L, N)``. Returns ``y`` ``(B, L, D)`` and the last state ``(B, D, N)``; no
    shape checks."""
    dtype_in, dtype = u.dtype, scan_dtype(u, delta, A, B, C)
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
    y, last = selective_scan_time_major(
        u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
        None if z is None else z.transpose(1, 2), delta_bias, delta_softplus, initial_state, chunk_size)
    out = y.transpose(1, 2)
    return (out, last) if return_last_state else out

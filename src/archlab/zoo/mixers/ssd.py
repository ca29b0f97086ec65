"""Mamba-2's state-space duality (SSD) in the discrete form of MOHAWK / Phi-Mamba.

Papers: Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State
Space Duality", ICML 2024 (SSD, the chunked algorithm); Bick, Li, Xing, Kolter & Gu, "Transformers to SSMs:
Distilling Quadratic Knowledge to Subquadratic Models", NeurIPS 2024 (MOHAWK, whose Phi-Mamba uses this
"discrete" Mamba-2). Names, shapes and defaults follow goombalab/phi-mamba
``modules/mixers/discrete_mamba2.py`` (``Mixer``: ``in_proj``, ``z_bias``, ``conv1d``, ``D``, ``out_proj``) and
the algorithms follow ``modules/mixers/discrete_mamba2_ref.py`` (``segsum``, ``ssd_minimal_discrete``,
``materialize_mixer``), so Phi-Mamba checkpoints load with a plain ``load_state_dict``.

Per head ``h`` (``A`` is a scalar times the identity, chosen per token), with ``a_t = -softplus(A_log_t)``::

    H_t = exp(a_t) * H_{t-1} + x_t B_t^T          (H_t: (headdim, d_state); no delta scaling: "discrete")
    y_t = H_t C_t + D * x_t

Three forms compute the same map, per head ``y = M x``:

- :func:`ssd_sequential`: the recurrence, one step per token (and :meth:`DiscreteMamba2.step`, for decoding);
- :func:`materialize_mixer`: the ``L x L`` lower-triangular mixer matrix
  ``M[i, j] = (C_i . B_j) * exp(a_{j+1} + ... + a_i)`` (plus ``D`` on the diagonal), the matrix MOHAWK's
  stage 1 aligns with a teacher's attention matrix;
- :func:`ssd_chunked`: the SSD algorithm: within chunks the masked matrix form (matmuls), across chunks a
  recurrence on chunk states. Every exponent is a sum of ``a <= 0`` terms (the masked entries are set to
  ``-inf`` before ``exp``), so nothing overflows.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.causal_conv import causal_conv_with_history
from archlab.zoo.layers.heads import default_num_heads

__all__ = ["DiscreteMamba2", "SSDState", "materialize_mixer", "segsum", "ssd_chunked", "ssd_sequential"]

PAPER = ("Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State Space "
         "Duality (Dao & Gu, ICML 2024); discrete form of Transformers to SSMs / MOHAWK (Bick et al., NeurIPS 2024)")


class SSDState(NamedTuple):
    """The decoding cache of one :class:`DiscreteMamba2` layer (constant size).

    ``conv``: ``(B, conv_dim, d_conv)``, the last ``d_conv`` convolution inputs, newest last;
    ``ssm``: ``(B, n_v_heads, headdim, d_state)``.
    """

    conv: torch.Tensor
    ssm: torch.Tensor


def segsum(x: torch.Tensor) -> torch.Tensor:
    """``out[..., i, j] = x[..., j+1] + ... + x[..., i]`` for ``j <= i`` (0 on the diagonal), ``-inf`` above.

    Built as cumulative sums of a masked copy rather than as differences of one cumulative sum, so that
    long sums do not cancel (the reference's "more stable" segsum).
    """
    length = x.shape[-1]
    x = x.unsqueeze(-1).expand(*x.shape, length)  # [..., i, j] = x[..., i]
    below = torch.ones(length, length, dtype=torch.bool, device=x.device).tril(-1)
    x_segsum = torch.cumsum(x.masked_fill(~below, 0), dim=-2)
    keep = torch.ones(length, length, dtype=torch.bool, device=x.device).tril(0)
    return x_segsum.masked_fill(~keep, -torch.inf)


def _check(x: torch.Tensor, log_a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> None:
    if x.ndim != 4:
        raise UserError(f"ssd: expected x of shape (B, L, heads, headdim), got {tuple(x.shape)}")
    batch, length, heads, _ = x.shape
    if tuple(log_a.shape) != (batch, length, heads):
        raise UserError(f"ssd: expected log_a of shape {(batch, length, heads)}, got {tuple(log_a.shape)}")
    if B.ndim != 4 or tuple(B.shape[:3]) != (batch, length, heads) or B.shape != C.shape:
        raise UserError(f"ssd: expected B and C of shape {(batch, length, heads)} + (d_state,), got "
                        f"{tuple(B.shape)} and {tuple(C.shape)}")


def ssd_sequential(x: torch.Tensor, log_a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence, token by token: the ground truth.

    ``x``: ``(B, L, H, P)``; ``log_a``: ``(B, L, H)`` (the log decay, ``<= 0``); ``B``, ``C``: ``(B, L, H, N)``;
    ``initial_state``: ``(B, H, P, N)``. Returns ``y`` ``(B, L, H, P)`` (without the ``D`` skip) and the last state.
    """
    _check(x, log_a, B, C)
    batch, length, heads, headdim = x.shape
    h = x.new_zeros(batch, heads, headdim, B.shape[-1]) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        h = torch.exp(log_a[:, t])[..., None, None] * h + x[:, t].unsqueeze(-1) * B[:, t].unsqueeze(-2)
        ys.append((h @ C[:, t].unsqueeze(-1)).squeeze(-1))
    return torch.stack(ys, dim=1), h


def materialize_mixer(log_a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                      D: torch.Tensor | None = None) -> torch.Tensor:
    """The mixer matrix ``M`` ``(B, H, L, L)`` with ``y[:, :, i] = sum_j M[:, :, i, j] x[:, :, j]`` per head.

    ``log_a``: ``(B, L, H)``, ``B``, ``C``: ``(B, L, H, N)``, ``D``: ``(H,)`` added on the diagonal. (The
    reference's ``materialize_mixer`` takes the raw ``A_log`` and applies ``-softplus`` itself.)
    """
    if log_a.ndim != 3 or B.ndim != 4 or B.shape != C.shape or tuple(B.shape[:3]) != tuple(log_a.shape):
        raise UserError(f"ssd: expected log_a (B, L, H) and B, C (B, L, H, N), got {tuple(log_a.shape)}, "
                        f"{tuple(B.shape)}, {tuple(C.shape)}")
    decay = torch.exp(segsum(log_a.transpose(1, 2)))  # (B, H, L, L)
    scores = C.transpose(1, 2) @ B.permute(0, 2, 3, 1)  # (B, H, L, L): C_i . B_j
    M = scores * decay
    if D is not None:
        M = M + torch.diag_embed(D.to(M.dtype)[:, None].expand(-1, M.shape[-1]))
    return M


def ssd_chunked(x: torch.Tensor, log_a: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int = 128,
                initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSD algorithm (the reference's ``ssd_minimal_discrete``), for any length.

    Same arguments and results as :func:`ssd_sequential`. The length is padded internally to a multiple of
    the chunk (with decay 1 and zero input, which leaves the last state unchanged).
    """
    _check(x, log_a, B, C)
    if chunk_size < 1:
        raise UserError(f"ssd: chunk_size must be >= 1, got {chunk_size}")
    length = x.shape[1]
    chunk = min(chunk_size, length)
    n_chunks = (length + chunk - 1) // chunk  # not -(-a // b): the ONNX exporter truncates it
    pad = n_chunks * chunk - length
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        log_a = F.pad(log_a, (0, 0, 0, pad))
    heads, headdim, d_state = x.shape[2], x.shape[3], B.shape[3]
    # (B, L, H, ...) -> (B, H, n_chunks, chunk, ...)
    x = x.reshape(-1, n_chunks, chunk, heads, headdim).permute(0, 3, 1, 2, 4)
    B = B.reshape(-1, n_chunks, chunk, heads, d_state).permute(0, 3, 1, 2, 4)
    C = C.reshape(-1, n_chunks, chunk, heads, d_state).permute(0, 3, 1, 2, 4)
    a = log_a.reshape(-1, n_chunks, chunk, heads).permute(0, 3, 1, 2)  # (B, H, c, T)
    a_cumsum = torch.cumsum(a, dim=-1)

    # 1. within chunks: the masked mixer matrix of each chunk (diagonal blocks)
    y_diag = ((C @ B.transpose(-1, -2)) * torch.exp(segsum(a))) @ x

    # 2. each chunk's final state from its own inputs: sum_s exp(a_{s+1} + ... + a_T) x_s B_s^T
    decay_to_end = torch.exp(a_cumsum[..., -1:] - a_cumsum)
    chunk_states = (x * decay_to_end.unsqueeze(-1)).transpose(-1, -2) @ B  # (B, H, c, P, N)

    # 3. states at chunk boundaries: a recurrence over chunks, written as one masked (c+1) x (c+1) matrix
    start = (torch.zeros_like(chunk_states[:, :, :1]) if initial_state is None
             else initial_state.unsqueeze(2).to(chunk_states.dtype))
    states = torch.cat([start, chunk_states], dim=2).flatten(-2)  # (B, H, c+1, P*N)
    decay_chunk = torch.exp(segsum(F.pad(a_cumsum[..., -1], (1, 0))))  # (B, H, c+1, c+1)
    states = (decay_chunk @ states).unflatten(-1, (headdim, d_state))
    incoming, final = states[:, :, :-1], states[:, :, -1]

    # 4. the incoming state's contribution inside each chunk (off-diagonal blocks)
    y_off = (C @ incoming.transpose(-1, -2)) * torch.exp(a_cumsum).unsqueeze(-1)

    y = (y_diag + y_off).permute(0, 2, 3, 1, 4).reshape(-1, n_chunks * chunk, heads, headdim)
    return y[:, :length], final


ACTIVATIONS = ("identity", "silu", "swish")


class DiscreteMamba2(nn.Module):
    """Phi-Mamba's discrete Mamba-2 mixer on ``(B, L, d_model)``; names as the reference's ``Mixer``.

    ``n_v_heads`` heads of ``headdim = d_inner / n_v_heads`` channels for ``x``; ``B`` and ``C`` have
    ``n_qk_heads`` heads (shared across ``n_v_heads / n_qk_heads`` value heads, like grouped-query attention).
    ``scan`` is ``"chunked"`` (SSD, default) or ``"sequential"``.
    """

    def __init__(self, d_model: int, d_state: int = 64, n_qk_heads: int = 32, n_v_heads: int = 32,
                 d_conv: int = 4, expand: int = 1, activation: str = "identity", bias: bool = False,
                 conv_bias: bool = True, chunk_size: int = 128, layer_idx: int | None = None,
                 scan: str = "chunked") -> None:
        super().__init__()
        d_inner = expand * d_model
        if min(d_model, d_state, n_qk_heads, n_v_heads, d_conv, expand, chunk_size) < 1:
            raise UserError("ssd: d_model, d_state, n_qk_heads, n_v_heads, d_conv, expand and chunk_size must be "
                            ">= 1")
        if d_inner % n_v_heads or n_v_heads % n_qk_heads:
            raise UserError(f"ssd: d_inner {d_inner} must be divisible by n_v_heads {n_v_heads}, and n_v_heads by "
                            f"n_qk_heads {n_qk_heads}")
        if activation not in ACTIVATIONS:
            raise UserError(f"ssd: activation must be one of {ACTIVATIONS}, got {activation!r}")
        if scan not in ("chunked", "sequential"):
            raise UserError(f"ssd: scan must be 'chunked' or 'sequential', got {scan!r}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = d_inner
        self.n_qk_heads, self.n_v_heads = n_qk_heads, n_v_heads
        self.headdim = d_inner // n_v_heads
        self.activation, self.chunk_size, self.layer_idx, self.scan = activation, chunk_size, layer_idx, scan
        self.conv_dim = d_inner + 2 * n_qk_heads * d_state

        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * n_qk_heads * d_state + n_v_heads, bias=bias)
        # The gate's bias lives apart from in_proj when in_proj has none (as in the reference).
        self.z_bias = nn.Parameter(torch.zeros(d_inner)) if not bias else 0
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=conv_bias)
        self.act = nn.Identity() if activation == "identity" else nn.SiLU()
        self.D = nn.Parameter(torch.ones(n_v_heads))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def _check_input(self, u: torch.Tensor, ndim: int) -> None:
        if u.ndim != ndim or u.shape[-1] != self.d_model:
            shape = "(B, L, d_model)" if ndim == 3 else "(B, d_model)"
            raise UserError(f"ssd: expected input {shape} with d_model={self.d_model}, got {tuple(u.shape)}")

    def _check_state(self, state: SSDState, batch: int) -> None:
        conv = (batch, self.conv_dim, self.d_conv)
        ssm = (batch, self.n_v_heads, self.headdim, self.d_state)
        if tuple(state.conv.shape) != conv or tuple(state.ssm.shape) != ssm:
            raise UserError(f"ssd: expected a state with conv {conv} and ssm {ssm}, got {tuple(state.conv.shape)} "
                            f"and {tuple(state.ssm.shape)}")

    def _project(self, u: torch.Tensor, state: SSDState | None):
        """in_proj and the causal convolution: ``x, B, C, z, log_a, conv_state`` in ``(B, L, ...)`` layout."""
        xBC, z, A_log = torch.split(self.in_proj(u), [self.conv_dim, self.d_inner, self.n_v_heads], dim=-1)
        xBC = xBC.transpose(1, 2)
        history = None
        if state is not None:
            self._check_state(state, u.shape[0])
            history = state.conv.to(xBC.dtype)
        conv, conv_state = causal_conv_with_history(xBC, history, self.conv1d)
        x, B, C = torch.split(self.act(conv.transpose(1, 2)),
                              [self.d_inner, self.n_qk_heads * self.d_state, self.n_qk_heads * self.d_state], dim=-1)
        x = x.unflatten(-1, (self.n_v_heads, self.headdim))
        # B and C are shared by groups of value heads, as in the reference's repeat_interleave.
        group = self.n_v_heads // self.n_qk_heads
        B = B.unflatten(-1, (self.n_qk_heads, self.d_state)).repeat_interleave(group, dim=2)
        C = C.unflatten(-1, (self.n_qk_heads, self.d_state)).repeat_interleave(group, dim=2)
        return x, B, C, z, -F.softplus(A_log), conv_state

    def _output(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (y + self.D[:, None] * x).flatten(-2)
        return self.out_proj(y * F.silu(z + self.z_bias))

    def forward(self, u: torch.Tensor, state: SSDState | None = None, return_state: bool = False):
        """``(B, L, d_model) -> (B, L, d_model)`` from ``state`` (``None``: a fresh sequence); with
        ``return_state=True`` returns ``(out, state_after_last_token)``."""
        self._check_input(u, 3)
        x, B, C, z, log_a, conv_state = self._project(u, state)
        h0 = None if state is None else state.ssm.to(x.dtype)
        if self.scan == "chunked":
            y, last = ssd_chunked(x, log_a, B, C, self.chunk_size, h0)
        else:
            y, last = ssd_sequential(x, log_a, B, C, h0)
        out = self._output(y, x, z)
        return (out, SSDState(conv_state, last)) if return_state else out

    def mixer_matrix(self, u: torch.Tensor) -> torch.Tensor:
        """The mixer matrix ``(B, n_v_heads, L, L)`` this layer applies to its (post-convolution) ``x`` for
        input ``u``, ``D`` included: what MOHAWK's stage 1 matches to a teacher's attention matrix."""
        self._check_input(u, 3)
        _, B, C, _, log_a, _ = self._project(u, None)
        return materialize_mixer(log_a, B, C, self.D)

    def step(self, u: torch.Tensor, state: SSDState) -> tuple[torch.Tensor, SSDState]:
        """Decode one token: ``(B, 1, d_model)`` or ``(B, d_model)`` -> same shape, and the next state."""
        squeeze = u.ndim == 3
        if squeeze:
            if u.shape[1] != 1:
                raise UserError(f"ssd: step takes one token, got input {tuple(u.shape)}")
            u = u[:, 0]
        self._check_input(u, 2)
        x, B, C, z, log_a, conv_state = self._project(u.unsqueeze(1), state)
        x, B, C, z, log_a = x[:, 0], B[:, 0], C[:, 0], z[:, 0], log_a[:, 0]
        ssm = torch.exp(log_a)[..., None, None] * state.ssm.to(x.dtype) + x.unsqueeze(-1) * B.unsqueeze(-2)
        y = (ssm @ C.unsqueeze(-1)).squeeze(-1)
        out = self._output(y, x, z)
        return (out.unsqueeze(1) if squeeze else out), SSDState(conv_state, ssm)

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int | None = None,
                                 dtype: torch.dtype | None = None) -> SSDState:
        """A zero :class:`SSDState`; ``max_seqlen`` is unused (constant-size cache)."""
        weight = self.in_proj.weight
        dtype = dtype or weight.dtype
        return SSDState(torch.zeros(batch_size, self.conv_dim, self.d_conv, device=weight.device, dtype=dtype),
                        torch.zeros(batch_size, self.n_v_heads, self.headdim, self.d_state, device=weight.device,
                                    dtype=dtype))


@register_mixer("ssd", layout="sequence", causal=True, paper=PAPER, settings={"d_state": (8, 16, 32)})
def create_ssd(dim: int, *, resolution: tuple[int, int] | None = None, head_dim: int = 32,
               n_v_heads: int | None = None, n_qk_heads: int | None = None, d_state: int = 64,
               **kwargs) -> DiscreteMamba2:
    """A :class:`DiscreteMamba2` mixer for ``dim`` channels (causal).

    ``n_v_heads`` defaults to ``d_inner // head_dim`` reduced to a divisor of ``d_inner`` (attention's
    convention), ``n_qk_heads`` to ``n_v_heads``; ``resolution`` is not needed.
    """
    d_inner = kwargs.get("expand", 1) * dim
    if head_dim < 1:
        raise UserError(f"ssd: head_dim must be >= 1, got {head_dim}")
    v_heads = default_num_heads(d_inner, head_dim) if n_v_heads is None else n_v_heads
    qk_heads = v_heads if n_qk_heads is None else n_qk_heads
    return DiscreteMamba2(dim, d_state=d_state, n_qk_heads=qk_heads, n_v_heads=v_heads, **kwargs)

"""Gated Linear Attention (GLA) as a causal sequence token mixer.

Paper: Yang, Wang, Shen, Panda and Kim, "Gated Linear Attention Transformers with Hardware-Efficient Training",
ICML 2024. Module names, defaults and the per-step recurrence follow fla-org/flash-linear-attention
(``fla/layers/gla.py`` ``GatedLinearAttention`` for the layer, ``fla/ops/gla/naive.py`` ``naive_recurrent_gla``
for the recurrence); the initialisation of the query/key/gate projections follows the authors' first release,
berlino/gated_linear_attention ``gla.py`` (``xavier_uniform_`` with gain ``2 ** -2.5``).

Per head, with ``q, k`` of size ``d_k`` and ``v`` of size ``d_v``::

    alpha_t = sigmoid(x_t W1 W2 + b) ** (1 / 16)          (computed in log space: logsigmoid(.) / 16)
    S_t     = diag(alpha_t) S_{t-1} + k_t^T v_t            (S_t is d_k x d_v)
    o_t     = (q_t * d_k ** -0.5) S_t
    out     = o_proj(RMSNorm_head(o) * weight * swish(g_proj(x)))

Three forms compute the same function (the tests hold them to each other):

- ``"recurrent"``: the loop above, one token at a time (the reference; used by :meth:`GatedLinearAttention.step`);
- ``"chunk"`` (default): chunks of ``chunk_size`` tokens; the state is carried from chunk to chunk and the
  tokens inside a chunk attend to each other through a ``C x C`` decay-weighted score matrix. Every exponent
  is a difference ``b_t - b_s`` of cumulative log-decays with ``s <= t``, so it is never positive: nothing
  overflows however small the gates get (the paper's secondary-level chunking);
- ``"parallel"``: the whole ``L x L`` decay-masked score matrix at once, for short sequences.

``use_short_conv=True`` adds fla's short convolutions: a causal depthwise convolution of ``conv_size`` taps and
a SiLU on each of the projected ``q``, ``k`` and ``v`` (``q_conv1d``, ``k_conv1d``, ``v_conv1d``), which let a
key see the tokens just before it, the mechanism by which recurrent models solve associative recall (Arora,
Eyuboglu et al., "Zoology", ICLR 2024). The state is then a :class:`GLAState`: the recurrent state and the
last ``conv_size`` projected inputs of each convolution.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.causal_conv import causal_conv_with_history
from archlab.zoo.layers.heads import dividing_heads

__all__ = [
    "GLAState",
    "GatedLinearAttention",
    "RMSNormGated",
    "chunk_gla",
    "create_gla",
    "parallel_gla",
    "recurrent_gla",
]

MODES = ("chunk", "recurrent", "parallel")


# --- the three forms of the GLA recurrence ----------------------------------------------------------------
# All take q, k, gk of shape (B, H, L, K), v of shape (B, H, L, V), gk <= 0 (log of the decay), and an optional
# initial state (B, H, K, V); they return o (B, H, L, V) and the final state (B, H, K, V). The scale is applied
# to q, as in fla's naive_recurrent_gla.


def recurrent_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gk: torch.Tensor, scale: float,
                  initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``S_t = exp(gk_t)[:, None] * S_{t-1} + k_t^T v_t``, ``o_t = (scale q_t) S_t``, one step at a time."""
    batch, heads, length, dk = q.shape
    state = q.new_zeros(batch, heads, dk, v.shape[-1]) if initial_state is None else initial_state
    outs = []
    for t in range(length):
        state = state * gk[:, :, t, :, None].exp() + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(((q[:, :, t, :, None] * scale) * state).sum(-2))
    o = torch.stack(outs, dim=2) if outs else v.new_zeros(v.shape)
    return o, state


def _decay_scores(q: torch.Tensor, k: torch.Tensor, b_q: torch.Tensor, b_k: torch.Tensor) -> torch.Tensor:
    """``A[t, s] = sum_j q[t, j] k[s, j] exp(b_q[t, j] - b_k[s, j])`` for ``s <= t``, else 0 (last two axes)."""
    t, s = q.shape[-2], k.shape[-2]
    causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril()
    diff = b_q.unsqueeze(-2) - b_k.unsqueeze(-3)  # (..., t, s, K)
    # Above the diagonal the difference is positive and exp() could overflow; -inf there gives exactly 0 and a
    # zero gradient, whereas multiplying inf by a 0 mask would give NaN.
    diff = diff.masked_fill(~causal[..., None], float("-inf"))
    return (q.unsqueeze(-2) * k.unsqueeze(-3) * diff.exp()).sum(-1)


def parallel_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gk: torch.Tensor, scale: float,
                 initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The materialised form: one ``L x L`` decay-masked score matrix (memory ``O(L^2 K)``; short inputs)."""
    b = gk.cumsum(dim=2)  # b_t = log prod_{s<=t} alpha_s
    q = q * scale
    o = _decay_scores(q, k, b, b) @ v
    b_last = b[:, :, -1:]
    state = (k * (b_last - b).exp()).transpose(-1, -2) @ v
    if initial_state is not None:
        o = o + (q * b.exp()) @ initial_state
        state = state + b_last.transpose(-1, -2).exp() * initial_state
    return o, state


def chunk_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gk: torch.Tensor, scale: float,
              initial_state: torch.Tensor | None = None, chunk_size: int = 64,
              sub_chunk_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunkwise form: a state recurrence across chunks, decay-weighted scores inside each chunk.

    Inside a chunk, scores between sub-chunk ``i`` and an earlier sub-chunk are factorised through the
    cumulative decay at the end of sub-chunk ``i - 1`` (two factors, each ``<= 1``) and computed as one matrix
    product; only the diagonal ``sub_chunk_size`` blocks need the exact per-key-channel form.
    """
    heads, length = q.shape[1], q.shape[2]
    dv = v.shape[-1]
    if chunk_size % sub_chunk_size:
        raise UserError(f"gla: chunk_size {chunk_size} must be a multiple of sub_chunk_size {sub_chunk_size}")
    sub = min(sub_chunk_size, chunk_size)
    # A sequence shorter than a chunk is one chunk, rounded up to whole sub-chunks.
    # ceil divisions written with non-negative operands: an ONNX export computes them with a truncating Div
    size = min(chunk_size, (length + sub - 1) // sub * sub)
    n_chunks = (length + size - 1) // size
    pad = n_chunks * size - length
    if pad:
        # Padding with k = v = 0 and log-decay 0 (alpha = 1) leaves the state, and so the outputs, unchanged.
        q, k, v, gk = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, gk))
    # -1 for the batch axis keeps it dynamic in an ONNX export (the length is fixed there anyway)
    q, k, v, gk = (x.reshape(-1, heads, n_chunks, size, x.shape[-1]) for x in (q, k, v, gk))
    q = q * scale
    b = gk.cumsum(dim=3)  # cumulative log-decay from the start of each chunk
    b_last = b[:, :, :, -1:]  # (B, H, N, 1, K)

    # Intra-chunk scores, one row block (sub-chunk) at a time.
    n_sub = size // sub
    rows = []
    for i in range(n_sub):
        lo, hi = i * sub, (i + 1) * sub
        q_i, b_i = q[..., lo:hi, :], b[..., lo:hi, :]
        diag = _decay_scores(q_i, k[..., lo:hi, :], b_i, b_i)
        if i == 0:
            rows.append(F.pad(diag, (0, size - hi)))
            continue
        b_ref = b[..., lo - 1:lo, :]
        off = (q_i * (b_i - b_ref).exp()) @ (k[..., :lo, :] * (b_ref - b[..., :lo, :]).exp()).transpose(-1, -2)
        rows.append(F.pad(torch.cat([off, diag], dim=-1), (0, size - hi)))
    scores = torch.cat(rows, dim=-2)  # (B, H, N, C, C), zero above the diagonal
    o = scores @ v

    # Each chunk's own contribution to the state at its end, then the recurrence across chunks.
    k_to_end = k * (b_last - b).exp()
    chunk_states = k_to_end.transpose(-1, -2) @ v  # (B, H, N, K, V)
    decay_chunk = b_last.squeeze(-2).exp()[..., None]  # (B, H, N, K, 1)
    q_from_start = q * b.exp()
    state = initial_state
    inter = []
    for n in range(n_chunks):
        if state is None:
            inter.append(None)
            state = chunk_states[:, :, n]
        else:
            inter.append(q_from_start[:, :, n] @ state)
            state = decay_chunk[:, :, n] * state + chunk_states[:, :, n]
    if any(t is not None for t in inter):
        zeros = torch.zeros_like(o[:, :, 0])
        o = o + torch.stack([zeros if t is None else t for t in inter], dim=2)
    o = o.reshape(-1, heads, n_chunks * size, dv)[:, :, :length]
    return o, state


class RMSNormGated(nn.Module):
    """``RMSNorm(x) * weight * swish(g)`` over the last axis: fla's ``FusedRMSNormGated`` without the kernel."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size)) if elementwise_affine else None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            x = x * self.weight
        return x * F.silu(g)


class GLAState(NamedTuple):
    """The state of a GLA layer with short convolutions: ``recurrent_state`` ``(B, H, d_k, d_v)`` and
    ``conv_state``, the last ``conv_size`` inputs ``(B, C, conv_size)`` of ``q_conv1d``, ``k_conv1d`` and
    ``v_conv1d``, newest last."""

    recurrent_state: torch.Tensor
    conv_state: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class GatedLinearAttention(nn.Module):
    """GLA layer over ``(B, L, hidden_size)``; names follow fla's ``GatedLinearAttention``.

    ``forward(x, state=None, return_state=False)``: with ``state`` (``(B, H, d_k, d_v)``, from a previous
    call) the sequence continues from it; ``return_state=True`` also returns the state after the last token,
    so a long sequence can be fed in pieces (a :class:`GLAState` when ``use_short_conv``). :meth:`step` decodes
    one token.
    """

    def __init__(self, hidden_size: int, *, expand_k: float = 0.5, expand_v: float = 1.0, num_heads: int = 4,
                 gate_low_rank_dim: int = 16, gate_logit_normalizer: float = 16.0, norm_eps: float = 1e-5,
                 elementwise_affine: bool = True, clamp_min: float | None = None, mode: str = "chunk",
                 chunk_size: int = 64, sub_chunk_size: int = 16, use_short_conv: bool = False, conv_size: int = 4,
                 conv_bias: bool = False) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.key_dim = int(hidden_size * expand_k)
        self.value_dim = int(hidden_size * expand_v)
        if num_heads < 1 or self.key_dim < num_heads or self.key_dim % num_heads or self.value_dim % num_heads:
            raise UserError(f"gla: key dim {self.key_dim} and value dim {self.value_dim} (hidden_size "
                            f"{hidden_size}) must both be divisible by num_heads {num_heads}")
        if mode not in MODES:
            raise UserError(f"gla: unknown mode {mode!r}; known: {', '.join(MODES)}")
        if use_short_conv and conv_size < 1:
            raise UserError(f"gla: conv_size must be >= 1, got {conv_size}")
        if chunk_size < 1 or sub_chunk_size < 1 or chunk_size % sub_chunk_size:
            raise UserError(f"gla: chunk_size {chunk_size} must be a positive multiple of sub_chunk_size "
                            f"{sub_chunk_size}")
        self.num_heads = num_heads
        self.head_k_dim = self.key_dim // num_heads
        self.head_v_dim = self.value_dim // num_heads
        self.scale = self.head_k_dim ** -0.5
        self.gate_logit_normalizer = gate_logit_normalizer
        self.clamp_min = clamp_min
        self.mode = mode
        self.chunk_size = chunk_size
        self.sub_chunk_size = sub_chunk_size

        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(hidden_size, gate_low_rank_dim, bias=False),
                                     nn.Linear(gate_low_rank_dim, self.key_dim, bias=True))
        self.use_short_conv, self.conv_size = use_short_conv, conv_size
        if use_short_conv:  # fla's ShortConvolution: a depthwise nn.Conv1d, its weight (C, 1, conv_size)
            self.q_conv1d, self.k_conv1d, self.v_conv1d = (
                nn.Conv1d(c, c, conv_size, groups=c, padding=conv_size - 1, bias=conv_bias)
                for c in (self.key_dim, self.key_dim, self.value_dim))
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        self.g_norm_swish_gate = RMSNormGated(self.head_v_dim, eps=norm_eps, elementwise_affine=elementwise_affine)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Small queries, keys and gate logits at the start (berlino/gated_linear_attention post_init): the
        # state grows slowly and the decays start near sigmoid(0) ** (1/16) ~ 0.96, i.e. long memory.
        for lin in (self.q_proj, self.k_proj, self.gk_proj[0], self.gk_proj[1]):
            nn.init.xavier_uniform_(lin.weight, gain=2 ** -2.5)
        nn.init.zeros_(self.gk_proj[1].bias)

    def _heads(self, x: torch.Tensor, head_dim: int) -> torch.Tensor:
        return x.reshape(-1, x.shape[1], self.num_heads, head_dim).transpose(1, 2)

    def _short_conv(self, conv: nn.Conv1d, x: torch.Tensor, history: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SiLU of the causal depthwise ``conv`` on ``x`` ``(B, L, C)`` after ``history`` (the previous call's last
        ``conv_size`` inputs, ``(B, C, conv_size)``; zeros at the start); returns the output and the new history."""
        x = x.transpose(1, 2)
        if history is not None and tuple(history.shape) != (x.shape[0], x.shape[1], self.conv_size):
            raise UserError(f"gla: expected a conv state {(x.shape[0], x.shape[1], self.conv_size)}, got "
                            f"{tuple(history.shape)}")
        out, history = causal_conv_with_history(x, history, conv)
        return F.silu(out).transpose(1, 2), history

    def _project(self, x: torch.Tensor, conv_state: tuple | None = None) -> tuple[torch.Tensor, ...]:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        new_conv = None
        if self.use_short_conv:
            history = conv_state if conv_state is not None else (None, None, None)
            (q, hq), (k, hk), (v, hv) = (self._short_conv(c, t, h) for c, t, h in zip(
                (self.q_conv1d, self.k_conv1d, self.v_conv1d), (q, k, v), history, strict=True))
            new_conv = (hq, hk, hv)
        q = self._heads(q, self.head_k_dim)
        k = self._heads(k, self.head_k_dim)
        v = self._heads(v, self.head_v_dim)
        gk = F.logsigmoid(self._heads(self.gk_proj(x), self.head_k_dim)) / self.gate_logit_normalizer
        if self.clamp_min is not None:
            gk = gk.clamp_min(self.clamp_min)
        return q, k, v, gk, new_conv

    def _output(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        g = self.g_proj(x).reshape(-1, x.shape[1], self.num_heads, self.head_v_dim)
        o = self.g_norm_swish_gate(o.transpose(1, 2), g)
        return self.o_proj(o.reshape(-1, x.shape[1], self.value_dim))

    def forward(self, x: torch.Tensor, state: torch.Tensor | GLAState | None = None, return_state: bool = False,
                mode: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | GLAState]:
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise UserError(f"gla: expected input (B, L, {self.hidden_size}), got {tuple(x.shape)}")
        mode = mode or self.mode
        conv_state = None
        if self.use_short_conv and state is not None:
            if not isinstance(state, GLAState):
                raise UserError(f"gla: a layer with short convolutions continues from a GLAState, got "
                                f"{type(state).__name__}")
            state, conv_state = state
        q, k, v, gk, conv_state = self._project(x, conv_state)
        if mode == "chunk":
            o, new_state = chunk_gla(q, k, v, gk, self.scale, state, self.chunk_size, self.sub_chunk_size)
        elif mode == "recurrent":
            o, new_state = recurrent_gla(q, k, v, gk, self.scale, state)
        elif mode == "parallel":
            o, new_state = parallel_gla(q, k, v, gk, self.scale, state)
        else:
            raise UserError(f"gla: unknown mode {mode!r}; known: {', '.join(MODES)}")
        out = self._output(x, o)
        if self.use_short_conv:
            new_state = GLAState(new_state, conv_state)
        return (out, new_state) if return_state else out

    def step(self, x_t: torch.Tensor, state: torch.Tensor | GLAState | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | GLAState]:
        """Decode one token ``x_t`` of shape ``(B, hidden_size)``; returns ``(y_t, new_state)``."""
        if x_t.dim() != 2 or x_t.shape[-1] != self.hidden_size:
            raise UserError(f"gla: step expects (B, {self.hidden_size}), got {tuple(x_t.shape)}")
        out, state = self.forward(x_t[:, None], state, return_state=True, mode="recurrent")
        return out[:, 0], state

    def extra_repr(self) -> str:
        return (f"hidden_size={self.hidden_size}, num_heads={self.num_heads}, key_dim={self.key_dim}, "
                f"value_dim={self.value_dim}, mode={self.mode!r}, chunk_size={self.chunk_size}"
                + (f", conv_size={self.conv_size}" if self.use_short_conv else ""))


@register_mixer("gla", layout="sequence", causal=True,
                paper="Gated Linear Attention Transformers with Hardware-Efficient Training "
                      "(Yang, Wang, Shen, Panda, Kim, ICML 2024)")
def create_gla(dim: int, *, resolution: tuple[int, int] | None = None, num_heads: int | None = None,
               head_k_dim: int = 16, expand_k: float = 0.5, expand_v: float = 1.0, mode: str = "chunk",
               chunk_size: int = 64, **kwargs) -> GatedLinearAttention:
    """GLA mixer for ``dim`` channels (``resolution`` is not needed: the recurrence takes any length).

    ``num_heads`` defaults to ``key_dim // head_k_dim`` capped at 4 (fla's default), reduced to a divisor of
    both the key and value dims.
    """
    key_dim, value_dim = int(dim * expand_k), int(dim * expand_v)
    if key_dim < 1 or value_dim < 1:
        raise UserError(f"gla: dim {dim} with expand_k {expand_k}, expand_v {expand_v} gives an empty head")
    # key_dim // head_k_dim heads, at most fla's default of 4, reduced until it divides both dims
    heads = dividing_heads(min(4, key_dim // head_k_dim), key_dim, value_dim) if num_heads is None else num_heads
    return GatedLinearAttention(dim, expand_k=expand_k, expand_v=expand_v, num_heads=heads, mode=mode,
                                chunk_size=chunk_size, **kwargs)

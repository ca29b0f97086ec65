"""The Legendre Memory Unit (LMU) token mixer of LMUFormer, in recurrent and parallel (convolution) forms.

Papers: Liu, Datta, Kundu, Beerel and Kundu (Zeyu Liu et al.), "LMUFormer: Low Complexity Yet Powerful Spiking
Model With Legendre Memory Units", ICLR 2024; the memory is that of Voelker, Kajić and Eliasmith, "Legendre
Memory Units: Continuous-Time Representation in Recurrent Neural Networks", NeurIPS 2019, in its parallel form
(Chilkuri and Eliasmith, "Parallelizing Legendre Memory Unit Training", ICML 2021). Names and defaults follow
zeyuliu1037/LMUFormer ``src/blocks/lmu_cell.py`` (``LMUFFTCell``: ``W_u``, ``W_h``, buffers ``A``, ``B``) and
``src/blocks/lmu.py`` (``LMU``: ``lmu``, ``proj_conv``, ``proj_bn``; memory size = hidden size = dim).

For a sequence ``x_t`` (``t = 0..L-1``)::

    u_t = ReLU(W_u x_t)                          (one scalar per token: W_u maps dim -> 1)
    m_t = Abar m_{t-1} + Bbar u_t                (memory of ``memory_size`` Legendre coefficients)
    h_t = ReLU(W_h [m_t; x_t])
    out = BN(Conv1x1(h))

with the continuous Legendre system ``A_ij = (2i+1)/theta * (-1 if i < j else (-1)^(i-j+1))``,
``B_i = (2i+1)/theta * (-1)^i`` discretised by zero-order hold with ``dt = 1`` (``Abar = e^A``,
``Bbar = A^-1 (e^A - I) B``, computed here as one matrix exponential of ``[[A, B], [0, 0]]``). The memory is a
linear time-invariant filter of ``u`` with impulse response ``H_t = Abar^t Bbar``, so three forms give it:

- ``"recurrent"``: the loop above (also :meth:`LMU.step`, for streaming one token at a time);
- ``"fft"``: ``m = irfft(rfft(u) * rfft(H))`` with both padded to ``2L`` (the reference's training form);
- ``"conv"``: the same causal convolution as one ``conv1d`` (chosen for short inputs);
- ``"toeplitz"``: the convolution as a product with the ``L x L`` lower-triangular Toeplitz matrix of ``H``
  (what ``"conv"`` becomes during ONNX export, whose ``Conv`` needs a kernel of static shape).

The spiking variant (:class:`SpikingLMUFFTCell`, :class:`SpikingLMU`: the reference's ``SpikingLMUFFTCell`` and
``SLMUMs``) puts a BatchNorm and LIF neurons (:mod:`archlab.zoo.layers.spiking`) on ``u``, ``m`` and ``h``, so all
three are 0/1 spikes; the memory between them is the same linear filter, in any of the forms above.

``theta`` (the window the memory represents) is fixed at construction: the token count of ``resolution`` when
given (``theta = L``, as in the paper), else the reference's 128. Because it does not depend on the input, the
output on a prefix of a sequence equals the prefix of the output (streaming).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer
from archlab.zoo.layers.spiking import MultiStepLIF

__all__ = ["LMU", "LMUFFTCell", "SpikingLMU", "SpikingLMUFFTCell", "SpikingLMUState", "create_lmu",
           "legendre_continuous", "zoh_discretise"]

MODES = ("auto", "fft", "conv", "toeplitz", "recurrent")
_CONV_MAX_LEN = 256  # below this a direct convolution is cheaper on CPU than two FFTs of length 2L


def legendre_continuous(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The continuous-time Legendre delay system ``(A, B)`` (float64; ``A`` is ``order x order``, ``B`` is
    ``order x 1``) of Voelker et al. (2019), Eq. 2, as built in ``LMUFFTCell.stateSpaceMatrices``."""
    q = torch.arange(order, dtype=torch.float64)
    r = ((2 * q + 1) / theta)[:, None]
    i, j = q[:, None], q[None, :]
    sign = torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    return r * sign, r * (-1.0) ** q[:, None]


def zoh_discretise(a: torch.Tensor, b: torch.Tensor, dt: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order-hold discretisation: ``expm(dt [[A, B], [0, 0]]) = [[Abar, Bbar], [0, I]]``.

    The same result as ``scipy.signal.cont2discrete(..., method="zoh")`` (which the reference calls), without
    needing ``A`` to be invertible.
    """
    n, m = a.shape[0], b.shape[1]
    block = a.new_zeros(n + m, n + m)
    block[:n, :n] = a
    block[:n, n:] = b
    e = torch.linalg.matrix_exp(block * dt)
    return e[:n, :n], e[:n, n:]


class LMUFFTCell(nn.Module):
    """The LMU cell of LMUFormer over ``(B, L, input_size)``; returns ``h`` of shape ``(B, L, hidden_size)``."""

    def __init__(self, input_size: int, hidden_size: int, memory_size: int, theta: float,
                 mode: str = "auto") -> None:
        super().__init__()
        if mode not in MODES:
            raise UserError(f"lmu: unknown mode {mode!r}; known: {', '.join(MODES)}")
        if theta <= 0:
            raise UserError(f"lmu: theta must be > 0, got {theta}")
        self.hidden_size = hidden_size
        self.memory_size = memory_size
        self.theta = float(theta)
        self.mode = mode
        self.W_u = nn.Linear(input_size, 1)
        self.f_u = nn.ReLU()
        self.W_h = nn.Linear(memory_size + input_size, hidden_size)
        self.f_h = nn.ReLU()
        a, b = zoh_discretise(*legendre_continuous(memory_size, self.theta), dt=1.0)
        # float32 buffers like the reference's (computed in float64 first); they follow .to(dtype).
        self.register_buffer("A", a.float())
        self.register_buffer("B", b.float())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # The reference also stores the impulse response H and its FFT for its fixed seq_len; both are derived
        # from A and B, and are recomputed here for whatever length comes in, so a reference checkpoint loads.
        for key in ("H", "fft_H"):
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def impulse(self, length: int) -> torch.Tensor:
        """``H[:, t] = Abar^t Bbar`` for ``t < length``, shape ``(memory_size, length)``, by doubling:
        ``[H_{<n}, Abar^n H_{<n}]`` takes ``log2(length)`` matrix products instead of ``length``."""
        h, power = self.B, self.A
        while h.shape[1] < length:
            h = torch.cat([h, power @ h], dim=1)
            power = power @ power
        return h[:, :length]

    def _powers_applied(self, m0: torch.Tensor, length: int) -> torch.Tensor:
        """``Abar^(t+1) m0`` for ``t < length``: the initial memory's share of each ``m_t``, ``(B, length, M)``."""
        seq, power = (m0 @ self.A.T)[:, None], self.A
        while seq.shape[1] < length:
            seq = torch.cat([seq, seq @ power.T], dim=1)
            power = power @ power
        return seq[:, :length]

    def memory(self, u: torch.Tensor, m0: torch.Tensor | None = None, mode: str | None = None) -> torch.Tensor:
        """The memory ``m`` (``(B, L, M)``) for the encoded input ``u`` (``(B, L, 1)``) from memory ``m0``."""
        mode = mode or self.mode
        length = u.shape[1]
        if mode == "auto":
            mode = "conv" if length <= _CONV_MAX_LEN or torch.onnx.is_in_onnx_export() else "fft"
        if mode == "recurrent":
            m = u.new_zeros(u.shape[0], self.memory_size) if m0 is None else m0
            out = []
            for t in range(length):
                m = m @ self.A.T + u[:, t] @ self.B.T
                out.append(m)
            return torch.stack(out, dim=1)
        h = self.impulse(length).to(u.dtype)
        x = u.transpose(1, 2)  # (B, 1, L)
        if mode == "fft":
            n = 2 * length  # zero padding to 2L turns the FFT's circular convolution into a linear one
            m = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(h, n=n), n=n)[..., :length]
        elif mode == "conv" and not torch.onnx.is_in_onnx_export():
            # conv1d is a cross-correlation: flipping H and padding L-1 zeros on the left makes it causal.
            m = F.conv1d(F.pad(x, (length - 1, 0)), h.flip(-1)[:, None, :])
        elif mode in ("conv", "toeplitz"):
            # The convolution as a product with the lower-triangular Toeplitz matrix T[i, t, s] = H[i, t - s]:
            # ONNX's Conv needs a kernel of known shape, which a kernel computed from buffers lacks.
            pos = torch.arange(length, device=u.device)
            lag = pos[:, None] - pos[None, :]
            toeplitz = h[:, lag.clamp(min=0)] * (lag >= 0).to(h.dtype)  # (M, L, L)
            m = torch.einsum("its,bs->bit", toeplitz, x[:, 0])
        else:
            raise UserError(f"lmu: unknown mode {mode!r}; known: {', '.join(MODES)}")
        m = m.transpose(1, 2)
        if m0 is not None:
            m = m + self._powers_applied(m0, length)
        return m

    def forward(self, x: torch.Tensor, m0: torch.Tensor | None = None,
                mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(h, m_last)``: the hidden sequence and the memory after the last token."""
        u = self.f_u(self.W_u(x))
        m = self.memory(u, m0, mode)
        h = self.f_h(self.W_h(torch.cat([m, x], dim=-1)))
        return h, m[:, -1]


class LMU(nn.Module):
    """LMUFormer's LMU token mixer over ``(B, L, dim)``: the cell, then a 1x1 ``proj_conv`` and ``proj_bn``.

    ``forward(x, state=None, return_state=False)`` continues from the memory ``state`` (``(B, memory_size)``)
    of a previous call; :meth:`step` processes one token. ``proj_bn`` is a BatchNorm: in training mode its batch
    statistics mix all positions, so the mixer is causal (and streams) in evaluation mode.
    """

    def __init__(self, dim: int, *, memory_size: int | None = None, hidden_size: int | None = None,
                 theta: float = 128.0, use_all_h: bool = True, mode: str = "auto") -> None:
        super().__init__()
        if not use_all_h:
            raise UserError("lmu: use_all_h=False (only the last hidden state) is not a token mixer")
        self.dim = dim
        self.memory_size = memory_size or dim
        self.hidden_size = hidden_size or dim
        self.lmu = LMUFFTCell(dim, self.hidden_size, self.memory_size, theta, mode=mode)
        self.proj_conv = nn.Conv1d(self.hidden_size, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, return_state: bool = False,
                mode: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise UserError(f"lmu: expected input (B, L, {self.dim}), got {tuple(x.shape)}")
        h, m_last = self.lmu(x, state, mode)
        out = self.proj_bn(self.proj_conv(h.transpose(1, 2))).transpose(1, 2)
        return (out, m_last) if return_state else out

    def step(self, x_t: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One token ``x_t`` (``(B, dim)``) from memory ``state``; returns ``(y_t, new_state)``."""
        if x_t.dim() != 2 or x_t.shape[-1] != self.dim:
            raise UserError(f"lmu: step expects (B, {self.dim}), got {tuple(x_t.shape)}")
        out, state = self.forward(x_t[:, None], state, return_state=True, mode="recurrent")
        return out[:, 0], state


class SpikingLMUState(NamedTuple):
    """Streaming state of :class:`SpikingLMUFFTCell`: the memory before its BatchNorm ``m`` ``(B, M)`` and the
    membranes of the three LIF layers ``v_u`` ``(B, 1)``, ``v_m`` ``(B, M)``, ``v_h`` ``(B, hidden)``."""

    m: torch.Tensor
    v_u: torch.Tensor
    v_m: torch.Tensor
    v_h: torch.Tensor


class SpikingLMUFFTCell(LMUFFTCell):
    """The spiking LMU cell (the reference's ``SpikingLMUFFTCell``): the encoding, the memory and the hidden
    state each pass through a BatchNorm and LIF neurons, so ``u``, ``m`` and ``h`` are spikes::

        u = LIF(bn_u(W_u x));  m = LIF(bn_m(memory(u)));  h = LIF(bn_h(W_h [m; x]))

    The LIF neurons integrate over the sequence (the frames are the spiking time steps). ``forward(x, state)``
    returns ``(h, state)``; the memory may be computed in any of :data:`MODES`.
    """

    def __init__(self, input_size: int, hidden_size: int, memory_size: int, theta: float,
                 mode: str = "auto") -> None:
        super().__init__(input_size, hidden_size, memory_size, theta, mode)
        self.bn_u = nn.BatchNorm1d(1)
        self.f_u = MultiStepLIF(tau=2.0, detach_reset=True)
        self.bn_m = nn.BatchNorm1d(memory_size)
        self.f_m = MultiStepLIF(tau=2.0, detach_reset=True)
        self.bn_h = nn.BatchNorm1d(hidden_size)
        self.f_h = MultiStepLIF(tau=2.0, detach_reset=True)

    def forward(self, x: torch.Tensor, state: SpikingLMUState | None = None,  # type: ignore[override]
                mode: str | None = None) -> tuple[torch.Tensor, SpikingLMUState]:
        m0, v_u, v_m, v_h = state if state is not None else (None, None, None, None)
        u, v_u = self.f_u(self.bn_u(self.W_u(x).transpose(1, 2)), v_u, return_state=True)  # (B, 1, L)
        m = self.memory(u.transpose(1, 2), m0, mode)  # (B, L, M), before its BatchNorm
        m_spikes, v_m = self.f_m(self.bn_m(m.transpose(1, 2)), v_m, return_state=True)
        h_in = self.W_h(torch.cat([m_spikes.transpose(1, 2), x], dim=-1))
        h, v_h = self.f_h(self.bn_h(h_in.transpose(1, 2)), v_h, return_state=True)
        return h.transpose(1, 2), SpikingLMUState(m[:, -1], v_u, v_m, v_h)


class SpikingLMU(nn.Module):
    """The spiking LMUFormer's token mixer (the reference's ``SLMUMs``, membrane-shortcut form) over
    ``(B, L, dim)``: ``prev_bn`` and ``prev_lif`` turn the input into spikes, the :class:`SpikingLMUFFTCell`
    (memory ``2 * dim`` by default, as the reference) mixes them, then a 1x1 ``proj_conv`` and ``proj_bn``. The
    output is real-valued (the residual stream carries membrane potentials; the next layer spikes)."""

    def __init__(self, dim: int, *, memory_size: int | None = None, theta: float = 128.0,
                 mode: str = "auto") -> None:
        super().__init__()
        self.dim = dim
        self.memory_size = memory_size or 2 * dim
        self.prev_bn = nn.BatchNorm1d(dim)
        self.prev_lif = MultiStepLIF(tau=2.0, v_threshold=0.5, detach_reset=True)
        self.lmu = SpikingLMUFFTCell(dim, dim, self.memory_size, theta, mode=mode)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor, state: tuple | None = None, return_state: bool = False,
                mode: str | None = None) -> torch.Tensor | tuple[torch.Tensor, tuple]:
        """``state``: ``(prev_lif membrane, SpikingLMUState)`` of a previous call."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise UserError(f"lmu: expected input (B, L, {self.dim}), got {tuple(x.shape)}")
        v_prev, cell_state = state if state is not None else (None, None)
        spikes, v_prev = self.prev_lif(self.prev_bn(x.transpose(1, 2)), v_prev, return_state=True)
        h, cell_state = self.lmu(spikes.transpose(1, 2), cell_state, mode)
        out = self.proj_bn(self.proj_conv(h.transpose(1, 2))).transpose(1, 2)
        return (out, (v_prev, cell_state)) if return_state else out


@register_mixer("lmu", layout="sequence", causal=True, settings={"memory_size": (16, 32, 64)},
                paper="LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units "
                      "(Liu et al., ICLR 2024)")
def create_lmu(dim: int, *, resolution: tuple[int, int] | None = None, theta: float | None = None,
               memory_size: int | None = None, mode: str = "auto", **kwargs) -> LMU:
    """LMU mixer for ``dim`` channels; ``theta`` defaults to the token count ``H * W`` of ``resolution``
    (the paper's theta = sequence length), else to the reference's 128."""
    if theta is None:
        theta = float(resolution[0] * resolution[1]) if resolution is not None else 128.0
    return LMU(dim, memory_size=memory_size, theta=theta, mode=mode, **kwargs)

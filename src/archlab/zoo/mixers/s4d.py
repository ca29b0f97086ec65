"""S4D: the diagonal structured state space layer, as a causal sequence token mixer.

Papers: Gu, Gupta, Goel and Ré, "On the Parameterization and Initialization of Diagonal State Space Models",
NeurIPS 2022 (S4D); Gu, Goel and Ré, "Efficiently Modeling Long Sequences with Structured State Spaces",
ICLR 2022 (S4). Parameter names, shapes and defaults follow state-spaces/s4 ``models/s4/s4.py``: ``S4Block``
(``layer``, ``output_linear``) around ``FFTConv`` (``D``, ``kernel``, GELU) around ``SSMKernelDiag`` with
``init="diag-lin"``, ``disc="zoh"``, ``dt_transform="exp"``, ``real_transform="exp"``,
``imag_transform="none"`` (``inv_dt``, ``A_real``, ``A_imag``, ``B``, ``C``); a reference
``S4Block(H, mode="diag", init="diag-lin", transposed=False)`` state dict loads with ``load_state_dict``.

Per channel ``h`` (``H`` channels), a complex diagonal state of ``N/2`` modes (the other half are their complex
conjugates, so the output is ``2 Re(.)``)::

    A    = -exp(A_real) - i A_imag          S4D-Lin init: A_n = -1/2 - i pi n  (Re A < 0 by construction)
    dt   = exp(inv_dt)                      log dt uniform in [log dt_min, log dt_max]
    dA   = exp(dt A),  dB = B (exp(dt A) - 1) / A                 (zero-order hold)
    x_t  = dA x_{t-1} + dB u_t,   y_t = 2 Re(C x_t) + D u_t
    out  = output_linear(GELU(y))           (Linear H -> 2H, then GLU)

Two forms compute the same map (the tests hold them to each other):

- ``"conv"`` (training default): the kernel ``K_l = 2 Re(sum_n C_n dB_n dA_n^l)`` is one Vandermonde product,
  applied to the input with an FFT of length ``2L`` (zero padding makes the circular convolution linear and
  causal); a carried state adds ``2 Re(C dA^(l+1) x_0)`` to the outputs;
- ``"recurrent"``: the loop above with constant memory (also :meth:`S4D.step` for decoding one token).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_mixer

__all__ = ["S4D", "S4DConv", "S4DKernel", "create_s4d"]

MODES = ("conv", "recurrent")
FINAL_ACTS = ("glu", "id", None)
PAPER = ("On the Parameterization and Initialization of Diagonal State Space Models "
         "(Gu, Gupta, Goel, Re, NeurIPS 2022)")


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


class S4DKernel(nn.Module):
    """The diagonal SSM of ``H`` channels: produces the convolution kernel and the discrete ``(dA, dB, C)``.

    Shapes as the reference ``SSMKernelDiag`` with ``channels=1``: ``inv_dt (H, 1)``, ``A_real``/``A_imag``
    ``(H, N/2)``, ``B (1, H, N/2, 2)`` and ``C (1, H, N/2, 2)`` (complex numbers stored as real pairs).
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1) -> None:
        super().__init__()
        if d_model < 1 or d_state < 2 or d_state % 2:
            raise UserError(f"s4d: d_model must be >= 1 and d_state a positive even number, got d_model={d_model}, "
                            f"d_state={d_state}")
        if not 0 < dt_min <= dt_max:
            raise UserError(f"s4d: expected 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.H = d_model
        self.N = d_state // 2  # modes kept; their conjugates are implicit, as in the reference
        log_dt = torch.rand(self.H, 1) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.inv_dt = nn.Parameter(log_dt)
        # S4D-Lin: real part -1/2 (stored through exp, so it stays negative whatever the optimiser does),
        # imaginary part pi n (the reference stores the magnitude and subtracts i A_imag).
        self.A_real = nn.Parameter(torch.full((self.H, self.N), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(self.N, dtype=torch.float32).repeat(self.H, 1))
        self.B = nn.Parameter(torch.view_as_real(torch.ones(1, self.H, self.N, dtype=torch.cfloat)).clone())
        self.C = nn.Parameter(torch.view_as_real(torch.randn(1, self.H, self.N, dtype=torch.cfloat)).clone())
        for p in (self.inv_dt, self.A_real, self.A_imag, self.B):
            p._no_weight_decay = True  # type: ignore[attr-defined]  # the reference registers wd=0.0 for them

    def A(self) -> torch.Tensor:
        """The continuous diagonal ``A`` (``(H, N/2)`` complex); ``Re A < 0`` for every parameter value."""
        return torch.complex(-torch.exp(self.A_real), -self.A_imag)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ZOH-discretised ``(dA, dB, C)``, each ``(H, N/2)`` complex."""
        dt = torch.exp(self.inv_dt)  # (H, 1)
        A = self.A()
        dtA = A * dt
        dA = torch.exp(dtA)
        dB = torch.view_as_complex(self.B)[0] * (dA - 1.0) / A
        return dA, dB, torch.view_as_complex(self.C)[0]

    def forward(self, L: int) -> torch.Tensor:
        """The kernel ``K[h, l] = 2 Re(sum_n C dB dA^l)`` for ``l < L``, shape ``(H, L)``.

        Written in real arithmetic (``dA^l = e^(pl) (cos ql + i sin ql)`` with ``dt A = p + iq``): the same
        numbers as the complex form, and exportable to ONNX, which has no complex tensors.
        """
        dt = torch.exp(self.inv_dt)
        a_re, a_im = -torch.exp(self.A_real), -self.A_imag
        p, q = dt * a_re, dt * a_im
        e_re, e_im = torch.exp(p) * torch.cos(q) - 1, torch.exp(p) * torch.sin(q)  # exp(dt A) - 1
        den = a_re * a_re + a_im * a_im
        z_re, z_im = (e_re * a_re + e_im * a_im) / den, (e_im * a_re - e_re * a_im) / den  # (exp(dt A) - 1) / A
        b_re, b_im = self.B[0, ..., 0], self.B[0, ..., 1]
        c_re, c_im = self.C[0, ..., 0], self.C[0, ..., 1]
        cb_re, cb_im = c_re * b_re - c_im * b_im, c_re * b_im + c_im * b_re
        w_re, w_im = cb_re * z_re - cb_im * z_im, cb_re * z_im + cb_im * z_re  # C dB
        steps = torch.arange(L, device=dt.device, dtype=dt.dtype)
        pl, ql = p.unsqueeze(-1) * steps, q.unsqueeze(-1) * steps  # (H, N/2, L)
        return 2 * (torch.exp(pl) * (w_re.unsqueeze(-1) * torch.cos(ql) - w_im.unsqueeze(-1) * torch.sin(ql))).sum(1)

    def vandermonde(self, L: int, offset: int = 0) -> torch.Tensor:
        """``dA^(l + offset)`` for ``l < L``, ``(H, N/2, L)``, as ``exp(l dt A)`` (no repeated products)."""
        dt = torch.exp(self.inv_dt)
        dtA = self.A() * dt
        steps = torch.arange(offset, offset + L, device=dtA.device, dtype=self.inv_dt.dtype)
        return torch.exp(dtA.unsqueeze(-1) * steps)

    def default_state(self, *batch_shape: int) -> torch.Tensor:
        """A zero state ``(*batch_shape, H, N/2)`` (complex), as the reference's ``default_state``."""
        return torch.zeros(*batch_shape, self.H, self.N, dtype=_complex_dtype(self.C.dtype), device=self.C.device)


class S4DConv(nn.Module):
    """``FFTConv`` with a diagonal kernel over ``(B, L, H)``: ``GELU(SSM(u) + D u)``."""

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1,
                 activation: str = "gelu") -> None:
        super().__init__()
        if activation not in ("gelu", "id"):
            raise UserError(f"s4d: activation must be 'gelu' or 'id', got {activation!r}")
        self.d_model = d_model
        self.D = nn.Parameter(torch.randn(1, d_model))
        self.kernel = S4DKernel(d_model, d_state, dt_min, dt_max)
        self.activation = nn.GELU() if activation == "gelu" else nn.Identity()

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, mode: str = "conv",
                return_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        u = x.transpose(1, 2)  # (B, H, L)
        L = u.shape[-1]
        cdtype = _complex_dtype(u.dtype)
        if mode == "recurrent":
            dA, dB, C = self.kernel.discrete()
            s = self.kernel.default_state(u.shape[0]).to(cdtype) if state is None else state
            ys = []
            for t in range(L):
                s = dA * s + dB * u[:, :, t, None]
                ys.append(2 * (C * s).sum(-1).real)
            y = torch.stack(ys, dim=-1).to(u.dtype) if ys else torch.zeros_like(u)
            next_state = s
        elif mode == "conv":
            k = self.kernel(L).to(u.dtype)
            if torch.onnx.is_in_onnx_export():
                # ONNX has no FFT for this and its Conv needs a static kernel: the causal convolution as a
                # product with the lower-triangular Toeplitz matrix T[h, t, s] = K[h, t - s].
                pos = torch.arange(L, device=u.device)
                lag = pos[:, None] - pos[None, :]
                toeplitz = k[:, lag.clamp(min=0)] * (lag >= 0).to(k.dtype)
                y = torch.einsum("hts,bhs->bht", toeplitz, u)
            else:
                n = 2 * L  # zero padding to 2L turns the FFT's circular convolution into a linear, causal one
                y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]
            next_state = None
            if state is not None or return_state:
                dA, dB, C = self.kernel.discrete()
            if state is not None:
                # x_l = dA^(l+1) x_0 + (convolution part): the initial state's share of every output.
                y = y + 2 * torch.einsum("hn,bhn,hnl->bhl", C, state, self.kernel.vandermonde(L, 1)).real
            if return_state:
                # x_L = dA^L x_0 + sum_l dA^(L-1-l) dB u_l, with the powers in reverse order.
                powers = self.kernel.vandermonde(L).flip(-1)
                next_state = torch.einsum("bhl,hnl->bhn", u.to(cdtype), dB.unsqueeze(-1) * powers)
                if state is not None:
                    next_state = next_state + dA ** L * state
        else:
            raise UserError(f"s4d: unknown mode {mode!r}; known: {', '.join(MODES)}")
        y = y + u * self.D.transpose(0, 1)
        return self.activation(y.transpose(1, 2)), next_state

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token ``(B, H)``; returns ``(y, next_state)``."""
        dA, dB, C = self.kernel.discrete()
        state = dA * state + dB * x.unsqueeze(-1)
        y = 2 * (C * state).sum(-1).real.to(x.dtype) + x * self.D[0]
        return self.activation(y), state


class S4D(nn.Module):
    """The S4 block with a diagonal kernel (S4D) over ``(B, L, d_model)``; names as the reference ``S4Block``.

    ``forward(x, state=None, return_state=False, mode=None)`` continues from ``state`` (``(B, d_model,
    d_state/2)`` complex, from a previous call); :meth:`step` decodes one token ``(B, d_model)``.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1,
                 final_act: str | None = "glu", activation: str = "gelu", dropout: float = 0.0,
                 mode: str = "conv") -> None:
        super().__init__()
        if final_act not in FINAL_ACTS:
            raise UserError(f"s4d: final_act must be one of {FINAL_ACTS}, got {final_act!r}")
        if mode not in MODES:
            raise UserError(f"s4d: unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.d_model = d_model
        self.d_state = d_state
        self.mode = mode
        self.layer = S4DConv(d_model, d_state, dt_min, dt_max, activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if final_act == "glu":
            self.output_linear = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GLU(dim=-1))
        elif final_act == "id":
            self.output_linear = nn.Linear(d_model, d_model)
        else:
            self.output_linear = nn.Identity()

    def _check_state(self, state: torch.Tensor, batch: int) -> None:
        shape = (batch, self.d_model, self.d_state // 2)
        if tuple(state.shape) != shape or not state.is_complex():
            raise UserError(f"s4d: expected a complex state of shape {shape}, got {tuple(state.shape)} "
                            f"{state.dtype}")

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, return_state: bool = False,
                mode: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise UserError(f"s4d: expected input (B, L, {self.d_model}), got {tuple(x.shape)}")
        if state is not None:
            self._check_state(state, x.shape[0])
        y, next_state = self.layer(x, state, mode or self.mode, return_state)
        out = self.output_linear(self.drop(y))
        return (out, next_state) if return_state else out

    def step(self, x_t: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one token ``x_t`` (``(B, d_model)``); returns ``(y_t, new_state)``."""
        if x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            raise UserError(f"s4d: step expects (B, {self.d_model}), got {tuple(x_t.shape)}")
        if state is None:
            state = self.default_state(x_t.shape[0]).to(_complex_dtype(x_t.dtype))
        self._check_state(state, x_t.shape[0])
        y, state = self.layer.step(x_t, state)
        return self.output_linear(self.drop(y)), state

    def default_state(self, *batch_shape: int) -> torch.Tensor:
        return self.layer.kernel.default_state(*batch_shape)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, mode={self.mode!r}"


@register_mixer("s4d", layout="sequence", causal=True, paper=PAPER, settings={"d_state": (8, 16, 32)})
def create_s4d(dim: int, *, resolution: tuple[int, int] | None = None, d_state: int = 64, mode: str = "conv",
               **kwargs) -> S4D:
    """An :class:`S4D` mixer for ``dim`` channels (any length: ``resolution`` is not needed)."""
    return S4D(dim, d_state=d_state, mode=mode, **kwargs)

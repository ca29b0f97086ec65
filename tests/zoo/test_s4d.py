"""S4D: the convolutional (FFT) and recurrent forms agree, state carries across calls, step decoding matches the
full forward, the layer is causal, is initialised as S4D-Lin and is named as the reference S4Block."""

from __future__ import annotations

import math

import pytest
import torch

from archlab.errors import UserError
from archlab.zoo import create_mixer, get_mixer_spec
from archlab.zoo.mixers.s4d import S4D


def _s4d(dim: int = 8, d_state: int = 16, dtype=torch.float64, **kw) -> S4D:
    """An S4D layer with random (not initial) weights: decay rates and frequencies spread, so that some modes
    forget within a few steps and others ring for the whole sequence."""
    torch.manual_seed(0)
    layer = create_mixer("s4d", dim, d_state=d_state, **kw).to(dtype)
    k = layer.layer.kernel
    with torch.no_grad():
        k.inv_dt.uniform_(math.log(1e-2), math.log(0.5))
        k.A_real.copy_(torch.empty_like(k.A_real).uniform_(0.01, 2.0).log())
        k.A_imag.uniform_(0, 10)
        k.B.normal_()
        k.C.normal_()
        layer.layer.D.normal_()
    return layer


def test_registered_as_causal_sequence_mixer() -> None:
    spec = get_mixer_spec("s4d")
    assert spec.layout == "sequence" and spec.causal and "Diagonal State Space" in spec.paper


def test_names_and_shapes_follow_reference_s4block() -> None:
    layer = create_mixer("s4d", 12, d_state=64)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    # S4Block(12, mode="diag", init="diag-lin", transposed=False) in state-spaces/s4 models/s4/s4.py
    assert shapes == {
        "layer.D": (1, 12), "layer.kernel.inv_dt": (12, 1), "layer.kernel.A_real": (12, 32),
        "layer.kernel.A_imag": (12, 32), "layer.kernel.B": (1, 12, 32, 2), "layer.kernel.C": (1, 12, 32, 2),
        "output_linear.0.weight": (24, 12), "output_linear.0.bias": (24,),
    }


def test_s4d_lin_initialisation() -> None:
    torch.manual_seed(1)
    layer = create_mixer("s4d", 64, d_state=32)
    k = layer.layer.kernel
    A = k.A()
    n = torch.arange(16, dtype=torch.float32)
    torch.testing.assert_close(A.real, torch.full((64, 16), -0.5))
    torch.testing.assert_close(A.imag, (-math.pi * n).repeat(64, 1))
    dt = k.inv_dt.exp()
    assert dt.min() >= 1e-3 and dt.max() <= 1e-1 and dt.max() / dt.min() > 10  # spread over the range
    torch.testing.assert_close(torch.view_as_complex(k.B), torch.ones(1, 64, 16, dtype=torch.cfloat))


def test_kernel_is_c_times_powers_of_da_times_db() -> None:
    layer = _s4d()
    k = layer.layer.kernel
    dA, dB, C = k.discrete()
    expected, power = [], torch.ones_like(dA)
    for _ in range(20):
        expected.append(2 * (C * power * dB).sum(-1).real)
        power = power * dA
    torch.testing.assert_close(k(20), torch.stack(expected, -1), atol=1e-12, rtol=0)
    # ZOH: dB = (exp(dt A) - 1) / A * B, the exact integral of exp(s A) B over one step of length dt
    dt = k.inv_dt.exp()
    A = k.A()
    s = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None, None] * dt
    integral = torch.trapezoid(torch.exp(s * A), s, dim=0) * torch.view_as_complex(k.B)[0]
    torch.testing.assert_close(dB, integral, atol=1e-6, rtol=1e-6)


def test_conv_equals_recurrent_at_256() -> None:
    layer = _s4d()
    x = torch.randn(3, 256, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x, mode="conv"), layer(x, mode="recurrent"), atol=1e-10, rtol=0)
    # float32 agrees to 1e-4
    layer32 = _s4d(dtype=torch.float32)
    x32 = x.float()
    torch.testing.assert_close(layer32(x32, mode="conv"), layer32(x32, mode="recurrent"), atol=1e-4, rtol=0)


@pytest.mark.parametrize("mode", ["conv", "recurrent"])
def test_two_halves_with_carried_state_equal_one_call(mode: str) -> None:
    layer = _s4d()
    x = torch.randn(2, 200, 8, dtype=torch.float64)
    full, last = layer(x, return_state=True, mode=mode)
    y1, s1 = layer(x[:, :73], return_state=True, mode=mode)
    y2, s2 = layer(x[:, 73:], state=s1, return_state=True, mode="conv" if mode == "recurrent" else "recurrent")
    torch.testing.assert_close(torch.cat([y1, y2], 1), full, atol=1e-10, rtol=0)
    torch.testing.assert_close(s2, last, atol=1e-10, rtol=0)


def test_step_decoding_equals_full_forward() -> None:
    layer = _s4d()
    x = torch.randn(2, 50, 8, dtype=torch.float64)
    full = layer(x)
    state = None
    for t in range(50):
        y, state = layer.step(x[:, t], state)
        torch.testing.assert_close(y, full[:, t], atol=1e-10, rtol=0)
    torch.testing.assert_close(state, layer(x, return_state=True)[1], atol=1e-10, rtol=0)


def test_causal() -> None:
    layer = _s4d()
    x = torch.randn(2, 64, 8, dtype=torch.float64)
    y = layer(x)
    x2 = x.clone()
    x2[:, 40:] += torch.randn_like(x2[:, 40:])
    y2 = layer(x2)
    torch.testing.assert_close(y2[:, :40], y[:, :40], atol=1e-12, rtol=0)
    assert (y2[:, 40:] - y[:, 40:]).abs().amax() > 1e-3  # the perturbation is seen from position 40 on


def test_real_part_of_a_stays_negative_under_training() -> None:
    layer = _s4d(dtype=torch.float32)
    opt = torch.optim.Adam(layer.parameters(), lr=0.5)
    x = torch.randn(4, 32, 8)
    for _ in range(5):
        opt.zero_grad()
        (-layer(x).pow(2).mean()).backward()  # push toward large outputs, i.e. slower decay
        opt.step()
    assert (layer.layer.kernel.A().real < 0).all()
    assert (layer.layer.kernel.discrete()[0].abs() < 1).all()  # |dA| < 1: the recurrence is stable


def test_bad_input_raises_user_error() -> None:
    layer = _s4d()
    with pytest.raises(UserError, match="s4d: expected input"):
        layer(torch.randn(2, 10, 7, dtype=torch.float64))
    with pytest.raises(UserError, match="s4d: step expects"):
        layer.step(torch.randn(2, 3, 8, dtype=torch.float64))
    with pytest.raises(UserError, match="complex state"):
        layer(torch.randn(2, 10, 8, dtype=torch.float64), state=torch.zeros(2, 8, 3, dtype=torch.complex128))
    with pytest.raises(UserError, match="unknown mode"):
        layer(torch.randn(2, 10, 8, dtype=torch.float64), mode="fft")
    with pytest.raises(UserError, match="even"):
        create_mixer("s4d", 8, d_state=7)
    with pytest.raises(UserError, match="dt_min"):
        create_mixer("s4d", 8, dt_min=0.2, dt_max=0.1)

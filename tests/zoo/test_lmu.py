"""The LMU token mixer (LMUFormer): its forms agree, its memory is the Legendre delay system, it is causal and
streams, and its names follow zeyuliu1037/LMUFormer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from archlab.errors import UserError
from archlab.zoo import create_mixer, get_mixer_spec
from archlab.zoo.mixers.lmu import LMU, legendre_continuous, zoh_discretise


def _mixer(dim: int = 16, length: int = 40, dtype=torch.float64, **kw) -> LMU:
    torch.manual_seed(0)
    mixer = create_mixer("lmu", dim, resolution=(1, length), **kw).to(dtype).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that the eval-mode affine map is exercised
        mixer.proj_bn.running_mean.normal_()
        mixer.proj_bn.running_var.uniform_(0.5, 2.0)
        mixer.lmu.W_u.bias.fill_(0.5)  # u = ReLU(W_u x) is then non-zero for most tokens
    return mixer


def test_registered_as_causal_sequence_mixer() -> None:
    spec = get_mixer_spec("lmu")
    assert spec.layout == "sequence" and spec.causal and "LMUFormer" in spec.paper


def test_continuous_legendre_matrices_match_closed_form() -> None:
    order, theta = 7, 13.0
    a, b = legendre_continuous(order, theta)
    for i in range(order):
        assert b[i, 0].item() == pytest.approx((2 * i + 1) / theta * (-1) ** i)
        for j in range(order):
            expected = (2 * i + 1) / theta * (-1.0 if i < j else (-1.0) ** (i - j + 1))
            assert a[i, j].item() == pytest.approx(expected)


def test_zoh_discretisation_matches_closed_form_and_scipy() -> None:
    a, b = legendre_continuous(9, 20.0)
    ad, bd = zoh_discretise(a, b, dt=1.0)
    # ZOH: Abar = e^A, Bbar = A^-1 (e^A - I) B (the Legendre A is invertible); e^A by its Taylor series.
    expm, term = torch.eye(9, dtype=torch.float64), torch.eye(9, dtype=torch.float64)
    for n in range(1, 40):
        term = term @ a / n
        expm = expm + term
    torch.testing.assert_close(ad, expm, atol=1e-12, rtol=0)
    torch.testing.assert_close(bd, torch.linalg.solve(a, (expm - torch.eye(9, dtype=torch.float64)) @ b),
                               atol=1e-10, rtol=0)
    signal = pytest.importorskip("scipy.signal")
    ad_ref, bd_ref, *_ = signal.cont2discrete((a.numpy(), b.numpy(), np.ones((1, 9)), np.zeros(1)), dt=1.0,
                                              method="zoh")
    np.testing.assert_allclose(ad.numpy(), ad_ref, atol=1e-12)
    np.testing.assert_allclose(bd.numpy(), bd_ref, atol=1e-12)


def test_memory_is_a_legendre_delay_line() -> None:
    # What makes A, B the LMU: the memory m_t holds the last theta inputs in the shifted Legendre basis,
    # u(t - d) ~ sum_i P_i(2 d / theta - 1) m_i(t). Wrong signs or a wrong discretisation break this.
    from numpy.polynomial import legendre

    order, theta, steps = 12, 50, 400
    mixer = create_mixer("lmu", 4, theta=float(theta), memory_size=order).double()
    t = torch.arange(steps, dtype=torch.float64)
    u = torch.sin(2 * math.pi * t / 80) + 0.5 * torch.cos(2 * math.pi * t / 130)
    m = mixer.lmu.memory(u.view(1, steps, 1), mode="fft")[0]
    for delay in (0, 10, 25, 50):
        decoder = torch.tensor([legendre.legval(2 * delay / theta - 1, [0] * i + [1]) for i in range(order)],
                               dtype=torch.float64)
        error = (m[theta:] @ decoder - u[theta - delay:steps - delay]).abs().max().item()
        assert error < 0.1, f"delay {delay}: reconstruction error {error:.3f}"


def test_impulse_response_is_powers_of_a_times_b() -> None:
    cell = _mixer(length=37).lmu
    h = cell.impulse(37)
    expected, state = [], cell.B.clone()
    for _ in range(37):
        expected.append(state[:, 0])
        state = cell.A @ state
    torch.testing.assert_close(h, torch.stack(expected, dim=1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("length", [1, 7, 40, 300])
def test_fft_conv_toeplitz_and_recurrent_forms_agree(length: int) -> None:
    mixer = _mixer(length=40)  # theta fixed at 40; inputs shorter and longer than it
    x = torch.randn(3, length, 16, dtype=torch.float64)
    reference = mixer(x, mode="recurrent")
    for mode in ("fft", "conv", "toeplitz", "auto"):
        torch.testing.assert_close(mixer(x, mode=mode), reference, atol=1e-10, rtol=0)
    # the memory itself, not only the output after the ReLUs
    u = torch.rand(2, length, 1, dtype=torch.float64)
    torch.testing.assert_close(mixer.lmu.memory(u, mode="fft"), mixer.lmu.memory(u, mode="recurrent"),
                               atol=1e-10, rtol=0)


def test_fft_and_recurrent_agree_in_float32() -> None:
    mixer = _mixer(dtype=torch.float32)
    x = torch.randn(2, 150, 16)
    torch.testing.assert_close(mixer(x, mode="fft"), mixer(x, mode="recurrent"), atol=1e-4, rtol=1e-4)


def test_streaming_prefix_outputs_equal() -> None:
    mixer = _mixer(length=64)
    x = torch.randn(2, 64, 16, dtype=torch.float64)
    full = mixer(x, mode="fft")
    for cut in (1, 13, 50):
        torch.testing.assert_close(mixer(x[:, :cut], mode="fft"), full[:, :cut], atol=1e-10, rtol=0)


def test_carried_state_and_step_decoding_equal_one_call() -> None:
    mixer = _mixer(length=50)
    x = torch.randn(2, 50, 16, dtype=torch.float64)
    full, m_full = mixer(x, mode="fft", return_state=True)
    first, state = mixer(x[:, :23], mode="fft", return_state=True)
    second, m_two = mixer(x[:, 23:], state, mode="fft", return_state=True)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, atol=1e-10, rtol=0)
    torch.testing.assert_close(m_two, m_full, atol=1e-10, rtol=0)
    _, state = mixer(x[:, :23], mode="conv", return_state=True)
    torch.testing.assert_close(mixer(x[:, 23:], state, mode="conv"), second, atol=1e-10, rtol=0)
    state, steps = None, []
    for t in range(50):
        y, state = mixer.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-10, rtol=0)


def test_causal_and_remembers() -> None:
    mixer = _mixer(length=30)
    x = torch.randn(1, 30, 16, dtype=torch.float64)
    y = x.clone()
    y[0, 10] += 3.0
    delta = (mixer(y) - mixer(x)).abs().amax(-1)[0]
    assert torch.all(delta[:10] == 0)
    # later tokens are unchanged in x, so only the memory can carry the change to them
    assert torch.all(delta[11:20] > 0)


def test_names_follow_reference_and_reference_checkpoint_loads() -> None:
    mixer = create_mixer("lmu", 32)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {
        "lmu.W_u.weight": (1, 32), "lmu.W_u.bias": (1,),
        "lmu.W_h.weight": (32, 64), "lmu.W_h.bias": (32,),
        "lmu.A": (32, 32), "lmu.B": (32, 1),
        "proj_conv.weight": (32, 32, 1), "proj_conv.bias": (32,),
        "proj_bn.weight": (32,), "proj_bn.bias": (32,), "proj_bn.running_mean": (32,),
        "proj_bn.running_var": (32,), "proj_bn.num_batches_tracked": (),
    }
    assert mixer.lmu.theta == 128.0  # the reference's LMU block: seq_len = theta = 128
    # A checkpoint of the reference also holds the derived impulse response H and its FFT; it loads strictly.
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in mixer.state_dict().items()}
    state["lmu.H"] = torch.randn(32, 128)
    state["lmu.fft_H"] = torch.randn(32, 129, dtype=torch.complex64)
    other = create_mixer("lmu", 32)
    other.load_state_dict(state, strict=True)
    torch.testing.assert_close(other.lmu.A, state["lmu.A"])


def test_theta_follows_resolution() -> None:
    assert create_mixer("lmu", 16, resolution=(7, 5)).lmu.theta == 35.0
    assert create_mixer("lmu", 16, resolution=(7, 5), theta=9.0).lmu.theta == 9.0


def test_onnx_export_matches(tmp_path) -> None:
    from archlab.export import check_onnx, export_onnx

    mixer = _mixer(dtype=torch.float32, length=100)
    path = export_onnx(mixer, (100, 16), tmp_path / "lmu.onnx")
    assert check_onnx(mixer, path, (100, 16), batch_sizes=(1, 3)) <= 1e-4


def test_bad_input_and_configuration() -> None:
    mixer = create_mixer("lmu", 16)
    with pytest.raises(UserError, match=r"lmu: expected input \(B, L, 16\)"):
        mixer(torch.randn(2, 5, 8))
    with pytest.raises(UserError, match="lmu: step"):
        mixer.step(torch.randn(2, 3, 16))
    with pytest.raises(UserError, match="unknown mode"):
        create_mixer("lmu", 16, mode="scan")
    with pytest.raises(UserError, match="theta"):
        create_mixer("lmu", 16, theta=0.0)

"""LIF neurons and the spiking LMU: the membrane follows SpikingJelly's charge / fire / hard-reset recursion, the
backward pass is the sigmoid surrogate, pieces with carried state equal one call, the memory's forms give the same
spikes, and bad settings are reported."""

from __future__ import annotations

import pytest
import torch

from archlab.errors import UserError
from archlab.zoo.layers.spiking import MultiStepLIF, sigmoid_surrogate_spike
from archlab.zoo.mixers.lmu import SpikingLMU


def test_lif_follows_the_recursion_by_hand() -> None:
    lif = MultiStepLIF(tau=2.0)
    x = torch.tensor([[[1.5, 0.5, 2.5, 0.0, 3.0, 0.4]]], dtype=torch.float64)
    # h1 = 0.75, v = 0.75; h2 = 0.75 + (0.5 - 0.75) / 2 = 0.625; h3 = 0.625 + (2.5 - 0.625) / 2 = 1.5625 -> fire,
    # v = 0; h4 = 0; h5 = 1.5 -> fire, v = 0; h6 = 0.2
    spikes, v = lif(x, return_state=True)
    assert spikes.tolist() == [[[0.0, 0.0, 1.0, 0.0, 1.0, 0.0]]]
    assert v.item() == pytest.approx(0.2)
    # a threshold of 0.5 and a reset to -0.5 change the trace as the formula says
    other = MultiStepLIF(tau=4.0, v_threshold=0.5, v_reset=-0.5)
    v, expected = torch.tensor(-0.5, dtype=torch.float64), []
    for xt in x[0, 0]:
        h = v + (xt - (v + 0.5)) / 4.0
        fired = float(h >= 0.5)
        v = h * (1 - fired) - 0.5 * fired
        expected.append(fired)
    assert other(x)[0, 0].tolist() == expected and 0 < sum(expected)


def test_lif_pieces_with_state_equal_one_call() -> None:
    lif = MultiStepLIF()
    x = torch.randn(3, 5, 40, dtype=torch.float64) * 2
    full, v_full = lif(x, return_state=True)
    a, v = lif(x[..., :13], return_state=True)
    b, v = lif(x[..., 13:14], v, return_state=True)
    c, v = lif(x[..., 14:], v, return_state=True)
    assert torch.equal(torch.cat([a, b, c], -1), full) and torch.equal(v, v_full)
    assert 0.05 < full.mean() < 0.95 and set(full.unique().tolist()) == {0.0, 1.0}


def test_surrogate_gradient_is_the_sigmoid_derivative() -> None:
    x = torch.linspace(-1.5, 1.5, 13, dtype=torch.float64, requires_grad=True)
    s = sigmoid_surrogate_spike(x, alpha=4.0)
    assert s.tolist() == (x >= 0).double().tolist()
    s.sum().backward()
    sig = torch.sigmoid(4.0 * x.detach())
    torch.testing.assert_close(x.grad, 4.0 * sig * (1 - sig))
    # through one LIF step (v0 = 0): h = x / tau, so ds/dx = surrogate'(h - 1) / tau
    x1 = torch.tensor([[[0.7, 2.6]]], dtype=torch.float64, requires_grad=True)
    MultiStepLIF(tau=2.0)(x1[..., :1]).sum().backward()
    sig = torch.sigmoid(torch.tensor(4.0 * (0.35 - 1.0), dtype=torch.float64))
    assert x1.grad[0, 0, 0].item() == pytest.approx((4.0 * sig * (1 - sig) / 2.0).item())


def test_detached_reset_cuts_the_gradient_through_the_reset() -> None:
    x = torch.tensor([[[2.6, 0.9, 1.4]]], dtype=torch.float64, requires_grad=True)
    grads = []
    for detach in (True, False):
        x.grad = None
        MultiStepLIF(detach_reset=detach)(x)[..., -1].sum().backward()
        grads.append(x.grad[0, 0, 0].item())
    assert grads[0] != pytest.approx(grads[1])  # the first input fired: its reset carries gradient unless detached


def _spiking_lmu() -> SpikingLMU:
    torch.manual_seed(0)
    mixer = SpikingLMU(8, theta=32.0).double().eval()
    with torch.no_grad():  # weights that make every LIF layer fire sometimes
        mixer.lmu.W_u.weight.normal_(0, 1.0)
        mixer.lmu.W_u.bias.fill_(1.0)
        mixer.lmu.W_h.weight.normal_(0, 1.0)
        mixer.lmu.bn_m.running_var.fill_(1e-3)
    return mixer


def test_spiking_lmu_forms_give_the_same_spikes_and_stream() -> None:
    mixer = _spiking_lmu()
    x = torch.randn(2, 40, 8, dtype=torch.float64) * 3
    with torch.no_grad():
        spikes = mixer.prev_lif(mixer.prev_bn(x.transpose(1, 2))).transpose(1, 2)
        cell = mixer.lmu
        u = cell.f_u(cell.bn_u(cell.W_u(spikes).transpose(1, 2)))
        m = cell.f_m(cell.bn_m(cell.memory(u.transpose(1, 2), mode="recurrent").transpose(1, 2)))
        h, _ = cell(spikes)
        for name, t in (("u", u), ("m", m), ("h", h)):  # binary, and neither silent nor saturated
            assert set(t.unique().tolist()) == {0.0, 1.0} and 0.02 < t.mean() < 0.98, name
        ref = mixer(x, mode="recurrent")
        for mode in ("fft", "conv", "toeplitz"):
            torch.testing.assert_close(mixer(x, mode=mode), ref, rtol=0, atol=1e-10)
        a, state = mixer(x[:, :11], return_state=True)
        b, state = mixer(x[:, 11:12], state, return_state=True)
        c, _ = mixer(x[:, 12:], state, return_state=True)
        torch.testing.assert_close(torch.cat([a, b, c], 1), ref, rtol=0, atol=1e-10)


def test_bad_settings_and_input() -> None:
    with pytest.raises(UserError, match="tau"):
        MultiStepLIF(tau=1.0)
    with pytest.raises(UserError, match="v_threshold"):
        MultiStepLIF(v_threshold=0.0, v_reset=0.0)
    with pytest.raises(UserError, match=r"\(B, C, T\)"):
        MultiStepLIF()(torch.randn(4, 5))
    with pytest.raises(UserError, match="membrane state"):
        MultiStepLIF()(torch.randn(2, 3, 4), torch.zeros(2, 4))
    with pytest.raises(UserError, match="lmu: expected input"):
        _spiking_lmu()(torch.randn(2, 5, 7, dtype=torch.float64))

"""SaShiMi: the convolutional forward equals sample-by-sample recurrent generation, the whole U-Net is causal
(thanks to the UpPool shift), the pooling reshapes follow the reference, and Re(A) < 0 survives training."""

from __future__ import annotations

import pytest
import torch

from archlab.errors import UserError
from archlab.zoo import create_model, list_models
from archlab.zoo._registry import model_info
from archlab.zoo.mixers.s4d import S4D
from archlab.zoo.models.sashimi import DownPool, Sashimi, SashimiLM, UpPool


def _model(dtype=torch.float32, **kw) -> SashimiLM:
    torch.manual_seed(0)
    model = create_model("sashimi_tiny", **kw).to(dtype).eval()
    with torch.no_grad():  # random SSM weights and a slower decay, so coarse levels carry real signal
        for m in model.modules():
            if isinstance(m, S4D):
                m.layer.kernel.B.normal_()
                m.layer.kernel.inv_dt.uniform_(-3, -0.5)
    return model


def _recurrent(model: SashimiLM, ids: torch.Tensor) -> torch.Tensor:
    state = model.default_state(ids.shape[0])
    outs = []
    for t in range(ids.shape[1]):
        y, state = model.step(ids[:, t], state)
        outs.append(y)
    return torch.stack(outs, dim=1)


def test_registered() -> None:
    assert {"sashimi_tiny", "sashimi_sc09"} <= set(list_models("sashimi*"))
    info = model_info("sashimi_sc09")
    assert info["input_shape"] == (16000,) and info["input_dtype"] == "long" and "Raw" in info["paper"]


def test_sc09_structure() -> None:
    model = create_model("sashimi_sc09")
    bb = model.backbone
    # 2 DownPools; centre 8 x (S4, FF) at width 256; each up level an UpPool then 8 x (S4, FF)
    assert [type(m).__name__ for m in bb.d_layers] == ["DownPool", "DownPool"]
    assert len(bb.c_layers) == 16 and bb.c_layers[0].layer.d_model == 256
    assert [len(b) for b in bb.u_layers] == [17, 17]
    assert bb.u_layers[0][1].layer.d_model == 128 and bb.u_layers[1][1].layer.d_model == 64
    assert bb.c_layers[0].layer.layer.kernel.N == 32  # d_state 64
    n_params = sum(p.numel() for p in model.parameters())
    # 5.22M here; the reference README reports 4.1M for its SC09 model (see sashimi_sc09's docstring)
    assert 5.1e6 < n_params < 5.3e6


def test_downpool_and_uppool_reshapes_follow_reference() -> None:
    torch.manual_seed(0)
    down = DownPool(3, 2, 4)
    x = torch.randn(2, 8, 3)
    # '... h (l s) -> ... (h s) l': feature h*s_size + s of coarse step l is x[l*4 + s, h]
    stacked = torch.stack([x[:, j * 4:(j + 1) * 4].transpose(1, 2).reshape(2, 12) for j in range(2)], dim=1)
    torch.testing.assert_close(down(x), down.linear(stacked))
    up = UpPool(6, 2, 4)
    z = torch.randn(2, 3, 6)
    y = up(z)
    lin = up.linear(z)  # (B, l, h*s) with features (h, s)
    assert y.shape == (2, 12, 3)
    torch.testing.assert_close(y[:, :4], torch.zeros(2, 4, 3))  # the causal shift: block 0 gets nothing
    for j in (1, 2):
        for s in range(4):
            torch.testing.assert_close(y[:, j * 4 + s], lin[:, j - 1].reshape(2, 3, 4)[:, :, s])


def test_conv_forward_equals_recurrent_generation_at_256(one_thread) -> None:
    model = _model()
    ids = torch.randint(0, 256, (2, 256), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        rec = _recurrent(model, ids)
    torch.testing.assert_close(rec, full, atol=1e-4, rtol=0)


@pytest.mark.parametrize("unet", [False, True])
def test_backbone_step_equals_forward_float64(unet: bool, one_thread) -> None:
    model = _model(torch.float64, unet=unet)
    x = torch.randn(2, 64, 16, dtype=torch.float64)
    bb = model.backbone
    with torch.no_grad():
        full = bb(x)
        state = bb.default_state(2)
        outs = []
        for t in range(64):
            y, state = bb.step(x[:, t], state)
            outs.append(y)
    torch.testing.assert_close(torch.stack(outs, 1), full, atol=1e-10, rtol=0)


@pytest.mark.parametrize("t", [37, 48, 63])
def test_whole_unet_is_causal(t: int) -> None:
    model = _model(torch.float64)
    x = torch.randn(2, 128, 16, dtype=torch.float64)
    with torch.no_grad():
        y = model.backbone(x)
        x2 = x.clone()
        x2[:, t] += torch.randn(2, 16, dtype=torch.float64)  # not a constant: LayerNorm would remove that
        y2 = model.backbone(x2)
    torch.testing.assert_close(y2[:, :t], y[:, :t], atol=1e-12, rtol=0)
    assert (y2[:, t] - y[:, t]).abs().max() > 1e-4
    # the coarse path carries the change on: a later block differs too
    assert (y2[:, (t // 16 + 2) * 16] - y[:, (t // 16 + 2) * 16]).abs().max() > 1e-6


def test_without_the_shift_the_unet_would_see_the_future() -> None:
    # The check above can fail: removing the UpPool shift makes outputs within a block depend on later samples.
    model = _model(torch.float64)
    for m in model.modules():
        if isinstance(m, UpPool):
            m.forward = lambda x, skip=None, m=m: m.linear(x).reshape(x.shape[0], x.shape[1], m.d_output, m.pool) \
                .transpose(-1, -2).reshape(x.shape[0], -1, m.d_output) + (0 if skip is None else skip)
    x = torch.randn(1, 32, 16, dtype=torch.float64)
    with torch.no_grad():
        y = model.backbone(x)
        x2 = x.clone()
        x2[:, 3] += torch.randn(1, 16, dtype=torch.float64)
        y2 = model.backbone(x2)
    assert (y2[:, :3] - y[:, :3]).abs().max() > 1e-6


def test_real_part_of_a_negative_after_training() -> None:
    model = _model().train()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    ids = torch.randint(0, 256, (4, 65), generator=torch.Generator().manual_seed(2))
    losses = []
    for _ in range(4):
        opt.zero_grad()
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    kernels = [m.layer.kernel for m in model.modules() if isinstance(m, S4D)]
    assert len(kernels) == 3  # one S4 block in the centre and in each up level
    for k in kernels:
        assert (k.A().real < 0).all()
        assert (k.discrete()[0].abs() < 1).all()


def test_generate_continues_a_prefix() -> None:
    model = _model()
    prefix = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(3))
    out = model.generate(prefix, 20, generator=torch.Generator().manual_seed(4))
    assert out.shape == (2, 25) and out.dtype == torch.long
    assert torch.equal(out[:, :5], prefix) and out.min() >= 0 and out.max() < 256
    greedy = model.generate(prefix, 11, temperature=0)
    with torch.no_grad():  # greedy choices are the argmax of the parallel forward on the generated sequence
        logits = model(torch.cat([greedy, greedy[:, -1:]], 1)[:, :16])
    assert torch.equal(logits[:, 4:15].argmax(-1), greedy[:, 5:16])


def test_bad_input_raises_user_error() -> None:
    model = _model()
    with pytest.raises(UserError, match="multiple of 16"):
        model(torch.zeros(1, 20, dtype=torch.long))
    with pytest.raises(UserError, match="token ids"):
        model(torch.zeros(1, 32))
    with pytest.raises(UserError, match="step expects"):
        model.backbone.step(torch.zeros(1, 3, 16), model.default_state(1))
    with pytest.raises(UserError, match="bad configuration"):
        Sashimi(d_model=8, pool=(0,))

"""SLAB (MAP #6): simplified linear attention and progressive re-parameterised BatchNorm.

(a) both association orders of SLA compute the same attention; (b) PRepBN's lambda schedule is exactly
linear, including after its end, and the module's output is the stated blend; (c) folding the eval-mode RepBN
into the following Linear changes no output. The timing comparison (d) is ``benchmarks/sla_vs_softmax.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.layers.prepbn import LinearNorm, RepBN, fold_repbn_into_linear, prepbn, prepbn_lambda
from archlab.zoo.mixers.sla import SimplifiedLinearAttention, SLABBlock, SLAMixer


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            if isinstance(m, RepBN):
                m.alpha.fill_(0.7)


@pytest.mark.parametrize("resolution,heads", [((7, 7), 2), ((4, 6), 1), ((2, 2), 4)])
def test_sla_orders_agree(resolution: tuple[int, int], heads: int) -> None:
    torch.manual_seed(0)
    attn = SimplifiedLinearAttention(32, resolution, heads)
    with torch.no_grad():
        attn.positional_encoding.normal_(0, 0.5)  # exercised, not the zero init
    x = torch.randn(3, resolution[0] * resolution[1], 32)
    linear, quadratic = attn(x, order="linear"), attn(x, order="quadratic")
    torch.testing.assert_close(linear, quadratic, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn(x), linear, rtol=1e-5, atol=1e-5)  # "auto" picks one of the two
    # and both equal the formula written token by token for one head
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    q, k = torch.relu(q), torch.relu(k + attn.positional_encoding)
    d = 32 // heads
    qh, kh, vh = q[0, :, :d], k[0, :, :d], v[0, :, :d]
    direct = torch.stack([(qh[i] @ kh.T) @ vh / (qh[i] @ kh.sum(0) + 1e-6) for i in range(len(qh))])
    torch.testing.assert_close(attn.attention(qh[None], kh[None], vh[None], "linear")[0], direct,
                               rtol=1e-5, atol=1e-5)


def test_sla_is_fp32_under_autocast_and_mixes_tokens() -> None:
    torch.manual_seed(0)
    mixer = zoo.create_mixer("sla", 32, resolution=(5, 5))
    x = torch.randn(2, 32, 5, 5)
    q = k = torch.rand(4, 25, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mixer.attention(q, k, k).dtype == torch.float32
    # a change at one token moves the output at a token outside the 5x5 conv's reach: global mixing
    wide = zoo.create_mixer("sla", 32, resolution=(9, 9)).eval()
    y = torch.randn(1, 32, 9, 9)
    y2 = y.clone()
    y2[0, :, 0, 0] += 3.0
    assert (wide(y2) - wide(y))[0, :, 8, 8].abs().max() > 1e-4
    assert mixer(x).shape == x.shape


def test_sla_mixer_config_and_shape_errors() -> None:
    with pytest.raises(UserError, match="resolution"):
        zoo.create_mixer("sla", 32)
    with pytest.raises(UserError, match="not divisible"):
        zoo.create_mixer("sla", 32, resolution=(4, 4), num_heads=3)
    with pytest.raises(UserError, match="order"):
        zoo.create_mixer("sla", 32, resolution=(4, 4), order="fast")
    with pytest.raises(UserError, match=r"sla: expected input \(B, 32, 4, 4\)"):
        zoo.create_mixer("sla", 32, resolution=(4, 4))(torch.randn(2, 32, 8, 8))
    for dim in (16, 24, 32, 48, 64, 96, 128):
        mixer = zoo.create_mixer("sla", dim, resolution=(3, 5))
        assert isinstance(mixer, SLAMixer) and dim % mixer.num_heads == 0
        assert mixer(torch.randn(2, dim, 3, 5)).shape == (2, dim, 3, 5)


@pytest.mark.parametrize("warm", [0, 3])
def test_prepbn_lambda_schedule_is_exact(warm: int) -> None:
    step = 10
    norm = prepbn(8, step=step, warm=warm).train()
    ln, repbn = norm.norm1, norm.norm2
    expected = [1.0] * warm + [(step - t) / step for t in range(step + 1)] + [0.0] * 4
    for i, lam in enumerate(expected):
        assert prepbn_lambda(i, step, warm) == pytest.approx(lam, abs=0)
        assert norm.lamda == pytest.approx(lam, abs=1e-12)
        x = torch.randn(4, 5, 8)
        # the expected blend, computed before the forward so that RepBN sees the same batch statistics once
        want_ln = ln(x).detach()
        state = {k: v.clone() for k, v in repbn.state_dict().items()}
        want_bn = repbn(x).detach()
        repbn.load_state_dict(state)
        out = norm(x)
        want = want_ln if i < warm else lam * want_ln + (1 - lam) * want_bn
        torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    assert int(norm.iter) == 0 and int(norm.warm) == 0
    # in eval it is RepBN alone, and eval forwards do not advance the schedule
    norm2 = prepbn(8, step=5).eval()
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(norm2(x), norm2.norm2(x))
    assert int(norm2.iter) == 5
    assert prepbn_lambda(7, 4, r0=0.5) == 0.0 and prepbn_lambda(1, 4, r0=0.5) == pytest.approx(0.375)


def test_prepbn_state_is_in_the_checkpoint() -> None:
    norm = prepbn(4, step=6).train()
    for _ in range(4):
        norm(torch.randn(3, 2, 4))
    resumed = prepbn(4, step=6)
    resumed.load_state_dict(norm.state_dict())
    assert resumed.lamda == pytest.approx(2 / 6)
    assert {"warm", "iter", "total_step", "norm2.alpha", "norm2.bn.running_var", "norm1.weight"} <= set(
        resumed.state_dict())


def test_repbn_folds_into_the_next_linear() -> None:
    torch.manual_seed(0)
    norm, linear = RepBN(12), nn.Linear(12, 20)
    _randomise_bn(norm)
    norm.eval()
    x = torch.randn(3, 7, 12)
    folded = fold_repbn_into_linear(norm, linear)
    torch.testing.assert_close(folded(x), linear(norm(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="expected a RepBN"):
        fold_repbn_into_linear(nn.LayerNorm(12), linear)
    with pytest.raises(UserError, match="takes 5 features"):
        fold_repbn_into_linear(norm, nn.Linear(5, 3))
    assert isinstance(prepbn(12), LinearNorm)


@pytest.mark.parametrize("attn", ["sla", "softmax"])
def test_slab_block_eval_output_unchanged_by_folding(attn: str) -> None:
    torch.manual_seed(0)
    block = SLABBlock(32, (6, 6), num_heads=2, attn=attn, step=3)
    x = torch.randn(4, 36, 32)
    block.train()
    for _ in range(5):  # through and past the schedule, so BN statistics are those of real batches
        block(x + torch.randn_like(x))
    _randomise_bn(block, seed=1)
    block.eval()
    expected = block(x)
    block.reparameterize()
    assert isinstance(block.norm1, nn.Identity) and isinstance(block.norm2, nn.Identity)
    assert not any(isinstance(m, nn.BatchNorm1d | nn.LayerNorm) for m in block.modules())
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)

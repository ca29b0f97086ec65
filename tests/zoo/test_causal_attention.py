"""Causal attention mixer: step decoding equals the full forward, a sequence fed in pieces through the KV cache
equals one call, outputs never depend on the future, the ALiBi/RoPE forms equal spelled-out computations,
a tiny model learns, and bad input is reported."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.zoo import create_mixer, get_mixer_spec, list_mixers
from archlab.zoo.layers.positional import alibi_slopes
from archlab.zoo.mixers.causal_attention import CausalSelfAttention, KVCache

POS = ["rope", "alibi", "none"]


def _layer(pos: str, dim: int = 24, heads: int = 3, dtype=torch.float64, **kw) -> CausalSelfAttention:
    torch.manual_seed(0)
    layer = create_mixer("causal_attention", dim, num_heads=heads, pos=pos, **kw).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():  # random, larger than default, so the attention is far from uniform
            p.normal_(0, 2 * p.shape[-1] ** -0.5)
    return layer


def _x(batch: int = 2, length: int = 11, dim: int = 24, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registered_as_causal_sequence_mixer() -> None:
    spec = get_mixer_spec("causal_attention")
    assert spec.layout == "sequence" and spec.causal
    assert "causal_attention" in list_mixers(causal=True) and "causal_attention" not in list_mixers(causal=False)


def test_names_follow_llm_foundry() -> None:
    layer = create_mixer("causal_attention", 64)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {"Wqkv.weight": (192, 64), "Wqkv.bias": (192,), "out_proj.weight": (64, 64),
                      "out_proj.bias": (64,)}
    assert (layer.n_heads, layer.head_dim, layer.pos, layer.softmax_scale) == (2, 32, "rope", 32 ** -0.5)


@pytest.mark.parametrize("pos", POS)
def test_step_decoding_equals_full_forward(pos: str, one_thread) -> None:
    layer, x = _layer(pos), _x()
    full = layer(x)
    state, outs = None, []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        outs.append(y)
        assert state.k.shape == (2, 3, t + 1, 8)
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=0, atol=1e-10)


@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize("cut", [1, 4, 10])
def test_two_halves_with_cache_equal_one_call(pos: str, cut: int) -> None:
    layer, x = _layer(pos), _x()
    full, state_full = layer(x, return_state=True)
    a, state = layer(x[:, :cut], return_state=True)
    b, state = layer(x[:, cut:], state, return_state=True)
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=0, atol=1e-10)
    torch.testing.assert_close(state.k, state_full.k, rtol=0, atol=1e-12)
    torch.testing.assert_close(state.v, state_full.v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pos", POS)
def test_causality_future_does_not_change_past(pos: str) -> None:
    layer, x = _layer(pos), _x()
    y = layer(x)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 5, 24, dtype=torch.float64) * 10
    y2 = layer(x2)
    assert torch.equal(y[:, :6], y2[:, :6])
    assert not torch.allclose(y[:, 6:], y2[:, 6:])


def _spelled_out(layer: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias, causal) v per head, from the weights, with positions written out."""
    batch, length, dim = x.shape
    heads, hd = layer.n_heads, layer.head_dim
    qkv = x @ layer.Wqkv.weight.T + layer.Wqkv.bias
    q, k, v = (qkv[..., i * dim:(i + 1) * dim].reshape(batch, length, heads, hd) for i in range(3))
    pos = torch.arange(length, dtype=x.dtype)
    if layer.pos == "rope":
        # pair channel c with c + hd/2 and rotate by angle t * 10000^(-2c/hd)
        half = hd // 2
        theta = pos[:, None] * 10000.0 ** (-2 * torch.arange(half, dtype=x.dtype) / hd)
        c, s = theta.cos()[None, :, None], theta.sin()[None, :, None]

        def rot(t: torch.Tensor) -> torch.Tensor:
            a, b = t[..., :half], t[..., half:]
            return torch.cat([a * c - b * s, a * s + b * c], -1)

        q, k = rot(q), rot(k)
    out = torch.zeros(batch, length, heads, hd, dtype=x.dtype)
    slopes = alibi_slopes(heads)
    for h in range(heads):
        scores = q[:, :, h] @ k[:, :, h].transpose(-1, -2) / math.sqrt(hd)
        if layer.pos == "alibi":
            scores = scores - slopes[h] * (pos[:, None] - pos[None, :]).abs()
        scores = scores.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
        out[:, :, h] = scores.softmax(-1) @ v[:, :, h]
    return out.reshape(batch, length, dim) @ layer.out_proj.weight.T + layer.out_proj.bias


@pytest.mark.parametrize("pos", POS)
def test_matches_spelled_out_attention(pos: str) -> None:
    layer, x = _layer(pos), _x()
    torch.testing.assert_close(layer(x), _spelled_out(layer, x), rtol=0, atol=1e-10)


def test_alibi_changes_the_output_and_slopes_follow_head_count() -> None:
    x = _x()
    alibi, none = _layer("alibi"), _layer("none")
    assert not torch.allclose(alibi(x), none(x), atol=1e-3)
    mask = alibi.attn_mask(3, 2, torch.float64, torch.device("cpu"))  # 3 queries after 2 cached keys
    assert mask.shape == (3, 3, 5)
    m = alibi_slopes(3)
    assert mask[1, 0].tolist() == pytest.approx([-2 * m[1], -m[1], 0.0, float("-inf"), float("-inf")])


def test_float32_matches_float64() -> None:
    layer64, x = _layer("rope"), _x()
    layer32 = copy.deepcopy(layer64).float()
    torch.testing.assert_close(layer32(x.float()).double(), layer64(x), rtol=0, atol=1e-4)


def test_odd_head_width_builds_with_partial_rope() -> None:
    layer = create_mixer("causal_attention", 15)  # one head of 15 channels: 14 rotated
    assert layer.rotary_emb.rotary_dim == 14
    assert layer(torch.randn(2, 5, 15)).shape == (2, 5, 15)


def test_tiny_copy_task_learns(one_thread) -> None:
    # predict the token two steps back: needs attention to a relative position (RoPE)
    torch.manual_seed(0)
    vocab, dim, length = 8, 32, 12
    emb = torch.nn.Embedding(vocab, dim)
    layer = create_mixer("causal_attention", dim, num_heads=2)
    head = torch.nn.Linear(dim, vocab)
    params = [*emb.parameters(), *layer.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        ids = torch.randint(vocab, (32, length), generator=gen)
        h = emb(ids)
        logits = head(h + layer(h))
        loss = F.cross_entropy(logits[:, 2:].reshape(-1, vocab), ids[:, :-2].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.9 and sum(losses[-10:]) / 10 < 0.5


def test_bad_input_and_configuration() -> None:
    layer = _layer("rope")
    with pytest.raises(UserError, match="causal_attention"):
        layer(torch.zeros(2, 5, 23, dtype=torch.float64))
    with pytest.raises(UserError, match="causal_attention"):
        layer.step(torch.zeros(2, 3, 24, dtype=torch.float64))
    bad = KVCache(torch.zeros(2, 4, 3, 8, dtype=torch.float64), torch.zeros(2, 4, 3, 8, dtype=torch.float64))
    with pytest.raises(UserError, match="KVCache"):
        layer(_x(), bad)
    with pytest.raises(UserError, match="pos"):
        create_mixer("causal_attention", 24, pos="sinusoid")
    with pytest.raises(UserError, match="divisible"):
        create_mixer("causal_attention", 24, num_heads=5)


@pytest.mark.parametrize("pos", POS)
def test_attention_matrix_reproduces_the_forward(pos: str) -> None:
    layer, x = _layer(pos), _x()
    weights = layer.attention_matrix(x)
    assert weights.shape == (2, 3, 11, 11)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 11, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.all(weights.triu(1) == 0)  # causal: no weight on later keys
    v = layer.Wqkv(x).split(24, dim=-1)[2].reshape(2, 11, 3, 8).transpose(1, 2)
    out = layer.out_proj((weights @ v).transpose(1, 2).reshape(2, 11, 24))
    torch.testing.assert_close(out, layer(x), rtol=0, atol=1e-10)


def test_attention_matrix_rejects_a_wrong_width() -> None:
    with pytest.raises(UserError, match="expected input"):
        _layer("rope").attention_matrix(torch.randn(2, 5, 7, dtype=torch.float64))

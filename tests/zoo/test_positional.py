"""ALiBi slopes follow the reference's rule (closed form for powers of two, interleaving otherwise); the ALiBi
bias is -m_h |i - j|; RoPE scores depend only on the relative offset, RoPE preserves norms and follows the
rotate-half convention."""

from __future__ import annotations

import math

import pytest
import torch

from archlab.errors import UserError
from archlab.zoo.layers.positional import RotaryEmbedding, alibi_bias, alibi_slopes, apply_rotary, rotate_half


@pytest.mark.parametrize("heads", [1, 2, 4, 8, 16])
def test_alibi_slopes_power_of_two_closed_form(heads: int) -> None:
    expected = [2.0 ** (-8.0 * h / heads) for h in range(1, heads + 1)]
    assert alibi_slopes(heads) == pytest.approx(expected, rel=1e-12, abs=0)


def test_alibi_slopes_twelve_heads_interleave() -> None:
    # 12 heads: the 8 slopes of 8 heads (2^-1 .. 2^-8), then the odd-indexed (1st, 3rd, ...) slopes of 16
    # heads, i.e. 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5: the half-steps between the first slopes of 8 heads.
    expected = [2.0 ** -h for h in range(1, 9)] + [2.0 ** -(h - 0.5) for h in range(1, 5)]
    assert alibi_slopes(12) == pytest.approx(expected, rel=1e-12, abs=0)
    # llm-foundry's gen_slopes spells the same rule differently: take all 16 and reorder
    sixteen = [2.0 ** (-8.0 * h / 16) for h in range(1, 17)]
    assert alibi_slopes(12) == pytest.approx((sixteen[1::2] + sixteen[0::2])[:12], rel=1e-12, abs=0)


@pytest.mark.parametrize("heads", [3, 5, 6, 7, 12, 20, 24])
def test_alibi_slopes_non_power_of_two_are_distinct_and_in_range(heads: int) -> None:
    slopes = alibi_slopes(heads)
    assert len(slopes) == heads and len(set(slopes)) == heads
    assert all(0 < m < 1 for m in slopes)
    p = 2 ** math.floor(math.log2(heads))
    assert slopes[:p] == alibi_slopes(p)


def test_alibi_bias_is_minus_slope_times_distance() -> None:
    bias = alibi_bias(4, 5, dtype=torch.float64)
    slopes = alibi_slopes(4)
    assert bias.shape == (4, 5, 5)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h] * abs(i - j), abs=1e-15)
    # queries after a cache of 3 keys: rows of the full matrix, from row 3 on
    tail = alibi_bias(4, 2, q_offset=3, dtype=torch.float64)
    assert torch.equal(tail, bias[:, 3:5, :5])


def test_alibi_rejects_bad_heads() -> None:
    with pytest.raises(UserError, match="n_heads"):
        alibi_slopes(0)


def test_rotate_half_convention() -> None:
    x = torch.arange(6.0)
    assert torch.equal(rotate_half(x), torch.tensor([-3.0, -4.0, -5.0, 0.0, 1.0, 2.0]))


def test_rope_first_pair_is_a_plain_rotation() -> None:
    # channel i is paired with i + d/2 and turned by angle pos * base^(-2i/d): for i = 0 the angle is pos
    rope = RotaryEmbedding(4)
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    cos, sin = rope.cos_sin(1, offset=3, dtype=torch.float64)
    y = apply_rotary(x, cos, sin)
    torch.testing.assert_close(y, torch.tensor([[math.cos(3.0), 0.0, math.sin(3.0), 0.0]], dtype=torch.float64))
    assert rope.inv_freq.tolist() == pytest.approx([1.0, 10000.0 ** -0.5])


@pytest.mark.parametrize("rotary_dim", [None, 6])
def test_rope_scores_depend_only_on_relative_offset(rotary_dim: int | None) -> None:
    gen = torch.Generator().manual_seed(0)
    rope = RotaryEmbedding(10, rotary_dim=rotary_dim)
    q = torch.randn(2, 3, 7, 10, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 3, 7, 10, generator=gen, dtype=torch.float64)
    q0, k0 = rope(q, k, offset=0)
    scores0 = q0 @ k0.transpose(-1, -2)
    for shift in (1, 5, 1000):
        qs, ks = rope(q, k, offset=shift)
        torch.testing.assert_close(qs @ ks.transpose(-1, -2), scores0, rtol=1e-9, atol=1e-9)
    # ... but they do depend on position: the rotated scores differ from the unrotated ones
    assert not torch.allclose(scores0, q @ k.transpose(-1, -2), atol=1e-3)


def test_rope_preserves_norms_and_leaves_unrotated_channels() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 50, 8, generator=gen, dtype=torch.float64)
    full = RotaryEmbedding(8)
    y, _ = full(x, x, offset=17)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-12, atol=1e-12)
    part = RotaryEmbedding(8, rotary_dim=4)
    z, _ = part(x, x, offset=17)
    torch.testing.assert_close(z.norm(dim=-1), x.norm(dim=-1), rtol=1e-12, atol=1e-12)
    assert torch.equal(z[..., 4:], x[..., 4:]) and not torch.allclose(z[..., :4], x[..., :4])


def test_rope_cache_grows_for_long_positions() -> None:
    rope = RotaryEmbedding(4, max_position=8)
    cos, sin = rope.cos_sin(4, offset=30, dtype=torch.float64)
    pos = torch.arange(30, 34, dtype=torch.float64)[:, None]
    angles = pos * torch.tensor([1.0, 0.01, 1.0, 0.01], dtype=torch.float64)
    torch.testing.assert_close(cos, angles.cos())
    torch.testing.assert_close(sin, angles.sin())
    assert "cos_cached" not in rope.state_dict()


def test_rope_bad_configuration() -> None:
    with pytest.raises(UserError, match="rotary_dim"):
        RotaryEmbedding(8, rotary_dim=5)
    with pytest.raises(UserError, match="head_dim"):
        RotaryEmbedding(8)(torch.zeros(1, 2, 6), torch.zeros(1, 2, 6))

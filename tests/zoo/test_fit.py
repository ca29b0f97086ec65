"""FIT mixer: groups are independent without global layers and coupled with them; attention FLOPs match the
analytic count; the cost grows as L^(4/3) when group size grows as L^(1/3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.mixers.fit import FIT, create_fit, fit_cost, parse_layers


def _window_slices(fit: FIT, g: int) -> tuple[slice, slice]:
    ws, (_, gw) = fit.window_size, fit.grid
    r, c = divmod(g, gw)
    return slice(r * ws, (r + 1) * ws), slice(c * ws, (c + 1) * ws)


def _bmm_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    # linear layers are counted as addmm; only the attention products QK^T and AV are batched matmuls
    return sum(v for op, v in counter.get_flop_counts()["Global"].items() if "bmm" in str(op))


def test_parse_layers_follows_the_reference_grammar():
    assert parse_layers("(2)4(2)") == [(2, 4), (2, 0)]
    assert parse_layers("(1)1(0)") == [(1, 1), (0, 0)]
    assert parse_layers("(3)") == [(3, 0)]
    assert parse_layers("(1)2") == [(1, 2)]
    for bad in ["", "2(1)", "(1)0(1)", "(a)1", "(1)1)", None]:
        with pytest.raises(UserError, match="fit"):
            parse_layers(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("side,window,groups,group_size", [(8, 2, 16, 4), (4, 2, 4, 4), (2, 1, 4, 1),
                                                           (7, 2, 16, 4), (14, 2, 49, 4), (27, 3, 81, 9)])
def test_default_window_rule(side, window, groups, group_size):
    # window = round((H W) ** (1/6)): e.g. 7x7 -> 49 ** (1/6) = 1.91 -> 2, padded to 8x8 = 16 windows of 4
    fit = create_fit(16, resolution=(side, side))
    assert (fit.window_size, fit.num_groups, fit.group_size) == (window, groups, group_size)
    assert fit(torch.randn(2, 16, side, side)).shape == (2, 16, side, side)


@pytest.mark.parametrize("side,window", [(8, 4), (7, 2)])
def test_groups_are_independent_without_global_layers_and_coupled_with_them(side, window):
    torch.manual_seed(0)
    x = torch.randn(1, 16, side, side)
    g = 1  # a window that is not the first one; for 7x7 the last window, checked too, is padded
    for layers, coupled in [("(2)", False), ("(1)1", False), ("(1)1(0)", True)]:
        torch.manual_seed(1)
        fit = create_fit(16, resolution=(side, side), layers=layers, window_size=window).eval()
        for fit_g in (g, fit.num_groups - 1):
            rows, cols = _window_slices(fit, fit_g)
            outside = torch.ones_like(x, dtype=torch.bool)
            outside[..., rows, cols] = False
            y = x.clone()
            y[outside] += torch.randn(int(outside.sum()))
            with torch.no_grad():
                a, b = fit(x)[..., rows, cols], fit(y)[..., rows, cols]
            if coupled:
                assert (a - b).abs().max() > 1e-3, (layers, fit_g)
            else:  # a last block's global layers never feed back into the tokens, as in the reference
                torch.testing.assert_close(a, b, atol=1e-6, rtol=0), (layers, fit_g)
            inside = x.clone()  # a random change: the output LayerNorm would hide a constant shift
            inside[..., rows, cols] += torch.randn_like(inside[..., rows, cols])
            with torch.no_grad():
                assert (fit(inside)[..., rows, cols] - a).abs().max() > 1e-3


@pytest.mark.parametrize("kwargs", [dict(layers="(1)1(0)"), dict(layers="(2)4(2)", latents_per_group=2),
                                    dict(layers="(1)1(1)", latent_dim=24, head_dim=8),
                                    dict(layers="(3)", window_size=3)])
@pytest.mark.parametrize("side", [8, 7])
def test_attention_flops_match_flop_counter(kwargs, side):
    fit = create_fit(32, resolution=(side, side), fused=False, **kwargs)
    assert _bmm_flops(fit, torch.randn(3, 32, side, side)) == fit.attention_flops(batch=3)


def test_counted_flops_are_the_local_plus_global_formula():
    # one local and one global layer, last block: cost = 4 B C (t n^2 + (t m)^2) + one latents<-tokens read
    fit = create_fit(16, resolution=(12, 12), layers="(1)1", window_size=3, latents_per_group=2, fused=False)
    t, n, m = 16, 9, 2
    counted = _bmm_flops(fit, torch.randn(1, 16, 12, 12))
    cross = 4 * 16 * t * m * n
    assert counted - cross == 4 * 16 * fit_cost(t * n, n, m)
    assert fit_cost(t * n, n, m) == t * n * n + (t * m) ** 2


def _slope(xs, ys) -> float:
    return (math.log(ys[-1]) - math.log(ys[0])) / (math.log(xs[-1]) - math.log(xs[0]))


def test_measured_attention_flops_grow_as_four_thirds_with_the_default_groups():
    """The paper's claim, measured on the module (torch's FLOP counter), not restated from ``fit_cost``'s formula:
    the default rule gives n = L^(1/3) on side^2 maps with side = 8, 27, 64 (windows 2, 3, 4), and the attention
    FLOPs grow as L^(4/3), a little less for the linear cross-attention terms; fixed groups grow towards L^2."""
    sides = [8, 27, 64]
    flops = []
    for side in sides:
        fit = create_fit(16, resolution=(side, side), fused=False)
        assert fit.group_size ** 3 == side * side
        flops.append(_bmm_flops(fit, torch.randn(1, 16, side, side)))
    slope = _slope([s * s for s in sides[1:]], flops[1:])
    assert 1.25 < slope < 4 / 3
    fixed = [_bmm_flops(create_fit(16, resolution=(side, side), fused=False, window_size=4),
                        torch.randn(1, 16, side, side)) for side in (64, 128)]
    assert _slope([64 * 64, 128 * 128], fixed) > 1.5  # the global part (L m / n)^2 takes over


def test_fused_and_written_out_attention_agree():
    torch.manual_seed(0)
    a = create_fit(32, resolution=(7, 7), layers="(1)2(1)", latents_per_group=2)
    b = create_fit(32, resolution=(7, 7), layers="(1)2(1)", latents_per_group=2, fused=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 32, 7, 7)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_every_width_and_map_size_of_the_metaformer_space_builds():
    for width in (16, 24, 32, 48, 64, 96, 128):
        mixer = zoo.create_mixer("fit", width, resolution=(4, 4))
        assert mixer(torch.randn(1, width, 4, 4)).shape == (1, width, 4, 4)
    for side in (8, 2, 14, 7):
        mixer = zoo.create_mixer("fit", 16, resolution=(side, side))
        assert mixer(torch.randn(1, 16, side, side)).shape == (1, 16, side, side)
    odd = zoo.create_mixer("fit", 24, resolution=(5, 3))
    assert odd(torch.randn(2, 24, 5, 3)).shape == (2, 24, 5, 3)


def test_bad_configuration_and_input_raise_user_errors():
    with pytest.raises(UserError, match="fit: needs resolution"):
        zoo.create_mixer("fit", 16)
    with pytest.raises(UserError, match=r"fit: expected input \(B, 16, 8, 8\)"):
        create_fit(16, resolution=(8, 8))(torch.randn(1, 16, 4, 4))
    with pytest.raises(UserError, match="window_size"):
        create_fit(16, resolution=(8, 8), window_size=0)
    with pytest.raises(UserError, match="latents_per_group"):
        create_fit(16, resolution=(8, 8), latents_per_group=0)

"""The ascan space: the asymmetric prior holds for every sample, the unconstrained space is strictly larger
(exact counts), and hybrid layouts build into MetaFormers with the right mixer in every block."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

import archlab.space.ascan as ascan  # registers "ascan" (until _predefined imports it)
from archlab.errors import SpaceError
from archlab.space import create_space
from archlab.zoo.mixers.attention import Attention
from archlab.zoo.mixers.sepconv import SepConv


def _space(**kw):
    return create_space("ascan", input_shape=(1, 8, 8), num_classes=10, **kw)


def test_layout_counts_are_exact():
    # per stage (max_depth 2): C, T, CC, CT, TT -> attention shares 0, 1, 0, 1/2, 1, i.e. share 0 twice,
    # 1/2 once, 1 twice. Unconstrained: 5^stages layouts. Asymmetric (non-decreasing shares), 2 stages:
    # first share 0 (2 ways) x any of 5 = 10; 1/2 (1 way) x {1/2, 1, 1} = 3; 1 (2 ways) x {1, 1} = 4 -> 17.
    # 3 stages, by share sequence (multiplicities 2, 1, 2): 000 8, 00h 4, 001 8, 0hh 2, 0h1 4, 011 8,
    # hhh 1, hh1 2, h11 4, 111 8 -> 49.
    assert ascan.stage_options(2) == ["C", "T", "CC", "CT", "TT"]
    assert (len(ascan.layouts(2, 2, prior=None)), len(ascan.layouts(2, 2))) == (25, 17)
    assert (len(ascan.layouts(3, 2, prior=None)), len(ascan.layouts(3, 2))) == (125, 49)
    assert set(ascan.layouts(3, 2)) < set(ascan.layouts(3, 2, prior=None))
    # the spaces: layout x 7 widths per stage x 3 MLP ratios x 3 norms; digits give 3 stages (8x8, 4x4, 2x2)
    assert _space().size() == 49 * 7 ** 3 * 3 * 3
    assert _space(prior=None).size() == 125 * 7 ** 3 * 3 * 3


def test_shares_and_prior():
    assert ascan.attention_shares("CC-CT-TTT") == [Fraction(0), Fraction(1, 2), Fraction(1)]
    assert ascan.is_asymmetric("CC-CT-TT") and ascan.is_asymmetric("T-CT-TT") is False
    assert ascan.is_asymmetric("CTT-CT") is False  # 2/3 then 1/2
    for bad in ["", "CC--T", "TC", "CX"]:
        with pytest.raises(SpaceError, match="layout"):
            ascan.attention_shares(bad)
    with pytest.raises(SpaceError, match="unknown prior"):
        _space(prior="symmetric")


def test_every_sample_and_mutation_of_the_asymmetric_space_satisfies_the_prior():
    space = _space()
    for seed in range(300):
        arch = space.sample(seed)
        assert ascan.is_asymmetric(arch["layout"]), arch
        assert ascan.is_asymmetric(space.mutate(arch, seed)["layout"])
    free = _space(prior=None)
    assert any(not ascan.is_asymmetric(free.sample(seed)["layout"]) for seed in range(300))
    assert {"T-C-C"} <= set(free.root.fields["layout"].keys) - set(space.root.fields["layout"].keys)


def test_hybrid_layouts_build_with_the_right_mixer_per_block():
    space = _space()
    arch = space.validate({"layout": "CC-CT-TT", "widths": [16, 24, 32], "mlp_ratio": 2, "norm": "batchnorm"})
    torch.manual_seed(0)
    model = space.build(arch)
    stages = [model.network[i] for i in (0, 2, 4)]
    kinds = ["".join("T" if isinstance(b.token_mixer, Attention) else "C" if isinstance(b.token_mixer, SepConv)
                     else "?" for b in stage) for stage in stages]
    assert "-".join(kinds) == "CC-CT-TT"
    assert [b.layout for b in stages[1]] == ["image", "sequence"]
    assert model.resolutions == [(8, 8), (4, 4), (2, 2)]
    # the swapped-in attention is initialised as the MetaFormer initialises its linears (std 0.02)
    assert stages[1][1].token_mixer.qkv.weight.std().item() < 0.05
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert stages[1][1].token_mixer.qkv.weight.grad.abs().max() > 0


def test_sampled_models_build_and_run():
    space = _space(prior=None)
    for seed in range(4):
        model = space.build(space.sample(seed))
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    big = create_space("ascan", input_shape=(1, 28, 28), num_classes=10, stages=2, max_depth=1)
    assert big.size() == 3 * 7 ** 2 * 3 * 3 * 2  # layouts C-C, C-T, T-T; two stem strides
    arch = big.sample(0)
    assert big.build(arch)(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_bad_input_shape():
    with pytest.raises(SpaceError, match=r"images \(C, H, W\)"):
        create_space("ascan", input_shape=(64,), num_classes=10)

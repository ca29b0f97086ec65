"""sharpDARTS (cosine power annealing, Max-W weighting, SharpSepConv primitives in the ``sharp_cell`` space) and
SD-DARTS (self-distillation from voting snapshots): schedules and weightings equal their formulas, the space's
subnets equal the supernet's paths, the distillation term vanishes against identical teachers, and tiny searches
learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_oneshot import _synthetic_task, tiny_space

from archlab.errors import UserError
from archlab.search.oneshot import SelfDistillation, cosine_power_annealing, sd_darts, sharpdarts
from archlab.search.oneshot._common import sgd_cosine
from archlab.space import create_space
from archlab.zoo.layers.sharp_ops import PRIMITIVES, SHARP_OPS, SharpSepConv


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_cosine_power_annealing_of_order_one_is_the_cosine_and_matches_the_reference_shape():
    cosine = sgd_cosine(0.025, 0.9, 3e-4, 0.001)["schedule"]
    for t in np.linspace(0, 1, 11):
        assert cosine_power_annealing(t, 0.025, 0.001, exponent_order=1) == pytest.approx(cosine(0.025, t))
    # the reference: p = (1 + cos(pi e / E)) / 2 at e = 1..E, k^(p+1) min-max rescaled; ours rescaled the same way
    k, E = 10.0, 25
    e = np.arange(E) + 1
    ref = k ** ((1 + np.cos(np.pi * e / E)) / 2 + 1)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    ours = np.array([cosine_power_annealing(x / E, 1.0, 0.0, exponent_order=k) for x in e])
    ours = (ours - ours.min()) / (ours.max() - ours.min())
    assert ours == pytest.approx(ref, abs=1e-12)
    rates = [cosine_power_annealing(t, 0.1, 1e-4, exponent_order=k) for t in np.linspace(0, 1, 50)]
    assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    # a larger order decays faster early: below the cosine at mid-run
    assert cosine_power_annealing(0.5, 0.1, 0.0, exponent_order=10) < cosine_power_annealing(0.5, 0.1, 0.0, 1)
    with pytest.raises(UserError, match="exponent_order >= 1"):
        cosine_power_annealing(0.5, 0.1, 0.0, exponent_order=0.5)


def test_max_w_weights_give_the_strongest_candidate_one_and_no_gradient_through_the_max():
    space = tiny_space()
    supernet = space.supernet("darts", seed=0)
    supernet.mix = "max_w"
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for a in supernet.alpha:
            a.copy_(torch.randn(a.shape, generator=gen))
    supernet(torch.randn(2, 3, 8, 8))
    used = supernet._controller.weights
    for path, a in zip(supernet.decisions, supernet.alpha, strict=True):
        w = F.softmax(a.detach(), -1)
        assert torch.allclose(used[path].detach(), 1 - w.max() + w, atol=1e-7)
        assert used[path].max().item() == pytest.approx(1.0)
    path, alpha = supernet.decisions[0], supernet.alpha[0]
    c = torch.arange(1.0, alpha.numel() + 1)
    got = torch.autograd.grad((used[path] * c).sum(), alpha, retain_graph=True)[0]
    want = torch.autograd.grad((F.softmax(alpha, -1) * c).sum(), alpha)[0]  # the max term carries no gradient
    assert torch.allclose(got, want, atol=1e-7)


def test_sharp_sep_conv_has_the_reference_layout_and_widths():
    conv = SharpSepConv(8, 8, 3, 1, 1)
    keys = [k for k in conv.state_dict() if k.endswith("weight")]
    assert keys == ["op.1.weight", "op.2.weight", "op.3.weight", "op.5.weight", "op.6.weight", "op.7.weight"]
    C = 8
    assert sum(p.numel() for p in conv.parameters()) == C * 9 + C * C + 2 * C + C * 9 + C * C + 2 * C
    x = torch.randn(2, 8, 6, 6)
    for name in PRIMITIVES:
        op = SHARP_OPS[name](8, 8, 1, True, True)
        assert op(x).shape == x.shape, name
    assert SHARP_OPS["flood_conv_3x3"](8, 8, 1).op[2].out_channels == 32  # C_mid_mult 4
    assert SHARP_OPS["choke_conv_3x3"](64, 64, 1).op[2].out_channels == 32  # fixed C_mid
    assert SHARP_OPS["dil_conv_3x3"](8, 8, 1).op[1].dilation == (2, 2)


def test_the_sharp_cell_space_compiles_and_its_subnets_equal_the_supernets_paths():
    space = create_space("sharp_cell", input_shape=(3, 8, 8), num_classes=10, C=4, N=1)
    assert space.size() == len(PRIMITIVES) ** 6
    arch = space.sample(seed=0)
    assert space.from_string(space.to_string(arch)) == arch
    with pytest.raises(Exception, match="sharp_cell"):
        space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    supernet = space.supernet("darts", seed=0)
    x = torch.randn(3, 3, 8, 8)
    supernet.eval()
    for a in space.sample_distinct(3, seed=2):
        model = supernet.extract(a).eval()
        assert torch.allclose(model(x), supernet(x, arch=a), atol=1e-6, rtol=0)


def test_a_tiny_sharpdarts_search_learns_with_max_w_and_power_annealing():
    space = tiny_space()
    train, val = _synthetic_task(seed=3)
    result = sharpdarts(space, train, val, epochs=6, lr=0.05, arch_lr=3e-2, exponent_order=2, seed=0)
    assert result.supernet.mix == "max_w"
    history = result.history
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.3  # chance is 0.1
    assert result.arch == result.supernet.derive()


def test_self_distillation_vanishes_against_identical_teachers_and_keeps_the_last_snapshots():
    space = tiny_space()
    supernet = space.supernet("darts", seed=0)
    distill = SelfDistillation(supernet, teachers=2, interval=1, lam=1.0, temperature=2.0)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    loss, logs = distill.loss(supernet, (x, y))
    assert "distillation" not in logs
    assert loss.item() == pytest.approx(F.cross_entropy(supernet(x), y).item(), rel=1e-6)

    class State:
        step = 1

    distill.on_step(State())  # a snapshot of the current weights: the vote is the student's own prediction
    loss, logs = distill.loss(supernet, (x, y))
    assert logs["distillation"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for p in supernet.weight_parameters():
            p.add_(0.05 * torch.randn_like(p))
    _, logs = distill.loss(supernet, (x, y))
    assert logs["distillation"] > 1e-4
    for _ in range(3):
        distill.on_step(State())
    assert len(distill.snapshots) == 2
    with pytest.raises(UserError, match="teachers >= 1"):
        SelfDistillation(supernet, teachers=0)


def test_a_tiny_sd_darts_search_distils_and_learns():
    space = tiny_space()
    train, val = _synthetic_task(seed=4)
    result = sd_darts(space, train, val, epochs=5, lr=0.05, arch_lr=3e-2, interval=2, seed=0)
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.3
    assert math.isfinite(history[-1]["train_loss"])

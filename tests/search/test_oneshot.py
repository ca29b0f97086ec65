"""Supernets compiled from a Space: extracted subnets equal the supernet's single path (train and eval mode),
DARTS' mixture with a one-hot alpha is that path, GDAS' forward is its sampled path with gradients reaching alpha,
derive() is the argmax, the unrolled gradient matches the exact second-order one, and tiny searches learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import SpaceError
from archlab.search.oneshot import Supernet, UnrolledArchStep, arch_optimizer, classification_loss, darts, gdas
from archlab.space import Space, choice, create_space, integer, module, repeat
from archlab.train import FitState


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_space():
    return create_space("nb201", input_shape=(3, 8, 8), num_classes=10, C=4, N=1)


def shuffle_batchnorm_statistics(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and weights, so an eval-mode match checks that every tensor was carried."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def test_extract_equals_the_single_path_in_train_and_eval_mode():
    torch.manual_seed(0)
    space = tiny_space()
    supernet = space.supernet("darts", seed=0)
    shuffle_batchnorm_statistics(supernet)
    x = torch.randn(6, 3, 8, 8)
    archs = list(space.sample_distinct(6, seed=1))
    for arch in archs:
        model = supernet.extract(arch)
        assert isinstance(model, nn.Module) and not any(isinstance(m, Supernet) for m in model.modules())
        assert set(model.state_dict()) == set(space.build(arch).state_dict())
        for training in (False, True):
            supernet.train(training)
            model.train(training)
            path, extracted = supernet(x, arch=arch), model(x)
            assert torch.allclose(path, extracted, atol=1e-6, rtol=0), (space.to_string(arch), training)
    # the check can fail: another arch's extracted model differs from this path
    supernet.eval()
    other = supernet.extract(archs[1]).eval()
    assert (supernet(x, arch=archs[0]) - other(x)).abs().max() > 1e-3


def test_extract_follows_the_supernets_device_and_dtype():
    space = tiny_space()
    supernet = space.supernet("spos", seed=0).double()
    arch = space.sample(seed=3)
    model = supernet.extract(arch)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    supernet.eval()
    assert torch.allclose(model.eval()(x), supernet(x, arch=arch), atol=1e-12, rtol=0)


def test_spos_forward_runs_the_set_path_and_training_touches_only_it():
    space = tiny_space()
    supernet = space.supernet("spos", seed=0)
    with pytest.raises(SpaceError, match="set_arch"):
        supernet(torch.randn(2, 3, 8, 8))
    arch = space.from_string("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    supernet.set_arch(arch)
    x = torch.randn(4, 3, 8, 8)
    F.cross_entropy(supernet(x), torch.tensor([0, 1, 2, 3])).backward()
    choice_of = {m.path: m for m in supernet.model.modules() if hasattr(m, "candidates")}
    conv1x1 = choice_of["edge_2_1"].candidates[2]  # the chosen nor_conv_1x1 has a gradient, the 3x3 off-path none
    assert conv1x1.op[1].weight.grad is not None
    assert choice_of["edge_2_1"].candidates[3].op[1].weight.grad is None


def test_darts_mixture_with_a_one_hot_alpha_is_the_single_path():
    torch.manual_seed(0)
    space = tiny_space()
    supernet = space.supernet("darts", seed=0)
    shuffle_batchnorm_statistics(supernet, seed=3)
    x = torch.randn(5, 3, 8, 8)
    for arch in space.sample_distinct(3, seed=7):
        params = space.to_params(arch)
        with torch.no_grad():
            for path, alpha in zip(supernet.decisions, supernet.alpha, strict=True):
                alpha.zero_()
                alpha[supernet._keys[path].index(params[path])] = 100.0
        for training in (False, True):
            supernet.train(training)
            assert torch.allclose(supernet(x), supernet(x, arch=arch), atol=1e-6, rtol=0)
        assert supernet.derive() == arch
    with torch.no_grad():  # a soft alpha mixes the paths: the output is no longer that path's
        for alpha in supernet.alpha:
            alpha.zero_()
    supernet.eval()
    assert (supernet(x) - supernet(x, arch=arch)).abs().max() > 1e-3


def test_gdas_forward_is_the_sampled_path_and_gradients_reach_alpha():
    torch.manual_seed(1)
    space = tiny_space()
    supernet = space.supernet("gdas", seed=0, tau=1.0)
    shuffle_batchnorm_statistics(supernet, seed=5)
    supernet.eval()
    x = torch.randn(4, 3, 8, 8)
    seen = set()
    for _ in range(3):
        out = supernet(x)
        sampled = supernet.sampled_arch()
        seen.add(sampled)
        assert torch.allclose(out, supernet(x, arch=sampled), atol=1e-5, rtol=0)
        supernet.zero_grad(set_to_none=True)
        supernet(x).pow(2).sum().backward()
        # the edges into the cell's output always get a gradient (an earlier node may feed only 'none' edges)
        assert all(supernet.alpha_of(f"edge_3_{i}").grad.abs().sum() > 0 for i in range(3))
    assert len(seen) > 1  # the draws differ


def test_derive_is_the_argmax_of_alpha_none_included():
    space = tiny_space()
    supernet = space.supernet("darts", seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for alpha in supernet.alpha:
            alpha.copy_(torch.randn(alpha.shape, generator=gen))
        supernet.alpha_of("edge_3_2")[0] = 10.0  # 'none' is the first option
    arch = supernet.derive()
    for path, alpha in zip(supernet.decisions, supernet.alpha, strict=True):
        assert arch[path] == supernet._keys[path][int(alpha.argmax())]
    assert arch["edge_3_2"] == "none"
    assert arch in space


def test_a_structural_decision_is_a_clear_error():
    def build(arch):
        return nn.Sequential(*(block(arch["width"]) for block in arch["blocks"]))

    space = Space(build, width=integer(4, 8), blocks=repeat(choice([nn.Identity, nn.ReLU]), count=integer(1, 3)))
    with pytest.raises(SpaceError, match=r"width.*blocks\.count|blocks\.count.*width"):
        space.supernet("darts")
    values = Space(build, width=choice([4, 8]), blocks=repeat(choice([nn.Identity, nn.ReLU]), count=2))
    with pytest.raises(SpaceError, match="'width'"):
        values.supernet("spos")


def test_a_hand_declared_space_of_factories_and_settings_free_modules_compiles():
    def linear(dim):
        return nn.Linear(dim, dim)

    def build(arch):
        return nn.Sequential(*(layer(6) for layer in arch["layers"]), arch["act"](), nn.Linear(6, 3))

    space = Space(build, layers=repeat(choice({"lin": module("lin", linear), "skip": module("skip", nn.Identity)}),
                                       count=2), act=choice([nn.ReLU, nn.Tanh]))
    supernet = space.supernet("darts", seed=0)
    assert supernet.decisions == ["layers.0", "layers.1", "act"]
    x = torch.randn(5, 6)
    for arch in space.enumerate():
        assert torch.allclose(supernet.extract(arch)(x), supernet(x, arch=arch), atol=1e-6, rtol=0)


def _exact_second_order_gradient(supernet, train_batch, val_batch, xi):
    """d/dalpha L_val(w - xi dL_train(w, alpha)/dw, alpha), by double backward (plain SGD: no momentum, no decay)."""
    names = [n for n, _ in supernet.named_parameters() if not n.startswith("alpha.")]
    weights = [p for n, p in supernet.named_parameters() if not n.startswith("alpha.")]
    alpha = supernet.arch_parameters()
    train_loss = classification_loss(supernet, train_batch)[0]
    grads = torch.autograd.grad(train_loss, weights, create_graph=True, allow_unused=True)
    unrolled = {n: w if g is None else w - xi * g for n, w, g in zip(names, weights, grads, strict=True)}
    x, y = val_batch
    logits = torch.func.functional_call(supernet, unrolled, (x,))
    return torch.autograd.grad(F.cross_entropy(logits, y), alpha)


def test_the_unrolled_gradient_matches_the_exact_second_order_gradient():
    torch.manual_seed(0)
    space = tiny_space()
    supernet = space.supernet("darts", seed=0).double()
    supernet.eval()  # fixed statistics: the unrolled and the exact forward see the same function
    with torch.no_grad():
        for alpha in supernet.alpha:
            alpha.normal_()
    train = (torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,)))
    val = (torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,)))
    xi = 0.5
    optimizer = torch.optim.SGD(supernet.weight_parameters(), lr=xi)
    # a small finite difference in float64 (the reference's 0.01 trades accuracy for float32 noise)
    step = UnrolledArchStep(supernet, [val], classification_loss, arch_optimizer(supernet), epsilon=1e-6)
    before = [w.detach().clone() for w in supernet.weight_parameters()]
    approx = step.alpha_gradients(FitState(model=supernet, optimizer=optimizer, batch=train), val)
    assert all(torch.equal(w, b) for w, b in zip(supernet.weight_parameters(), before, strict=True))
    exact = _exact_second_order_gradient(supernet, train, val, xi)
    first_order = torch.autograd.grad(classification_loss(supernet, val)[0], supernet.arch_parameters())
    approx, exact, first_order = (torch.cat([g.flatten() for g in gs]) for gs in (approx, exact, first_order))
    assert (approx - exact).norm() < 1e-6 * exact.norm()
    assert (first_order - exact).norm() > 1e-2 * exact.norm()  # the second-order term is not negligible here


def _synthetic_task(seed: int = 0, n: int = 96, batch: int = 16):
    """A 10-class task a tiny NB201 network learns in a few epochs: class-dependent mean images plus noise."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(10, 3, 8, 8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = means[y] + 0.5 * torch.randn(n, 3, 8, 8, generator=gen)
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]
    return batches[: len(batches) // 2], batches[len(batches) // 2:]


@pytest.mark.parametrize("order", [1, 2])
def test_a_tiny_darts_search_moves_alpha_and_lowers_the_training_loss(order):
    space = tiny_space()
    train, val = _synthetic_task()
    supernet = space.supernet("darts", seed=0)
    start = [a.detach().clone() for a in supernet.alpha]
    result = darts(space, train, val, epochs=6, order=order, lr=0.05, arch_lr=3e-2, supernet=supernet, seed=0)
    history = result.history
    assert len(history) == 6 and set(history[0]["alpha"]) == set(supernet.decisions)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.3  # chance is 0.1
    moved = max(float((a.detach() - s).abs().max()) for a, s in zip(supernet.alpha, start, strict=True))
    assert moved > 0.05
    assert result.arch == supernet.derive() and result.arch in space


def test_a_tiny_gdas_search_anneals_tau_and_learns():
    space = tiny_space()
    train, val = _synthetic_task(seed=1)
    result = gdas(space, train, val, epochs=4, lr=0.05, arch_lr=3e-2, seed=0)
    assert [h["tau"] for h in result.history] == pytest.approx([10.0, 6.7, 3.4, 0.1])
    assert result.supernet.tau == pytest.approx(0.1)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.arch in space


def test_gdas_bounded_by_time_anneals_tau_over_the_schedule_not_the_nominal_epochs():
    space = tiny_space()
    train, val = _synthetic_task(seed=1)
    result = gdas(space, train, val, epochs=10_000, lr=0.05, seed=0, max_seconds=1.5)
    taus = [h["tau"] for h in result.history]
    assert taus == sorted(taus, reverse=True) and taus[-1] < 1.0  # by epochs it would still be about 10
    assert result.supernet.tau == pytest.approx(taus[-1])


def test_spos_trains_uniform_paths_and_returns_its_best_scored_candidate():
    from archlab.search.oneshot import spos

    space = tiny_space()
    train, val = _synthetic_task(seed=2)
    result = spos(space, train, val, epochs=3, num_candidates=4, lr=0.05, seed=0)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    scored = result.history[-1]["candidates"]
    assert len(scored) == 4
    best = max(scored, key=lambda pair: pair[1])
    assert space.validate(best[0]) == result.arch

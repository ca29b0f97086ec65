"""fit, the one training loop: any loss, hooks called a stated number of times, stop reasons, fidelities, the
schedule, failure detection, the classifier and next-token loops through it equal to the loops they replaced,
and no module reaching into archlab.train's private names."""

from __future__ import annotations

import ast
import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import (
    FitResult,
    Hook,
    TrainConfig,
    TrialFailed,
    fit,
    make_adamw,
    seed_everything,
    train_model,
    warmup_cosine,
)
from archlab.train._trainer import _flip, _shift
from archlab.train.distill import soft_target_kl
from archlab.train.lm import fit_token_targets

SRC = Path(__file__).resolve().parents[2] / "src" / "archlab"


def _regression(n: int = 64, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of 8 from y = x @ w + 0.5 (a linear map the model can fit exactly)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 1.0]]) + 0.5
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]


def _mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.mse_loss(model(batch[0]), batch[1])


class Counter(Hook):
    def __init__(self, stop_at_step: int | None = None, stop_at_epoch: int | None = None) -> None:
        self.calls = {"before_step": 0, "after_backward": 0, "on_step": 0, "on_epoch": 0}
        self.stop_at_step, self.stop_at_epoch = stop_at_step, stop_at_epoch
        self.lrs: list[float] = []
        self.grad_seen = True

    def before_step(self, state):
        self.calls["before_step"] += 1

    def after_backward(self, state):
        self.calls["after_backward"] += 1
        self.grad_seen &= all(p.grad is not None for p in state.model.parameters())

    def on_step(self, state):
        self.calls["on_step"] += 1
        self.lrs.append(state.lr)
        return "enough" if state.step == self.stop_at_step else None

    def on_epoch(self, state):
        self.calls["on_epoch"] += 1
        return "plateau" if state.epoch == self.stop_at_epoch else None


def test_a_custom_regression_loss_goes_down() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = _regression()
    before = sum(_mse(model, b).item() for b in data) / len(data)
    result = fit(model, data, _mse, epochs=40, lr=5e-2, weight_decay=0.0)
    after = sum(_mse(model, b).item() for b in data) / len(data)
    assert isinstance(result, FitResult) and result.steps == 40 * len(data) and result.epochs == 40
    assert result.stopped == "epochs"
    assert after < 0.01 * before, (before, after)


def test_a_student_distils_a_teacher_with_soft_target_kl() -> None:
    torch.manual_seed(0)
    teacher, student = nn.Linear(6, 5), nn.Linear(6, 5)
    xs = [torch.randn(16, 6) for _ in range(4)]

    def kd(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            target = teacher(x)
        loss = soft_target_kl(model(x), target, temperature=2.0)
        return loss, {"kl": loss.detach()}

    first = sum(kd(student, x)[0].item() for x in xs)
    result = fit(student, xs, kd, epochs=30, lr=5e-2, weight_decay=0.0, log_every=4)
    assert sum(kd(student, x)[0].item() for x in xs) < 0.05 * first
    assert [p["step"] for p in result.curve] == list(range(4, 121, 4))
    assert all(p["kl"] == p["loss"] for p in result.curve)  # the loss function's logs reach the curve


def test_hooks_are_called_once_per_step_and_once_per_epoch() -> None:
    """5 batches an epoch for 3 epochs: 15 steps, every per-step method 15 times, on_epoch 3 times."""
    hook = Counter()
    result = fit(nn.Linear(4, 2), _regression(40), _mse, epochs=3, hooks=[hook])
    assert hook.calls == {"before_step": 15, "after_backward": 15, "on_step": 15, "on_epoch": 3}
    assert hook.grad_seen
    assert (result.steps, result.epochs, result.stopped) == (15, 3, "epochs")


def test_a_step_fidelity_cuts_an_epoch_which_still_ends_with_on_epoch() -> None:
    hook = Counter()
    result = fit(nn.Linear(4, 2), _regression(40), _mse, epochs=3, steps=7, hooks=[hook])
    assert hook.calls["on_step"] == 7 and hook.calls["on_epoch"] == 2
    assert (result.steps, result.epochs, result.stopped) == (7, 2, "steps")


def test_a_hook_stops_training_at_its_step_or_epoch() -> None:
    hook = Counter(stop_at_step=4)
    result = fit(nn.Linear(4, 2), _regression(40), _mse, epochs=3, hooks=[hook, Counter()])
    assert (result.steps, result.stopped) == (4, "enough")
    assert hook.calls["on_step"] == 4 and hook.calls["on_epoch"] == 0  # stopped mid-epoch: no epoch end
    assert result.curve[-1]["step"] == 4
    hook = Counter(stop_at_epoch=2)
    result = fit(nn.Linear(4, 2), _regression(40), _mse, epochs=5, hooks=[hook])
    assert (result.steps, result.epochs, result.stopped) == (10, 2, "plateau")


def test_a_step_sampler_gets_the_progress_and_never_ends_an_epoch() -> None:
    seen: list[float] = []
    data = _regression()

    def sample(progress: float):
        seen.append(progress)
        return data[len(seen) % len(data)]

    hook = Counter()
    result = fit(nn.Linear(4, 2), sample, _mse, steps=10, hooks=hook)  # one hook needs no list
    assert seen == [k / 10 for k in range(10)]
    assert (result.steps, result.epochs, result.stopped) == (10, 0, "steps")
    assert hook.calls["on_step"] == 10 and hook.calls["on_epoch"] == 0


def test_the_schedule_warms_up_then_decays_to_zero() -> None:
    assert warmup_cosine(1.0, 0.0) == pytest.approx(1e-3 / 0.05)  # floored, so the first step moves
    assert warmup_cosine(2.0, 0.05) == pytest.approx(2.0)
    assert warmup_cosine(1.0, 0.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.45 / 0.95)))
    assert warmup_cosine(1.0, 0.525) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(1.0, 3.0) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(1.0, 0.1, warmup=0.2) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 0.3, warmup=0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))


def test_fit_follows_the_schedule_step_by_step_and_per_group() -> None:
    """Step k (from 0) runs at the rate for progress k / steps; a custom optimizer's groups keep their ratio."""
    hook = Counter()
    fit(nn.Linear(4, 2), _regression(), _mse, epochs=5, lr=0.1, warmup=0.1, hooks=[hook])
    assert hook.lrs == [warmup_cosine(0.1, k / 40, 0.1) for k in range(40)]
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))

    def sgd(params):
        return torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.02},
                                {"params": model[1].parameters(), "lr": 0.01}])

    class Rates(Hook):
        rates: list[list[float]] = []

        def on_step(self, state):
            self.rates.append([g["lr"] for g in state.optimizer.param_groups])

    hook = Rates()
    fit(model, _regression(), _mse, steps=4, optimizer=sgd, schedule=lambda base, p: base * (1 - p), hooks=[hook])
    # after step k the rates are set for step k + 1: each group's own rate times (1 - k / 4)
    assert hook.rates == [[0.02 * (1 - k / 4), 0.01 * (1 - k / 4)] for k in range(1, 5)]


def test_only_the_given_parameters_are_trained() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    frozen = {k: v.clone() for k, v in model[0].state_dict().items()}
    fit(model, _regression(), _mse, steps=5, params=model[1].parameters(), lr=0.1)
    assert all(torch.equal(v, frozen[k]) for k, v in model[0].state_dict().items())


def test_a_non_finite_loss_fails_with_its_step() -> None:
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        loss = _mse(model, batch)
        return loss * float("nan") if len(calls) == 4 else loss

    with pytest.raises(TrialFailed, match=r"non-finite loss \(nan\) at epoch 1, step 3"):
        fit(nn.Linear(4, 2), _regression(), loss_fn, epochs=2)
    data = _regression()
    with pytest.raises(TrialFailed, match=r"non-finite loss \(inf\) at step 0"):
        fit(nn.Linear(4, 2), lambda p: data[0], lambda m, b: _mse(m, b) + float("inf"), steps=3)


def test_max_seconds_stops_and_time_limit_fails() -> None:
    data = _regression()

    def slow(model, batch):
        time.sleep(0.01)
        return _mse(model, batch)

    hook = Counter()
    result = fit(nn.Linear(4, 2), lambda p: data[0], slow, max_seconds=0.2, hooks=[hook])
    assert result.stopped == "max_seconds" and 0.2 <= result.seconds < 5 and 2 <= result.steps < 100
    assert hook.lrs[-1] < warmup_cosine(1e-3, 0.9)  # the schedule runs on the clock: near zero at the end
    result = fit(nn.Linear(4, 2), data, slow, epochs=1000, max_seconds=0.2)
    assert result.stopped == "max_seconds" and result.epochs < 1000
    with pytest.raises(TrialFailed, match="time limit"):
        fit(nn.Linear(4, 2), data, slow, epochs=1000, time_limit_s=0.1)


def test_bad_arguments_are_user_errors() -> None:
    data = _regression()
    with pytest.raises(UserError, match="give a fidelity"):
        fit(nn.Linear(4, 2), data, _mse)
    with pytest.raises(UserError, match="epochs must be an int >= 1"):
        fit(nn.Linear(4, 2), data, _mse, epochs=0)
    with pytest.raises(UserError, match="max_seconds must be > 0"):
        fit(nn.Linear(4, 2), data, _mse, max_seconds=0)
    with pytest.raises(UserError, match="scalar tensor"):
        fit(nn.Linear(4, 2), data, lambda m, b: m(b[0]), epochs=1)
    with pytest.raises(UserError, match="epoch 2 has no batch"):
        fit(nn.Linear(4, 2), iter(data), _mse, epochs=2, steps=100)
    with pytest.raises(UserError, match="steps_per_epoch"):
        fit(nn.Linear(4, 2), lambda epoch: iter(data), _mse, epochs=2)
    with pytest.raises(UserError, match="no parameter"):
        fit(nn.ReLU(), data, _mse, epochs=1)
    result = fit(nn.Linear(4, 2), lambda epoch: iter(data), _mse, epochs=2, steps_per_epoch=len(data))
    assert result.steps == 2 * len(data)


def _reference_train_model(model, x_train, y_train, cfg):
    """The classifier loop as it was before fit (training only), to check fit reproduces it bit for bit."""
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_adamw(model.parameters(), lr=warmup_cosine(cfg.lr, 0.0), weight_decay=cfg.weight_decay)
    total = max(1, math.ceil(len(x_train) / cfg.batch_size)) * cfg.epochs
    step, snapshots = 0, []
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(x_train), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb = _shift(x_train[idx], cfg.augment_shift, gen)
            xb = _flip(xb, gen) if cfg.augment_flip else xb
            loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
            opt.step()
            step += 1
            for group in opt.param_groups:
                group["lr"] = warmup_cosine(cfg.lr, step / total)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    return snapshots


def _tiny_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                         nn.Linear(4 * 36, 3))


def test_train_model_through_fit_equals_the_loop_it_replaced() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(90, 1, 6, 6, generator=g), torch.randint(0, 3, (90,), generator=g)
    cfg = TrainConfig(epochs=3, batch_size=16, seed=5, augment_shift=1, augment_flip=True, label_smoothing=0.1,
                      patience=None)
    ours, again = _tiny_cnn(1), _tiny_cnn(1)
    result = train_model(ours, x, y, x[:30], y[:30], cfg)
    snapshots = _reference_train_model(_tiny_cnn(1), x, y, cfg)
    # train_model restores the best epoch's weights (highest accuracy, then lowest loss): the reference's then
    best = max(result.curve, key=lambda p: (p["val_accuracy"], -p["val_loss"]))["epoch"]
    assert len(snapshots) == len(result.curve) == 3
    for name, value in ours.state_dict().items():
        assert torch.equal(value, snapshots[best - 1][name]), name
    second = train_model(again, x, y, x[:30], y[:30], cfg)
    assert [{k: v for k, v in p.items() if k != "seconds"} for p in second.curve] == \
        [{k: v for k, v in p.items() if k != "seconds"} for p in result.curve]
    for a, b in zip(ours.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same seed, same weights (dropout and augmentation included)


def test_next_token_training_through_fit_equals_the_loop_it_replaced() -> None:
    vocab = 7
    ids = torch.randint(0, vocab, (4, 9), generator=torch.Generator().manual_seed(0))

    def sample(progress):
        return ids[:, :-1], ids[:, 1:]

    def model_() -> nn.Module:
        torch.manual_seed(2)
        return nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, vocab))

    ours, reference = model_(), model_()
    steps, _, curve = fit_token_targets(ours, sample, steps=6, max_seconds=None, lr=1e-2, log_every=1)
    opt = make_adamw(reference.parameters(), lr=warmup_cosine(1e-2, 0.0), weight_decay=0.1, betas=(0.9, 0.95))
    losses = []
    for k in range(1, 7):
        x, t = sample(0.0)
        loss = F.cross_entropy(reference(x).flatten(0, 1).float(), t.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        opt.step()
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(1e-2, k / 6)
        losses.append(loss.item())
    assert steps == 6 and [p["loss"] for p in curve] == losses
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_batches_move_and_the_forward_pass_runs_in_bfloat16() -> None:
    dtypes = []

    def loss_fn(model, batch):
        out = model(batch[0])
        dtypes.append((batch[0].device.type, out.dtype))
        return F.mse_loss(out.float(), batch[1])

    model = nn.Linear(4, 2)
    data = _regression()
    first = sum(_mse(model, b).item() for b in data)
    fit(model, data, loss_fn, epochs=40, lr=5e-2, weight_decay=0.0, device="cuda")
    assert set(dtypes) == {("cuda", torch.bfloat16)}
    assert sum(_mse(model.cpu(), b).item() for b in data) < 0.05 * first
    dtypes.clear()
    fit(model, data, loss_fn, epochs=1, device="cuda", amp=False)
    assert set(dtypes) == {("cuda", torch.float32)}


def _private_imports_from_train(src: Path = SRC) -> list[str]:
    """``from archlab.train... import _name`` (or ``module._name`` through an imported archlab.train module)
    anywhere in src/archlab, and any private name imported across modules by archlab.train or archlab.compress."""
    found = []
    for path in sorted(src.rglob("*.py")):
        module = ".".join(path.relative_to(src.parent).with_suffix("").parts)
        own = module.startswith(("archlab.train", "archlab.compress"))
        aliases = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("archlab"):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and (node.module.startswith("archlab.train") or own):
                        found.append(f"{module}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                aliases |= {a.asname or a.name for a in node.names if a.name.startswith("archlab.train")}
            elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                  and ast.unparse(node.value) in aliases):
                found.append(f"{module}: {ast.unparse(node)}")
    return found


def test_no_module_imports_a_private_name_of_archlab_train() -> None:
    assert _private_imports_from_train() == []


def test_the_private_import_check_catches_one(tmp_path) -> None:
    fake = tmp_path / "archlab"
    (fake / "zoo").mkdir(parents=True)
    (fake / "zoo" / "x.py").write_text("from archlab.train._fit import _split_loss\n")
    (fake / "zoo" / "y.py").write_text("from archlab.train._fit import fit\nimport archlab.train.lm as lm\n"
                                       "lm._OnStep\n")
    assert _private_imports_from_train(fake) == ["archlab.zoo.x: from archlab.train._fit import _split_loss",
                                             "archlab.zoo.y: lm._OnStep"]

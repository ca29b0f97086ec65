"""N2N: network-to-network compression by policy-gradient reinforcement learning, in two stages (layer removal,
then layer shrinkage).

Paper: Ashok, Rhinehart, Beainy & Kitani, "N2N Learning: Network to Network Compression via Policy Gradient
Reinforcement Learning", ICLR 2018. Facts follow anubhavashok/N2N (``run.py``, ``rl.py``, ``utils.py``,
``controllers/LSTM.py``, ``controllers/AutoregressiveParam.py``); the code is archlab's.

A teacher is a plain CNN described by layer specs (:class:`LayerSpec`: convolutions, then fully connected
layers; the classifier is fixed). Each layer is described to the policies by 5 numbers (type, kernel, stride,
output width, padding), as the reference's ``Layer.getRepresentation``.

1. **Removal**: a bidirectional LSTM (2 layers, 30 hidden units, lr 0.003) reads the whole layer sequence and
   outputs keep/remove for every layer.
2. **Shrinkage**: an autoregressive LSTM (2 layers, 30 units, lr 0.1) goes over the layers of the stage-1 winner
   and picks, for each, a scale of its output width from the reference's ``lookup`` [0.25, 0.5 (×5), 0.6, 0.7,
   0.8, 0.9, 1.0] (the reference decides one scale per layer parameter; archlab one per layer: the width).

Each episode samples ``rollouts`` (5) children; a child inherits the teacher's weights where the shapes allow (the
first output and input channels, as the reference's ``resizeLayer``) and is trained for 5 epochs to match the
teacher's logits (MSE, Adam lr 5e-4, weight decay 5e-4: ``trainTeacherStudentParallel``). Its reward is

    R = (acc_s / acc_t) · C (2 − C),   C = 1 − params_s / params_t

(``rl.py``'s ``Reward``; an invalid child gets −1). REINFORCE with a baseline: the policy's log-probability of
each child's actions is weighted by its reward minus the mean reward of the earlier episodes (the reference
weighs every child of an episode by the episode's mean reward; archlab uses each child's own reward, the standard
estimator).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import evaluate, fit, shuffled_batches

__all__ = ["SHRINK_LOOKUP", "LayerSpec", "N2NResult", "RemovalPolicy", "ShrinkPolicy", "SpecNet", "describe",
           "inherit_weights", "n2n_stage", "reward"]

SHRINK_LOOKUP = (0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_KINDS = {"conv": 1, "fc": 5}  # the reference's layerTypes indices of Conv2d and Linear


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "conv" (3x3 by default, BN, ReLU) or "fc" (Linear, ReLU)
    out: int
    kernel: int = 3
    stride: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS or self.out < 1 or self.kernel < 1 or self.stride < 1:
            raise UserError(f"LayerSpec: bad layer {self}")


class SpecNet(nn.Module):
    """Convolutions (conv-BN-ReLU, "same" padding), global average pooling, fully connected layers (Linear-ReLU),
    and a linear classifier; the layers in ``specs`` order (convolutions must come before fully connected layers)."""

    def __init__(self, specs: Sequence[LayerSpec], in_chans: int, num_classes: int) -> None:
        super().__init__()
        kinds = [s.kind for s in specs]
        if kinds != sorted(kinds, key=lambda k: k != "conv"):
            raise UserError("SpecNet: convolution layers must come before fully connected ones")
        self.specs = tuple(specs)
        self.layers = nn.ModuleList()
        width = in_chans
        for s in specs:
            if s.kind == "conv":
                self.layers.append(nn.Sequential(nn.Conv2d(width, s.out, s.kernel, s.stride, s.kernel // 2,
                                                           bias=False), nn.BatchNorm2d(s.out), nn.ReLU()))
            else:
                self.layers.append(nn.Sequential(nn.Linear(width, s.out), nn.ReLU()))
            width = s.out
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for spec, layer in zip(self.specs, self.layers, strict=True):
            if spec.kind == "fc" and x.dim() == 4:
                x = F.adaptive_avg_pool2d(x, 1).flatten(1)
            x = layer(x)
        if x.dim() == 4:
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def describe(spec: LayerSpec, max_width: int) -> torch.Tensor:
    """The 5 numbers a policy reads for a layer: type, kernel, stride, output width (scaled by the widest), pad."""
    return torch.tensor([_KINDS[spec.kind] / 5.0, spec.kernel / 7.0, float(spec.stride), spec.out / max_width,
                         (spec.kernel // 2) / 3.0])


@torch.no_grad()
def inherit_weights(child: SpecNet, teacher: SpecNet, mapping: Sequence[int]) -> None:
    """Copy into ``child`` the teacher's weights of the layer each child layer came from (``mapping[i]``: its index
    in the teacher), sliced to the child's widths (first channels), when the layer kinds and kernels agree."""
    for i, t in enumerate(mapping):
        cs, ts = child.specs[i], teacher.specs[t]
        if cs.kind != ts.kind or cs.kernel != ts.kernel:
            continue
        for c_mod, t_mod in zip(child.layers[i].modules(), teacher.layers[t].modules(), strict=True):
            for name, c_param in list(c_mod.named_parameters(recurse=False)) + list(
                    c_mod.named_buffers(recurse=False)):
                t_param = getattr(t_mod, name)
                if c_param.dim() == 0:
                    continue
                index = tuple(slice(0, min(a, b)) for a, b in zip(c_param.shape, t_param.shape, strict=True))
                c_param[index] = t_param[index]
    width = min(child.classifier.in_features, teacher.classifier.in_features)
    child.classifier.weight[:, :width] = teacher.classifier.weight[:, :width]
    child.classifier.bias.copy_(teacher.classifier.bias)


def reward(acc_s: float, acc_t: float, params_s: int, params_t: int) -> float:
    """N2N's reward ``(acc_s / acc_t) · C (2 − C)`` with ``C = 1 − params_s / params_t``."""
    c = 1.0 - params_s / params_t
    return (acc_s / acc_t) * c * (2.0 - c)


class RemovalPolicy(nn.Module):
    """Stage 1: a bidirectional LSTM over the layer descriptions; keep (0) or remove (1) per layer."""

    def __init__(self, hidden: int = 30, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, hidden, layers, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, 2)

    def sample(self, desc: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """Actions for ``desc (layers, 5)`` and their summed log-probability."""
        logits = self.head(self.lstm(desc[None])[0][0])
        dist = torch.distributions.Categorical(logits=logits)
        actions = dist.sample()
        return actions.tolist(), dist.log_prob(actions).sum()


class ShrinkPolicy(nn.Module):
    """Stage 2: an autoregressive LSTM; for each layer a scale of its width from ``lookup``, the previous choice
    fed back with the next layer's description."""

    def __init__(self, lookup: Sequence[float] = SHRINK_LOOKUP, hidden: int = 30, layers: int = 2) -> None:
        super().__init__()
        self.lookup = tuple(lookup)
        self.cells = nn.ModuleList([nn.LSTMCell(5 + len(lookup) if i == 0 else hidden, hidden)
                                    for i in range(layers)])
        self.head = nn.Linear(hidden, len(lookup))

    def sample(self, desc: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        hidden = [(torch.zeros(1, c.hidden_size), torch.zeros(1, c.hidden_size)) for c in self.cells]
        prev = torch.zeros(1, len(self.lookup))
        actions, logp = [], torch.zeros(())
        for row in desc:
            h = torch.cat([row[None], prev], dim=1)
            for j, cell in enumerate(self.cells):
                hidden[j] = cell(h, hidden[j])
                h = hidden[j][0]
            dist = torch.distributions.Categorical(logits=self.head(h)[0])
            a = dist.sample()
            logp = logp + dist.log_prob(a)
            actions.append(int(a))
            prev = F.one_hot(a, len(self.lookup)).float()[None]
        return actions, logp


@dataclass
class N2NResult:
    specs: tuple[LayerSpec, ...]  # the best child's layers
    model: SpecNet  # the best child, trained
    accuracy: float
    params: int
    reward: float
    mean_rewards: list[float] = field(default_factory=list)  # per episode
    children: list[dict] = field(default_factory=list)  # every child: specs, accuracy, params, reward


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _child(stage: str, specs: Sequence[LayerSpec], actions: Sequence[int], lookup: Sequence[float]
           ) -> tuple[list[LayerSpec], list[int]] | None:
    if stage == "removal":
        kept = [i for i, a in enumerate(actions) if a == 0]
        if not kept:
            return None  # nothing left but the classifier: invalid, as the reference's empty child
        return [specs[i] for i in kept], kept
    return [replace(s, out=max(1, int(round(s.out * lookup[a])))) for s, a in zip(specs, actions, strict=True)], \
        list(range(len(specs)))


def n2n_stage(stage: str, teacher: SpecNet, student: SpecNet, x: torch.Tensor, y: torch.Tensor,
              x_val: torch.Tensor, y_val: torch.Tensor, *, episodes: int = 30, rollouts: int = 5,
              kd_epochs: int = 5, batch_size: int = 64, lr: float | None = None, seed: int = 0,
              teacher_accuracy: float | None = None, teacher_params: int | None = None,
              progress: Callable[[int, float], None] | None = None) -> N2NResult:
    """One N2N stage over ``student``'s layers (stage 1: the teacher itself; stage 2: stage 1's winner): children
    distil ``teacher`` on ``(x, y)``, are scored on ``(x_val, y_val)``, and rewarded against the teacher's
    accuracy and size (``teacher_accuracy``/``teacher_params`` default to ``teacher``'s own)."""
    if stage not in ("removal", "shrinkage"):
        raise UserError(f"n2n: stage must be removal or shrinkage, got {stage!r}")
    if episodes < 1 or rollouts < 1:
        raise UserError("n2n: episodes and rollouts must be >= 1")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    policy: nn.Module = RemovalPolicy() if stage == "removal" else ShrinkPolicy()
    opt = torch.optim.Adam(policy.parameters(), lr=lr if lr is not None else (0.003 if stage == "removal" else 0.1))
    acc_t = teacher_accuracy if teacher_accuracy is not None else evaluate(teacher, x_val, y_val)[1]
    params_t = teacher_params if teacher_params is not None else _params(teacher)
    widest = max(s.out for s in student.specs)
    desc = torch.stack([describe(s, widest) for s in student.specs])
    in_chans, classes = x.shape[1], student.classifier.out_features
    teacher.eval()
    with torch.no_grad():
        targets = torch.cat([teacher(x[i:i + 512]) for i in range(0, len(x), 512)])
    seen: dict[tuple, tuple[float, float, int, SpecNet]] = {}
    history: list[float] = []
    children: list[dict] = []
    best: tuple[float, tuple, float, int, SpecNet] | None = None
    baseline_sum = 0.0
    for episode in range(episodes):
        losses, rewards = [], []
        for _ in range(rollouts):
            actions, logp = policy.sample(desc)
            made = _child(stage, student.specs, actions, SHRINK_LOOKUP)
            if made is None:
                r, acc, params, model, key = -1.0, 0.0, 0, None, None
            else:
                specs, mapping = made
                key = tuple(specs)
                if key in seen:
                    r, acc, params, model = seen[key]
                else:
                    model = SpecNet(specs, in_chans, classes)
                    inherit_weights(model, student, mapping)
                    _distil(model, x, targets, kd_epochs, batch_size, rng.randrange(2**31))
                    acc = evaluate(model, x_val, y_val)[1]
                    params = _params(model)
                    r = reward(acc, acc_t, params, params_t)
                    seen[key] = (r, acc, params, model)
                    children.append({"specs": [vars(s) for s in specs], "accuracy": acc, "params": params,
                                     "reward": r, "episode": episode})
                if best is None or r > best[0]:
                    best = (r, key, acc, params, model)
            rewards.append(r)
            losses.append(logp)
        mean_r = sum(rewards) / len(rewards)
        b = baseline_sum / episode if episode else 0.0  # the mean reward of the earlier episodes
        opt.zero_grad()
        loss = -torch.stack([lp * (r - b) for lp, r in zip(losses, rewards, strict=True)]).sum()
        loss.backward()
        opt.step()
        baseline_sum += mean_r
        history.append(mean_r)
        if progress is not None:
            progress(episode, mean_r)
    if best is None or best[4] is None:
        raise UserError("n2n: no valid child was found")
    r, key, acc, params, model = best
    return N2NResult(specs=key, model=model, accuracy=acc, params=params, reward=r, mean_rewards=history,
                     children=children)


def _distil(student: nn.Module, x: torch.Tensor, targets: torch.Tensor, epochs: int, batch_size: int,
            seed: int) -> None:
    """The reference's teacher-student training: MSE between the child's and the teacher's logits."""
    batches = shuffled_batches(x, targets, batch_size=batch_size, seed=seed)
    fit(student, batches, lambda m, b: F.mse_loss(m(b[0]), b[1]), epochs=epochs,
        steps_per_epoch=math.ceil(len(x) / batch_size),
        optimizer=lambda p: torch.optim.Adam(p, lr=5e-4, weight_decay=5e-4), warmup=0.0,
        schedule=lambda base, progress: base, seed=seed, amp=False)
    student.eval()

"""REINFORCE over a space's decisions (Williams, "Simple Statistical Gradient-Following Algorithms for
Connectionist Reinforcement Learning", Machine Learning 1992), as the NAS-Bench-201 paper runs it (Dong & Yang,
ICLR 2020; D-X-Y/AutoDL-Projects ``exps/NAS-Bench-201-algos/reinforce.py``).

The policy is one categorical distribution per decision of the space (:meth:`Space.decisions`: every choice, and
every integer as the choice of its values), with logits started at ``1e-3 * N(0, 1)``. An arch is sampled
decision by decision in the space's order, skipping the decisions whose conditions do not hold (a repeat too
short, a branch not taken), and built with :meth:`Space.from_params`. After each evaluation the policy takes one
Adam step on ``-log p(arch) * (reward - baseline)``, the baseline an exponential moving average of the rewards
(bias-corrected, as the reference's ``ExponentialMovingAverage``), updated with the reward before the step. The
reward is the first objective, oriented so that larger is better. Failed and infeasible trials teach nothing.

The update depends only on the records told, in order, so a strategy rebuilt from the ledger holds the same policy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from archlab.errors import UserError
from archlab.search._base import Strategy, TrialRecord
from archlab.search._objectives import Objective
from archlab.space import Arch, Space

__all__ = ["Reinforce"]


class Reinforce(Strategy):
    name = "reinforce"

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 learning_rate: float = 0.01, ema_momentum: float = 0.9, dedupe: bool = True) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=dedupe)
        if not learning_rate > 0 or not 0.0 <= ema_momentum < 1.0:
            raise UserError(f"reinforce: need learning_rate > 0 and 0 <= ema_momentum < 1, got {learning_rate}, "
                            f"{ema_momentum}")
        self.learning_rate, self.ema_momentum = learning_rate, ema_momentum
        self.decisions = []
        for d in space.decisions():
            if d.kind == "real":
                raise UserError(f"reinforce: decision {d.path!r} is a real range; the policy is categorical")
            self.decisions.append((d.path, d.values(), d.conditions))
        self._reset_policy()

    def _reset_policy(self) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        self.logits = [torch.nn.Parameter(1e-3 * torch.randn(len(values), generator=gen, dtype=torch.float64))
                       for _, values, _ in self.decisions]
        self.optimizer = torch.optim.Adam(self.logits, lr=self.learning_rate)
        self._ema_numerator = self._ema_denominator = 0.0

    def reset(self) -> None:
        super().reset()
        self._reset_policy()

    @property
    def baseline(self) -> float | None:
        return self._ema_numerator / self._ema_denominator if self._ema_denominator else None

    def probabilities(self) -> dict[str, list[float]]:
        """The policy: for each decision's path, the probability of each of its values."""
        with torch.no_grad():
            return {path: torch.softmax(logit, 0).tolist() for (path, _, _), logit in
                    zip(self.decisions, self.logits, strict=True)}

    @staticmethod
    def _active(conditions: Sequence[Any], params: dict[str, Any]) -> bool:
        return all(path in params and params[path] in values for path, values in conditions)

    def propose(self, rng: random.Random) -> Arch:
        params: dict[str, Any] = {}
        with torch.no_grad():
            for (path, values, conditions), logit in zip(self.decisions, self.logits, strict=True):
                if self._active(conditions, params):
                    probs = torch.softmax(logit, 0).tolist()
                    params[path] = values[rng.choices(range(len(values)), weights=probs)[0]]
        return self.space.from_params(params)

    def log_prob(self, arch: Arch) -> torch.Tensor:
        """``log p(arch)`` under the policy (a sum over the decisions the arch makes)."""
        params = self.space.to_params(arch)
        total = torch.zeros((), dtype=torch.float64)
        for (path, values, _), logit in zip(self.decisions, self.logits, strict=True):
            if path in params:
                total = total + torch.log_softmax(logit, 0)[values.index(params[path])]
        return total

    def observe(self, record: TrialRecord) -> None:
        if not record.ok:
            return
        reward = self.fitness(record)[0]
        m = self.ema_momentum
        self._ema_numerator = m * self._ema_numerator + (1 - m) * reward
        self._ema_denominator = m * self._ema_denominator + (1 - m)
        loss = -self.log_prob(record.arch) * (reward - self.baseline)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "policy": self.probabilities(), "baseline": self.baseline}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "learning_rate": self.learning_rate, "ema_momentum": self.ema_momentum}

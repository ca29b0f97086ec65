"""Surrogate-guided local search: a Bayesian second-order surrogate over the decisions, Thompson sampling to
explore, then local search in the order the surrogate predicts.

The model-based loop is BANANAS's (White, Neiswanger & Savani, "BANANAS: Bayesian Optimization with Neural
Architectures for Neural Architecture Search", AAAI 2021): fit a surrogate with uncertainty to the evaluated
archs, score candidates with an acquisition function (independent Thompson sampling there), evaluate the best.
Two choices differ, both for small budgets on categorical spaces:

- The surrogate is Bayesian linear regression on a second-order encoding (a bias, one indicator per decision
  value, one per pair of decision values: ``f(x) = b + sum_i u[x_i] + sum_{i<j} W_ij[x_i, x_j]``, Gaussian priors of
  variance 1, 1 and ``pair_prior``; the pairwise terms are BOSHNAS's and BOCS's "second order"). Its posterior is
  exact, so a Thompson sample is exact too (drawn in weight space with Matheron's rule), and it is refitted after
  every evaluation in microseconds instead of training an ensemble. Rewards are standardised; the noise variance
  is ``noise`` (12-epoch accuracies are noisy).
- After ``explore`` evaluations the search turns to local search (White et al., "Exploring the Loss Landscape in
  NAS", UAI 2021): the next arch is the unevaluated neighbour (:meth:`Space.neighbors`) with the highest
  posterior mean, of the best arch evaluated, or of the next best when that neighbourhood is done.

Candidates are every arch of the space when it has at most ``enumerate_limit`` (NAS-Bench-201's 15,625 are
encoded once per space object and shared by every run), else ``pool_size`` random archs plus the neighbours of
the three best. Failed trials teach nothing; an infeasible one is told as the worst reward seen so far, so the
search leaves its region. The reward is the first objective. The state depends only on the records told (and
each step's generator), so a strategy rebuilt from the ledger proposes what the live one would.
"""

from __future__ import annotations

import functools
import random
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from archlab.errors import UserError
from archlab.search._base import Strategy, TrialRecord
from archlab.search._objectives import Objective
from archlab.space import Arch, Space

__all__ = ["SurrogateLocalSearch"]


class _Encoding:
    """Each arch as a row of feature indices: the bias, each decision's value, each pair of decisions' values."""

    def __init__(self, space: Space) -> None:
        self.decisions = []
        for d in space.decisions():
            if d.kind == "real":
                raise UserError(f"surrogate_ls: decision {d.path!r} is a real range; the encoding is categorical")
            values = d.values()
            self.decisions.append((d.path, {v: i for i, v in enumerate(values)}, len(values) + 1))  # +1: inactive
        sizes = [k for _, _, k in self.decisions]
        self.main_offset = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        pairs = [(a, b) for a in range(len(sizes)) for b in range(a + 1, len(sizes))]
        self.pair_a = np.array([a for a, _ in pairs], dtype=np.int64)
        self.pair_b = np.array([b for _, b in pairs], dtype=np.int64)
        pair_sizes = np.array([sizes[a] * sizes[b] for a, b in pairs], dtype=np.int64)
        start = 1 + sum(sizes)
        self.pair_offset = start + np.concatenate([[0], np.cumsum(pair_sizes)[:-1]]).astype(np.int64)
        self.pair_stride = np.array([sizes[b] for _, b in pairs], dtype=np.int64)
        self.n_main = 1 + sum(sizes)
        self.n_features = start + int(pair_sizes.sum())

    def codes(self, space: Space, arch: Arch) -> np.ndarray:
        params = space.to_params(arch)
        return np.array([index[params[path]] if path in params else k - 1 for path, index, k in self.decisions],
                        dtype=np.int64)

    def features(self, codes: np.ndarray) -> np.ndarray:
        """Feature indices of a (n, decisions) array of codes: (n, 1 + decisions + pairs)."""
        codes = np.atleast_2d(codes)
        main = self.main_offset + codes
        pair = self.pair_offset + codes[:, self.pair_a] * self.pair_stride + codes[:, self.pair_b]
        return np.concatenate([np.zeros((len(codes), 1), dtype=np.int64), main, pair], axis=1)


class _Enumerated:
    """Every arch of a small space, its codes and features, and its row."""

    def __init__(self, space: Space, encoding: _Encoding) -> None:
        self.archs = list(space.enumerate())
        self.row = {a: i for i, a in enumerate(self.archs)}
        self.codes = np.stack([encoding.codes(space, a) for a in self.archs])
        self.features = encoding.features(self.codes)


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finding the BLAS libraries once; limiting them after costs microseconds


def _one_blas_thread() -> Any:
    """BLAS on one thread for the small solves of a step: OpenBLAS's threads spin-wait, and a 100 x 100 solve
    measured 0.5 ms on one thread against 97 ms on two beside other busy processes."""
    return _blas_controller().limit(limits=1, user_api="blas")


_CACHE: weakref.WeakKeyDictionary[Space, tuple[_Encoding, _Enumerated | None]] = weakref.WeakKeyDictionary()


class SurrogateLocalSearch(Strategy):
    name = "surrogate_ls"

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 init: int = 10, explore: int = 50, pair_prior: float = 0.1, noise: float = 0.1,
                 pool_size: int = 2000, enumerate_limit: int = 50_000, dedupe: bool = True) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=dedupe)
        if init < 1 or explore < init or not pair_prior > 0 or not noise > 0 or pool_size < 1:
            raise UserError(f"surrogate_ls: need 1 <= init <= explore, pair_prior > 0, noise > 0 and pool_size >= 1, "
                            f"got init={init}, explore={explore}, pair_prior={pair_prior}, noise={noise}, "
                            f"pool_size={pool_size}")
        self.init, self.explore, self.pair_prior, self.noise = init, explore, pair_prior, noise
        self.pool_size, self.enumerate_limit = pool_size, enumerate_limit
        if space not in _CACHE:
            encoding = _Encoding(space)
            small = space.size() <= enumerate_limit
            _CACHE[space] = (encoding, _Enumerated(space, encoding) if small else None)
        self.encoding, self.enumerated = _CACHE[space]
        n_pairs = self.encoding.n_features - self.encoding.n_main
        self.prior = np.concatenate([np.ones(self.encoding.n_main), np.full(n_pairs, pair_prior)])
        self._reset_model()

    def _reset_model(self) -> None:
        self._archs: list[Arch] = []  # archs with a reward, in the order told
        self._features = np.zeros((0, 1), dtype=np.int64)
        self._gram = np.zeros((0, 0))  # the prior covariance of the rewards told (features shared, weighted)
        self._rewards: list[float] = []
        self._evaluated: set[Arch] = set()
        self._told_rows = np.zeros(len(self.enumerated.archs), dtype=bool) if self.enumerated is not None else None

    def reset(self) -> None:
        super().reset()
        self._reset_model()

    def _features_of(self, archs: Sequence[Arch]) -> np.ndarray:
        if self.enumerated is not None:
            return self.enumerated.features[[self.enumerated.row[a] for a in archs]]
        return self.encoding.features(np.stack([self.encoding.codes(self.space, a) for a in archs]))

    def observe(self, record: TrialRecord) -> None:
        self._evaluated.add(record.arch)
        if self._told_rows is not None:
            self._told_rows[self.enumerated.row[record.arch]] = True
        if record.ok:
            reward = self.fitness(record)[0]
        elif record.state == "infeasible" and self._rewards:
            reward = min(self._rewards)
        else:
            return
        features = self._features_of([record.arch])
        self._features = features if not self._archs else np.concatenate([self._features, features])
        k = ((self._features == features) * self.prior[features]).sum(1)  # with every told arch, itself last
        n = len(k)
        gram = np.empty((n, n))
        gram[:-1, :-1], gram[-1, :], gram[:-1, -1] = self._gram, k, k[:-1]
        self._gram = gram
        self._archs.append(record.arch)
        self._rewards.append(reward)

    def _taken(self, arch: Arch) -> bool:
        return arch in self._evaluated or arch in self.pending

    # -- the posterior
    def _posterior(self, rng: np.random.Generator | None) -> np.ndarray:
        """Weights of the posterior mean (``rng=None``) or of one Thompson sample."""
        y = np.asarray(self._rewards)
        y = (y - y.mean()) / (y.std() + 1e-9)
        f = self._features
        gram = self._gram + self.noise * np.eye(len(y))
        target = y
        if rng is not None:  # Matheron: a prior draw, corrected by the data (exact in weight space)
            w0 = rng.standard_normal(self.encoding.n_features) * np.sqrt(self.prior)
            target = y - w0[f].sum(1) - np.sqrt(self.noise) * rng.standard_normal(len(y))
        alpha = np.linalg.solve(gram, target)
        w = np.zeros(self.encoding.n_features)
        np.add.at(w, f.ravel(), np.repeat(alpha, f.shape[1]))
        w *= self.prior
        return w if rng is None else w + w0

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        """The posterior mean of the (standardised) reward of each arch."""
        if not self._rewards:
            return np.zeros(len(archs))
        return self._posterior(None)[self._features_of(archs)].sum(1)

    # -- proposals
    def _candidates(self, rng: random.Random) -> tuple[list[Arch], np.ndarray]:
        if self.enumerated is not None:
            return self.enumerated.archs, self.enumerated.features
        best = sorted(range(len(self._archs)), key=lambda i: -self._rewards[i])[:3]
        archs = {self.space.sample(rng) for _ in range(self.pool_size)}
        for i in best:
            archs.update(self.space.neighbors(self._archs[i]))
        archs = sorted((a for a in archs if not self._taken(a)), key=lambda a: a.key)
        return archs, (self._features_of(archs) if archs else np.zeros((0, 1), dtype=np.int64))

    def _argmax(self, archs: Sequence[Arch], scores: np.ndarray) -> Arch | None:
        scores = np.array(scores, dtype=np.float64)
        if self._told_rows is not None and archs is self.enumerated.archs:
            scores[self._told_rows] = -np.inf
        for _ in range(len(archs)):  # the best untaken arch (pending ones are few: one argmax each)
            i = int(np.argmax(scores))
            if scores[i] == -np.inf:
                break
            if not self._taken(archs[i]):
                return archs[i]
            scores[i] = -np.inf
        return None

    def propose(self, rng: random.Random) -> Arch:
        with _one_blas_thread():
            return self._propose(rng)

    def _propose(self, rng: random.Random) -> Arch:
        if len(self._rewards) < max(self.init, 2):
            return self.space.sample(rng)
        if len(self.history) < self.explore:  # explore: the best arch under one Thompson sample
            w = self._posterior(np.random.default_rng(rng.getrandbits(64)))
            archs, features = self._candidates(rng)
            found = self._argmax(archs, w[features].sum(1)) if len(archs) else None
            return found if found is not None else self.space.sample(rng)
        mean = self._posterior(None)
        for i in sorted(range(len(self._archs)), key=lambda i: -self._rewards[i]):  # the best first
            near = [a for a in self.space.neighbors(self._archs[i]) if not self._taken(a)] \
                if self.enumerated is None else self._near(self._archs[i])
            if near:
                return near[int(np.argmax(mean[self._features_of(near)].sum(1)))]
        archs, features = self._candidates(rng)  # every neighbourhood done: the best predicted arch
        found = self._argmax(archs, mean[features].sum(1)) if len(archs) else None
        return found if found is not None else self.space.sample(rng)

    def _near(self, arch: Arch) -> list[Arch]:
        e = self.enumerated
        rows = np.flatnonzero(((e.codes != e.codes[e.row[arch]]).sum(1) == 1) & ~self._told_rows)
        return [e.archs[r] for r in rows if e.archs[r] not in self.pending]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rewards": list(self._rewards)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "init": self.init, "explore": self.explore, "pair_prior": self.pair_prior,
                "noise": self.noise}

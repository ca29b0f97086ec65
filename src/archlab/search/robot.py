"""RoBoT: robustifying and boosting training-free NAS (He, Lin, Dai, Low, Kwek & Wang, "Robustifying and
Boosting Training-Free Neural Architecture Search", ICLR 2024; reference: hzf1174/RoBoT ``search_nb201.py``).

Training-free proxies disagree with each other and with the true accuracy, differently on every task. RoBoT
combines several of them linearly, ``score_w(a) = sum_m w_m * p_m(a)`` over min-max normalised proxies
``p_m`` (the reference's six by default: grad_norm, snip, grasp, fisher, synflow, jacob_cov) and weights
``w in [-1, 1]^M``, and learns ``w`` from a few real evaluations:

1. **Exploration** (Bayesian optimisation of ``w``): ``queries`` iterations, the first ``w`` drawn uniformly and
   ``queries - 1`` by GP-UCB (the reference's ``maximize(init_points=0, n_iter=queries - 1)``, which primes one
   random point; a Matérn-5/2 Gaussian process on the normalised objective, UCB with ``kappa = 2.576``, as
   ``bayes_opt``'s defaults), the objective of ``w`` being the evaluated accuracy of the candidate that
   ``score_w`` ranks first. An iteration whose top candidate was already evaluated is answered from that result
   and costs no query (the reference's ``opt_archs`` holds distinct archs).
2. **Exploitation** (greedy in score order): with the best ``w`` found (the latest among equals), the candidates in
   descending ``score_w`` order, skipping those evaluated, until ``queries`` evaluations are spent.

The candidates are a fixed pool: the archs of a precomputed proxy table (``scores``; on NAS-Bench-201 the table
archlab computed, :func:`archlab.bench.load_nb201_proxies`), or ``pool_size`` distinct archs drawn from the space
under the seed and scored by ``scorer`` (a :class:`~archlab.proxies.ProxyScorer`, built by ``archlab search``
from :attr:`RoBoT.proxy_names`) when the search starts; a scorer with a time budget scores as many as it can, and
the pool is those. A proxy that is NaN or infinite on an arch adds nothing to its score (the reference skips NaN).
The objective is the first objective (oriented so that larger is better); a failed or infeasible evaluation counts
as the worst value seen. What each proposal learnt (the weights tried, the iterations answered from earlier
results, the pool's size) is kept in the trial's memo, so a strategy rebuilt from the ledger proposes what the
live one would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from archlab.errors import UserError
from archlab.search._base import Strategy, TrialRecord
from archlab.search._objectives import Objective
from archlab.space import Arch, Space

__all__ = ["RoBoT", "normalised_proxy_matrix"]

DEFAULT_PROXIES = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov")


def normalised_proxy_matrix(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Each column min-max normalised to [0, 1] over its finite values (a constant column is left as it is, as in
    the reference); non-finite entries become 0, so they add nothing to a weighted sum."""
    m = np.array(rows, dtype=np.float64)
    if m.ndim != 2:
        raise UserError("proxy scores must be one row of numbers per arch")
    out = np.zeros_like(m)
    for j in range(m.shape[1]):
        col = m[:, j]
        ok = np.isfinite(col)
        if not ok.any():
            continue
        lo, hi = col[ok].min(), col[ok].max()
        out[ok, j] = col[ok] if hi == lo else (col[ok] - lo) / (hi - lo)
    return out


class RoBoT(Strategy):
    name = "robot"
    #: the proxies ``archlab search`` scores the pool by (the reference's default metrics)
    proxy_names: tuple[str, ...] = DEFAULT_PROXIES

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 scores: Mapping[Arch, Sequence[float]] | None = None,
                 scorer: Callable[[Arch], Sequence[float]] | None = None, pool_size: int = 1000,
                 queries: int = 20, kappa: float = 2.576, acquisition_samples: int = 10_000) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=True)
        if (scores is None) == (scorer is None):
            raise UserError("robot: give the candidates' proxy scores (scores=) or a scorer (scorer=), one of them")
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
            raise UserError(f"robot: queries must be an int >= 1, got {queries!r}")
        if pool_size < 1 or not kappa >= 0 or acquisition_samples < 1:
            raise UserError(f"robot: need pool_size >= 1, kappa >= 0 and acquisition_samples >= 1, got "
                            f"{pool_size}, {kappa}, {acquisition_samples}")
        self.scorer, self.pool_size, self.queries = scorer, pool_size, queries
        self.kappa, self.acquisition_samples = kappa, acquisition_samples
        self._pool: list[Arch] | None = None
        self._matrix: np.ndarray | None = None
        if scores is not None:
            archs = [space.validate(a) for a in scores]
            if not archs:
                raise UserError("robot: the proxy table is empty")
            self._set_pool(archs, [tuple(scores[a]) for a in scores])
        self._pool_limit: int | None = None  # the pool size a resumed run must keep (from the first memo)
        self._reset_state()

    @classmethod
    def from_context(cls, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                     constraints: Sequence[Any] = (), expected_trials: int | None = None, **kwargs: Any) -> RoBoT:
        """The query budget ``queries`` is the search's expected number of trials when one is known."""
        if expected_trials is not None:
            kwargs.setdefault("queries", max(1, int(expected_trials)))
        return cls(space, seed=seed, objectives=objectives, **kwargs)

    # -- state
    def _reset_state(self) -> None:
        self._obs_w: list[list[float]] = []
        self._obs_y: list[float] = []
        self._iterations = 0
        self._known: dict[Arch, float] = {}
        self._proposals: dict[Arch, dict[str, Any]] = {}

    def reset(self) -> None:
        super().reset()
        self._reset_state()

    def _set_pool(self, archs: list[Arch], rows: list[Sequence[float]]) -> None:
        widths = {len(r) for r in rows}
        if len(widths) != 1 or 0 in widths:
            raise UserError("robot: every arch needs the same, non-empty list of proxy scores")
        self._pool, self._matrix = archs, normalised_proxy_matrix(rows)

    def _ensure_pool(self) -> None:
        if self._pool is not None:
            return
        assert self.scorer is not None
        gen = random.Random(f"robot-pool:{self.seed}")
        n = min(self.pool_size, self.space.size())
        limit = self._pool_limit
        archs: list[Arch] = []
        rows: list[Sequence[float]] = []
        for arch in self.space.sample_distinct(n if limit is None else min(n, limit), gen):
            if limit is None and getattr(self.scorer, "exhausted", False) and len(archs) >= 2:
                break  # a scorer with a time budget: the pool is what it scored in time
            archs.append(arch)
            rows.append(tuple(self.scorer(arch)))
        if not archs:
            raise UserError(f"robot: could not draw a candidate pool from the {self.space.name} space")
        self._set_pool(archs, rows)

    # -- the two phases
    @property
    def exploring(self) -> bool:
        return self._iterations < self.queries

    def best_weights(self) -> np.ndarray | None:
        """The weights whose top candidate scored best so far (the latest among equals), or None."""
        return self._best_of(self._obs_w, self._obs_y)

    def _top(self, w: np.ndarray) -> int:
        assert self._matrix is not None
        return int(np.argmax(self._matrix @ w))

    def propose(self, rng: random.Random) -> Arch:
        self._ensure_pool()
        assert self._pool is not None and self._matrix is not None
        ws, ys = list(self._obs_w), list(self._obs_y)
        repeats: list[list[float]] = []  # [*w, y] of iterations answered from an earlier result
        iterations = self._iterations
        nprng = np.random.default_rng(rng.getrandbits(64))
        while iterations < self.queries:
            w = self._suggest(ws, ys, nprng)
            iterations += 1
            arch = self._pool[self._top(w)]
            if arch in self._known:
                ws.append(w.tolist())
                ys.append(self._known[arch])
                repeats.append([*w.tolist(), self._known[arch]])
                continue
            if self._taken(arch):  # asked and still running (parallel workers): this iteration learns nothing
                continue
            self._proposals[arch] = {"w": w.tolist(), "repeats": repeats, "iterations": iterations,
                                     "pool": len(self._pool)}
            return arch
        # exploitation: the best weights' ranking, greedily (the repeats found above are learnt first)
        w_best = self._best_of(ws, ys)
        order = np.argsort(-(self._matrix @ w_best), kind="stable") if w_best is not None else \
            np.array(nprng.permutation(len(self._pool)))
        for i in order:
            arch = self._pool[int(i)]
            if not self._taken(arch):
                self._proposals[arch] = {"repeats": repeats, "iterations": iterations, "pool": len(self._pool)}
                return arch
        return self._unseen(rng) or self._pool[int(order[0])]  # the pool is spent: beyond it at random

    @staticmethod
    def _best_of(ws: list[list[float]], ys: list[float]) -> np.ndarray | None:
        if not ys:
            return None
        best = max(ys)
        return np.array(ws[max(k for k, y in enumerate(ys) if y == best)])

    def _suggest(self, ws: list[list[float]], ys: list[float], nprng: np.random.Generator) -> np.ndarray:
        """The next weights: uniform at first, then the maximiser of the GP's upper confidence bound."""
        assert self._matrix is not None
        dim = self._matrix.shape[1]
        if not ys:
            return nprng.uniform(-1.0, 1.0, dim)
        from scipy.optimize import minimize
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import Matern

        gp = GaussianProcessRegressor(kernel=Matern(nu=2.5), alpha=1e-6, normalize_y=True, n_restarts_optimizer=5,
                                      random_state=int(nprng.integers(2**31 - 1)))
        import warnings

        with warnings.catch_warnings():  # a few points: the length scale often sits at its bound
            warnings.simplefilter("ignore")
            gp.fit(np.array(ws), np.array(ys))

            def ucb(x: np.ndarray) -> np.ndarray:
                mu, sd = gp.predict(np.atleast_2d(x), return_std=True)
                return mu + self.kappa * sd

            samples = nprng.uniform(-1.0, 1.0, (self.acquisition_samples, dim))
            values = ucb(samples)
            best_x, best_v = samples[int(np.argmax(values))], float(values.max())
            for x0 in samples[np.argsort(-values)[:5]]:  # polished with L-BFGS-B from the best samples
                res = minimize(lambda x: -float(ucb(x)[0]), x0, bounds=[(-1.0, 1.0)] * dim, method="L-BFGS-B")
                if res.success and -float(res.fun) > best_v:
                    best_x, best_v = np.clip(res.x, -1.0, 1.0), -float(res.fun)
        return best_x

    # -- learning from results
    def memo(self, arch: Arch) -> dict[str, Any] | None:
        data = self._proposals.pop(arch, None)
        return {"robot": data} if data is not None else None

    def observe(self, record: TrialRecord) -> None:
        worst = min(self._obs_y + list(self._known.values()), default=0.0)
        y = worst  # a failed or infeasible evaluation counts as the worst value seen
        if record.ok:
            o = self.objectives[0]
            value = float(o.oriented(record.metrics[o.metric]))
            y = value if math.isfinite(value) else worst
        data = (record.memo or {}).get("robot")
        if data is not None:
            if self._pool is None and "pool" in data:
                self._pool_limit = int(data["pool"])  # rebuilt before the pool is drawn: draw the same one
            for rep in data.get("repeats", []):
                self._obs_w.append([float(v) for v in rep[:-1]])
                self._obs_y.append(float(rep[-1]))
            if "w" in data:
                self._obs_w.append([float(v) for v in data["w"]])
                self._obs_y.append(y)
            self._iterations = max(self._iterations, int(data.get("iterations", self._iterations)))
        self._known[record.arch] = y

    def describe(self) -> dict:
        return {**super().describe(), "queries": self.queries, "kappa": self.kappa,
                "proxies": list(getattr(self.scorer, "names", self.proxy_names)),
                "pool": None if self._pool is None else len(self._pool),
                "bo_iterations": self._iterations, "exploring": self.exploring}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "w": self._obs_w, "y": self._obs_y, "iterations": self._iterations}

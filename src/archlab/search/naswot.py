"""NASWOT search: score N random archs at initialisation, train the best (Mellor, Turner, Storkey & Crowley,
"Neural Architecture Search without Training", ICML 2021; reference: BayesWatch/nas-without-training
``search.py``).

The first proposal is the arch with the highest score among ``n_candidates`` distinct random archs (the paper's
N = 10, 100, 1000); with a larger budget the next proposals follow the same ranking, so a search of ``k`` trials
trains the ``k`` best-scored candidates (and, once they are spent, archs drawn at random). Scores come from a
precomputed table (``scores``: on NAS-Bench-201 archlab's own :func:`archlab.bench.load_nb201_proxies`, whose
cells are then the candidates' population) or from ``scorer`` (a :class:`~archlab.proxies.ProxyScorer` over
:attr:`NaswotSearch.proxy_names`, the ``nwot`` score, built by ``archlab search``); a scorer with a time budget
ranks the candidates it scored in time. Candidates are drawn under the seed alone, so a rebuilt strategy ranks the
same ones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from archlab.errors import UserError
from archlab.search._base import Strategy
from archlab.search._objectives import Objective
from archlab.space import Arch, Space

__all__ = ["NaswotSearch"]


class NaswotSearch(Strategy):
    name = "naswot"
    #: the proxy ``archlab search`` scores candidates by
    proxy_names: tuple[str, ...] = ("nwot",)

    def __init__(self, space: Space, *, seed: int = 0, objectives: Sequence[str | Objective] = ("accuracy",),
                 n_candidates: int = 100, scores: Mapping[Arch, Sequence[float] | float] | None = None,
                 scorer: Callable[[Arch], Sequence[float]] | None = None) -> None:
        super().__init__(space, seed=seed, objectives=objectives, dedupe=True)
        if (scores is None) == (scorer is None):
            raise UserError("naswot: give the candidates' scores (scores=) or a scorer (scorer=), one of them")
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
            raise UserError(f"naswot: n_candidates must be an int >= 1, got {n_candidates!r}")
        self.n_candidates, self.scorer = n_candidates, scorer
        self._table: dict[Arch, float] | None = None
        if scores is not None:
            self._table = {space.validate(a): _first(v) for a, v in scores.items()}
            if len(self._table) < n_candidates:
                raise UserError(f"naswot: {n_candidates} candidates asked, the score table has "
                                f"{len(self._table)} archs")
        self._ranking: list[Arch] | None = None

    def ranking(self) -> list[Arch]:
        """The candidates, best score first (ties: in draw order); scored on first use."""
        if self._ranking is None:
            gen = random.Random(f"naswot:{self.seed}")
            if self._table is not None:
                candidates = gen.sample(sorted(self._table, key=lambda a: a.key), self.n_candidates)
                scored = [(self._table[a], a) for a in candidates]
            else:
                assert self.scorer is not None
                candidates = list(self.space.sample_distinct(self.n_candidates, gen))
                scored = []
                for arch in candidates:
                    if len(scored) >= 1 and getattr(self.scorer, "exhausted", False):
                        break  # a scorer with a time budget: rank those scored in time
                    scored.append((_first(self.scorer(arch)), arch))
            order = sorted(range(len(scored)), key=lambda i: (-_finite(scored[i][0]), i))
            self._ranking = [scored[i][1] for i in order]
        return self._ranking

    def propose(self, rng: random.Random) -> Arch:
        for arch in self.ranking():
            if not self._taken(arch):
                return arch
        return self.space.sample(rng)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_candidates": self.n_candidates,
                "scored": None if self._ranking is None else len(self._ranking),
                "proxies": list(getattr(self.scorer, "names", self.proxy_names))}


def _first(value: Sequence[float] | float) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return float(value[0])


def _finite(v: float) -> float:
    return v if math.isfinite(v) else -math.inf

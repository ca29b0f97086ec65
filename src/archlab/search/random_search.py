"""Random search (Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012).

Every proposal is a fresh sample of the space; de-duplication comes from :class:`Strategy.ask`. Li & Talwalkar
("Random Search and Reproducibility for NAS", 2019) show it is a strong NAS baseline.
"""

from __future__ import annotations

import random

from archlab.search._base import Strategy
from archlab.space import Arch


class RandomSearch(Strategy):
    name = "random"

    def propose(self, rng: random.Random) -> Arch:
        return self.space.sample(rng)

"""archlab: a laboratory for neural-network architectures.

Declare a space of architectures (:mod:`archlab.space`) from the blocks of :mod:`archlab.zoo`, search it
(:mod:`archlab.search`, :func:`archlab.search_space`) under accuracy / latency / memory budgets, export the
winner (:mod:`archlab.export`) and compare architectures fairly.
"""

__version__ = "0.1.0"

"""archlab: a laboratory for neural-network architectures.

Declare a space of architectures (:mod:`archlab.space`) from the blocks of :mod:`archlab.zoo`, search it under
accuracy / latency / size budgets (:mod:`archlab.search` strategies, run by :func:`archlab.study.run_search`),
export the winner (:mod:`archlab.export`) and compare architectures fairly.
"""

__version__ = "0.1.0"

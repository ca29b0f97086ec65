"""archlab.proxies: zero-cost proxies, scores computed from an untrained network and one batch of data.

Each proxy takes ``(model, x, y)`` (and a keyword ``seed``) and returns a float where larger means "predicted to
train better" (``flops`` and ``params`` are cost baselines). They are model-agnostic: nothing is assumed about the
network beyond ``model(x) -> logits``. See :mod:`archlab.proxies._proxies` for the list, the papers and the
reference code each follows, and where they depart from it.

:func:`score_archs` scores many archs of a space on one fixed batch into a resumable CSV, and
:func:`proxy_correlations` ranks the proxies against a benchmark's accuracies (``archlab proxies``; see
:mod:`archlab.proxies._batch`).
"""

from archlab.proxies._batch import (
    DEFAULT_BATCH_PROXIES,
    VOTE_PROXIES,
    arch_label,
    proxy_batch,
    proxy_correlations,
    read_archs,
    sample_archs,
    score_archs,
    vote_scores,
)
from archlab.proxies._proxies import (
    PROXIES,
    ProxyScorer,
    compute_proxies,
    epe_nas,
    fisher,
    flops,
    grad_norm,
    grasp,
    jacob_cov,
    l2_norm,
    naswot,
    nwot,
    params,
    plain,
    snip,
    synflow,
    zen,
)

__all__ = ["DEFAULT_BATCH_PROXIES", "PROXIES", "VOTE_PROXIES", "ProxyScorer", "arch_label", "compute_proxies",
           "epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacob_cov", "l2_norm", "naswot", "nwot", "params",
           "plain", "proxy_batch", "proxy_correlations", "read_archs", "sample_archs", "score_archs", "snip",
           "synflow", "vote_scores", "zen"]

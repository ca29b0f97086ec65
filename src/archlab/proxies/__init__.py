"""archlab.proxies: zero-cost proxies, scores computed from an untrained network and one batch of data.

Each proxy takes ``(model, x, y)`` and returns a float where larger means "predicted to train better". They are
model-agnostic: nothing is assumed about the network beyond ``model(x) -> logits``.
"""

from archlab.proxies._proxies import PROXIES, ProxyScorer, compute_proxies, grad_norm, jacob_cov, naswot, snip, synflow

__all__ = ["PROXIES", "ProxyScorer", "compute_proxies", "grad_norm", "jacob_cov", "naswot", "snip", "synflow"]

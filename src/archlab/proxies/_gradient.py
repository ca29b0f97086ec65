"""Gradient-saliency proxies, as collected by Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS",
ICLR 2021 (reference: SamsungLabs/zero-cost-nas and NASLib ``naslib/predictors/utils/pruners/measures/*.py``).

Every score is a sum over the weights of the conv/linear layers (:data:`archlab.proxies._common.WEIGHT_LAYERS`)
of a per-weight saliency, with ``L`` the mean cross-entropy of one train-mode forward of the batch:

- ``snip`` (Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019):
  Σ |θ ⊙ ∂L/∂θ|. The reference differentiates a ones mask on each weight, whose gradient is exactly θ ⊙ ∂L/∂θ.
- ``grad_norm``: Σ over layers of ‖∂L/∂W‖₂ (one Frobenius norm per layer, summed).
- ``plain`` (Mozer & Smolensky, 1989, as in the reference ``plain.py``): Σ θ ⊙ ∂L/∂θ, signed.
- ``grasp`` (Wang et al., "Picking Winning Tickets Before Training by Preserving Gradient Flow", ICLR 2020):
  Σ −θ ⊙ Hg, H the Hessian of L in the conv/linear weights and g = ∂L/∂θ (reference ``grasp.py``: T=1, one
  iteration). The reference's two forward passes run here with the same dropout masks (both seeded alike).
- ``fisher`` (Theis et al., 2018; Turner et al., "BlockSwap", ICLR 2020): per output channel k of each conv/linear
  layer, Δ_k = ½ · mean_n (Σ_spatial a ⊙ ∂L/∂a)², a the layer's output; the reference broadcasts Δ_k to the
  channel's fan-in weights before summing, so each Δ_k counts ``weight[0].numel()`` times, as here. The reference
  patches the layers' ``forward``; here a forward hook registers a tensor hook on the output instead (no change to
  the model). For a Linear on a (batch, ..., features) input the channel is the last dimension and the middle
  dimensions are summed like spatial ones (the reference takes dimension 1, which for such inputs is not the
  channel); on 2-d Linear outputs and conv outputs this is the reference's formula.
- ``l2_norm`` (reference ``l2_norm.py``): Σ over layers of ‖W‖₂; data-free.

A gradient a weight does not get (a layer off the loss's path) counts 0, as in the references. A frozen weight
(``requires_grad=False``) is scored like the others, as the reference's SNIP mask does (its ``grad_norm``,
``plain`` and ``grasp`` would count such a layer 0); the user's flags are not touched.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.proxies._common import weight_names
from archlab.proxies._passes import BatchPass, single

__all__ = ["fisher", "grad_norm", "grasp", "l2_norm", "plain", "snip"]


def _grads(p: BatchPass) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if p.grads is None:
        raise RuntimeError(p.errors.get("loss") or p.errors.get("forward") or "no gradient")
    return [(w, g) for w, g in zip(p.weights, p.grads, strict=True) if g is not None]


def _sum(terms) -> float:
    return float(sum((t.double() for t in terms), torch.zeros((), dtype=torch.float64)))


def snip_from(p: BatchPass, _y=None) -> float:
    return _sum((w * g).abs().sum() for w, g in _grads(p))


def grad_norm_from(p: BatchPass, _y=None) -> float:
    return _sum(g.norm() for _, g in _grads(p))


def plain_from(p: BatchPass, _y=None) -> float:
    return _sum((g * w).sum() for w, g in _grads(p))


def grasp_from(p: BatchPass, _y=None) -> float:
    if p.hg is None:
        raise RuntimeError(p.errors.get("grasp") or p.errors.get("loss") or p.errors.get("forward") or "no Hg")
    return _sum((-w * h).sum() for w, h in zip(p.weights, p.hg, strict=True) if h is not None)


def fisher_from(p: BatchPass, _y=None) -> float:
    if p.fisher is None:
        raise RuntimeError(p.errors.get("loss") or p.errors.get("forward") or "no Fisher terms")
    return p.fisher


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> float:
    """SNIP (Lee et al., ICLR 2019): Σ |θ ⊙ ∂L/∂θ| over conv/linear weights (reference ``snip.py``)."""
    return single(model, x, y, seed, snip_from, loss=True)


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> float:
    """Σ over conv/linear layers of ‖∂L/∂W‖₂ (Abdelfattah et al., ICLR 2021; reference ``grad_norm.py``)."""
    return single(model, x, y, seed, grad_norm_from, loss=True)


def plain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> float:
    """Σ θ ⊙ ∂L/∂θ over conv/linear weights, signed (Abdelfattah et al., ICLR 2021; reference ``plain.py``)."""
    return single(model, x, y, seed, plain_from, loss=True)


def grasp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> float:
    """GraSP (Wang et al., ICLR 2020) as the zero-cost reference scores it: Σ −θ ⊙ Hg over conv/linear weights
    (reference ``grasp.py``; its second pass here reuses the first pass's dropout masks)."""
    return single(model, x, y, seed, grasp_from, grasp=True)


def fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> float:
    """Fisher (Theis et al. 2018; Turner et al., ICLR 2020): Σ_layers fan_in · Σ_k ½ mean_n (Σ_spatial a ∂L/∂a)²
    over the conv/linear outputs a (reference ``fisher.py``, hooks instead of patched forwards)."""
    return single(model, x, y, seed, fisher_from, fisher=True)


def l2_norm(model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
            seed: int = 0) -> float:
    """Σ over conv/linear layers of ‖W‖₂ (Abdelfattah et al., ICLR 2021; reference ``l2_norm.py``); data-free."""
    params = dict(model.named_parameters())
    return _sum(params[n].detach().norm() for n in weight_names(model))

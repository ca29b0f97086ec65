"""Activation- and Jacobian-pattern proxies of one untrained network on one batch.

- ``nwot`` / ``naswot``: Mellor et al., "Neural Architecture Search without Training", ICML 2021 (second version):
  log |det K|, K_ij = Σ over the ReLU-type modules of the number of units on which inputs i and j have the same
  binary code (unit on when the activation's input is positive), i.e. N_A − Hamming distance. Reference: NASLib
  ``nwot.py`` (hooks modules with ``ReLU`` in their type name and returns slogdet's log-magnitude; a network with
  no such module gets K = 0, log |det K| = −inf). Extension: a network without ReLU-type modules is coded on its
  GELU/SiLU/Hardswish/Mish/ELU inputs instead (:func:`archlab.proxies._passes.code_modules`).
- ``jacob_cov``: Mellor et al., first version (arXiv 2006.04647v1), as in zero-cost-nas ``jacob_cov.py``:
  −Σ_i [log(λ_i + k) + 1/(λ_i + k)], k = 1e-5, λ the eigenvalues of the correlation matrix of the per-input
  Jacobians of the summed outputs. A correlation that is not defined (an input whose Jacobian is constant) makes the
  score NaN, as the reference's ``np.linalg.eig`` error does.
- ``epe_nas``: Lopes et al., "EPE-NAS: Efficient Performance Estimation Without Training for Neural Architecture
  Search", ICANN 2021 (reference: VascoLopes/EPE-NAS ``search.py::eval_score_perclass`` and NASLib's
  ``epe_nas``): per class c of the batch's labels, s_c = Σ log(|corr(J_c)| + k), J_c the Jacobians of the inputs
  of class c, k = 1e-5; with C ≤ 100 classes the score is Σ_c |s_c|, with C > 100 each s_c is divided by the size
  of its correlation matrix and the score is Σ_c Σ_c' |s_c − s_c'| / (classes seen). C is the width of the network's
  output, as NASLib passes it (the EPE-NAS script keeps its default of 10). A class with one input has the 1×1
  correlation 1; with C > 100 it is skipped, as the reference's ``len()`` of a 0-d array fails there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.proxies._passes import BatchPass, single

__all__ = ["epe_nas", "jacob_cov", "naswot", "nwot"]

_K = 1e-5


def nwot_from(p: BatchPass, _y=None) -> float:
    if p.errors.get("forward"):
        raise RuntimeError(p.errors["forward"])
    if p.kernel is None:
        return -math.inf  # K = 0
    return float(torch.linalg.slogdet(p.kernel)[1])


def _jacobian(p: BatchPass) -> torch.Tensor:
    if p.jacobian is None:
        raise RuntimeError(p.errors.get("jacobian") or p.errors.get("forward") or "no Jacobian")
    return p.jacobian.double()


def jacob_cov_from(p: BatchPass, _y=None) -> float:
    corr = torch.corrcoef(_jacobian(p))
    if not bool(torch.isfinite(corr).all()):
        return math.nan
    eig = torch.linalg.eigvalsh(corr)
    return float(-(torch.log(eig + _K) + 1.0 / (eig + _K)).sum())


def epe_nas_from(p: BatchPass, y: torch.Tensor | None) -> float:
    jac = _jacobian(p)
    if y is None:
        raise ValueError("epe_nas needs the labels")
    n_classes = int(p.n_outputs or 0)
    labels = y.detach().cpu().tolist()
    scores: dict[int, torch.Tensor] = {}
    for c in dict.fromkeys(labels):  # classes in order of first appearance, as the reference's dict
        rows = jac[torch.as_tensor([lab == c for lab in labels], device=jac.device)]
        if len(rows) == 1:
            if n_classes > 100:
                continue
            scores[c] = torch.log(torch.tensor(1.0 + _K, dtype=torch.float64))
            continue
        corr = torch.corrcoef(rows)
        s = torch.log(corr.abs() + _K).sum()
        scores[c] = s / len(corr) if n_classes > 100 else s
    values = list(scores.values())
    if n_classes <= 100:
        return float(sum((v.abs() for v in values), torch.zeros((), dtype=torch.float64)))
    total = sum(((a - b).abs() for a in values for b in values), torch.zeros((), dtype=torch.float64))
    return float(total / len(values))


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> float:
    """NASWOT (Mellor et al., ICML 2021): log |det K_H| of the batch's binary activation-code kernel, from one
    train-mode forward (reference NASLib ``nwot.py``; see the module docstring for the non-ReLU extension)."""
    return single(model, x, y, seed, nwot_from, codes=True)


nwot = naswot


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> float:
    """Jacobian covariance (Mellor et al., arXiv v1; zero-cost-nas ``jacob_cov.py``): −Σ log(λ+k) + 1/(λ+k)."""
    return single(model, x, y, seed, jacob_cov_from, jacobian=True)


def epe_nas(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> float:
    """EPE-NAS (Lopes et al., ICANN 2021): the per-class Jacobian-correlation score (``eval_score_perclass``)."""
    return single(model, x, y, seed, epe_nas_from, jacobian=True)

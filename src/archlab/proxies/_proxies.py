"""Zero-cost proxies for neural architecture search: the registry, the shared computation and the search scorer.

Proxies (larger means "predicted to train better", except the cost baselines):

- ``snip``, ``grad_norm``, ``plain``, ``grasp``, ``fisher``, ``l2_norm`` (:mod:`archlab.proxies._gradient`):
  gradient saliencies of the conv/linear weights, as collected by Abdelfattah et al., "Zero-Cost Proxies for
  Lightweight NAS", ICLR 2021 (reference: SamsungLabs/zero-cost-nas ``foresight/pruners/measures/*.py``, NASLib
  ``naslib/predictors/utils/pruners/measures/*.py``).
- ``nwot`` (= ``naswot``), ``jacob_cov``, ``epe_nas`` (:mod:`archlab.proxies._jacobian`): Mellor et al., ICML 2021
  and its first version; Lopes et al., ICANN 2021.
- ``synflow``, ``zen`` (:mod:`archlab.proxies._data_free`): Tanaka et al., NeurIPS 2020; Lin et al., ICCV 2021.
- ``flops``, ``params``: the cost baselines every zero-cost study compares against (Ning et al., "Evaluating
  Efficient Performance Estimators of Neural Architectures", NeurIPS 2021): FLOPs of one example's forward pass and
  the parameter count.

:func:`compute_proxies` shares work: ``snip``, ``grad_norm``, ``plain``, ``fisher``, ``grasp``'s first pass,
``nwot``, ``jacob_cov`` and ``epe_nas`` all come from one forward of the batch (one cross-entropy backward, one
input-Jacobian backward; GraSP adds its second forward). A proxy that fails on a model (an exception, no gradient
path, integer inputs where a Jacobian or Gaussian input is needed) is NaN, and the others are still computed; a
proxy may also be NaN or ±inf by its own definition (``nwot`` of a singular kernel is −inf).

Every proxy leaves the model's parameters and buffers (bitwise), each module's train/eval mode, the parameters'
``requires_grad`` and ``.grad``, and the global torch RNG state as they were, and is deterministic given ``seed``.

:class:`ProxyScorer` takes a name with a leading ``-`` as "smaller is better" (``"-flops"``: cheaper archs
score higher), which is how a time-limited search prefers archs it can train for more epochs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

from archlab.proxies._common import kept_modes
from archlab.proxies._data_free import synflow, synflow_score, zen, zen_score
from archlab.proxies._gradient import (
    fisher,
    fisher_from,
    grad_norm,
    grad_norm_from,
    grasp,
    grasp_from,
    l2_norm,
    plain,
    plain_from,
    snip,
    snip_from,
)
from archlab.proxies._jacobian import epe_nas, epe_nas_from, jacob_cov, jacob_cov_from, naswot, nwot, nwot_from
from archlab.proxies._passes import batch_pass

__all__ = ["PROXIES", "ProxyScorer", "compute_proxies", "epe_nas", "fisher", "flops", "grad_norm", "grasp",
           "jacob_cov", "l2_norm", "naswot", "nwot", "params", "plain", "snip", "synflow", "zen"]


def flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int = 0) -> float:
    """FLOPs of the forward pass for one example of ``x`` (counted by :func:`archlab.measure.count_flops`)."""
    from archlab.measure import count_flops

    with torch.random.fork_rng(devices=[]), kept_modes(model):
        return float(count_flops(model, tuple(x.shape[1:]), input_dtype="long" if not x.is_floating_point()
                                 else "float"))


def params(model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
           seed: int = 0) -> float:
    """The number of parameters."""
    return float(sum(p.numel() for p in model.parameters()))


PROXIES: dict[str, Callable[..., float]] = {
    "naswot": naswot, "nwot": nwot, "synflow": synflow, "grad_norm": grad_norm, "snip": snip, "grasp": grasp,
    "fisher": fisher, "jacob_cov": jacob_cov, "epe_nas": epe_nas, "zen": zen, "l2_norm": l2_norm, "plain": plain,
    "flops": flops, "params": params,
}

# proxies read off the shared batch pass: (formula, what the pass must measure)
_FROM_PASS: dict[str, tuple[Callable, str]] = {
    "snip": (snip_from, "loss"), "grad_norm": (grad_norm_from, "loss"), "plain": (plain_from, "loss"),
    "fisher": (fisher_from, "fisher"), "grasp": (grasp_from, "grasp"), "naswot": (nwot_from, "codes"),
    "nwot": (nwot_from, "codes"), "jacob_cov": (jacob_cov_from, "jacobian"), "epe_nas": (epe_nas_from, "jacobian"),
}


# the data-free proxies' raising forms (so that ``errors`` says why one is NaN)
_STANDALONE: dict[str, Callable[..., float]] = {"synflow": synflow_score, "zen": zen_score}


def compute_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Iterable[str] | None = None,
                    seed: int = 0, *, errors: dict[str, str] | None = None) -> dict[str, float]:
    """Every proxy in ``names`` (default all of :data:`PROXIES`) on one batch, sharing one pass over it.

    Equal, bit for bit, to calling each proxy on its own with the same ``seed``. A proxy that fails is NaN (its
    reason goes into ``errors`` when a dict is given); the model is left as it was.
    """
    names = list(names) if names else list(PROXIES)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxy {unknown[0]!r}; choose from {', '.join(PROXIES)}")
    needs = {_FROM_PASS[n][1] for n in names if n in _FROM_PASS}
    shared = None
    if needs:
        try:
            shared = batch_pass(model, x, y, seed=seed, **dict.fromkeys(needs, True))
        except Exception as e:  # never a crash of the caller (a search's warm-up): those proxies are NaN
            if errors is not None:
                errors["pass"] = repr(e)
    out: dict[str, float] = {}
    for name in names:
        try:
            if name in _FROM_PASS:
                value = float(_FROM_PASS[name][0](shared, y))
            else:
                value = float(_STANDALONE.get(name, PROXIES[name])(model, x, y, seed=seed))
        except Exception as e:
            value = math.nan
            if errors is not None:
                errors[name] = repr(e)
        out[name] = value
    return out


class ProxyScorer:
    """Scores archs of a space by zero-cost proxies on one fixed batch of training data.

    The model is built under a fixed seed and the batch is the same for every arch, so an arch's scores never
    change (a strategy rebuilt from the ledger makes the same choices). Scores are cached per arch and computed by
    :func:`compute_proxies` (one shared pass). A proxy that fails or is not finite scores ``-inf`` for that arch.

    ``time_budget_s`` bounds the seconds spent scoring in all: once spent, :attr:`exhausted` is true and a
    strategy stops asking (a short search does not spend its budget ranking candidates it has no time to train).
    """

    def __init__(self, space, x: torch.Tensor, y: torch.Tensor, *, names: tuple[str, ...] = ("naswot", "snip"),
                 batch_size: int = 64, seed: int = 0, time_budget_s: float | None = None) -> None:
        unknown = [n for n in names if n.removeprefix("-") not in PROXIES]
        if unknown:
            from archlab.errors import UserError

            raise UserError(f"unknown proxy {unknown[0]!r}; choose from {', '.join(PROXIES)}")
        generator = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=generator)[:batch_size]
        self.space, self.x, self.y = space, x[idx], y[idx]
        self.names, self.seed = tuple(names), seed
        self.time_budget_s, self.spent_s = time_budget_s, 0.0
        self._cache: dict = {}

    @property
    def exhausted(self) -> bool:
        """Whether the scoring time budget is spent (never, without one)."""
        return self.time_budget_s is not None and self.spent_s >= self.time_budget_s

    def __call__(self, arch) -> tuple[float, ...]:
        if arch not in self._cache:
            start = time.perf_counter()
            torch.manual_seed(self.seed)
            model = self.space.build(arch)
            bare = list(dict.fromkeys(n.removeprefix("-") for n in self.names))
            scores = compute_proxies(model, self.x, self.y, bare, seed=self.seed)
            values = []
            for name in self.names:
                v = scores[name.removeprefix("-")]
                v = -v if name.startswith("-") else v
                values.append(v if math.isfinite(v) else -math.inf)
            self._cache[arch] = tuple(values)
            self.spent_s += time.perf_counter() - start
        return self._cache[arch]

"""The shared batch pass: one forward of the batch feeds every data-dependent proxy.

From one train-mode forward of ``x`` (the references score a freshly built network, which is in train mode):

- the cross-entropy gradient of the conv/linear weights (``snip``, ``grad_norm``, ``plain``; GraSP's ``g``),
- Fisher's per-channel terms, from tensor hooks on the conv/linear outputs during that same backward,
- NASWOT's activation-code kernel, from forward hooks on the activations,
- the input Jacobian of the summed outputs (``jacob_cov``, ``epe_nas``), a second backward of the same graph,
- and, for GraSP only, a second seeded forward whose gradient graph gives the Hessian-gradient product ``Hg``
  (the reference's "forward/grad pass #2").

Each part is tried on its own: a part that fails (no gradient path, integer inputs for the Jacobian) is recorded
in :attr:`BatchPass.errors` and only the proxies that need it come out NaN.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.conv import _ConvNd

from archlab.proxies._common import WEIGHT_LAYERS, call, cloned_buffers, isolated, removing, reseed, weight_names

__all__ = ["BatchPass", "batch_pass", "code_kernel", "code_modules", "single"]

_OTHER_ACTIVATIONS = (nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.ELU)


def code_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose input sign is NASWOT's binary code: those with ``ReLU`` in their type name, as NASLib's
    ``nwot.py`` hooks; a network with none of those falls back to its GELU/SiLU/Hardswish/Mish/ELU activations
    (an extension: the reference would score such a network ``-inf``)."""
    relus = [m for m in model.modules() if "ReLU" in type(m).__name__]
    return relus or [m for m in model.modules() if isinstance(m, _OTHER_ACTIVATIONS)]


def code_kernel(a: torch.Tensor, n: int) -> torch.Tensor:
    """NASWOT's kernel of one activation's input ``a`` over ``n`` examples: ``K_ij`` = the number of units on
    which examples i and j have the same binary code ``c = a > 0`` (batch-major leading dims, tokens folded into
    the batch as ``(B*N, C)``, are regrouped per example), as ``c c^T + (1-c)(1-c)^T`` written with one product:
    ``2 c c^T - s_i - s_j + m`` (``s`` the row sums, ``m`` the units). The product of 0/1 codes is exact in float32
    below 2**24 units at the default matmul precision; otherwise it is taken in float64."""
    c = (a.reshape(n, -1) > 0)
    m = c.shape[1]
    exact32 = m < 2**24 and torch.get_float32_matmul_precision() == "highest"
    c = c.float() if exact32 else c.double()
    cc = (c @ c.t()).double()
    s = cc.diagonal()
    return 2 * cc - s[:, None] - s[None, :] + m


@dataclass
class BatchPass:
    """What one pass over the batch measured (``None`` where not asked for or failed; see ``errors``)."""

    weights: list[torch.Tensor]
    grads: list[torch.Tensor | None] | None = None
    hg: list[torch.Tensor | None] | None = None
    fisher: float | None = None
    kernel: torch.Tensor | None = None
    jacobian: torch.Tensor | None = None
    n_outputs: int | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _fisher_hook(terms: list[torch.Tensor], tensor_handles: list) -> Callable:
    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return
        act = output.detach()
        channel = 1 if isinstance(module, _ConvNd) else act.dim() - 1
        fan_in = module.weight[0].numel()  # the reference broadcasts a channel's value to its weights, then sums

        def grad_hook(grad: torch.Tensor) -> None:
            g = act * grad
            dims = [d for d in range(g.dim()) if d not in (0, channel)]
            g_nk = g.sum(dims) if dims else g
            terms.append(0.5 * g_nk.double().pow(2).mean(0).abs().sum() * fan_in)

        tensor_handles.append(output.register_hook(grad_hook))

    return hook


def batch_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, *, seed: int = 0, loss: bool = False,
               fisher: bool = False, grasp: bool = False, codes: bool = False, jacobian: bool = False) -> BatchPass:
    """One shared pass over ``(x, y)`` measuring what the flags ask for; the model is left as it was."""
    names = weight_names(model)
    params = dict(model.named_parameters())
    result = BatchPass(weights=[params[n].detach() for n in names])
    loss = loss or fisher or grasp
    with isolated(model, x, seed, train=True):
        leaves = {n: params[n].detach().requires_grad_(True) for n in dict.fromkeys(names)}
        inputs = [leaves[n] for n in names]
        xin = x.detach().requires_grad_(True) if jacobian and x.is_floating_point() else x
        kernel: list[torch.Tensor] = []
        terms: list[torch.Tensor] = []
        tensor_handles: list = []

        recent: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

        def code_hook(_module, inp, _out) -> None:
            a = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
            if a is None or a.dim() == 0 or a.numel() % len(x):
                return  # not a per-example activation
            # one tensor read by several activations (a cell node feeding several edges) counts once per
            # activation, as in the reference, but its kernel is computed once; the few last inputs are kept alive
            # so that their ids are not reused while cached
            hit = recent.get(id(a))
            if hit is None or hit[0] is not a:
                hit = (a, code_kernel(a.detach(), len(x)))
                recent[id(a)] = hit
                if len(recent) > 8:
                    recent.popitem(last=False)
            kernel.append(hit[1])

        with removing([]) as handles:
            if codes:
                handles += [m.register_forward_hook(code_hook) for m in code_modules(model)]
            if fisher:
                hook = _fisher_hook(terms, tensor_handles)
                handles += [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
            try:
                with torch.set_grad_enabled(loss or jacobian):
                    output = call(model, {**cloned_buffers(model), **leaves}, xin)
            except Exception as e:  # a model that cannot run scores NaN on every proxy
                result.errors["forward"] = repr(e)
                return result
        if codes:
            result.kernel = torch.stack(kernel).sum(0) if kernel else None
        if loss:
            with removing(tensor_handles):
                try:
                    ce = F.cross_entropy(output, y)
                    grads = torch.autograd.grad(ce, inputs, retain_graph=jacobian, allow_unused=True) \
                        if inputs else ()
                    result.grads = [None if g is None else g.detach() for g in grads]
                    result.fisher = float(sum(terms)) if terms else 0.0
                except Exception as e:
                    result.errors["loss"] = repr(e)
        if jacobian:
            try:
                if not xin.requires_grad:
                    raise TypeError(f"the input Jacobian needs floating-point inputs, not {x.dtype}")
                (jac,) = torch.autograd.grad(output.sum(), xin)
                result.jacobian, result.n_outputs = jac.detach().flatten(1), int(output.shape[-1])
            except Exception as e:
                result.errors["jacobian"] = repr(e)
        del output
        if grasp and result.grads is not None:
            try:
                reseed(seed, x)  # the same dropout masks as the first pass
                output = call(model, {**cloned_buffers(model), **leaves}, x)
                g_f = torch.autograd.grad(F.cross_entropy(output, y), inputs, create_graph=True, allow_unused=True)
                z = sum((g_w * g).sum() for g_w, g in zip(result.grads, g_f, strict=True)
                        if g_w is not None and g is not None)
                if not isinstance(z, torch.Tensor):
                    raise ValueError("no conv/linear weight is on the loss's gradient path")
                hg = torch.autograd.grad(z, inputs, allow_unused=True)
                result.hg = [None if h is None else h.detach() for h in hg]
            except Exception as e:
                result.errors["grasp"] = repr(e)
    return result


def single(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, seed: int,
           formula: Callable[[BatchPass, torch.Tensor | None], float], **needs: bool) -> float:
    """One proxy from its own pass: NaN where the pass or the formula fails."""
    try:
        return float(formula(batch_pass(model, x, y, seed=seed, **needs), y))
    except Exception:
        return math.nan

"""mmMamba: distil a decoder-only multimodal transformer into Mamba-2 layers seeded from its attention.

Paper: Liao et al., "Multimodal Mamba: Decoder-only Multimodal State Space Model via Quadratic to Linear
Distillation", arXiv 2502.13145 (2025). Facts from hustvl/mmMamba
``src/model/linear_attention/mamba2.py`` (``Mamba2_Attention`` with ``inherit_qkv`` and ``mimic_init``),
``src/model/convert_model.py`` and ``configs/experiment/distill_stage{1,2,3}_mmMamba.yaml``; the code is archlab's.

**The seeded layer** (:class:`SeededMamba2`, the reference's parameter names): the attention layer's query, key,
value and output projections become the Mamba-2 layer's ``C``, ``B``, ``x`` and output projections
(``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``). Per head, with ``dt_t = softplus(in_proj(u_t) + dt_bias)`` and
``A = -exp(A_log_bias)``::

    H_t = exp(dt_t A) H_{t-1} + dt_t x_t B_t^T,    y_t = H_t C_t

computed by the chunked SSD algorithm (:func:`archlab.zoo.mixers.ssd.ssd_chunked`). Then a gated RMSNorm
(``g_norm(y) * silu(g_proj(u))``, per head) and ``o_proj``. Before the scan ``[x, B, C]`` pass a causal
depthwise convolution (``d_conv = 2``) and SiLU. The reference's ``mimic_init``: the convolution starts as the
identity (``weight[:, 0, -1] = 1``), ``in_proj`` at zero, ``dt`` log-uniform in ``[1e-3, 0.1]`` through
``dt_bias``, ``A_log_bias = 1``, ``g_proj`` Xavier-uniform with gain ``2^-2.5``; no ``D`` skip.

Without decay (``decay=False``: ``A = 0`` and ``dt = 1``), convolution and gate the seeded layer *is* causal linear
attention with the teacher's projections: ``o_proj(sum_{s <= t} (q_t . k_s) v_s)`` (:func:`causal_linear_attention`).
Positions: the SSM path has no RoPE (as the reference's scan); order comes from causality, decay and convolution.

**Three stages** (:func:`mmmamba_distill`), each one :func:`archlab.train.fit` run on the teacher's own inputs:

1. *Attention-output alignment*: every distilled layer reads the teacher's hidden state ``h_l`` (normalised by the
   layer's copied norm) and its mixer output is pulled to the teacher attention's:
   ``1e3 * MSE`` (the reference's ``mse_factor``). Only the new SSM parameters train (``in_proj``, ``dt_bias``,
   ``A_log_bias``, ``conv1d``, ``g_norm``, ``g_proj``); the inherited projections stay.
2. *Hidden-state alignment*: the whole distilled layer (its mixer's inherited projections included, as the
   reference's stage 2 unfreezes ``q/k/v``) maps ``h_l`` to the teacher's ``h_{l+1}``: MSE.
3. *End to end*: ``KL(p_teacher || p_student)`` at temperature ``T`` (scaled by ``T^2``) plus the task's
   cross-entropy, over every parameter of the student.

The reference's rates are for a 2.6B model (1e-3, 5e-4, 5e-5); the defaults here (1e-3, 1e-3, 3e-4) suit the tiny
models this runs on. MOHAWK (:mod:`archlab.compress.mohawk`) shares stage 3's KL
(:func:`~archlab.compress.mohawk.knowledge_distillation_loss`); its stage 1 aligns mixer *matrices*, this one
layer outputs. A **hybrid** keeps the attention of chosen layers (:func:`hybrid_layers`: evenly spread, as mmMamba-
hybrid interleaves attention layers) and distils the rest.

Teacher and student are models with ``embed(*inputs)`` (the first layer's input), ``layers`` (layers with a
``norm`` and a ``mixer``, ``x + mixer(norm(x))`` then an MLP) and ``head(h)`` (logits), called ``model(*inputs)``:
:class:`archlab.zoo.models.vl_decoder.TinyVLDecoder`, a tiny image + text decoder.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archlab.compress.mohawk import MohawkResult, knowledge_distillation_loss, run_stages
from archlab.errors import UserError
from archlab.zoo.layers.causal_conv import causal_conv_with_history
from archlab.zoo.mixers.causal_attention import CausalSelfAttention
from archlab.zoo.mixers.ssd import ssd_chunked

__all__ = ["MSE_FACTOR", "STAGES", "SeededMamba2", "causal_linear_attention", "convert",
           "hybrid_layers", "mmmamba_distill", "seed_from_attention"]

STAGES = ("attention_output", "hidden_state", "end_to_end")
MSE_FACTOR = 1e3  # the reference's stage-1 mse_factor
NEW_PARAMS = ("in_proj", "dt_bias", "A_log_bias", "conv1d", "g_norm", "g_proj")  # not inherited from attention


def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``y_t = sum_{s <= t} (q_t . k_s) v_s`` for ``(B, H, L, D)`` inputs (no feature map, no normalisation)."""
    scores = (q @ k.transpose(-1, -2)).tril()
    return scores @ v


class SeededMamba2(nn.Module):
    """A Mamba-2 mixer ``(B, L, d_model) -> (B, L, d_model)`` shaped like a multi-head attention layer.

    ``conv``, ``gnorm`` and ``decay`` switch the causal convolution, the gated RMSNorm and the selective decay
    (``decay=False``: ``A = 0``, ``dt = 1``, no ``in_proj``, ``dt_bias`` or ``A_log_bias``).
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, conv: bool = True, d_conv: int = 2,
                 gnorm: bool = True, decay: bool = True, chunk_size: int = 64, norm_eps: float = 1e-5) -> None:
        super().__init__()
        if n_heads < 1 or d_model % n_heads or d_conv < 1 or chunk_size < 1:
            raise UserError(f"mmmamba: d_model {d_model} must be divisible by n_heads {n_heads}; d_conv and "
                            f"chunk_size >= 1")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.use_conv, self.use_gnorm, self.use_decay, self.chunk_size = conv, gnorm, decay, chunk_size
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)
        if conv:
            self.conv1d = nn.Conv1d(3 * d_model, 3 * d_model, d_conv, groups=3 * d_model, padding=d_conv - 1)
        if decay:
            self.in_proj = nn.Linear(d_model, n_heads, bias=False)
            self.dt_bias = nn.Parameter(torch.zeros(n_heads))
            self.A_log_bias = nn.Parameter(torch.zeros(n_heads))
        if gnorm:
            self.g_norm = nn.RMSNorm(self.head_dim, eps=norm_eps)
            self.g_proj = nn.Linear(d_model, d_model, bias=False)
        self.mimic_init()

    @torch.no_grad()
    def mimic_init(self, generator: torch.Generator | None = None) -> None:
        """The reference's ``mimic_init`` of the parameters attention does not provide."""
        if self.use_conv:
            self.conv1d.weight.zero_()
            self.conv1d.weight[:, 0, -1] = 1.0  # the current token: the identity
            self.conv1d.bias.zero_()
        if self.use_decay:
            self.in_proj.weight.zero_()
            u = torch.rand(self.n_heads, generator=generator)
            dt = torch.exp(u * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-3)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
            self.A_log_bias.fill_(1.0)
        if self.use_gnorm:
            bound = 2 ** -2.5 * math.sqrt(6.0 / (2 * self.d_model))  # xavier_uniform_, gain 2^-2.5
            self.g_proj.weight.uniform_(-bound, bound, generator=generator)

    def qkv(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``C, B, x`` as ``(B, L, H, head_dim)``: the projections, then (with ``conv``) the convolution + SiLU."""
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise UserError(f"mmmamba: expected input (B, L, {self.d_model}), got {tuple(u.shape)}")
        q, k, v = self.q_proj(u), self.k_proj(u), self.v_proj(u)
        if self.use_conv:
            vkq, _ = causal_conv_with_history(torch.cat([v, k, q], dim=-1).transpose(1, 2), None, self.conv1d)
            v, k, q = F.silu(vkq.transpose(1, 2)).split(self.d_model, dim=-1)
        return tuple(t.unflatten(-1, (self.n_heads, self.head_dim)) for t in (q, k, v))  # type: ignore[return-value]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(u)
        if self.use_decay:
            dt = F.softplus(self.in_proj(u) + self.dt_bias)  # (B, L, H)
            log_a = dt * -torch.exp(self.A_log_bias)
            y, _ = ssd_chunked(v * dt[..., None], log_a, k, q, self.chunk_size)
        else:
            y = causal_linear_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        if self.use_gnorm:
            y = self.g_norm(y) * F.silu(self.g_proj(u).unflatten(-1, (self.n_heads, self.head_dim)))
        return self.o_proj(y.flatten(-2))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, conv={self.use_conv}, gnorm={self.use_gnorm}, "
                f"decay={self.use_decay}")


@torch.no_grad()
def seed_from_attention(attn: CausalSelfAttention, *, conv: bool = True, gnorm: bool = True, decay: bool = True,
                        generator: torch.Generator | None = None) -> SeededMamba2:
    """A :class:`SeededMamba2` with ``attn``'s projections: ``C <- W_q``, ``B <- W_k``, ``x <- W_v``, ``o_proj <-
    out_proj`` (biases too), the rest by ``mimic_init``."""
    if not isinstance(attn, CausalSelfAttention):
        raise UserError(f"mmmamba: can only seed from causal_attention, got {type(attn).__name__}")
    bias = attn.Wqkv.bias is not None
    layer = SeededMamba2(attn.d_model, attn.n_heads, bias=bias, conv=conv, gnorm=gnorm, decay=decay)
    layer.mimic_init(generator)
    d = attn.d_model
    for i, proj in enumerate((layer.q_proj, layer.k_proj, layer.v_proj)):
        proj.weight.copy_(attn.Wqkv.weight[i * d:(i + 1) * d])
        if bias:
            proj.bias.copy_(attn.Wqkv.bias[i * d:(i + 1) * d])
    layer.o_proj.load_state_dict(attn.out_proj.state_dict())
    return layer.to(attn.Wqkv.weight.device, attn.Wqkv.weight.dtype)


def hybrid_layers(depth: int, keep: int) -> tuple[int, ...]:
    """``keep`` attention layers out of ``depth``, spread evenly (the last of each group of ``depth / keep``)."""
    if not 0 <= keep <= depth:
        raise UserError(f"mmmamba: cannot keep {keep} attention layers of {depth}")
    return tuple(sorted({(i + 1) * depth // keep - 1 for i in range(keep)})) if keep else ()


def _check_model(model: nn.Module, what: str) -> None:
    if not all(hasattr(model, a) for a in ("embed", "layers", "head")):
        raise UserError(f"mmmamba: the {what} needs embed(*inputs), layers and head(h) "
                        f"(e.g. archlab.zoo.models.vl_decoder.TinyVLDecoder), got {type(model).__name__}")


def convert(teacher: nn.Module, keep: Sequence[int] = (), *, conv: bool = True, gnorm: bool = True,
            decay: bool = True, seed: int = 0) -> nn.Module:
    """A student: a copy of ``teacher`` whose attention layers become seeded Mamba-2 ones, except the layers in
    ``keep`` (the hybrid's attention). The teacher is not changed."""
    _check_model(teacher, "teacher")
    depth = len(teacher.layers)
    bad = [i for i in keep if not 0 <= i < depth]
    if bad:
        raise UserError(f"mmmamba: keep {bad}: the teacher has layers 0..{depth - 1}")
    student = copy.deepcopy(teacher)
    gen = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(student.layers):
        if not isinstance(layer.mixer, CausalSelfAttention):
            raise UserError(f"mmmamba: teacher layer {i} mixes with {type(layer.mixer).__name__}, not attention")
        if i not in keep:
            layer.mixer = seed_from_attention(layer.mixer, conv=conv, gnorm=gnorm, decay=decay, generator=gen)
            layer.mixer_name = "mmmamba2"
    return student


def _distilled(student: nn.Module) -> list[int]:
    return [i for i, layer in enumerate(student.layers) if isinstance(layer.mixer, SeededMamba2)]


@torch.no_grad()
def _teacher_states(teacher: nn.Module, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``[h_0, .., h_depth]``: the input of every teacher layer and the last output."""
    h = teacher.embed(*inputs)
    states = [h]
    for layer in teacher.layers:
        h = layer(h)
        states.append(h)
    return states


def stage_loss(stage: str, teacher: nn.Module, student: nn.Module, batch: Sequence[torch.Tensor], *,
               temperature: float = 1.0, task_loss: Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]
               | None = None) -> torch.Tensor:
    """The loss of ``stage`` on ``batch`` (the model's inputs, then whatever ``task_loss(logits, batch)`` reads)."""
    n_inputs = len(batch) if task_loss is None else len(batch) - 1
    inputs = batch[:n_inputs]
    if stage == "end_to_end":
        with torch.no_grad():
            t_logits = teacher(*inputs)
        logits = student(*inputs)
        loss = knowledge_distillation_loss(logits / temperature, t_logits / temperature) * temperature ** 2
        return loss + task_loss(logits, batch) if task_loss is not None else loss
    states = _teacher_states(teacher, inputs)
    total = states[0].new_zeros(())
    for i in _distilled(student):
        t_layer, s_layer, h = teacher.layers[i], student.layers[i], states[i]
        if stage == "attention_output":
            with torch.no_grad():
                target = t_layer.mixer(t_layer.norm(h))
            total = total + MSE_FACTOR * F.mse_loss(s_layer.mixer(s_layer.norm(h)), target)
        else:
            total = total + F.mse_loss(s_layer(h), states[i + 1])
    return total


def _stage_params(stage: str, student: nn.Module) -> list[nn.Parameter]:
    layers = _distilled(student)
    if stage == "end_to_end":
        return list(student.parameters())
    if stage == "hidden_state":
        return [p for i in layers for p in student.layers[i].parameters()]
    return [p for i in layers for name, p in student.layers[i].mixer.named_parameters()
            if name.split(".")[0] in NEW_PARAMS]


def mmmamba_distill(teacher: nn.Module, student: nn.Module, batches: Callable[[int], Sequence[torch.Tensor]], *,
                    steps: Sequence[int] = (200, 200, 400), lr: float | Sequence[float] = (1e-3, 1e-3, 3e-4),
                    temperature: float = 1.0,
                    task_loss: Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor] | None = None,
                    weight_decay: float = 0.05, grad_clip: float = 1.0,
                    on_step: Callable[[str, int, float], None] | None = None) -> MohawkResult:
    """Distil ``teacher`` into ``student`` (from :func:`convert`) in place, stages 1-3 for ``steps[0..2]`` steps.

    ``batches(step)`` returns one batch: the models' inputs, then (with ``task_loss``) the targets; stage 3 adds
    ``task_loss(student_logits, batch)`` to the KL. ``lr``: one rate or one per stage (AdamW, weight decay 0.05 as
    the reference, warm-up and cosine decay per stage). The teacher stays unchanged (eval mode, no gradients).
    """
    _check_model(teacher, "teacher")
    _check_model(student, "student")
    if len(steps) != 3 or any(not isinstance(n, int) or n < 0 for n in steps):
        raise UserError(f"mmmamba: steps must be three counts >= 0, got {steps!r}")
    rates = [float(lr)] * 3 if isinstance(lr, (int, float)) else [float(r) for r in lr]
    if len(rates) != 3 or any(not r > 0 for r in rates) or not temperature > 0:
        raise UserError(f"mmmamba: lr must be one positive rate or three, and the temperature positive; got {lr!r}, "
                        f"{temperature!r}")
    if len(student.layers) != len(teacher.layers):
        raise UserError(f"mmmamba: the student has {len(student.layers)} layers and the teacher "
                        f"{len(teacher.layers)}")
    if not _distilled(student) and (steps[0] or steps[1]):
        raise UserError("mmmamba: the student has no seeded Mamba-2 layer for stages 1 and 2 (see convert)")
    stages = []
    for stage, n, rate in zip(STAGES, steps, rates, strict=True):

        def loss_fn(model: nn.Module, batch: Sequence[torch.Tensor], stage: str = stage) -> torch.Tensor:
            return stage_loss(stage, teacher, model, batch, temperature=temperature, task_loss=task_loss)

        stages.append((stage, n, rate, _stage_params(stage, student), loss_fn))
    return run_stages("mmmamba", teacher, student, batches, stages, on_step, weight_decay=weight_decay,
                      grad_clip=grad_clip, amp=False)

"""A generic sequence model: any causal sequence mixer per layer, for language modelling or classification.

The layer arrangement is the pre-norm residual block shared by GPT-2, the Mamba language model and the
MetaFormer abstraction (Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022): per layer
``x + mixer(norm(x))`` then, unless ``mlp_ratio`` is 0, ``x + mlp(norm2(x))``; a final ``norm_f`` and a head.
Module names follow state-spaces/mamba ``mamba_ssm/models/mixer_seq_simple.py`` and ``mamba_ssm/modules/block.py``
(``backbone.embedding``, ``backbone.layers.{i}.norm`` / ``.mixer`` / ``.norm2`` / ``.mlp``, ``backbone.norm_f``,
``lm_head``; Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", COLM 2024; the MLP here
is a plain GELU ``fc1``/``fc2`` MLP, not the reference's gated one), so with every mixer ``"mamba"``,
``mlp_ratio=0`` and ``norm="rmsnorm"`` this model is the Mamba LM, and its checkpoints load with a plain
``load_state_dict`` (the reference's ``Block`` carries the residual beside the hidden state; the sum is the
same).

Inputs are int64 token ids ``(B, L)`` (``vocab_size`` set: an ``nn.Embedding``) or float series ``(B, C, L)``
(``in_chans`` set: a linear projection of each time step). Heads:

- ``"lm"``: per-token logits ``(B, L, vocab_size)``, optionally tied to the embedding;
- ``"classify"``: ``(B, num_classes)`` from the last position (``pool="last"``: everything a causal model has
  read) or the mean over positions (``pool="mean"``).

State and decoding follow the mixers' convention (:mod:`archlab.zoo.mixers.mamba`, ``gla``): ``forward(x,
state=None, return_state=False)`` continues from a list of per-layer mixer states and can return the states after
the last position, so a long sequence may be fed in pieces; :meth:`SequenceModel.step` advances one position with
each mixer's ``step``; :meth:`SequenceModel.generate` samples greedily or with a temperature.

Mixers with batch statistics (the LMU's ``proj_bn``) are causal only in evaluation mode.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import get_mixer_spec, register_model
from archlab.zoo.layers.drop import DropPath

__all__ = ["SEQUENCE_NORMS", "SequenceLayer", "SequenceMlp", "SequenceModel", "sequence_classifier",
           "sequence_lm"]

SEQUENCE_NORMS = ("layernorm", "rmsnorm")
HEADS = ("lm", "classify")
POOLS = ("last", "mean")


def _sequence_norm(name: str, dim: int, eps: float) -> nn.Module:
    # zoo.layers.create_norm normalises channels-first image maps; sequences are channels-last.
    if name == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if name == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    raise UserError(f"sequence model: unknown norm {name!r}; known: {', '.join(SEQUENCE_NORMS)}")


class SequenceMlp(nn.Module):
    """``fc2(act(fc1(x)))`` over the last axis of ``(B, L, C)`` (zoo.layers.Mlp is its 1x1-conv image twin)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)
        for lin in (self.fc1, self.fc2):
            nn.init.trunc_normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SequenceLayer(nn.Module):
    """``x + mixer(norm(x))``, then ``x + mlp(norm2(x))`` when the layer has an MLP."""

    def __init__(self, dim: int, mixer: nn.Module, *, mixer_name: str, mlp_ratio: float = 4.0,
                 norm: str = "layernorm", norm_eps: float = 1e-5, drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.mixer_name = mixer_name
        self.norm = _sequence_norm(norm, dim, norm_eps)
        self.mixer = mixer
        hidden = int(round(dim * mlp_ratio))
        if hidden > 0:
            self.norm2 = _sequence_norm(norm, dim, norm_eps)
            self.mlp = SequenceMlp(dim, hidden, drop)
        else:
            self.norm2 = self.mlp = None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    @property
    def carries_state(self) -> bool:
        """Whether the mixer continues from a state: ``forward(x, state, return_state=True)``."""
        return "return_state" in inspect.signature(self.mixer.forward).parameters

    @property
    def can_step(self) -> bool:
        return callable(getattr(self.mixer, "step", None))

    def _channel(self, x: torch.Tensor) -> torch.Tensor:
        if self.mlp is None:
            return x
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor, state: Any = None, return_state: bool = False) -> Any:
        """``(B, L, C) -> (B, L, C)``; with ``return_state`` also the mixer's state after the last position."""
        y = self.norm(x)
        if state is None and not return_state:
            mixed, new_state = self.mixer(y), None
        else:
            if not self.carries_state:
                raise UserError(f"sequence model: mixer {self.mixer_name!r} does not carry state across calls")
            mixed, new_state = self.mixer(y, state, return_state=True)
        out = self._channel(x + self.drop_path(mixed))
        return (out, new_state) if return_state else out

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One position ``(B, C)``; ``state=None`` starts a sequence (a one-token forward, which every mixer
        that carries state accepts, whereas some ``step`` methods need an allocated cache)."""
        if not self.can_step:
            raise UserError(f"sequence model: mixer {self.mixer_name!r} has no step() for one-token decoding")
        y = self.norm(x_t)
        if state is None:
            mixed, state = self.mixer(y[:, None], None, return_state=True)
            mixed = mixed[:, 0]
        else:
            mixed, state = self.mixer.step(y, state)
        return self._channel(x_t + mixed), state


class _Backbone(nn.Module):
    """Input adapter, layers and the final norm (the reference's ``MixerModel``)."""

    def __init__(self, embedding: nn.Module, layers: list[SequenceLayer], norm_f: nn.Module,
                 tokens: bool) -> None:
        super().__init__()
        if tokens:
            self.embedding = embedding
        else:
            self.in_proj = embedding
        self.layers = nn.ModuleList(layers)
        self.norm_f = norm_f
        self.tokens = tokens

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) if self.tokens else self.in_proj(x)


def _layer_specs(layers: Sequence[str | Mapping[str, Any]], model: str) -> list[tuple[str, dict[str, Any],
                                                                                    float | None]]:
    if isinstance(layers, (str, Mapping)) or not isinstance(layers, Sequence) or not layers:
        raise UserError(f"{model}: layers must be a non-empty list of mixer names or {{'mixer': name, ...}} dicts")
    out = []
    for i, spec in enumerate(layers):
        if isinstance(spec, str):
            out.append((spec, {}, None))
        elif isinstance(spec, Mapping) and isinstance(spec.get("mixer"), str):
            kw = {k: v for k, v in spec.items() if k not in ("mixer", "mlp_ratio")}
            out.append((spec["mixer"], kw, spec.get("mlp_ratio")))
        else:
            raise UserError(f"{model}: layer {i} must be a mixer name or a dict with a 'mixer' name, got {spec!r}")
    return out


class SequenceModel(nn.Module):
    """Embedding or series projection, pre-norm residual layers of any sequence mixers, final norm, head.

    ``layers``: one entry per layer, a mixer name or ``{"mixer": name, "mlp_ratio": r, **mixer_kwargs}``.
    Give ``vocab_size`` for token inputs ``(B, L)`` or ``in_chans`` for series ``(B, C, L)``. ``seq_len`` (the
    training length) reaches the mixer factories as ``resolution=(1, seq_len)``; the LMU sets its window
    ``theta`` from it, as in LMUFormer.
    """

    def __init__(self, *, dim: int, layers: Sequence[str | Mapping[str, Any]], vocab_size: int | None = None,
                 in_chans: int | None = None, head: str = "lm", num_classes: int | None = None,
                 pool: str = "last", mlp_ratio: float = 4.0, norm: str = "layernorm", norm_eps: float = 1e-5,
                 tie_embeddings: bool = True, seq_len: int | None = None, drop: float = 0.0,
                 drop_path_rate: float = 0.0, name: str = "sequence model") -> None:
        super().__init__()
        self.name = name
        if not isinstance(dim, int) or dim < 1:
            raise UserError(f"{name}: dim must be a positive int, got {dim!r}")
        if (vocab_size is None) == (in_chans is None):
            raise UserError(f"{name}: give exactly one of vocab_size (token ids) or in_chans (float series)")
        if head not in HEADS:
            raise UserError(f"{name}: head must be one of {HEADS}, got {head!r}")
        if pool not in POOLS:
            raise UserError(f"{name}: pool must be one of {POOLS}, got {pool!r}")
        if head == "lm" and vocab_size is None:
            raise UserError(f"{name}: the lm head predicts tokens and needs vocab_size")
        if head == "classify" and (not isinstance(num_classes, int) or num_classes < 1):
            raise UserError(f"{name}: the classify head needs num_classes >= 1, got {num_classes!r}")
        for what, value in (("vocab_size", vocab_size), ("in_chans", in_chans), ("seq_len", seq_len)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"{name}: {what} must be a positive int, got {value!r}")
        if mlp_ratio < 0:
            raise UserError(f"{name}: mlp_ratio must be >= 0, got {mlp_ratio}")
        specs = _layer_specs(layers, name)
        self.dim, self.head_type, self.pool = dim, head, pool
        self.vocab_size, self.in_chans, self.num_classes, self.seq_len = vocab_size, in_chans, num_classes, seq_len
        self.mixer_names = [s[0] for s in specs]

        resolution = (1, seq_len) if seq_len is not None else None
        blocks = []
        for i, (mixer_name, kw, ratio) in enumerate(specs):
            spec = get_mixer_spec(mixer_name)
            if spec.layout != "sequence":
                raise UserError(f"{name}: layer {i}: mixer {mixer_name!r} works on {spec.layout} maps, not "
                                "(B, L, C) sequences")
            if not spec.causal and head == "lm":
                raise UserError(f"{name}: layer {i}: mixer {mixer_name!r} is not causal; a language model needs "
                                "causal mixers")
            try:
                mixer = spec.factory(dim, resolution=resolution, **kw)
            except TypeError as e:  # an unknown keyword for this mixer
                raise UserError(f"{name}: layer {i}: mixer {mixer_name!r}: {e}") from None
            rate = drop_path_rate * i / max(1, len(specs) - 1)
            blocks.append(SequenceLayer(dim, mixer, mixer_name=mixer_name,
                                        mlp_ratio=mlp_ratio if ratio is None else ratio, norm=norm,
                                        norm_eps=norm_eps, drop=drop, drop_path=rate))
        if vocab_size is not None:
            embedding: nn.Module = nn.Embedding(vocab_size, dim)
            nn.init.normal_(embedding.weight, std=0.02)  # the reference's _init_weights
        else:
            embedding = nn.Linear(in_chans, dim)
        self.backbone = _Backbone(embedding, blocks, _sequence_norm(norm, dim, norm_eps), vocab_size is not None)
        if head == "lm":
            self.lm_head = nn.Linear(dim, vocab_size, bias=False)
            if tie_embeddings:
                self.lm_head.weight = self.backbone.embedding.weight
            else:
                nn.init.trunc_normal_(self.lm_head.weight, std=0.02)
        else:
            self.head = nn.Linear(dim, num_classes)
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    # -- inputs
    def _embed(self, x: torch.Tensor, sequence: bool) -> torch.Tensor:
        """Check ``x`` and return ``(B, L, C)`` features (``sequence``) or ``(B, C)`` for one position."""
        if self.vocab_size is not None:
            shape = "(B, L)" if sequence else "(B,)"
            if x.ndim != (2 if sequence else 1) or x.dtype not in (torch.int64, torch.int32):
                raise UserError(f"{self.name}: expected integer token ids {shape}, got {tuple(x.shape)} {x.dtype}")
            if sequence and x.shape[1] == 0:
                raise UserError(f"{self.name}: expected at least one token, got {tuple(x.shape)}")
            return self.backbone.embed(x)
        shape = f"(B, {self.in_chans}, L)" if sequence else f"(B, {self.in_chans})"
        if x.ndim != (3 if sequence else 2) or x.shape[1] != self.in_chans or not x.is_floating_point():
            raise UserError(f"{self.name}: expected a float series {shape}, got {tuple(x.shape)} {x.dtype}")
        if sequence and x.shape[2] == 0:
            raise UserError(f"{self.name}: expected at least one time step, got {tuple(x.shape)}")
        return self.backbone.embed(x.transpose(1, 2) if sequence else x)

    def _check_states(self, state: Sequence[Any] | None) -> list[Any]:
        n = len(self.backbone.layers)
        if state is None:
            return [None] * n
        if not isinstance(state, Sequence) or len(state) != n:
            got = f"{len(state)} states" if isinstance(state, Sequence) else type(state).__name__
            raise UserError(f"{self.name}: expected a list of {n} per-layer states, got {got}")
        return list(state)

    # -- forward
    def forward_features(self, x: torch.Tensor, state: Sequence[Any] | None = None,
                         return_state: bool = False) -> Any:
        """The normalised features ``(B, L, dim)`` (and the per-layer states after the last position)."""
        h = self._embed(x, sequence=True)
        carry = state is not None or return_state
        states = self._check_states(state)
        new_states = []
        for layer, s in zip(self.backbone.layers, states, strict=True):
            if carry:
                h, s = layer(h, s, return_state=True)
                new_states.append(s)
            else:
                h = layer(h)
        h = self.backbone.norm_f(h)
        return (h, new_states) if return_state else h

    def forward_head(self, h: torch.Tensor) -> torch.Tensor:
        if self.head_type == "lm":
            return self.lm_head(h)
        pooled = h[:, -1] if self.pool == "last" else h.mean(dim=1)
        return self.head(pooled)

    def forward(self, x: torch.Tensor, state: Sequence[Any] | None = None, return_state: bool = False) -> Any:
        """Logits: ``(B, L, vocab_size)`` for ``head="lm"``, ``(B, num_classes)`` for ``"classify"``.

        ``state`` (from a previous call with ``return_state=True``) continues a sequence; ``return_state``
        also returns the per-layer states after the last position.
        """
        out = self.forward_features(x, state, return_state)
        if return_state:
            h, states = out
            return self.forward_head(h), states
        return self.forward_head(out)

    # -- decoding
    def step(self, x_t: torch.Tensor, state: Sequence[Any] | None = None) -> tuple[torch.Tensor, list[Any]]:
        """Advance one position: token ids ``(B,)`` (or a series step ``(B, C)``) -> head output ``(B, V)``
        (or class logits at this position) and the new per-layer states; ``state=None`` starts a sequence."""
        if self.head_type == "classify" and self.pool == "mean":
            raise UserError(f"{self.name}: step() needs pool='last' (mean pooling reads the whole sequence)")
        for layer in self.backbone.layers:
            if not layer.can_step:
                raise UserError(f"{self.name}: mixer {layer.mixer_name!r} has no step() for one-token decoding")
        h = self._embed(x_t, sequence=False)
        new_states = []
        for layer, s in zip(self.backbone.layers, self._check_states(state), strict=True):
            h, s = layer.step(h, s)
            new_states.append(s)
        h = self.backbone.norm_f(h)
        return (self.lm_head(h) if self.head_type == "lm" else self.head(h)), new_states

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``prompt`` ``(B, L)`` ids followed by ``n`` new tokens: the prompt in one call, then one :meth:`step`
        per token; ``temperature=0`` is greedy, otherwise tokens are drawn from ``softmax(logits / T)``."""
        if self.head_type != "lm":
            raise UserError(f"{self.name}: generate() needs the lm head")
        if n < 0 or temperature < 0:
            raise UserError(f"{self.name}: generate() needs n >= 0 and temperature >= 0, got {n}, {temperature}")
        for layer in self.backbone.layers:
            if not layer.can_step:
                raise UserError(f"{self.name}: mixer {layer.mixer_name!r} has no step() for one-token decoding")

        def pick(logits: torch.Tensor) -> torch.Tensor:
            if temperature == 0:
                return logits.argmax(-1)
            probs = F.softmax(logits.float() / temperature, dim=-1)
            return torch.multinomial(probs, 1, generator=generator)[:, 0]

        if n == 0:
            self._embed(prompt, sequence=True)
            return prompt
        logits, state = self(prompt, return_state=True)
        out = [prompt]
        token = pick(logits[:, -1])
        for i in range(n):
            out.append(token[:, None])
            if i + 1 < n:
                logits_t, state = self.step(token, state)
                token = pick(logits_t)
        return torch.cat(out, dim=1)


PAPER_MODEL = ("MetaFormer Is Actually What You Need for Vision (Yu et al., CVPR 2022); "
               "Mamba (Gu & Dao, COLM 2024)")


def _layers(layers: Sequence[str | Mapping[str, Any]] | None, mixer: str | Mapping[str, Any], depth: int,
            model: str) -> Sequence[str | Mapping[str, Any]]:
    if layers is not None:
        return layers
    if not isinstance(depth, int) or depth < 1:
        raise UserError(f"{model}: depth must be a positive int, got {depth!r}")
    return [mixer] * depth


@register_model(family="sequence", paper=PAPER_MODEL, input_shape=(256,), input_dtype="long")
def sequence_lm(*, dim: int = 128, depth: int = 4, mixer: str | Mapping[str, Any] = "mamba",
                layers: Sequence[str | Mapping[str, Any]] | None = None, vocab_size: int = 256,
                mlp_ratio: float = 0.0, norm: str = "rmsnorm", **kwargs: Any) -> SequenceModel:
    """A causal language model; by default ``depth`` Mamba layers without MLPs and RMSNorm (the Mamba LM's
    arrangement). ``layers`` gives one mixer per layer (hybrids); ``num_classes`` is accepted as ``vocab_size``."""
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is not None:  # the zoo's common name for the output size
        vocab_size = num_classes
    return SequenceModel(dim=dim, layers=_layers(layers, mixer, depth, "sequence_lm"), vocab_size=vocab_size,
                         head="lm", mlp_ratio=mlp_ratio, norm=norm, name="sequence_lm", **kwargs)


@register_model(family="sequence", paper=PAPER_MODEL, input_shape=(1, 128))
def sequence_classifier(*, dim: int = 64, depth: int = 2, mixer: str | Mapping[str, Any] = "mamba",
                        layers: Sequence[str | Mapping[str, Any]] | None = None, num_classes: int = 10,
                        in_chans: int | None = None, vocab_size: int | None = None, pool: str = "last",
                        mlp_ratio: float = 2.0, norm: str = "layernorm", **kwargs: Any) -> SequenceModel:
    """A sequence classifier over float series ``(B, in_chans, L)`` (default one channel) or token ids
    ``(B, L)`` (``vocab_size`` set); logits from the last position by default."""
    if vocab_size is None and in_chans is None:
        in_chans = 1
    return SequenceModel(dim=dim, layers=_layers(layers, mixer, depth, "sequence_classifier"),
                         vocab_size=vocab_size, in_chans=in_chans, head="classify", num_classes=num_classes,
                         pool=pool, mlp_ratio=mlp_ratio, norm=norm, name="sequence_classifier", **kwargs)


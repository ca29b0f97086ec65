"""SaShiMi: a multi-scale (U-Net over time) stack of S4 blocks for autoregressive raw-audio modelling.

Paper: Goel, Gu, Donahue and Ré, "It's Raw! Audio Generation with State-Space Models", ICML 2022. The backbone
follows the standalone state-spaces/s4 ``models/sashimi/sashimi.py`` (``Sashimi``, ``DownPool``, ``UpPool``,
``FFBlock``, ``ResidualBlock``; module names ``d_layers``, ``c_layers``, ``u_layers``, ``norm``, ``linear``,
``ff``, ``layer``), with the S4 layer being :class:`archlab.zoo.mixers.s4d.S4D` (the diagonal S4D kernel; the
paper's DPLR S4 kernel is not implemented). The reference works on ``(B, H, L)`` with 1x1 convolutions; this
one works on ``(B, L, H)`` with ``nn.Linear`` (same weights without the trailing kernel axis, same feature
order in the pooling reshapes).

Structure (``unet=False``, the paper's autoregressive model): for each pooling factor ``p`` a ``DownPool``
(reshape ``(l*p, h) -> (l, h*p)`` then Linear to ``h*expand``); a centre of ``n_layers`` x
[Residual(LayerNorm -> S4), Residual(LayerNorm -> FF)]; then per level an ``UpPool`` (Linear to
``h/expand * p``, shifted right by one coarse step, reshaped back to length ``l*p``) plus the skip from the
matching ``DownPool`` input, ``n_layers`` S4/FF blocks and a skip over the whole level.

The shift is what keeps the U-Net causal: a coarse step summarises ``p`` fine steps, the last of which comes
after the first fine step it would otherwise feed. :meth:`Sashimi.step` runs the same network one sample at a
time (each level is updated only every ``prod(pool)`` samples), for generation in constant memory per step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.mixers.s4d import S4D

__all__ = ["DownPool", "FFBlock", "ResidualBlock", "Sashimi", "SashimiLM", "UpPool", "sashimi_sc09",
           "sashimi_tiny"]

PAPER = "It's Raw! Audio Generation with State-Space Models (Goel, Gu, Donahue, Re, ICML 2022)"


class DownPool(nn.Module):
    """``(B, L, H) -> (B, L/pool, H*expand)``: stack ``pool`` consecutive steps, then a Linear."""

    def __init__(self, d_input: int, expand: int, pool: int) -> None:
        super().__init__()
        self.d_input = d_input
        self.d_output = d_input * expand
        self.pool = pool
        self.linear = nn.Linear(d_input * pool, self.d_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, h = x.shape
        # features ordered (h, s) as the reference's rearrange '... h (l s) -> ... (h s) l'
        x = x.reshape(b, length // self.pool, self.pool, h).transpose(-1, -2).reshape(b, length // self.pool, -1)
        return self.linear(x)

    def step(self, x: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Collect one step; every ``pool``-th call returns the pooled coarse step, else ``None``."""
        state = state + [x]
        if len(state) < self.pool:
            return None, state
        return self.linear(torch.stack(state, dim=-1).flatten(-2)), []

    def default_state(self, batch: int) -> list[torch.Tensor]:
        return []


class UpPool(nn.Module):
    """``(B, l, H) -> (B, l*pool, H/expand)``: a Linear, a causal shift by one coarse step, then unstacking."""

    def __init__(self, d_input: int, expand: int, pool: int) -> None:
        super().__init__()
        self.d_output = d_input // expand
        self.pool = pool
        self.linear = nn.Linear(d_input, self.d_output * pool)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.linear(x)
        x = F.pad(x[:, :-1], (0, 0, 1, 0))  # coarse step j feeds fine steps of block j + 1 only
        b, length, _ = x.shape
        x = x.reshape(b, length, self.d_output, self.pool).transpose(-1, -2).reshape(b, length * self.pool, -1)
        return x if skip is None else x + skip

    def step(self, x: torch.Tensor | None, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Emit the next pending fine step; when the last one is emitted, ``x`` (the coarse step that has
        just completed) is expanded into the next ``pool`` pending steps."""
        y, state = state[0], state[1:]
        if not state:
            if x is None:
                raise UserError("sashimi: UpPool.step needs the coarse output when its buffer runs out")
            state = list(self.linear(x).reshape(x.shape[0], self.d_output, self.pool).unbind(-1))
        elif x is not None:
            raise UserError("sashimi: UpPool.step got a coarse output before its buffer ran out")
        return y, state

    def default_state(self, batch: int) -> list[torch.Tensor]:
        w = self.linear.weight
        return [w.new_zeros(batch, self.d_output) for _ in range(self.pool)]


class FFBlock(nn.Module):
    """Position-wise inverted bottleneck: Linear(d -> d*expand) -> GELU -> dropout -> Linear(-> d)."""

    def __init__(self, d_model: int, expand: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(d_model, d_model * expand), nn.GELU()),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(d_model * expand, d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)

    def step(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        return self.ff(x), None

    def default_state(self, batch: int) -> None:
        return None


class ResidualBlock(nn.Module):
    """Pre-norm residual: ``x + dropout(layer(LayerNorm(x)))``."""

    def __init__(self, d_model: int, layer: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.layer = layer
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.layer(self.norm(x)))

    def step(self, x: torch.Tensor, state):
        z, state = self.layer.step(self.norm(x), state)
        return x + z, state

    def default_state(self, batch: int):
        return self.layer.default_state(batch)


class Sashimi(nn.Module):
    """The SaShiMi backbone over ``(B, L, d_model)``; ``L`` must be a multiple of ``prod(pool)``."""

    def __init__(self, d_model: int = 64, n_layers: int = 8, pool: tuple[int, ...] = (4, 4), expand: int = 2,
                 ff: int = 2, unet: bool = False, dropout: float = 0.0, d_state: int = 64,
                 **s4_args) -> None:
        super().__init__()
        if d_model < 1 or n_layers < 0 or expand < 1 or ff < 0 or any(p < 1 for p in pool):
            raise UserError(f"sashimi: bad configuration d_model={d_model}, n_layers={n_layers}, pool={pool}, "
                            f"expand={expand}, ff={ff}")
        self.d_model = d_model
        self.pool = tuple(pool)
        self.unet = unet
        self.total_pool = math.prod(self.pool)

        def s4_block(dim: int) -> ResidualBlock:
            return ResidualBlock(dim, S4D(dim, d_state=d_state, dropout=dropout, **s4_args), dropout)

        def ff_block(dim: int) -> ResidualBlock:
            return ResidualBlock(dim, FFBlock(dim, ff, dropout), dropout)

        def blocks(dim: int) -> list[nn.Module]:
            out: list[nn.Module] = []
            for _ in range(n_layers):
                out.append(s4_block(dim))
                if ff > 0:
                    out.append(ff_block(dim))
            return out

        h = d_model
        d_layers: list[nn.Module] = []
        for p in self.pool:
            if unet:
                d_layers += blocks(h)
            d_layers.append(DownPool(h, expand, p))
            h *= expand
        c_layers = blocks(h)
        u_layers = []
        for p in self.pool[::-1]:
            h //= expand
            u_layers.append(nn.ModuleList([UpPool(h * expand, expand, p), *blocks(h)]))
        self.d_layers = nn.ModuleList(d_layers)
        self.c_layers = nn.ModuleList(c_layers)
        self.u_layers = nn.ModuleList(u_layers)
        self.norm = nn.LayerNorm(h)

    def _layers(self) -> list[nn.Module]:
        return [*self.d_layers, *self.c_layers, *(layer for block in self.u_layers for layer in block)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model or x.shape[1] % self.total_pool:
            raise UserError(f"sashimi: expected input (B, L, {self.d_model}) with L a multiple of "
                            f"{self.total_pool}, got {tuple(x.shape)}")
        outputs = [x]
        for layer in self.d_layers:
            x = layer(x)
            outputs.append(x)
        for layer in self.c_layers:
            x = layer(x)
        x = x + outputs.pop()
        for block in self.u_layers:
            if self.unet:
                for layer in block:
                    x = layer(x) + outputs.pop()
            else:
                for layer in block:
                    x = layer(x)
                    if isinstance(layer, UpPool):
                        x = x + outputs.pop()
                        outputs.append(x)
                x = x + outputs.pop()
        return self.norm(x)

    def default_state(self, batch: int) -> list:
        """The state before the first sample: one entry per layer, in ``d, c, u`` order."""
        return [layer.default_state(batch) for layer in self._layers()]

    def step(self, x: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """One sample ``(B, d_model)`` -> ``(B, d_model)``; coarse levels advance every ``pool`` samples."""
        if x.dim() != 2 or x.shape[-1] != self.d_model:
            raise UserError(f"sashimi: step expects (B, {self.d_model}), got {tuple(x.shape)}")
        layers = self._layers()
        if len(state) != len(layers):
            raise UserError(f"sashimi: expected a state of {len(layers)} entries, got {len(state)}")
        index = {id(layer): i for i, layer in enumerate(layers)}
        new_state = list(state)

        def run(layer: nn.Module, inp):
            i = index[id(layer)]
            out, new_state[i] = layer.step(inp, state[i])
            return out

        outputs = []
        stopped_at = None
        for i, layer in enumerate(self.d_layers):
            outputs.append(x)
            x = run(layer, x)
            if x is None:
                stopped_at = i
                break
        if stopped_at is None:
            outputs.append(x)
            for layer in self.c_layers:
                x = run(layer, x)
            x = x + outputs.pop()
            u_blocks = list(self.u_layers)
        else:
            # The coarser levels (and the centre) wait for a full block: their states stay as they are.
            deeper = sum(isinstance(m, DownPool) for m in list(self.d_layers)[stopped_at + 1:])
            u_blocks = list(self.u_layers)[deeper:]
        for block in u_blocks:
            if self.unet:
                for layer in block:
                    x = run(layer, x) + outputs.pop()
            else:
                for layer in block:
                    x = run(layer, x)
                    if isinstance(layer, UpPool):
                        x = x + outputs.pop()
                        outputs.append(x)
                x = x + outputs.pop()
        return self.norm(x), new_state


class SashimiLM(nn.Module):
    """SaShiMi as an autoregressive model of quantised samples: embedding -> backbone -> Linear to logits.

    The output at position ``t`` predicts sample ``t + 1`` (train with inputs ``x[:, :-1]`` and targets
    ``x[:, 1:]``, as the reference's audio pipeline does).
    """

    def __init__(self, n_tokens: int = 256, d_model: int = 64, **backbone) -> None:
        super().__init__()
        if n_tokens < 2:
            raise UserError(f"sashimi: n_tokens must be >= 2, got {n_tokens}")
        self.n_tokens = n_tokens
        self.encoder = nn.Embedding(n_tokens, d_model)
        self.backbone = Sashimi(d_model=d_model, **backbone)
        self.decoder = nn.Linear(d_model, n_tokens)

    def _check_ids(self, ids: torch.Tensor, ndim: int) -> None:
        if ids.dim() != ndim or ids.dtype != torch.long:
            shape = "(B, L)" if ndim == 2 else "(B,)"
            raise UserError(f"sashimi: expected token ids {shape} of dtype long, got {tuple(ids.shape)} {ids.dtype}")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self._check_ids(ids, 2)
        return self.decoder(self.backbone(self.encoder(ids)))

    def default_state(self, batch: int) -> list:
        return self.backbone.default_state(batch)

    def step(self, ids: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """Logits for the next sample from one sample ``(B,)`` of ids."""
        self._check_ids(ids, 1)
        y, state = self.backbone.step(self.encoder(ids), state)
        return self.decoder(y), state

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, length: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``length`` new ids after ``prefix`` (``(B, P)``, ``P >= 1``) with the recurrent form."""
        self._check_ids(prefix, 2)
        if prefix.shape[1] < 1:
            raise UserError("sashimi: generate needs a prefix of at least one sample")
        state = self.default_state(prefix.shape[0])
        for t in range(prefix.shape[1]):
            logits, state = self.step(prefix[:, t], state)
        out = [prefix]
        for _ in range(length):
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
            out.append(nxt[:, None])
            logits, state = self.step(nxt, state)
        return torch.cat(out, dim=1)


@register_model(family="sashimi", paper=PAPER, input_shape=(256,), input_dtype="long")
def sashimi_tiny(**kwargs) -> SashimiLM:
    """A small SaShiMi for tests: width 16, one S4/FF pair per level, pooling (4, 4), 256 classes."""
    cfg = dict(n_tokens=256, d_model=16, n_layers=1, pool=(4, 4), expand=2, ff=2, d_state=16)
    return SashimiLM(**{**cfg, **kwargs})


@register_model(family="sashimi", paper=PAPER, input_shape=(16000,), input_dtype="long")
def sashimi_sc09(**kwargs) -> SashimiLM:
    """The SC09 configuration (configs/experiment/audio/sashimi-sc09.yaml): d_model 64, 8 layers per level,
    pooling (4, 4), expand 2, FF expand 2, d_state 64, 8-bit mu-law samples (256 classes), 1 s at 16 kHz.

    5.22M parameters here; the reference README gives 4.1M for its SC09 SaShiMi. Part of the gap (0.46M) is
    the config's ``n_ssm: 1`` (A, B shared by all channels of a layer), which this S4D does not implement;
    the rest is not reconciled."""
    cfg = dict(n_tokens=256, d_model=64, n_layers=8, pool=(4, 4), expand=2, ff=2, d_state=64)
    return SashimiLM(**{**cfg, **kwargs})

"""MuE ("Multiple Exiting"): an encoder–decoder transformer that skips the rest of a stack's layers once a layer
no longer changes the hidden states, per input in the encoder and per generated token in the decoder.

Paper: Tang et al., "You Need Multiple Exiting: Dynamic Early Exiting for Accelerating Unified Vision Language
Model", CVPR 2023. There is no official code: this module is reconstructed from the paper, and the code is
archlab's (a tiny encoder–decoder of its own, not OFA).

Mechanism: after layer ``l`` of a stack, the similarity of its output with its input, the mean over tokens of
``cos(h_l, h_{l-1})`` (:func:`layer_similarity`; ``h_0`` is the embedding), is compared with a threshold ``τ``;
once it reaches ``τ`` the hidden states have saturated and the stack's remaining layers are skipped. The network
is trained with a layer-wise loss (:func:`layerwise_loss`) so that every layer's output, through the shared final
norm and head, solves the task: intermediate layers are usable exits and the layers' outputs converge.

Choices made here (the paper does not fix them, or this reconstruction could not check them):

- exit test ``similarity >= τ``, made after each executed layer, whose output is kept; the earliest exit is after
  the first layer (``τ = -1``), and ``τ > 1`` never exits;
- encoder: one decision per input and token group (all tokens of a group exit together, since the decoder
  attends to all of them). ``groups`` (``(B, S)`` ints) gives each token a group (a modality: image tokens,
  text tokens), and ``tau_enc`` may be one threshold per group. An exited group's tokens stay at their exit state
  and remain keys/values for the groups still running; a layer computes queries (and its MLP) only for the
  tokens of running groups. The encoder's output is the shared final LayerNorm of each token's exit state;
- decoder: one decision per position. A position that exited after layer ``l`` gets, at each skipped layer
  ``j > l``, self-attention keys/values projected from its exit state ``h_l`` (state copying, as in CALM:
  Schuster et al., "Confident Adaptive Language Modeling", NeurIPS 2022), so that later positions can attend
  to it; that K/V projection is the only work done for a skipped layer (``2·d²`` of a layer's ``(6 + 2·r)·d²``
  multiply-adds per token plus attention, ``r`` the MLP ratio);
- layer-wise loss: the decoder runs on the encoder's output at every depth (the depths stacked into the batch,
  one decoder pass over ``E×`` the batch), which gives logits at every (encoder depth, decoder depth) pair, the
  pairs a dynamic forward can end at; the loss is their mean token cross-entropy, uniform weights by default
  (``weights``, ``(E, D)``, to change them).

The task (:func:`digits_captions`): sklearn's 8×8 digits as a tiny image-to-text problem, 16 patches of 2×2
pixels in, the class name spelled in characters out ("seven" then EOS); accuracy is the exact match of the
greedily generated string (:func:`exact_match`). :func:`sweep` measures accuracy, the share of layers skipped and
CPU latency per input over thresholds: an accuracy-vs-compute curve with its Pareto points marked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import fit, shuffled_batches
from archlab.zoo.models.vl_decoder import DIGIT_NAMES, patchify

__all__ = ["BOS", "CLASS_NAMES", "EOS", "PAD", "VOCAB", "DecoderLayer", "EncoderLayer", "MuEOutput", "MuETransformer",
           "decode_tokens", "digits_captions", "exact_match", "layer_similarity", "layerwise_loss", "patchify",
           "sweep", "train_mue"]

CLASS_NAMES = DIGIT_NAMES
PAD, BOS, EOS = 0, 1, 2
VOCAB = ("<pad>", "<bos>", "<eos>", *sorted(set("".join(CLASS_NAMES))))
_CHAR_ID = {c: i for i, c in enumerate(VOCAB)}
_NAME_LEN = max(map(len, CLASS_NAMES)) + 1  # with EOS


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (b, n, d) -> (b, heads, n, d / heads)
        return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
        o = F.scaled_dot_product_attention(self._split(self.q(x)), k, v, is_causal=causal)
        return self.out(o.transpose(1, 2).flatten(2))


def _mlp(dim: int, ratio: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + MLP block. ``forward(x, rows)``: the new states of tokens ``rows`` (all when None),
    attending to all of ``x``'s tokens; the other tokens are not computed."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), _mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        n = self.norm1(x)
        k, v = self.attn.keys_values(n)
        h, q = (x, n) if rows is None else (x[:, rows], n[:, rows])
        h = h + self.attn.attend(q, k, v)
        return h + self.mlp(self.norm2(h))


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the encoder output, MLP. ``forward(x, memory_kv,
    self_kv)``: with ``self_kv`` None, causal attention over ``x``'s positions; else ``x`` is one position and
    ``self_kv`` the keys/values of every position up to it (a cache, :meth:`self_keys_values`)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(dim), _Attention(dim, heads)
        self.norm2, self.cross_attn = nn.LayerNorm(dim), _Attention(dim, heads)
        self.norm3, self.mlp = nn.LayerNorm(dim), _mlp(dim, mlp_ratio)

    def self_keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.self_attn.keys_values(self.norm1(x))

    def memory_keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cross_attn.keys_values(memory)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
                self_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        n = self.norm1(x)
        k, v = self.self_attn.keys_values(n) if self_kv is None else self_kv
        x = x + self.self_attn.attend(n, k, v, causal=self_kv is None)
        x = x + self.cross_attn.attend(self.norm2(x), *memory_kv)
        return x + self.mlp(self.norm3(x))


@dataclass
class MuEOutput:
    """A dynamic forward's result. ``logits`` ``(B, T, V)`` and ``tokens`` ``(B, T)`` (argmax; for
    :meth:`MuETransformer.generate` the generated tokens, PAD after EOS, zero logits there); ``enc_layers``
    ``(B, G)``: encoder layers run by each input's token groups (0 for a group without tokens); ``dec_layers``
    ``(B, T)``: decoder layers run at each position (0 where nothing was generated)."""

    logits: torch.Tensor
    tokens: torch.Tensor
    enc_layers: torch.Tensor
    dec_layers: torch.Tensor


def layer_similarity(h_new: torch.Tensor, h_old: torch.Tensor, groups: torch.Tensor | None = None,
                     num_groups: int = 1) -> torch.Tensor:
    """Mean over tokens of ``cos(h_new, h_old)`` (last axis the features): ``(B,)`` for ``(B, S, d)`` inputs, or
    ``(B, num_groups)`` means over each group's tokens with ``groups`` ``(B, S)`` (NaN for a group without one)."""
    cos = F.cosine_similarity(h_new, h_old, dim=-1)
    if groups is None:
        return cos.mean(-1)
    sums = cos.new_zeros(len(cos), num_groups).scatter_add_(1, groups, cos)
    counts = cos.new_zeros(len(cos), num_groups).scatter_add_(1, groups, torch.ones_like(cos))
    return sums / counts


def _check_tau(name: str, tau: Any, per_group: bool) -> list[float]:
    values = list(tau) if per_group and isinstance(tau, (list, tuple)) else [tau]
    if not values or any(isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t) for t in values):
        kind = "a number or a list of numbers (one per token group)" if per_group else "a number"
        raise UserError(f"MuE: {name} must be {kind}, got {tau!r}")
    return [float(t) for t in values]


class MuETransformer(nn.Module):
    """A tiny pre-norm encoder–decoder: ``src`` ``(B, S, src_dim)`` features (image patches) through a linear
    embedding and learned positions, ``tgt_in`` ``(B, T)`` token ids (BOS first); shared final norms and head."""

    def __init__(self, src_dim: int = 4, max_src_len: int = 16, vocab_size: int = len(VOCAB),
                 max_tgt_len: int = _NAME_LEN, dim: int = 64, heads: int = 4, enc_layers: int = 4,
                 dec_layers: int = 4, mlp_ratio: int = 2) -> None:
        super().__init__()
        if dim % heads or min(enc_layers, dec_layers, max_src_len, max_tgt_len) < 1:
            raise UserError(f"MuETransformer: need dim divisible by heads and at least one layer and position, got "
                            f"dim={dim}, heads={heads}, layers={enc_layers}+{dec_layers}")
        self.src_dim, self.max_src_len = src_dim, max_src_len
        self.vocab_size, self.max_tgt_len = vocab_size, max_tgt_len
        self.src_embed = nn.Linear(src_dim, dim)
        self.src_pos = nn.Parameter(torch.randn(1, max_src_len, dim) * 0.02)
        self.tgt_embed = nn.Embedding(vocab_size, dim)
        self.tgt_pos = nn.Parameter(torch.randn(1, max_tgt_len, dim) * 0.02)
        self.encoder = nn.ModuleList([EncoderLayer(dim, heads, mlp_ratio) for _ in range(enc_layers)])
        self.decoder = nn.ModuleList([DecoderLayer(dim, heads, mlp_ratio) for _ in range(dec_layers)])
        self.enc_norm, self.dec_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def _check(self, src: torch.Tensor, tgt_in: torch.Tensor | None = None) -> None:
        if not isinstance(src, torch.Tensor) or src.ndim != 3 or not src.is_floating_point() \
                or src.shape[2] != self.src_dim or not 1 <= src.shape[1] <= self.max_src_len or len(src) == 0:
            got = tuple(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__
            raise UserError(f"MuE: src must be float (B, S, {self.src_dim}) with 1 <= S <= {self.max_src_len}, "
                            f"got {got}")
        if tgt_in is None:
            return
        if not isinstance(tgt_in, torch.Tensor) or tgt_in.ndim != 2 or tgt_in.is_floating_point() \
                or len(tgt_in) != len(src) or not 1 <= tgt_in.shape[1] <= self.max_tgt_len:
            got = tuple(tgt_in.shape) if isinstance(tgt_in, torch.Tensor) else type(tgt_in).__name__
            raise UserError(f"MuE: tgt_in must be integer token ids ({len(src)}, T) with 1 <= T <= "
                            f"{self.max_tgt_len}, got {got}")
        if int(tgt_in.min()) < 0 or int(tgt_in.max()) >= self.vocab_size:
            raise UserError(f"MuE: tgt_in token ids must be in 0..{self.vocab_size - 1}")

    def _embed_src(self, src: torch.Tensor) -> torch.Tensor:
        return self.src_embed(src) + self.src_pos[:, :src.shape[1]]

    def _embed_tgt(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        return self.tgt_embed(tokens) + self.tgt_pos[:, start:start + tokens.shape[1]]

    def _decode(self, memory: torch.Tensor, tgt_in: torch.Tensor, every_layer: bool) -> list[torch.Tensor]:
        x, outs = self._embed_tgt(tgt_in), []
        for i, layer in enumerate(self.decoder):
            x = layer(x, layer.memory_keys_values(memory))
            if every_layer or i == len(self.decoder) - 1:
                outs.append(self.head(self.dec_norm(x)))
        return outs

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Every layer, teacher-forced: logits ``(B, T, V)``."""
        self._check(src, tgt_in)
        h = self._embed_src(src)
        for layer in self.encoder:
            h = layer(h)
        return self._decode(self.enc_norm(h), tgt_in, every_layer=False)[-1]

    def forward_layerwise(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Logits at every (encoder depth, decoder depth) pair, ``(E, D, B, T, V)``; ``[-1, -1]`` is
        :meth:`forward`'s. Costs one encoder pass and one decoder pass over ``E×`` the batch."""
        self._check(src, tgt_in)
        h, memories = self._embed_src(src), []
        for layer in self.encoder:
            h = layer(h)
            memories.append(self.enc_norm(h))
        depths, b = len(memories), len(src)
        outs = self._decode(torch.cat(memories), tgt_in.repeat(depths, 1), every_layer=True)
        return torch.stack(outs).unflatten(1, (depths, b)).transpose(0, 1)

    def _encode_dynamic(self, src: torch.Tensor, taus: list[float], groups: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._embed_src(src)
        b, s, _ = h.shape
        g = torch.zeros(b, s, dtype=torch.long) if groups is None else groups.long()
        num_groups = len(taus) if len(taus) > 1 else int(g.max()) + 1
        tau = torch.tensor(taus if len(taus) > 1 else taus * num_groups, dtype=h.dtype)
        active = F.one_hot(g, num_groups).sum(1) > 0  # (B, G): groups with tokens still running
        layers = torch.zeros(b, num_groups, dtype=torch.long)
        for layer in self.encoder:
            rows = active.any(1).nonzero()[:, 0]
            if len(rows) == 0:
                break
            x, gr = h[rows], g[rows]
            running = active[rows].gather(1, gr)  # (r, S): tokens whose group runs this layer
            if bool(running.all()):
                new = layer(x)
            else:  # inputs with the same running tokens share one call that computes only those tokens
                new = x.clone()
                patterns, which = torch.unique(running, dim=0, return_inverse=True)
                for i, pattern in enumerate(patterns):
                    sel, idx = (which == i).nonzero()[:, 0], pattern.nonzero()[:, 0]
                    new[sel[:, None], idx] = layer(x[sel], idx)
            sim = layer_similarity(new, x, gr, num_groups)
            layers[rows] += active[rows].long()
            h[rows] = new
            active[rows] &= ~(sim >= tau)
        return self.enc_norm(h), layers

    def _decode_dynamic(self, memory: torch.Tensor, tau: float, tgt_in: torch.Tensor | None,
                        steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Position by position with a key/value cache; teacher-forced from ``tgt_in``, else greedy from BOS."""
        b, heads = len(memory), self.decoder[0].self_attn.heads
        dim = memory.shape[-1]
        cache = [(memory.new_zeros(b, heads, steps, dim // heads), memory.new_zeros(b, heads, steps, dim // heads))
                 for _ in self.decoder]
        memory_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.decoder)
        logits = memory.new_zeros(b, steps, self.vocab_size)
        tokens = torch.full((b, steps), PAD, dtype=torch.long)
        layers = torch.zeros(b, steps, dtype=torch.long)
        alive = torch.arange(b)
        current = tgt_in[:, 0] if tgt_in is not None else torch.full((b,), BOS, dtype=torch.long)
        for t in range(steps):
            x = self._embed_tgt(current[alive, None], start=t)  # (n, 1, d)
            running = torch.ones(len(alive), dtype=torch.bool)
            for j, layer in enumerate(self.decoder):
                k, v = layer.self_keys_values(x)  # exited positions: from their exit state (state copying)
                cache[j][0][alive, :, t], cache[j][1][alive, :, t] = k[:, :, 0], v[:, :, 0]
                act = running.nonzero()[:, 0]
                if len(act) == 0:
                    continue
                if memory_kv[j] is None:
                    memory_kv[j] = layer.memory_keys_values(memory)
                rows, (mk, mv) = alive[act], memory_kv[j]
                new = layer(x[act], (mk[rows], mv[rows]), (cache[j][0][rows, :, :t + 1], cache[j][1][rows, :, :t + 1]))
                sim = layer_similarity(new, x[act])
                x[act] = new
                layers[rows, t] += 1
                running[act[sim >= tau]] = False
            out = self.head(self.dec_norm(x[:, 0]))
            logits[alive, t] = out
            tokens[alive, t] = out.argmax(-1)
            if t + 1 == steps:
                break
            if tgt_in is not None:
                current = tgt_in[:, t + 1]
            else:
                current = tokens[:, t]
                alive = alive[tokens[alive, t] != EOS]
                if len(alive) == 0:
                    break
        return logits, tokens, layers

    def _prepare(self, src: torch.Tensor, tgt_in: torch.Tensor | None, tau_enc: Any, tau_dec: Any,
                 groups: torch.Tensor | None) -> tuple[list[float], float]:
        self._check(src, tgt_in)
        taus = _check_tau("tau_enc", tau_enc, per_group=True)
        tau = _check_tau("tau_dec", tau_dec, per_group=False)[0]
        if groups is not None:
            if not isinstance(groups, torch.Tensor) or groups.shape != src.shape[:2] or groups.is_floating_point() \
                    or bool((groups < 0).any()):
                got = tuple(groups.shape) if isinstance(groups, torch.Tensor) else type(groups).__name__
                raise UserError(f"MuE: groups must be non-negative integer ids of shape {tuple(src.shape[:2])}, "
                                f"got {got}")
            if len(taus) > 1 and int(groups.max()) >= len(taus):
                raise UserError(f"MuE: a group id is {int(groups.max())} but tau_enc has {len(taus)} thresholds")
        return taus, tau

    @torch.no_grad()
    def forward_dynamic(self, src: torch.Tensor, tgt_in: torch.Tensor, tau_enc: float | Sequence[float],
                        tau_dec: float, groups: torch.Tensor | None = None) -> MuEOutput:
        """Teacher-forced, skipping layers: the encoder per input (and group), the decoder per position."""
        taus, tau = self._prepare(src, tgt_in, tau_enc, tau_dec, groups)
        memory, enc_layers = self._encode_dynamic(src, taus, groups)
        logits, tokens, dec_layers = self._decode_dynamic(memory, tau, tgt_in, tgt_in.shape[1])
        return MuEOutput(logits, tokens, enc_layers, dec_layers)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, tau_enc: float | Sequence[float] = 2.0, tau_dec: float = 2.0,
                 groups: torch.Tensor | None = None, max_len: int | None = None) -> MuEOutput:
        """Greedy decoding from BOS, skipping layers, until every input has produced EOS or ``max_len``
        tokens (default ``max_tgt_len``); the default thresholds never exit."""
        taus, tau = self._prepare(src, None, tau_enc, tau_dec, groups)
        steps = self.max_tgt_len if max_len is None else max_len
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.max_tgt_len:
            raise UserError(f"MuE: max_len must be an int in 1..{self.max_tgt_len}, got {max_len!r}")
        memory, enc_layers = self._encode_dynamic(src, taus, groups)
        logits, tokens, dec_layers = self._decode_dynamic(memory, tau, None, steps)
        return MuEOutput(logits, tokens, enc_layers, dec_layers)


def layerwise_loss(grid: torch.Tensor, tgt_out: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ w_ed · CE_ed / Σ w_ed`` over the (encoder depth, decoder depth) logits of
    :meth:`MuETransformer.forward_layerwise` (``grid`` ``(E, D, B, T, V)``); ``CE_ed`` is the mean cross-entropy
    over the non-PAD targets; ``weights`` ``(E, D)``, uniform by default."""
    e, d = grid.shape[:2]
    w = grid.new_ones(e, d) if weights is None else weights.to(grid.dtype)
    if w.shape != (e, d):
        raise UserError(f"layerwise_loss: weights must have shape {(e, d)}, got {tuple(w.shape)}")
    targets = tgt_out.expand(e, d, *tgt_out.shape).reshape(-1)
    ce = F.cross_entropy(grid.reshape(-1, grid.shape[-1]), targets, ignore_index=PAD, reduction="none")
    per_pair = ce.view(e, d, -1).sum(-1) / (tgt_out != PAD).sum().clamp(min=1)
    return (w * per_pair).sum() / w.sum()


def train_mue(model: MuETransformer, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor, *,
              epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
              weights: torch.Tensor | None = None) -> float:
    """Train on :func:`layerwise_loss` with :func:`archlab.train.fit` (AdamW, warm-up + cosine). Returns the
    last loss."""
    model._check(src, tgt_in)
    batches = shuffled_batches(src, tgt_in, tgt_out, batch_size=batch_size, seed=seed)
    result = fit(model, batches, lambda m, bt: layerwise_loss(m.forward_layerwise(bt[0], bt[1]), bt[2], weights),
                 epochs=epochs, steps_per_epoch=math.ceil(len(src) / batch_size), lr=lr, seed=seed, amp=False)
    model.eval()
    return result.loss


def digits_captions(x: torch.Tensor, y: torch.Tensor, patch: int = 2
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(src, tgt_in, tgt_out)``: patches of the images, and the class names as tokens, ``BOS + name`` in and
    ``name + EOS`` out, PAD-filled to ``len("three") + 1``."""
    if y.ndim != 1 or len(y) != len(x) or int(y.min()) < 0 or int(y.max()) >= len(CLASS_NAMES):
        raise UserError(f"digits_captions: need one label in 0..9 per image, got {tuple(y.shape)}")
    tgt_in = torch.full((len(y), _NAME_LEN), PAD, dtype=torch.long)
    tgt_out = tgt_in.clone()
    for i, label in enumerate(y.tolist()):
        ids = [_CHAR_ID[c] for c in CLASS_NAMES[label]]
        tgt_in[i, :len(ids) + 1] = torch.tensor([BOS, *ids])
        tgt_out[i, :len(ids) + 1] = torch.tensor([*ids, EOS])
    return patchify(x, patch), tgt_in, tgt_out


def decode_tokens(tokens: torch.Tensor) -> list[str]:
    """Token rows to strings, up to the first EOS (PAD and BOS dropped)."""
    out = []
    for row in tokens.tolist():
        chars = []
        for t in row:
            if t == EOS:
                break
            if t > EOS:
                chars.append(VOCAB[t])
        out.append("".join(chars))
    return out


def exact_match(tokens: torch.Tensor, tgt_out: torch.Tensor) -> float:
    """Share of rows whose tokens equal the target up to and including its EOS (PAD after it on both)."""
    n = min(tokens.shape[1], tgt_out.shape[1])
    same = (tokens[:, :n] == tgt_out[:, :n]).all(1) & (tokens[:, n:] == PAD).all(1) & (tgt_out[:, n:] == PAD).all(1)
    return same.float().mean().item()


def _latency_ms(model: MuETransformer, src: torch.Tensor, groups: torch.Tensor | None, tau_enc: Any, tau_dec: float,
                repeats: int) -> float:
    """Mean milliseconds per input of :meth:`MuETransformer.generate` at batch size 1, one thread (the least of
    ``repeats`` passes over the inputs, after one warm-up pass)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = math.inf
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            for i in range(len(src)):
                model.generate(src[i:i + 1], tau_enc, tau_dec, None if groups is None else groups[i:i + 1])
            if r:
                best = min(best, time.perf_counter() - t0)
        return best * 1e3 / len(src)
    finally:
        torch.set_num_threads(old)


def sweep(model: MuETransformer, data: tuple[torch.Tensor, ...], taus: Sequence[Any], *, latency_inputs: int = 32,
          repeats: int = 3) -> list[dict[str, Any]]:
    """Accuracy against compute over thresholds. ``data``: ``(src, tgt_out)`` or ``(src, tgt_out, groups)``;
    ``taus``: numbers (the same for both stacks) or ``(tau_enc, tau_dec)`` pairs. The first row is the full
    model (``τ = inf``). Each row: ``tau_enc``, ``tau_dec``, ``accuracy`` (:func:`exact_match` of greedy
    decoding), ``enc_skipped`` (share of encoder layer-token runs skipped), ``dec_skipped`` (of decoder layers
    over generated tokens), ``layers_skipped`` (of all layer runs: an encoder layer on one input, a decoder
    layer on one generated token), ``latency_ms`` (per input, batch 1, on the first ``latency_inputs`` inputs),
    ``accuracy_ratio`` and ``latency_ratio`` (to the full model's), ``pareto`` (no other row is at least as good
    in both accuracy and layers skipped, and better in one)."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise UserError("sweep: data must be (src, tgt_out) or (src, tgt_out, groups)")
    src, tgt_out = data[0], data[1]
    groups = data[2] if len(data) == 3 else None
    model.eval()
    rows: list[dict[str, Any]] = []
    for tau in [math.inf, *taus]:
        tau_enc, tau_dec = tau if isinstance(tau, (tuple, list)) and len(tau) == 2 else (tau, tau)
        out = model.generate(src, tau_enc, tau_dec, groups)
        g = torch.zeros(src.shape[:2], dtype=torch.long) if groups is None else groups.long()
        enc_runs = out.enc_layers.gather(1, g).sum().item()  # layer-token runs, token-weighted over groups
        generated = int((out.tokens != PAD).sum())
        enc_total, dec_total = g.numel() * len(model.encoder), generated * len(model.decoder)
        dec_runs = out.dec_layers.sum().item()
        n_in, n_lay = len(src), len(model.encoder)
        enc_per_input = enc_runs / g.shape[1]  # encoder layers run, summed over inputs
        rows.append({
            "tau_enc": tau_enc, "tau_dec": tau_dec, "accuracy": exact_match(out.tokens, tgt_out),
            "enc_skipped": 1 - enc_runs / enc_total, "dec_skipped": 1 - dec_runs / dec_total,
            "layers_skipped": 1 - (enc_per_input + dec_runs) / (n_in * n_lay + dec_total),
            "latency_ms": _latency_ms(model, src[:latency_inputs], None if groups is None else groups[:latency_inputs],
                                      tau_enc, tau_dec, repeats),
        })
    for row in rows:
        row["accuracy_ratio"] = row["accuracy"] / max(rows[0]["accuracy"], 1e-12)
        row["latency_ratio"] = row["latency_ms"] / rows[0]["latency_ms"]
        row["pareto"] = not any(o["accuracy"] >= row["accuracy"] and o["layers_skipped"] >= row["layers_skipped"]
                                and (o["accuracy"], o["layers_skipped"]) != (row["accuracy"], row["layers_skipped"])
                                for o in rows)
    return rows

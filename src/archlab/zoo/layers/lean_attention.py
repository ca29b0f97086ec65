"""Lean Attention: decode-phase attention split into equal work units across heads and KV ranges.

Paper: Sanovar, Bharadwaj, St. Amant, Rühle and Rajmohan, "Lean Attention: Hardware-Aware Scalable Attention
Mechanism for the Decode-Phase of Transformers", arXiv 2405.10480 (2024). There is no official code; this is a
pure-PyTorch statement of the algorithm (the reference the fast kernels would be tested against), with names of
our own.

In decoding each head has one query ``q`` against ``N`` cached keys and values. Softmax attention over a range of
keys reduces to a *partial* ``(m, l, o)``: ``m = max_j s_j``, ``l = sum_j exp(s_j - m)``, ``o = sum_j exp(s_j - m)
v_j`` with scores ``s_j = scale * q . k_j``. Two partials of disjoint ranges combine with the associative and
commutative :func:`merge` (rescale both to the larger max, add); the output is ``o / l``
(:func:`finalize`). The empty range is ``(-inf, 0, 0)``, the identity of :func:`merge`.

Lean Attention treats the ``heads x KV tiles`` iteration space as one flat sequence (head-major) and gives every
work unit (a GPU thread block) an equal, contiguous share of it, stream-K style (:func:`partition_work`): a unit
may finish one head and start the next, so all units carry the same load whatever the number of heads, and heads
whose tiles were shared are reduced from their partials afterwards (:func:`lean_decode`). :func:`lean_attention`
computes the same output from any given (uneven) split of the KV range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from archlab.errors import UserError

__all__ = ["Partial", "Segment", "WorkUnit", "empty_partial", "finalize", "lean_attention", "lean_decode", "merge",
           "partial_attention", "partition_work"]


class Partial(NamedTuple):
    """The softmax-attention summary of one KV range: ``m`` ``(...)``, ``l`` ``(...)``, ``o`` ``(..., Dv)``."""

    m: torch.Tensor
    l: torch.Tensor  # noqa: E741  (the paper's name)
    o: torch.Tensor


class Segment(NamedTuple):
    """Keys ``start .. end - 1`` of head ``head`` (a flat head index: batch x heads)."""

    head: int
    start: int
    end: int


class WorkUnit(NamedTuple):
    """One unit's share of the work: consecutive segments, one per head it touches, in head order."""

    index: int
    segments: tuple[Segment, ...]

    @property
    def work(self) -> int:
        return sum(s.end - s.start for s in self.segments)


def _default_scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


def partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> Partial:
    """The partial ``(m, l, o)`` of query ``q`` ``(..., D)`` over keys ``k`` ``(..., n, D)`` and values ``v``
    ``(..., n, Dv)``; ``n = 0`` gives the identity ``(-inf, 0, 0)``."""
    if k.shape[-2] == 0:
        return empty_partial(q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    scores = (k @ q.unsqueeze(-1)).squeeze(-1) * _default_scale(q, scale)  # (..., n)
    m = scores.amax(dim=-1)
    p = torch.exp(scores - m.unsqueeze(-1))
    return Partial(m, p.sum(-1), (p.unsqueeze(-2) @ v).squeeze(-2))


def empty_partial(shape: Sequence[int] | torch.Size, dv: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> Partial:
    """The partial of an empty range: ``m = -inf``, ``l = 0``, ``o = 0``."""
    shape = tuple(shape)
    return Partial(torch.full(shape, float("-inf"), dtype=dtype, device=device),
                   torch.zeros(shape, dtype=dtype, device=device), torch.zeros(*shape, dv, dtype=dtype, device=device))


def merge(a: Partial, b: Partial) -> Partial:
    """Combine the partials of two disjoint KV ranges (associative and commutative)."""
    m = torch.maximum(a.m, b.m)
    # both ranges empty: m = -inf, and exp(-inf - -inf) would be NaN; shifting by 0 instead gives exp(-inf) = 0
    shift = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    wa, wb = torch.exp(a.m - shift), torch.exp(b.m - shift)
    return Partial(m, a.l * wa + b.l * wb, a.o * wa.unsqueeze(-1) + b.o * wb.unsqueeze(-1))


def finalize(p: Partial) -> torch.Tensor:
    """The attention output ``o / l`` of a partial that covers the whole range (``l > 0``)."""
    return p.o / p.l.unsqueeze(-1)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, who: str) -> None:
    if q.dim() < 1 or k.dim() != q.dim() + 1 or v.dim() != k.dim() or k.shape[:-2] != q.shape[:-1] \
            or v.shape[:-1] != k.shape[:-1] or k.shape[-1] != q.shape[-1]:
        raise UserError(f"{who}: expected q (..., D), k (..., N, D), v (..., N, Dv) with the same leading dims, got "
                        f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape[-2] < 1:
        raise UserError(f"{who}: the KV cache is empty")


def lean_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, splits: Sequence[int] = (),
                   scale: float | None = None) -> torch.Tensor:
    """Attention of one query per head over its KV cache, computed range by range and merged.

    ``splits``: the interior split points of the KV axis, strictly increasing in ``(0, N)``; ranges may have any
    (different) lengths. ``[]`` is one range. Returns ``(..., Dv)``, equal to ``softmax(scale q k^T) v``.
    """
    _check_qkv(q, k, v, "lean_attention")
    n = k.shape[-2]
    points = [int(s) for s in splits]
    bounds = [0, *points, n]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if hi <= lo:
            raise UserError(f"lean_attention: split points must be strictly increasing inside (0, {n}) so that no "
                            f"range is empty, got {points}")
    total = empty_partial(q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        total = merge(total, partial_attention(q, k[..., lo:hi, :], v[..., lo:hi, :], scale))
    return finalize(total)


def partition_work(n_heads: int, kv_len: int, n_units: int, tile_size: int = 1) -> list[WorkUnit]:
    """Split ``n_heads x ceil(kv_len / tile_size)`` KV tiles into ``n_units`` contiguous equal shares.

    The tiles are ordered head by head; unit ``u`` takes tiles ``floor(u T / U) .. floor((u + 1) T / U) - 1`` of
    the ``T`` tiles, so the shares differ by at most one tile and a share may cross from one head into the next
    (stream-K). Each unit's segments are in key tokens (the last tile of a head may be short).
    """
    for name, value in (("n_heads", n_heads), ("kv_len", kv_len), ("n_units", n_units), ("tile_size", tile_size)):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"partition_work: {name} must be a positive int, got {value!r}")
    tiles_per_head = -(-kv_len // tile_size)
    total = n_heads * tiles_per_head
    if n_units > total:
        raise UserError(f"partition_work: {n_units} units for only {total} tiles ({n_heads} heads x "
                        f"{tiles_per_head}); every unit needs at least one tile")
    units = []
    for u in range(n_units):
        first, last = u * total // n_units, (u + 1) * total // n_units  # tiles [first, last)
        segments = []
        tile = first
        while tile < last:
            head, t0 = divmod(tile, tiles_per_head)
            t1 = min(last - head * tiles_per_head, tiles_per_head)  # to the end of the share or of the head
            segments.append(Segment(head, t0 * tile_size, min(t1 * tile_size, kv_len)))
            tile = head * tiles_per_head + t1
        units.append(WorkUnit(u, tuple(segments)))
    return units


def lean_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_units: int, tile_size: int = 1,
                scale: float | None = None) -> torch.Tensor:
    """Decode-phase attention run as :func:`partition_work` assigns it: each unit computes a partial per segment,
    then every head merges the partials of the units that touched it. ``q`` ``(..., D)``, ``k`` ``(..., N, D)``,
    ``v`` ``(..., N, Dv)``; the leading dims (batch x heads) are the flat heads. Returns ``(..., Dv)``."""
    _check_qkv(q, k, v, "lean_decode")
    lead = q.shape[:-1]
    qf, kf, vf = q.reshape(-1, q.shape[-1]), k.reshape(-1, *k.shape[-2:]), v.reshape(-1, *v.shape[-2:])
    n_heads, n = kf.shape[0], kf.shape[1]
    partials: list[list[Partial]] = [[] for _ in range(n_heads)]
    for unit in partition_work(n_heads, n, n_units, tile_size):
        for head, lo, hi in unit.segments:
            partials[head].append(partial_attention(qf[head], kf[head, lo:hi], vf[head, lo:hi], scale))
    outs = []
    for parts in partials:
        acc = parts[0]
        for p in parts[1:]:
            acc = merge(acc, p)
        outs.append(finalize(acc))
    return torch.stack(outs).reshape(*lead, v.shape[-1])

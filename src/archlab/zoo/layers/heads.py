"""Default head counts for multi-head mixers: one rule, so that every width a search space draws still builds.

Multi-head attention: Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (``d_k = d_model / h``). The
rule here is the timm / MetaFormer baselines' ``dim // head_dim`` heads (a fixed head width, the count following
the model width), reduced, when that count does not divide the width, to the nearest smaller count that does.
Used by attention, causal attention, GPSA, Pattention, SLA, MSSA (CRATE), FIT, SSD and GLA.
"""

from __future__ import annotations

__all__ = ["default_num_heads", "dividing_heads"]


def dividing_heads(limit: int, *dims: int) -> int:
    """The largest head count ``<= max(1, limit)`` that divides every one of ``dims`` (1 divides all)."""
    heads = max(1, limit)
    while any(d % heads for d in dims):
        heads -= 1
    return heads


def default_num_heads(dim: int, head_dim: int) -> int:
    """``dim // head_dim`` heads (at least 1), or the nearest smaller count that divides ``dim``."""
    return dividing_heads(dim // head_dim, dim)

"""Greedy step decoding shared by the zoo's language models that carry a recurrent state or cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["greedy_continue"]


def greedy_continue(input_ids: torch.Tensor, logits: torch.Tensor, state: Any,
                    step: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]],
                    max_new_tokens: int) -> torch.Tensor:
    """``input_ids`` followed by ``max_new_tokens`` argmax tokens: the first from the prompt's ``logits``
    ``(B, L, V)``, each next one from ``step(token, state) -> (logits (B, V), state)``, which is not called after
    the last token."""
    out = [input_ids]
    token = logits[:, -1].argmax(-1)
    for i in range(max_new_tokens):
        out.append(token[:, None])
        if i + 1 < max_new_tokens:
            logits_t, state = step(token, state)
            token = logits_t.argmax(-1)
    return torch.cat(out, dim=1)

"""Synthetic speakers: filterbank-like features ``(N, feats, frames)`` whose class is the speaker.

Not a published dataset: a stand-in for speaker-recognition data (VoxCeleb is not available here) that a TDNN
learns in seconds, for tests and benchmarks of :mod:`archlab.zoo.models.tdnn` and its search. Each speaker is a
random spectral template (one value per feature) with its own slow modulation rate; an utterance is the template
modulated over time with a random phase and gain, plus Gaussian noise. The speakers depend on ``speaker_seed``
only, so splits drawn with different ``seed`` share them.
"""

from __future__ import annotations

import math

import torch

__all__ = ["synthetic_speakers"]


def synthetic_speakers(n: int, speakers: int, *, seed: int, feats: int = 16, frames: int = 40, noise: float = 0.8,
                       speaker_seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` utterances of ``speakers`` speakers: features ``(n, feats, frames)`` float32 and labels ``(n,)``."""
    if n < 1 or speakers < 2 or feats < 1 or frames < 1:
        raise ValueError("synthetic_speakers: need n >= 1, speakers >= 2, feats >= 1 and frames >= 1")
    gen = torch.Generator().manual_seed(speaker_seed)
    template = torch.randn(speakers, feats, 1, generator=gen)
    rate = 0.1 + 0.3 * torch.rand(speakers, 1, 1, generator=gen)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, speakers, (n,), generator=gen)
    t = torch.arange(frames, dtype=torch.float32)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
    gain = 0.7 + 0.6 * torch.rand(n, 1, 1, generator=gen)
    x = template[y] * torch.cos(rate[y] * t + phase) * gain + noise * torch.randn(n, feats, frames, generator=gen)
    return x, y

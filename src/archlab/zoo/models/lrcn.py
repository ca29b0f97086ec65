"""LRCN: a per-frame CNN, an LSTM over the frame features, and per-step predictions averaged over time.

Paper: Donahue, Hendricks, Guadarrama, Rohrbach, Venugopalan, Saenko and Darrell, "Long-term Recurrent
Convolutional Networks for Visual Recognition and Description", CVPR 2015. No reference repository is listed
(the authors' Caffe branch is not available here); the structure follows the paper's activity-recognition model
(Sec. 4): every frame goes through a CNN up to a fully connected layer (``fc6`` in the paper), an LSTM reads the
sequence of frame features, each step predicts the class, and the clip's prediction is the average of the
per-step predicted distributions (``aggregate="mean"``; ``"last"`` keeps the final step's).

The CNN is a small configurable ``conv-ReLU-maxpool`` stack (the paper uses CaffeNet, not provided here).
``temporal="none"`` removes the LSTM: the same per-frame CNN and classifier, averaged over frames, which cannot
see frame order (the baseline the paper's order-sensitive tasks are measured against).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model

__all__ = ["LRCN", "lrcn_tiny"]

_PAPER = ("Long-term Recurrent Convolutional Networks for Visual Recognition and Description "
          "(Donahue et al., CVPR 2015)")
AGGREGATES = ("mean", "last")
TEMPORALS = ("lstm", "none")


class LRCN(nn.Module):
    """``(B, T, C, H, W)`` clips -> ``(B, num_classes)`` log-probabilities.

    :meth:`forward_steps` gives the per-step logits ``(B, T, num_classes)``; :meth:`forward` aggregates them:
    ``"mean"`` returns ``log(mean_t softmax(logits_t))`` (the paper's average of per-frame predictions, usable
    with ``cross_entropy``), ``"last"`` the last step's logits.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, cnn_channels: Sequence[int] = (32, 64, 128),
                 feature_dim: int = 256, hidden_size: int = 256, num_layers: int = 1, aggregate: str = "mean",
                 temporal: str = "lstm", dropout: float = 0.0) -> None:
        super().__init__()
        if aggregate not in AGGREGATES:
            raise UserError(f"lrcn: unknown aggregate {aggregate!r}; known: {', '.join(AGGREGATES)}")
        if temporal not in TEMPORALS:
            raise UserError(f"lrcn: unknown temporal {temporal!r}; known: {', '.join(TEMPORALS)}")
        if not cnn_channels or min(num_classes, in_chans, feature_dim, hidden_size, num_layers, *cnn_channels) < 1:
            raise UserError("lrcn: num_classes, in_chans, cnn_channels, feature_dim, hidden_size and num_layers must "
                            "be positive")
        self.in_chans, self.aggregate, self.temporal = in_chans, aggregate, temporal
        layers: list[nn.Module] = []
        prev = in_chans
        for i, ch in enumerate(cnn_channels):
            layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(inplace=True)]
            # the last stage pools globally: the frame feature does not depend on the input size
            layers.append(nn.MaxPool2d(2) if i < len(cnn_channels) - 1 else nn.AdaptiveAvgPool2d(1))
            prev = ch
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        self.fc6 = nn.Sequential(nn.Linear(prev, feature_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        if temporal == "lstm":
            self.lstm: nn.LSTM | None = nn.LSTM(feature_dim, hidden_size, num_layers, batch_first=True)
            head_in = hidden_size
        else:
            self.lstm = None
            head_in = feature_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(head_in, num_classes))

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step class logits ``(B, T, num_classes)``; step ``t`` sees frames ``<= t`` (all LSTM steps)."""
        if x.ndim != 5 or x.shape[2] != self.in_chans or not x.is_floating_point():
            raise UserError(f"lrcn: expected float clips (B, T, {self.in_chans}, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        feats = self.fc6(self.cnn(x.flatten(0, 1))).view(b, t, -1)
        if self.lstm is not None:
            feats, _ = self.lstm(feats)
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.forward_steps(x)
        if self.aggregate == "last":
            return logits[:, -1]
        steps = logits.shape[1]
        return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=1) - torch.log(logits.new_tensor(float(steps)))


@register_model(family="lrcn", paper=_PAPER, input_shape=(8, 3, 32, 32))
def lrcn_tiny(**kwargs: Any) -> LRCN:
    """A small LRCN: 3-stage CNN (16/32/64 channels), 64-d frame features, a 64-unit LSTM, averaged predictions."""
    return LRCN(**{**dict(num_classes=10, in_chans=3, cnn_channels=(16, 32, 64), feature_dim=64, hidden_size=64),
                   **kwargs})

"""RaftMLP: hierarchical all-MLP image classifiers with serial vertical/horizontal raft token mixing.

Paper: Tatsunami & Taki, "RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?",
ACCV 2022 (arXiv 2108.04384). Names and shapes follow okojoalg/raft-mlp ``libs/models.py`` ``RaftMLP`` and
``libs/modules.py`` ``SerialPermutedLevel`` / ``CrossScaleMLPEmbedding`` (``levels.i.fn`` = embedding,
projection, blocks, to-pixel; each block ``[RaftShrink, PermutedBlock, rearrange, PermutedBlock, RaftExpansion,
ChannelBlock]``; ``heads.0.1`` the final LayerNorm; ``classifier``), so the reference's checkpoints load with a
plain ``load_state_dict``. Parameter-free rearrangements keep their indices as ``nn.Identity`` placeholders.

Configurations (the reference's ``configs/settings/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml``): four levels
of depths (2, 2, 6, 2), patch sizes (4, 2, 2, 2), raft size 2, token expansion 2, channel expansion 4, the
cross-scale MLP embedding, no multi-level shortcut; widths S (64, 128, 256, 512), M (96, 192, 384, 768),
L (128, 192, 512, 1024). ``raftmlp_12`` is the single-level model of the first version of the paper
(``imagenet-raft-mlp.yaml``: depth 12, width 768, patch 16, raft size 4, MLP-Mixer patch embedding).
The reference trains with drop-path 0.1; here it defaults to 0 and is a keyword.

Other input resolutions: a level whose input is not a multiple of its patch size resizes it up (bicubic), and
each block resizes its tokens to the pretrained grid and back (``RaftShrink``/``RaftExpansion``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.mixers.raftmlp import ChannelBlock, PermutedBlock, resize

__all__ = ["CrossScaleMLPEmbedding", "MixerEmbedding", "RaftMLP", "SerialPermutedLevel", "raftmlp_l",
           "raftmlp_m", "raftmlp_s"]

_PAPER = ("RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality? "
          "(Tatsunami & Taki, ACCV 2022)")
EMBEDDINGS = ("mixer", "cross_mlp")


class MixerEmbedding(nn.Module):
    """Non-overlapping ``p x p`` patches flattened in the reference's ``(p1, p2, c)`` order: ``(B, h, w, p*p*C)``."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        p = self.patch_size
        x = x.reshape(batch, channels, height // p, p, width // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, height // p, width // p, p * p * channels)


class CrossScaleMLPEmbedding(nn.Module):
    """Concatenated overlapping ``k x k`` neighbourhoods (one per kernel, stride ``min(kernels)``) -> ``fc``."""

    def __init__(self, in_channels: int, out_channels: int, kernels: Sequence[int] = (4, 8, 16, 32)) -> None:
        super().__init__()
        self.kernels = tuple(int(k) for k in kernels)
        self.stride = min(self.kernels)
        if any(k % self.stride for k in self.kernels):
            raise UserError(f"raftmlp: embedding kernels {self.kernels} must be multiples of the smallest")
        self.fc = nn.Linear(in_channels * sum(k * k for k in self.kernels), out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        s = self.stride
        # unfold's (c, ki, kj) feature order is the reference's (nn.Unfold then "b c hw -> b hw c").
        features = [F.unfold(x, kernel_size=k, stride=s, padding=(k - s) // 2) for k in self.kernels]
        tokens = torch.cat(features, dim=1).transpose(1, 2)
        return self.fc(tokens).reshape(batch, height // s, width // s, -1)


class SerialPermutedBlock(nn.Sequential):
    """One RaftMLP block at index layout ``[shrink, vertical, rearrange, horizontal, expansion, channel]``."""

    def __init__(self, resolution: tuple[int, int], channels: int, raft_size: int, token_expansion_factor: float,
                 channel_expansion_factor: float, dropout: float, drop_path_rate: float) -> None:
        ph, pw = resolution
        super().__init__(
            nn.Identity(),
            PermutedBlock(ph, channels, raft_size, token_expansion_factor, dropout, drop_path_rate, "vertical"),
            nn.Identity(),
            PermutedBlock(pw, channels, raft_size, token_expansion_factor, dropout, drop_path_rate, "horizontal"),
            nn.Identity(),
            ChannelBlock(channels, channel_expansion_factor, dropout, drop_path_rate),
        )
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        x = self[3](self[1](resize(x, self.resolution)))  # RaftShrink: the MLPs are built for one grid
        return self[5](resize(x, size))  # RaftExpansion back to the input's grid, then the channel MLP


class SerialPermutedLevel(nn.Module):
    """Patch embedding (downsampling by ``patch_size``) then ``depth`` RaftMLP blocks; ``(B, C, H, W)`` maps."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 4, pretrained_image_size: int = 224,
                 patch_size: int = 4, token_expansion_factor: float = 2, channel_expansion_factor: float = 4,
                 embedding_type: str = "mixer", embedding_kernels: Sequence[int] | None = None,
                 dropout: float = 0.0, drop_path_rate: float = 0.0, raft_size: int = 4) -> None:
        super().__init__()
        if out_channels % raft_size:
            raise UserError(f"raftmlp: width {out_channels} is not divisible by raft_size {raft_size}")
        if embedding_type not in EMBEDDINGS:
            raise UserError(f"raftmlp: unknown embedding_type {embedding_type!r}; known: {', '.join(EMBEDDINGS)}")
        self.patch_size = patch_size
        side = math.ceil(pretrained_image_size / patch_size)
        self.resolution = (side, side)
        if embedding_type == "mixer":
            if patch_size == 1 and in_channels != out_channels:
                raise UserError("raftmlp: a patch size of 1 needs in_channels == out_channels with the mixer "
                                "embedding")
            embedding: nn.Module = MixerEmbedding(patch_size)
            projection: nn.Module = nn.Linear(patch_size ** 2 * in_channels, out_channels)
        else:
            kernels = tuple(embedding_kernels or (patch_size,))
            if kernels[0] != patch_size:
                raise UserError(f"raftmlp: the first embedding kernel must equal patch_size {patch_size}, "
                                f"got {kernels}")
            embedding, projection = CrossScaleMLPEmbedding(in_channels, out_channels, kernels), nn.Identity()
        blocks = [SerialPermutedBlock(self.resolution, out_channels, raft_size, token_expansion_factor,
                                      channel_expansion_factor, dropout, drop_path_rate) for _ in range(depth)]
        self.fn = nn.Sequential(embedding, projection, *blocks, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        p = self.patch_size
        if height % p or width % p:
            x = F.interpolate(x, (math.ceil(height / p) * p, math.ceil(width / p) * p), mode="bicubic",
                              align_corners=False)
        x = self.fn[1](self.fn[0](x)).permute(0, 3, 1, 2)
        for block in self.fn[2:-1]:
            x = block(x)
        return x


class RaftMLP(nn.Module):
    """A stack of :class:`SerialPermutedLevel` then LayerNorm, global average pooling and a linear classifier.

    ``layers`` holds one ``{"depth", "dim", "patch_size", "raft_size"}`` dict per level (plus
    ``"embedding_kernels"`` for the cross-scale embedding), as the reference's configs do.
    """

    def __init__(self, layers: Sequence[Mapping[str, Any]], in_channels: int = 3, pretrained_image_size: int = 224,
                 num_classes: int = 1000, token_expansion_factor: float = 2, channel_expansion_factor: float = 4,
                 dropout: float = 0.0, embedding_type: str = "mixer", drop_path_rate: float = 0.0,
                 name: str = "raftmlp") -> None:
        super().__init__()
        if not layers:
            raise UserError(f"{name}: needs at least one level")
        for i, layer in enumerate(layers):
            missing = {"depth", "dim", "patch_size", "raft_size"} - set(layer)
            if missing:
                raise UserError(f"{name}: level {i} lacks {', '.join(sorted(missing))}")
        if num_classes < 1:
            raise UserError(f"{name}: num_classes must be >= 1, got {num_classes}")
        self.name = name
        self.in_channels = in_channels
        levels = []
        size = pretrained_image_size
        channels = in_channels
        for layer in layers:
            levels.append(SerialPermutedLevel(
                channels, layer["dim"], depth=layer["depth"], pretrained_image_size=size,
                patch_size=layer["patch_size"], token_expansion_factor=token_expansion_factor,
                channel_expansion_factor=channel_expansion_factor, embedding_type=embedding_type,
                embedding_kernels=layer.get("embedding_kernels"), dropout=dropout, drop_path_rate=drop_path_rate,
                raft_size=layer["raft_size"]))
            size = math.ceil(size / layer["patch_size"])
            channels = layer["dim"]
        self.levels = nn.ModuleList(levels)
        # The reference's head: rearrange, LayerNorm, rearrange, mean over the map.
        self.heads = nn.ModuleList([nn.Sequential(nn.Identity(), nn.LayerNorm(channels), nn.Identity(),
                                                  nn.Identity())])
        self.classifier = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UserError(f"{self.name}: expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        for level in self.levels:
            x = level(x)
        return self.heads[0][1](x.permute(0, 2, 3, 1)).mean(dim=(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def _hierarchical(dims: Sequence[int], name: str, **kwargs: Any) -> RaftMLP:
    kernels = ((4, 8), (2, 4), (2, 4), (2,))
    layers = [dict(depth=depth, dim=dim, patch_size=patch, raft_size=2, embedding_kernels=k)
              for depth, dim, patch, k in zip((2, 2, 6, 2), dims, (4, 2, 2, 2), kernels, strict=True)]
    config: dict[str, Any] = dict(layers=layers, embedding_type="cross_mlp", name=name)
    return RaftMLP(**{**config, **kwargs})


@register_model(family="raftmlp", paper=_PAPER, input_shape=(3, 224, 224))
def raftmlp_s(**kwargs: Any) -> RaftMLP:
    """RaftMLP-S: widths (64, 128, 256, 512); 9,868,768 parameters at 1000 classes."""
    return _hierarchical((64, 128, 256, 512), "raftmlp_s", **kwargs)


@register_model(family="raftmlp", paper=_PAPER, input_shape=(3, 224, 224))
def raftmlp_m(**kwargs: Any) -> RaftMLP:
    """RaftMLP-M: widths (96, 192, 384, 768)."""
    return _hierarchical((96, 192, 384, 768), "raftmlp_m", **kwargs)


@register_model(family="raftmlp", paper=_PAPER, input_shape=(3, 224, 224))
def raftmlp_l(**kwargs: Any) -> RaftMLP:
    """RaftMLP-L: widths (128, 192, 512, 1024)."""
    return _hierarchical((128, 192, 512, 1024), "raftmlp_l", **kwargs)


@register_model(family="raftmlp", paper=_PAPER, input_shape=(3, 224, 224))
def raftmlp_12(**kwargs: Any) -> RaftMLP:
    """Single-level RaftMLP-12: 12 blocks of width 768 on 16x16 patches, raft size 4."""
    config: dict[str, Any] = dict(layers=[dict(depth=12, dim=768, patch_size=16, raft_size=4)],
                                  embedding_type="mixer", name="raftmlp_12")
    return RaftMLP(**{**config, **kwargs})

"""Discrete key-value bottleneck: a frozen encoder's features select, per codebook, the nearest of a set of frozen
keys, and only the values paired with the selected keys are read and trained.

Paper: Träuble, Goyal, Rahaman, Mozer, Kawaguchi, Bengio & Schölkopf, "Discrete Key-Value Bottleneck", ICML 2023.
Names and defaults follow ftraeuble/discrete_key_value_bottleneck ``key_value_bottleneck/core.py``
(``KeyValueBottleneck(num_codebooks, key_value_pairs_per_codebook, dim_keys, dim_values, ...)``, ``keys`` and
``values`` of shape ``(codebooks, pairs, dim)``, EMA key updates with decay 0.95 and Laplace smoothing, k-means
initialisation with 10 iterations); the code is archlab's.

Two phases. *Key initialisation* (unsupervised, no labels): the keys are k-means centroids of the splitter's
outputs (:meth:`KeyValueBottleneck.init_keys`) and/or follow them by exponential moving averages while
``update_keys`` is on. *Task training*: the keys are frozen (:meth:`freeze_keys`) and the values are trained by the
task loss. Each input touches one key per codebook, so a gradient step changes only the values that were fetched:
learning on new data leaves what was stored under other keys in place, which is what limits forgetting in
class-incremental learning. Train the values with a momentum-free optimizer (:func:`values_optimizer`: plain SGD)
to keep that exact: Adam's moments would keep moving a value after it stopped being fetched.

:class:`BottleneckedEncoder` assembles encoder (frozen) → splitter (fixed random projections per codebook, or
chunks of the features) → bottleneck → decoder (the mean of the codebooks' values, the paper's non-parametric
decoder for classification with ``dim_values`` = classes, or a linear layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError

__all__ = ["BottleneckedEncoder", "KeyValueBottleneck", "kmeans", "values_optimizer"]


@torch.no_grad()
def kmeans(data: torch.Tensor, clusters: int, iters: int = 10, generator: torch.Generator | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched k-means (Lloyd) of ``data (c, n, d)``, one problem per ``c``: ``(centroids (c, clusters, d),
    sizes (c, clusters))``. Starts from distinct random points; an emptied cluster keeps its centroid."""
    c, n, d = data.shape
    if n < clusters:
        raise UserError(f"kmeans: {clusters} clusters need at least as many points, got {n}")
    idx = torch.stack([torch.randperm(n, generator=generator)[:clusters] for _ in range(c)])
    centroids = torch.gather(data, 1, idx[..., None].expand(c, clusters, d)).clone()
    sizes = torch.zeros(c, clusters)
    for _ in range(iters):
        assign = torch.cdist(data, centroids).argmin(-1)  # (c, n)
        onehot = F.one_hot(assign, clusters).to(data.dtype)  # (c, n, clusters)
        sizes = onehot.sum(1)
        sums = torch.einsum("cnk,cnd->ckd", onehot, data)
        centroids = torch.where(sizes[..., None] > 0, sums / sizes.clamp(min=1)[..., None], centroids)
    return centroids, sizes


class KeyValueBottleneck(nn.Module):
    """``forward(x (..., num_codebooks, dim_keys)) -> values (..., num_codebooks, dim_values)``: per codebook the
    value of the nearest key (L2). ``last_indices`` keeps the fetched key of every input and codebook."""

    def __init__(self, num_codebooks: int, key_value_pairs_per_codebook: int, dim_keys: int, dim_values: int,
                 decay: float = 0.95, eps: float = 1e-5, kmeans_iters: int = 10) -> None:
        super().__init__()
        if min(num_codebooks, key_value_pairs_per_codebook, dim_keys, dim_values) < 1:
            raise UserError("KeyValueBottleneck: codebooks, pairs and dimensions must be >= 1")
        self.num_codebooks, self.key_value_pairs_per_codebook = num_codebooks, key_value_pairs_per_codebook
        self.dim_keys, self.dim_values = dim_keys, dim_values
        self.decay, self.eps, self.kmeans_iters = decay, eps, kmeans_iters
        keys = torch.randn(num_codebooks, key_value_pairs_per_codebook, dim_keys)
        self.register_buffer("keys", keys)
        self.register_buffer("keys_avg", keys.clone())
        self.register_buffer("cluster_size", torch.ones(num_codebooks, key_value_pairs_per_codebook))
        self.values = nn.Parameter(torch.randn(num_codebooks, key_value_pairs_per_codebook, dim_values))
        self.update_keys = True
        self.last_indices: torch.Tensor | None = None

    @torch.no_grad()
    def init_keys(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Keys from k-means of ``x (n, num_codebooks, dim_keys)``, the splitter's outputs of unlabelled data."""
        flat = self._check(x).reshape(-1, self.num_codebooks, self.dim_keys).transpose(0, 1)
        keys, sizes = kmeans(flat, self.key_value_pairs_per_codebook, self.kmeans_iters, generator)
        self.keys.copy_(keys)
        self.cluster_size.copy_(sizes)
        self.keys_avg.copy_(keys * sizes[..., None])

    def freeze_keys(self) -> KeyValueBottleneck:
        self.update_keys = False
        return self

    def unfreeze_keys(self) -> KeyValueBottleneck:
        self.update_keys = True
        return self

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or tuple(x.shape[-2:]) != (self.num_codebooks, self.dim_keys):
            raise UserError(f"KeyValueBottleneck: expected inputs (..., {self.num_codebooks}, {self.dim_keys}), "
                            f"got {tuple(x.shape)}")
        return x.float()

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """The index of the nearest key, ``(..., num_codebooks)``."""
        flat = self._check(x).reshape(-1, self.num_codebooks, self.dim_keys).transpose(0, 1)  # (c, n, k)
        return torch.cdist(flat, self.keys).argmin(-1).transpose(0, 1).reshape(x.shape[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = self.nearest(x)
        self.last_indices = idx
        if self.update_keys and self.training:
            self._ema_update(x, idx)
        codebook = torch.arange(self.num_codebooks, device=idx.device).expand_as(idx)
        return self.values[codebook, idx]  # only the fetched (codebook, pair) rows get a gradient

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """The reference's VQ-style update: EMA of the cluster sizes and of the sums of assigned inputs, keys the
        ratio with Laplace-smoothed sizes."""
        flat = x.detach().float().reshape(-1, self.num_codebooks, self.dim_keys).transpose(0, 1)  # (c, n, k)
        onehot = F.one_hot(idx.reshape(-1, self.num_codebooks).T, self.key_value_pairs_per_codebook).float()
        self.cluster_size.mul_(self.decay).add_(onehot.sum(1), alpha=1 - self.decay)
        self.keys_avg.mul_(self.decay).add_(torch.einsum("cnj,cnk->cjk", onehot, flat), alpha=1 - self.decay)
        total = self.cluster_size.sum(-1, keepdim=True)
        smoothed = (self.cluster_size + self.eps) / (total + self.key_value_pairs_per_codebook * self.eps) * total
        self.keys.copy_(self.keys_avg / smoothed[..., None])

    def extra_repr(self) -> str:
        return (f"num_codebooks={self.num_codebooks}, key_value_pairs_per_codebook="
                f"{self.key_value_pairs_per_codebook}, dim_keys={self.dim_keys}, dim_values={self.dim_values}")


class BottleneckedEncoder(nn.Module):
    """encoder (frozen) → splitter → :class:`KeyValueBottleneck` → decoder.

    ``splitting_mode``: "random_projection" (a fixed Gaussian projection of the ``num_channels`` features to
    ``dim_keys`` per codebook) or "chunk" (codebook ``c`` reads features ``c·dim_keys ... (c+1)·dim_keys``; needs
    ``num_channels = num_codebooks · dim_keys``). ``decoder``: "mean" (the codebooks' values averaged: the
    output has ``dim_values`` entries) or "linear" (the concatenated values through a trained linear layer to
    ``out_features``)."""

    def __init__(self, encoder: nn.Module, num_channels: int, num_codebooks: int, key_value_pairs_per_codebook: int,
                 dim_keys: int, dim_values: int, splitting_mode: str = "random_projection", decoder: str = "mean",
                 out_features: int | None = None, seed: int = 0, **bottleneck_kwargs: float) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.splitting_mode = splitting_mode
        if splitting_mode == "random_projection":
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("projection", torch.randn(num_codebooks, num_channels, dim_keys, generator=g)
                                 / num_channels ** 0.5)
        elif splitting_mode == "chunk":
            if num_channels != num_codebooks * dim_keys:
                raise UserError(f"BottleneckedEncoder: chunking {num_channels} features needs num_codebooks × "
                                f"dim_keys = {num_channels}, got {num_codebooks} × {dim_keys}")
            self.projection = None
        else:
            raise UserError(f"BottleneckedEncoder: unknown splitting_mode {splitting_mode!r}; choose "
                            "random_projection or chunk")
        self.bottleneck = KeyValueBottleneck(num_codebooks, key_value_pairs_per_codebook, dim_keys, dim_values,
                                             **bottleneck_kwargs)
        if decoder == "mean":
            self.decoder = None
        elif decoder == "linear":
            if out_features is None:
                raise UserError("BottleneckedEncoder: a linear decoder needs out_features")
            self.decoder = nn.Linear(num_codebooks * dim_values, out_features)
        else:
            raise UserError(f"BottleneckedEncoder: unknown decoder {decoder!r}; choose mean or linear")

    def train(self, mode: bool = True) -> BottleneckedEncoder:
        super().train(mode)
        self.encoder.eval()  # frozen: its batch-norm statistics stay too
        return self

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's features of ``x`` split into keys ``(batch, num_codebooks, dim_keys)``."""
        with torch.no_grad():
            feats = self.encoder(x).flatten(1).float()
        if self.projection is None:
            return feats.reshape(len(feats), self.bottleneck.num_codebooks, self.bottleneck.dim_keys)
        return torch.einsum("bd,cdk->bck", feats, self.projection)

    @torch.no_grad()
    def init_keys(self, x: torch.Tensor, batch_size: int = 512, generator: torch.Generator | None = None) -> None:
        """k-means keys from unlabelled inputs ``x``."""
        keys = torch.cat([self.split(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        self.bottleneck.init_keys(keys, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = self.bottleneck(self.split(x))  # (batch, codebooks, dim_values)
        if self.decoder is None:
            return values.mean(1)
        return self.decoder(values.flatten(1))


def values_optimizer(model: nn.Module, lr: float = 50.0) -> torch.optim.Optimizer:
    """Plain SGD (no momentum, no weight decay) over the trainable parameters: a step leaves every value that was
    not fetched exactly as it was. The rate looks large because each value's gradient is divided by the batch
    (a mean loss) and, under the mean decoder, by the number of codebooks: on class-incremental digits (32
    codebooks, batch 32) rates of 50–200 learn each task within 5 epochs and 0.5 learns almost nothing."""
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.0,
                           weight_decay=0.0)

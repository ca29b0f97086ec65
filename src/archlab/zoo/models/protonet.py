"""A prototype network for case-based reasoning: the classifier's evidence is the distance to learned prototypes,
and every prototype decodes to an image.

Paper: Li, Liu, Chen & Rudin, "Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that
Explains Its Predictions", AAAI 2018. Architecture, loss and defaults follow OscarcarLi/PrototypeDL
(``CAE_MNIST.py``, ``autoencoder_helpers.py``); the code is archlab's.

An autoencoder (4 convolutions 3×3, stride 2, SAME padding, ReLU, channels 32, 32, 32, 10; the decoder mirrors it
with transposed convolutions and ends in a sigmoid) gives each input a latent ``f(x)``. The prototype layer holds
``m`` (15) vectors ``p_j`` of the latent space; ``D_ij = ‖f(x_i) − p_j‖²`` and ``logits = D · W``. The loss
(:func:`prototype_loss`) is

    λc · CE(logits, y) + λae · mean_i ‖g(f(x_i)) − x_i‖² + λ1 · mean_j min_i D_ij + λ2 · mean_i min_j D_ij

with ``(λc, λae, λ1, λ2) = (20, 1, 1, 1)``: the third term pulls every prototype near some input (so its decoding
``g(p_j)`` looks like data), the fourth every input near some prototype. Adam, lr 2e-3, batch 250.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import fit, shuffled_batches
from archlab.zoo._registry import register_model

__all__ = ["LAMBDAS", "PrototypeNet", "PrototypeOutput", "protonet_mnist", "prototype_loss", "train_protonet"]

_PAPER = ("Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that Explains Its "
          "Predictions (Li, Liu, Chen & Rudin, AAAI 2018)")

LAMBDAS = (20.0, 1.0, 1.0, 1.0)  # class, autoencoder, R1 (prototype near an input), R2 (input near a prototype)


@dataclass
class PrototypeOutput:
    latent: torch.Tensor  # (B, latent_dim)
    reconstruction: torch.Tensor  # like the input
    distances: torch.Tensor  # (B, m): squared distances to the prototypes
    logits: torch.Tensor  # (B, classes)


class PrototypeNet(nn.Module):
    """The autoencoder, the prototype layer (``prototype_feature_vectors``) and the last layer (``last_layer``,
    ``m × classes`` without bias, as the reference's). Inputs are images ``(B, in_chans, H, W)`` in [0, 1] (the
    decoder ends in a sigmoid; ``output_activation="none"`` for other ranges)."""

    def __init__(self, in_chans: int = 1, img_size: int | Sequence[int] = 28, num_classes: int = 10,
                 num_prototypes: int = 15, channels: Sequence[int] = (32, 32, 32, 10),
                 output_activation: str = "sigmoid") -> None:
        super().__init__()
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if min(h, w, in_chans, num_classes, num_prototypes) < 1 or not channels:
            raise UserError("PrototypeNet: sizes, channels, classes and prototypes must be >= 1")
        if output_activation not in ("sigmoid", "none"):
            raise UserError(f"PrototypeNet: output_activation must be sigmoid or none, got {output_activation!r}")
        self.in_chans, self.img_size, self.num_classes = in_chans, (h, w), num_classes
        self.output_activation = output_activation
        sizes = [(h, w)]
        enc: list[nn.Module] = []
        prev = in_chans
        for c in channels:
            enc += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.ReLU()]
            sizes.append(tuple(math.ceil(s / 2) for s in sizes[-1]))  # SAME padding, stride 2
            prev = c
        self.encoder = nn.Sequential(*enc)
        self.latent_shape = (channels[-1], *sizes[-1])
        self.latent_dim = math.prod(self.latent_shape)
        self._sizes = sizes
        dec = []
        outs = list(reversed([in_chans, *channels[:-1]]))
        for c in outs:
            dec.append(nn.ConvTranspose2d(prev, c, 3, stride=2, padding=1))
            prev = c
        self.decoder = nn.ModuleList(dec)
        self.prototype_feature_vectors = nn.Parameter(torch.rand(num_prototypes, self.latent_dim))
        self.last_layer = nn.Parameter(torch.empty(num_prototypes, num_classes).uniform_(-1, 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_chans, *self.img_size):
            raise UserError(f"PrototypeNet: expected images (B, {self.in_chans}, {self.img_size[0]}, "
                            f"{self.img_size[1]}), got {tuple(x.shape)}")
        return self.encoder(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images from latents ``(B, latent_dim)``: the mirrored transposed convolutions, sized back exactly."""
        h = z.reshape(len(z), *self.latent_shape)
        last = len(self.decoder) - 1
        for i, layer in enumerate(self.decoder):
            target = self._sizes[last - i]
            h = layer(h, output_size=list(target))
            if i < last:
                h = F.relu(h)
        return torch.sigmoid(h) if self.output_activation == "sigmoid" else h

    def decode_prototypes(self) -> torch.Tensor:
        """What every prototype looks like: ``(m, in_chans, H, W)``."""
        return self.decode(self.prototype_feature_vectors)

    def forward_all(self, x: torch.Tensor) -> PrototypeOutput:
        z = self.encode(x)
        distances = torch.cdist(z, self.prototype_feature_vectors).pow(2)
        return PrototypeOutput(z, self.decode(z), distances, distances @ self.last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        return torch.cdist(z, self.prototype_feature_vectors).pow(2) @ self.last_layer


def prototype_loss(model: PrototypeNet, out: PrototypeOutput, x: torch.Tensor, y: torch.Tensor,
                   lambdas: Sequence[float] = LAMBDAS) -> tuple[torch.Tensor, dict[str, float]]:
    """The four-term loss and its terms (unweighted): ``class``, ``ae``, ``r1``, ``r2``."""
    lc, lae, l1, l2 = lambdas
    class_error = F.cross_entropy(out.logits, y)
    ae_error = (out.reconstruction - x).pow(2).flatten(1).sum(1).mean()
    # R1 and R2 as the reference computes them: squared distances between prototypes and the batch's latents
    r1 = out.distances.min(0).values.mean()  # every prototype near some input of the batch
    r2 = out.distances.min(1).values.mean()  # every input near some prototype
    total = lc * class_error + lae * ae_error + l1 * r1 + l2 * r2
    return total, {"class": class_error.item(), "ae": ae_error.item(), "r1": r1.item(), "r2": r2.item()}


def train_protonet(model: PrototypeNet, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 30,
                   batch_size: int = 250, lr: float = 2e-3, lambdas: Sequence[float] = LAMBDAS, seed: int = 0,
                   max_seconds: float | None = None) -> float:
    """Train on images ``x`` in [0, 1] with :func:`prototype_loss` (Adam, the reference's lr and batch) through
    :func:`archlab.train.fit`; returns the last loss."""
    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return prototype_loss(m, m.forward_all(batch[0]), batch[0], batch[1], lambdas)

    batches = shuffled_batches(x, y, batch_size=batch_size, seed=seed)
    result = fit(model, batches, loss_fn, epochs=epochs, steps_per_epoch=math.ceil(len(x) / batch_size),
                 max_seconds=max_seconds, optimizer=lambda p: torch.optim.Adam(p, lr=lr), warmup=0.0,
                 schedule=lambda base, progress: base, seed=seed, amp=False)
    return result.loss


@register_model(family="protonet", paper=_PAPER, input_shape=(1, 28, 28))
def protonet_mnist(**kwargs: object) -> PrototypeNet:
    """The reference's MNIST network: 28×28 grey images, 15 prototypes in a 40-d latent (10 channels × 2 × 2)."""
    return PrototypeNet(**{"in_chans": 1, "img_size": 28, "num_classes": 10, "num_prototypes": 15, **kwargs})

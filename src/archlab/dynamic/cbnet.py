"""CBNet: a converting autoencoder turns every image into an easy one, which a lightweight classifier then labels.

Paper: Mahmud et al., "A Converting Autoencoder Toward Low-latency and Energy-efficient DNN Inference at the Edge"
(CBNet), 2024. The paper releases no code: this is reconstructed from it (``papers/MAP.md`` row 9).

1. A BranchyNet-style network (:class:`BranchyNet`: a convolutional trunk with an early exit after its first stage
   and the full classifier at the end) is trained on both exits; an image is *easy* when the early exit
   classifies it correctly with entropy below ``threshold``.
2. The converting autoencoder (:class:`ConvertingAutoencoder`) is trained with MSE to map every training image to
   an easy image of its own class (a random one of that class's easy training images, drawn again every epoch),
   so its outputs are the kind of image the early exit handles.
3. The lightweight classifier is BranchyNet's early exit (trunk stage 1 + exit head) applied to the converted
   image, fine-tuned on converted training images. At inference: ``classifier(autoencoder(x))`` for every image
   (:class:`CBNet`), no branch, a fixed small cost; BranchyNet instead pays its full network on every hard image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.train import fit, shuffled_batches

__all__ = ["BranchyNet", "CBNet", "ConvertingAutoencoder", "easy_mask", "entropy", "finetune_classifier",
           "train_branchy", "train_converter"]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class BranchyNet(nn.Module):
    """Stage 1 (two convolutions of ``width``) → early exit (average pooling to 4×4, linear); stages 2–3 (2·width,
    4·width, stride 2) → final exit. ``forward`` is the full network; :meth:`forward_early` the early exit;
    :meth:`forward_branchy` exits early where the early exit's entropy is below ``threshold``."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(_conv(in_chans, width), _conv(width, width))
        self.early = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * width, num_classes))
        self.rest = nn.Sequential(_conv(width, 2 * width, 2), _conv(2 * width, 2 * width),
                                  _conv(2 * width, 4 * width, 2), _conv(4 * width, 4 * width))
        self.final = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stage1(x)
        return self.early(h), self.final(self.rest(h))

    def forward_early(self, x: torch.Tensor) -> torch.Tensor:
        return self.early(self.stage1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.rest(self.stage1(x)))

    def forward_branchy(self, x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, exited_early)``: the early exit's logits where its entropy is below ``threshold``, the full
        network's for the others (computed only for them)."""
        h = self.stage1(x)
        early = self.early(h)
        confident = entropy(early) < threshold
        out = early.clone()
        if bool((~confident).any()):
            out[~confident] = self.final(self.rest(h[~confident]))
        return out, confident


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1)


class ConvertingAutoencoder(nn.Module):
    """A small convolutional autoencoder (``width`` channels, one stride-2 down and up step) of same-size
    images; the output is in the input's (normalised) range, unbounded."""

    def __init__(self, in_chans: int, width: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1), nn.ReLU(),
                                     nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
                                     nn.Conv2d(width, in_chans, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.encoder(x))
        if out.shape != x.shape:  # odd sizes: crop the transposed convolution's extra row or column
            out = out[..., :x.shape[-2], :x.shape[-1]]
        return out


class CBNet(nn.Module):
    """The deployed pipeline: ``classifier(autoencoder(x))``, the classifier being BranchyNet's stage 1 and early
    exit (copied, so the BranchyNet is left as it was)."""

    def __init__(self, autoencoder: ConvertingAutoencoder, branchy: BranchyNet) -> None:
        super().__init__()
        import copy

        self.autoencoder = autoencoder
        self.classifier = nn.Sequential(copy.deepcopy(branchy.stage1), copy.deepcopy(branchy.early))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.autoencoder(x))


def train_branchy(model: BranchyNet, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 20, batch_size: int = 64,
                  lr: float = 3e-3, seed: int = 0) -> float:
    """BranchyNet's joint training: the sum of both exits' cross-entropies."""
    def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        early, final = m.forward_both(b[0])
        return F.cross_entropy(early, b[1]) + F.cross_entropy(final, b[1])

    result = fit(model, shuffled_batches(x, y, batch_size=batch_size, seed=seed), loss_fn, epochs=epochs,
                 steps_per_epoch=math.ceil(len(x) / batch_size), lr=lr, seed=seed, amp=False)
    model.eval()
    return result.loss


@torch.no_grad()
def easy_mask(model: BranchyNet, x: torch.Tensor, y: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which images the early exit gets right with entropy below ``threshold``."""
    model.eval()
    logits = model.forward_early(x)
    return (logits.argmax(1) == y) & (entropy(logits) < threshold)


def train_converter(autoencoder: ConvertingAutoencoder, x: torch.Tensor, y: torch.Tensor, easy: torch.Tensor, *,
                    epochs: int = 20, batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> float:
    """MSE from every image to a random easy image of its class (drawn again each step)."""
    classes = y.unique().tolist()
    pools = {c: torch.nonzero(easy & (y == c)).squeeze(1) for c in classes}
    missing = [c for c, pool in pools.items() if len(pool) == 0]
    if missing:
        raise UserError(f"cbnet: classes {missing} have no easy training image at this threshold; raise it")
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        xb, yb = b
        target = torch.empty_like(xb)
        for c in yb.unique().tolist():
            rows = torch.nonzero(yb == c).squeeze(1)
            pool = pools[c]
            target[rows] = x[pool[torch.randint(0, len(pool), (len(rows),), generator=gen)]]
        return F.mse_loss(m(xb), target)

    result = fit(autoencoder, shuffled_batches(x, y, batch_size=batch_size, seed=seed), loss_fn, epochs=epochs,
                 steps_per_epoch=math.ceil(len(x) / batch_size), lr=lr, seed=seed, amp=False)
    autoencoder.eval()
    return result.loss


def finetune_classifier(cbnet: CBNet, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 5, batch_size: int = 64,
                        lr: float = 1e-3, seed: int = 0) -> float:
    """Fine-tune CBNet's classifier on converted training images (the autoencoder frozen)."""
    cbnet.autoencoder.eval().requires_grad_(False)
    with torch.no_grad():
        converted = torch.cat([cbnet.autoencoder(x[i:i + 512]) for i in range(0, len(x), 512)])
    result = fit(cbnet.classifier, shuffled_batches(converted, y, batch_size=batch_size, seed=seed),
                 lambda m, b: F.cross_entropy(m(b[0]), b[1]), epochs=epochs,
                 steps_per_epoch=math.ceil(len(x) / batch_size), lr=lr, seed=seed, amp=False)
    cbnet.eval()
    return result.loss

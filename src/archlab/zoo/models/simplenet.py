"""SimpleNet: a plain 13-layer stack of 3x3 convolutions, BatchNorm and ReLU with max-pools, as a strong baseline.

Paper: Hasanpour, Rouhani, Fayyaz and Sabokrou, "Lets keep it simple, Using simple architectures to outperform
deeper and more complex architectures", arXiv:1608.06037, 2016. Names and structure follow the authors' PyTorch
port, Coderx7/SimpleNet_Pytorch ``cifar/models/simplenet.py``: one ``features`` Sequential of
``Conv2d``-``BatchNorm2d`` (eps 1e-5, momentum 0.05)-``ReLU`` (with a ``Dropout2d`` where the configuration gives a
rate) and ``MaxPool2d``-``Dropout2d``, then a global max-pool and a ``classifier`` Linear; convolutions use
Xavier-uniform init with ReLU gain. Every convolution, the 1x1 ones included, pads by 1 as in the reference, so a
1x1 convolution grows the map by two pixels (this keeps the reference's shapes and activations).

Parameter counts, against the published ones (10 classes): ``simplenet_cifar_5m`` 5,498,378 (published 5.48M,
SimpleNet_Pytorch README), ``simplenet_cifar_310k`` 312,362 (published 310K, Coderx7/SimpleNet README, table 6).
``simplenet_cifar_460k`` follows the Caffe network that the published 460K / 92.33% CIFAR-10 result comes from
(Coderx7/SimpleNet ``SimpNet_V1/Logs/CIfar10/Slim_version_460KParam/caffe_92.33.log``: layers 14-15 are 3x3 and
the last one 1x1): 456,446 parameters. The PyTorch port's own ``simplenet_cifar_460k`` list swaps those kernel
sizes and has 385,790 parameters, 16% short of its name; pass ``kernels="pytorch"`` to get it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model

__all__ = ["CFGS", "SimpleNet", "simplenet_cifar_310k", "simplenet_cifar_460k", "simplenet_cifar_5m"]

_PAPER = ("Lets keep it simple, Using simple architectures to outperform deeper and more complex architectures "
          "(Hasanpour et al., arXiv 2016)")

# One entry per layer: (out channels or "p" for a 2x2 max-pool, dropout rate or None for no Dropout2d module,
# kernel size). Pools and convolutions both count as layers for ``drop_rates`` indices, as in the reference.
_Layer = tuple[int | str, float | None, int]
CFGS: dict[str, list[_Layer]] = {
    "simplenet_cifar_310k": [
        (64, 0.0, 3), (32, 0.0, 3), (32, 0.0, 3), (32, None, 3), ("p", 0.0, 2),
        (32, 0.0, 3), (32, 0.0, 3), (64, None, 3), ("p", 0.0, 2),
        (64, 0.0, 3), (64, None, 3), ("p", 0.0, 2),
        (128, 0.0, 3), (256, 0.0, 1), (64, None, 1), ("p", 0.0, 2),
        (64, None, 3),
    ],
    "simplenet_cifar_460k": [
        (32, 0.0, 3), (32, 0.0, 3), (32, 0.0, 3), (64, None, 3), ("p", 0.0, 2),
        (64, 0.0, 3), (64, 0.0, 3), (64, None, 3), ("p", 0.0, 2),
        (64, 0.0, 3), (64, None, 3), ("p", 0.0, 2),
        (96, 0.0, 3), (96, 0.0, 3), (96, None, 3), ("p", 0.0, 2),
        (100, None, 1),
    ],
    "simplenet_cifar_5m": [
        (64, 0.0, 3), (128, 0.0, 3), (128, 0.0, 3), (128, None, 3), ("p", 0.0, 2),
        (128, 0.0, 3), (128, 0.0, 3), (256, None, 3), ("p", 0.0, 2),
        (256, 0.0, 3), (256, None, 3), ("p", 0.0, 2),
        (512, 0.0, 3), (2048, 0.0, 1), (256, None, 1), ("p", 0.0, 2),
        (256, None, 3),
    ],
}
# The PyTorch port's kernel sizes for the 460k list (1x1 at layers 13-14, 3x3 last); see the module docstring.
_PYTORCH_460K_KERNELS = {13: 1, 14: 1, 16: 3}


class SimpleNet(nn.Module):
    """A SimpleNet from a layer list (see :data:`CFGS`), widths multiplied by ``scale``."""

    def __init__(self, cfg: Sequence[_Layer], *, num_classes: int = 10, in_chans: int = 3, scale: float = 1.0,
                 drop_rates: Mapping[int, float] | None = None, name: str = "simplenet") -> None:
        super().__init__()
        self.name = name
        if num_classes < 1 or in_chans < 1:
            raise UserError(f"{name}: num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
        if scale <= 0:
            raise UserError(f"{name}: scale must be > 0, got {scale}")
        drop_rates = {int(k): float(v) for k, v in (drop_rates or {}).items()}
        bad = sorted(k for k in drop_rates if not 0 <= k < len(cfg) + 1)
        if bad or any(not 0.0 <= v < 1.0 for v in drop_rates.values()):
            raise UserError(f"{name}: drop_rates maps layer index (0..{len(cfg)}) to a rate in [0, 1), "
                            f"got {drop_rates}")
        self.in_chans = in_chans
        self.cfg = list(cfg)
        # The reference reads the rate after the global pool from index 15 whatever the list (one past the
        # ImageNet lists, the last pool of the CIFAR ones); kept so that the same drop_rates mean the same model.
        self.last_dropout_rate = drop_rates.get(15, 0.0)
        layers: list[nn.Module] = []
        channels = in_chans
        for idx, (out, rate, kernel) in enumerate(self.cfg):
            rate = drop_rates.get(idx, rate)
            if out == "p":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2), nn.Dropout2d(p=float(rate or 0.0))]
                continue
            width = round(int(out) * scale)
            layers += [
                nn.Conv2d(channels, width, kernel_size=kernel, stride=1, padding=1),
                nn.BatchNorm2d(width, eps=1e-5, momentum=0.05),
                nn.ReLU(inplace=True),
            ]
            if rate is not None:
                layers.append(nn.Dropout2d(p=float(rate)))
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("relu"))

    def min_input_size(self) -> int:
        """The smallest square input whose feature map stays non-empty through every pool."""
        size = 1
        while not self._map_size_ok(size):
            size += 1
        return size

    def _map_size_ok(self, size: int) -> bool:
        for out, _, kernel in self.cfg:
            size = size // 2 if out == "p" else size + 2 - kernel + 1
            if size < 1:
                return False
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans or not all(self._map_size_ok(s) for s in x.shape[-2:]):
            raise UserError(f"{self.name}: expected input (B, {self.in_chans}, H, W) with H, W >= "
                            f"{self.min_input_size()}, got {tuple(x.shape)}")
        x = self.features(x)
        # Global max-pool (the reference's F.max_pool2d over the whole map), then the optional last dropout.
        x = torch.amax(x, dim=(2, 3), keepdim=True)
        x = F.dropout2d(x, self.last_dropout_rate, training=self.training)
        return self.classifier(x.flatten(1))


def _build(name: str, kwargs: dict[str, Any], kernels: str = "paper") -> SimpleNet:
    cfg = list(CFGS[name])
    if kernels == "pytorch" and name == "simplenet_cifar_460k":
        cfg = [(c, r, _PYTORCH_460K_KERNELS.get(i, k)) for i, (c, r, k) in enumerate(cfg)]
    elif kernels not in ("paper", "pytorch"):
        raise UserError(f"{name}: kernels must be 'paper' or 'pytorch', got {kernels!r}")
    return SimpleNet(cfg, name=name, **kwargs)


@register_model(family="simplenet", paper=_PAPER, input_shape=(3, 32, 32))
def simplenet_cifar_310k(**kwargs: Any) -> SimpleNet:
    """The slim 310K-parameter SimpleNet of the paper's CIFAR experiments (312,362 parameters at 10 classes)."""
    return _build("simplenet_cifar_310k", kwargs)


@register_model(family="simplenet", paper=_PAPER, input_shape=(3, 32, 32))
def simplenet_cifar_460k(kernels: str = "paper", **kwargs: Any) -> SimpleNet:
    """The 460K-parameter SimpleNet (456,446 parameters at 10 classes; ``kernels="pytorch"``: the port's 385,790)."""
    return _build("simplenet_cifar_460k", kwargs, kernels)


@register_model(family="simplenet", paper=_PAPER, input_shape=(3, 32, 32))
def simplenet_cifar_5m(**kwargs: Any) -> SimpleNet:
    """The 5.48M-parameter SimpleNet of the CIFAR-10 95.51% result (5,498,378 parameters at 10 classes)."""
    return _build("simplenet_cifar_5m", kwargs)

"""LMUFormer: a convolutional patch embedding, Legendre-Memory-Unit token mixers and convolutional MLPs.

Paper: Liu, Datta, Kundu, Beerel and Kundu (Zeyu Liu et al.), "LMUFormer: Low Complexity Yet Powerful Spiking
Model With Legendre Memory Units", ICLR 2024. Names and structure follow zeyuliu1037/LMUFormer
``src/lmu_rnn.py`` (``ConvLMU`` as built by ``lmu_rnn_conv1d``: ``patch_embed``, ``block``, ``head``),
``src/blocks/conv1d_embedding.py`` (``Tokenizer``: ``conv_layers``, ``rpe_conv``), ``src/blocks/mlp.py``
(``ConvFFN``: ``fc1_conv``, ``fc1_bn``, ``fc2_conv``, ``fc2_bn``) and ``src/blocks/lmu.py`` (``LMU``), which is
:class:`archlab.zoo.mixers.lmu.LMU` (the memory's recurrent, FFT and convolution forms live there).

``spiking=True`` builds the spiking LMUFormer (the reference's ``slmu_rnn_ms_conv1d``, membrane-shortcut form):
every activation is a LIF neuron (:class:`archlab.zoo.layers.spiking.MultiStepLIF`, integrating over the frames)
placed before each convolution, so every convolution and linear map after the first (which reads the input
features) reads 0/1 spikes, while the residual stream carries real values. Its patch embedding is ``Conv1d4EBMs``
(``proj_conv``, ``proj_bn``, ``proj_lif``, ``proj_conv1``, ... ``proj_conv3``, ``proj_bn3``, ``proj_lif3``,
``rpe_conv``: ``x = conv3(...)``, then ``x + rpe_conv(LIF(BN(x)))``), its mixer ``SLMUMs``
(:class:`archlab.zoo.mixers.lmu.SpikingLMU`), its MLP ``ConvFFNMs`` (``fc1_bn``, ``fc1_lif``, ``fc1_conv``,
``fc2_bn``, ``fc2_lif``, ``fc2_conv``), and the head reads ``head_lif(head_bn(x))``. The LIF membranes make
every layer recurrent over frames but causal, so the prefix and causality properties below hold for it too.

For a sequence of ``L`` frames of ``in_channels`` features (Speech Commands: 128 frames x 128 mel bins)::

    x = Tokenizer(x)                      4 x [Conv1d k3 -> ReLU -> BN], then x + Conv1d_k3(x)
    x = x + LMU(x);  x = x + ConvFFN(x)   per block (no normalisation layers, as in the reference)
    logits = mean_t head(x_t)             ("all_seq": the running mean up to each t, a prediction per frame)

The reference's kernel-3 convolutions are centred (padding 1): each embedded frame sees one frame ahead per
convolution, ``n_conv_layers + 1`` frames in all, so outputs at ``t`` are final once frame
``t + lookahead`` has arrived (:attr:`LMUFormer.lookahead`). ``causal_embed=True`` pads on the left instead
(same weights), which makes the whole model causal: streaming a prefix gives the prefix of the outputs.
BatchNorm layers are per-frame affine maps in evaluation mode; in training mode their batch statistics mix
frames, so the streaming and causality properties hold in evaluation mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import register_model
from archlab.zoo.layers.spiking import MultiStepLIF
from archlab.zoo.mixers.lmu import LMU, SpikingLMU

__all__ = ["Block", "ConvFFN", "LMUFormer", "SpikingBlock", "SpikingConvFFN", "SpikingTokenizer", "Tokenizer",
           "lmuformer", "lmuformer_tiny", "spiking_lmuformer", "spiking_lmuformer_tiny"]

PAPER = ("LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units "
         "(Liu et al., ICLR 2024)")


class _Conv1dK3(nn.Conv1d):
    """A kernel-3 convolution padded by one frame on each side (the reference) or two on the left (causal)."""

    def __init__(self, c_in: int, c_out: int, causal: bool) -> None:
        super().__init__(c_in, c_out, kernel_size=3, stride=1, padding=0, bias=False)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (2, 0) if self.causal else (1, 1)))


class Tokenizer(nn.Module):
    """The convolutional patch embedding over ``(B, C_in, L) -> (B, D, L)`` (frame rate kept)."""

    def __init__(self, in_channels: int, embed_dims: int, n_conv_layers: int = 4, causal: bool = False) -> None:
        super().__init__()
        widths = [in_channels] + [embed_dims] * n_conv_layers
        self.conv_layers = nn.Sequential(*[
            # the Identity stands where the reference keeps a disabled MaxPool, so the BN keeps index 3
            nn.Sequential(_Conv1dK3(widths[i], widths[i + 1], causal), nn.ReLU(), nn.Identity(),
                          nn.BatchNorm1d(widths[i + 1]))
            for i in range(n_conv_layers)
        ])
        self.rpe_conv = _Conv1dK3(embed_dims, embed_dims, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_layers(x)
        return x + self.rpe_conv(x)


class ConvFFN(nn.Module):
    """Channel MLP on ``(B, C, L)``: 1x1 conv -> BN -> GELU -> 1x1 conv -> BN -> ReLU (``act_type='relu'``)."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = nn.GELU()
        self.fc1_dp = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = nn.ReLU()
        self.fc2_dp = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1_dp(self.fc1_lif(self.fc1_bn(self.fc1_conv(x))))
        return self.fc2_dp(self.fc2_lif(self.fc2_bn(self.fc2_conv(x))))


class Block(nn.Module):
    """``x + LMU(x)`` then ``x + ConvFFN(x)``, on ``(B, C, L)`` as the reference."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, theta: float = 128.0, drop: float = 0.0,
                 mode: str = "auto") -> None:
        super().__init__()
        self.attn = LMU(dim, theta=theta, mode=mode)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        x = x + self.attn(x.transpose(1, 2), mode=mode).transpose(1, 2)
        return x + self.mlp(x)


class SpikingTokenizer(nn.Module):
    """The spiking patch embedding (the reference's ``Conv1d4EBMs``) over ``(B, C_in, L) -> (B, D, L)``: kernel-3
    convolutions, each after the first reading the spikes of a BN + LIF, then the spiking ``rpe_conv`` shortcut."""

    def __init__(self, in_channels: int, embed_dims: int, n_conv_layers: int = 4, causal: bool = False) -> None:
        super().__init__()
        self.n_conv_layers = n_conv_layers
        for i in range(n_conv_layers):
            suffix = str(i) if i else ""
            self.add_module(f"proj_conv{suffix}", _Conv1dK3(in_channels if i == 0 else embed_dims, embed_dims,
                                                            causal))
            self.add_module(f"proj_bn{suffix}", nn.BatchNorm1d(embed_dims))
            self.add_module(f"proj_lif{suffix}", MultiStepLIF(tau=2.0, detach_reset=True))
        self.rpe_conv = _Conv1dK3(embed_dims, embed_dims, causal)

    def _stage(self, i: int) -> tuple[nn.Module, nn.Module, nn.Module]:
        suffix = str(i) if i else ""
        return tuple(getattr(self, f"proj_{kind}{suffix}") for kind in ("conv", "bn", "lif"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_conv(x)
        for i in range(1, self.n_conv_layers):
            conv = self._stage(i)[0]
            _, bn, lif = self._stage(i - 1)
            x = conv(lif(bn(x)))
        _, bn, lif = self._stage(self.n_conv_layers - 1)
        return x + self.rpe_conv(lif(bn(x)))


class SpikingConvFFN(nn.Module):
    """The spiking channel MLP (the reference's ``ConvFFNMs``): BN -> LIF -> 1x1 conv, twice."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1_bn = nn.BatchNorm1d(in_features)
        self.fc1_lif = MultiStepLIF(tau=2.0, detach_reset=True)
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(hidden_features)
        self.fc2_lif = MultiStepLIF(tau=2.0, detach_reset=True)
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1_conv(self.fc1_lif(self.fc1_bn(x)))
        return self.fc2_conv(self.fc2_lif(self.fc2_bn(x)))


class SpikingBlock(nn.Module):
    """``x + SpikingLMU(x)`` then ``x + SpikingConvFFN(x)`` on ``(B, C, L)``."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, theta: float = 128.0, mode: str = "auto") -> None:
        super().__init__()
        self.attn = SpikingLMU(dim, theta=theta, mode=mode)
        self.mlp = SpikingConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        x = x + self.attn(x.transpose(1, 2), mode=mode).transpose(1, 2)
        return x + self.mlp(x)


class LMUFormer(nn.Module):
    """LMUFormer classifier over ``(B, L, in_channels)`` frames -> ``(B, num_classes)`` logits."""

    def __init__(self, in_channels: int = 128, num_classes: int = 35, embed_dims: int = 256, depths: int = 1,
                 mlp_ratios: float = 4.0, theta: float = 128.0, n_conv_layers: int = 4, drop_rate: float = 0.0,
                 causal_embed: bool = False, mode: str = "auto", spiking: bool = False) -> None:
        super().__init__()
        if min(in_channels, num_classes, embed_dims, depths, n_conv_layers) < 1 or theta <= 0:
            raise UserError(f"lmuformer: bad configuration in_channels={in_channels}, num_classes={num_classes}, "
                            f"embed_dims={embed_dims}, depths={depths}, n_conv_layers={n_conv_layers}, "
                            f"theta={theta}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.causal_embed = causal_embed
        self.lookahead = 0 if causal_embed else n_conv_layers + 1
        self.spiking = spiking
        if spiking:
            if drop_rate:
                raise UserError("lmuformer: the spiking model has no dropout (the reference's ConvFFNMs has none)")
            self.patch_embed = SpikingTokenizer(in_channels, embed_dims, n_conv_layers, causal_embed)
            self.block = nn.ModuleList([SpikingBlock(embed_dims, mlp_ratios, theta, mode) for _ in range(depths)])
            self.head_bn = nn.BatchNorm1d(embed_dims)
            self.head_lif = MultiStepLIF(tau=2.0, detach_reset=True)
        else:
            self.patch_embed = Tokenizer(in_channels, embed_dims, n_conv_layers, causal_embed)
            self.block = nn.ModuleList([Block(embed_dims, mlp_ratios, theta, drop_rate, mode)
                                        for _ in range(depths)])
        self.head = nn.Linear(embed_dims, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # The reference's ConvLMU._init_weights reaches every nn.Linear, the LMU cell's W_u and W_h included.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """``(B, L, in_channels) -> (B, L, embed_dims)``: one feature vector per frame."""
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise UserError(f"lmuformer: expected input (B, L, {self.in_channels}) frames x features, "
                            f"got {tuple(x.shape)}")
        x = self.patch_embed(x.transpose(1, 2))
        for blk in self.block:
            x = blk(x, mode)
        if self.spiking:
            x = self.head_lif(self.head_bn(x))
        return x.transpose(1, 2)

    def forward(self, x: torch.Tensor, mode: str | None = None, all_seq: bool = False) -> torch.Tensor:
        """Logits ``(B, num_classes)`` (mean over frames), or with ``all_seq=True`` ``(B, L, num_classes)``:
        the prediction from frames ``0..t`` at each ``t`` (the reference's ``test_mode='all_seq'``).
        ``mode`` picks the LMU memory's form (``"fft"``, ``"conv"``, ``"recurrent"``, ...) for every block."""
        logits = self.head(self.forward_features(x, mode))
        if not all_seq:
            return logits.mean(dim=1)
        count = torch.arange(1, logits.shape[1] + 1, device=logits.device, dtype=logits.dtype)
        return logits.cumsum(dim=1) / count[:, None]


@register_model(family="lmuformer", paper=PAPER, input_shape=(128, 128))
def lmuformer(**kwargs) -> LMUFormer:
    """The Speech Commands model of src/gsc.yml with ``lmu_rnn_conv1d``: 128 frames x 128 mel bins, 35 classes,
    width 256, one block, MLP ratio 4, theta = 128 frames."""
    cfg = dict(in_channels=128, num_classes=35, embed_dims=256, depths=1, mlp_ratios=4.0, theta=128.0)
    return LMUFormer(**{**cfg, **kwargs})


@register_model(family="lmuformer", paper=PAPER, input_shape=(64, 1))
def lmuformer_tiny(**kwargs) -> LMUFormer:
    """A small LMUFormer for tests: 64 frames of one feature, 4 classes, width 16, theta 64."""
    cfg = dict(in_channels=1, num_classes=4, embed_dims=16, depths=1, mlp_ratios=2.0, theta=64.0,
               n_conv_layers=2)
    return LMUFormer(**{**cfg, **kwargs})


@register_model(family="lmuformer", paper=PAPER, input_shape=(128, 128))
def spiking_lmuformer(**kwargs) -> LMUFormer:
    """The spiking Speech Commands model (``slmu_rnn_ms_conv1d`` with src/gsc.yml's sizes): 128 frames x 128 mel
    bins, 35 classes, width 256, one block, MLP ratio 4, theta = 128 frames, LIF neurons throughout."""
    cfg = dict(in_channels=128, num_classes=35, embed_dims=256, depths=1, mlp_ratios=4.0, theta=128.0, spiking=True)
    return LMUFormer(**{**cfg, **kwargs})


@register_model(family="lmuformer", paper=PAPER, input_shape=(64, 1))
def spiking_lmuformer_tiny(**kwargs) -> LMUFormer:
    """The spiking twin of ``lmuformer_tiny``: 64 frames of one feature, 4 classes, width 16, theta 64."""
    cfg = dict(in_channels=1, num_classes=4, embed_dims=16, depths=1, mlp_ratios=2.0, theta=64.0,
               n_conv_layers=2, spiking=True)
    return LMUFormer(**{**cfg, **kwargs})

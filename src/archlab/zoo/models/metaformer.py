"""MetaFormer: a hierarchical image model whose token mixer is pluggable per stage (PoolFormer and kin).

Paper: Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022. Names and shapes follow
sail-sg/poolformer ``models/poolformer.py`` (``PoolFormer``, ``PoolFormerBlock``, ``PatchEmbed``): a
``patch_embed`` stem, a ``network`` ModuleList alternating stages (``nn.Sequential`` of blocks) with
``PatchEmbed`` downsamplings, a final ``norm`` and a ``head``; blocks hold ``norm1``, ``token_mixer``,
``norm2``, ``mlp``, ``layer_scale_1``, ``layer_scale_2`` and ``drop_path``. With the pooling mixer in every
stage this *is* PoolFormer, and ``poolformer_*`` checkpoints load with a plain ``load_state_dict``.

Any registered mixer may be chosen per stage. Each stage's resolution is computed from ``image_size`` and
passed to the mixer factories (some mixers, like MLP-Mixer's, are built for one token grid); mixers of the
``"sequence"`` layout see the map as ``(B, H*W, C)`` tokens in row-major order.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from archlab.errors import UserError
from archlab.zoo._registry import get_mixer_spec, register_model
from archlab.zoo.layers.drop import DropPath
from archlab.zoo.layers.mlp import Mlp
from archlab.zoo.layers.norms import create_norm

__all__ = ["MetaFormer", "MetaFormerBlock", "PatchEmbed", "default_stem"]

_PAPER = "MetaFormer Is Actually What You Need for Vision (Yu et al., CVPR 2022)"


class PatchEmbed(nn.Module):
    """A strided convolution (``proj``) then ``norm``: the stem, and the downsampling between stages."""

    def __init__(self, patch_size: int = 16, stride: int = 16, padding: int = 0, in_chans: int = 3,
                 embed_dim: int = 768, norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride, padding=padding)
        self.norm = norm_layer if norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class MetaFormerBlock(nn.Module):
    """``x + ls1 * mixer(norm1(x))`` then ``x + ls2 * mlp(norm2(x))`` on a ``(B, C, H, W)`` map."""

    def __init__(self, dim: int, token_mixer: nn.Module, *, layout: str = "image", mlp_ratio: float = 4.0,
                 norm: str = "groupnorm", drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: float | None = 1e-5) -> None:
        super().__init__()
        self.layout = layout
        self.norm1 = create_norm(norm, dim)
        self.token_mixer = token_mixer
        self.norm2 = create_norm(norm, dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        if layer_scale_init_value is None:
            self.register_parameter("layer_scale_1", None)
            self.register_parameter("layer_scale_2", None)
        else:
            self.layer_scale_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
            self.layer_scale_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The token mixer applied to a ``(B, C, H, W)`` map, whatever layout the mixer works in."""
        if self.layout == "image":
            return self.token_mixer(x)
        batch, channels, height, width = x.shape
        # The adapter lives here rather than in a wrapper module so that the mixer's parameter names stay
        # ``token_mixer.*``, as in the reference's attention MetaFormers.
        tokens = self.token_mixer(x.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mix_tokens(self.norm1(x))
        if self.layer_scale_1 is not None:
            mixed = self.layer_scale_1.unsqueeze(-1).unsqueeze(-1) * mixed
        x = x + self.drop_path(mixed)
        channel = self.mlp(self.norm2(x))
        if self.layer_scale_2 is not None:
            channel = self.layer_scale_2.unsqueeze(-1).unsqueeze(-1) * channel
        return x + self.drop_path(channel)


def default_stem(image_size: tuple[int, int]) -> tuple[int, int, int]:
    """``(in_patch_size, in_stride, in_pad)`` for inputs of ``image_size``.

    PoolFormer's 7x7 stride-4 stem would leave a 2x2 map of an 8x8 image, so small inputs keep more of
    their resolution: up to 16 pixels a 3x3 stride-1 stem, up to 32 a 3x3 stride-2 stem (28x28 -> 14x14),
    beyond that PoolFormer's 7/4/2.
    """
    smallest = min(image_size)
    if smallest <= 16:
        return 3, 1, 1
    if smallest <= 32:
        return 3, 2, 1
    return 7, 4, 2


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _as_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    try:
        pair = (operator.index(image_size),) * 2 if not isinstance(image_size, Sequence) else tuple(
            operator.index(s) for s in image_size)
    except TypeError:
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise UserError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return pair  # type: ignore[return-value]


def _positive_ints(name: str, values: Sequence[Any]) -> list[int]:
    try:
        ints = [operator.index(v) for v in values]
    except TypeError:
        raise UserError(f"{name} must be integers, got {list(values)!r}") from None
    if any(v < 1 for v in ints):
        raise UserError(f"{name} must be >= 1, got {ints}")
    return ints


class MetaFormer(nn.Module):
    """A MetaFormer with one registered token mixer per stage.

    Args:
        depths: blocks per stage.
        dims: channels per stage.
        token_mixers: per stage, one registered mixer name (see :func:`archlab.zoo.list_mixers`) for all its
            blocks, or a list of one name per block (hybrid stages such as AsCAN's conv-then-attention).
        mlp_ratios: channel-MLP expansion, one for all stages or one per stage.
        norm: one of :data:`archlab.zoo.layers.NORMS`.
        layer_scale_init_value: initial LayerScale; ``None`` disables LayerScale.
        image_size: input ``(H, W)``, from which every stage's resolution is computed.
        in_patch_size, in_stride, in_pad: the stem convolution.
        down_patch_size, down_stride, down_pad: the downsampling convolutions between stages.
        mixer_kwargs: keyword arguments per mixer name, e.g. ``{"attention": {"head_dim": 16}}``.
    """

    def __init__(self, *, depths: Sequence[int], dims: Sequence[int], token_mixers: Sequence[str | Sequence[str]],
                 in_chans: int = 3, num_classes: int = 1000, mlp_ratios: float | Sequence[float] = 4,
                 norm: str = "groupnorm", layer_scale_init_value: float | None = 1e-5, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, image_size: int | Sequence[int] = (224, 224),
                 in_patch_size: int = 7, in_stride: int = 4, in_pad: int = 2, down_patch_size: int = 3,
                 down_stride: int = 2, down_pad: int = 1,
                 mixer_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        depths = _positive_ints("depths", depths)
        dims = _positive_ints("dims", dims)
        token_mixers = list(token_mixers)
        num_stages = len(depths)
        if num_stages == 0:
            raise UserError("a MetaFormer needs at least one stage")
        if len(dims) != num_stages or len(token_mixers) != num_stages:
            raise UserError(f"depths, dims and token_mixers must have one entry per stage; got "
                            f"{len(depths)}, {len(dims)} and {len(token_mixers)}")
        ratios = [mlp_ratios] * num_stages if isinstance(mlp_ratios, int | float) else list(mlp_ratios)
        if len(ratios) != num_stages or any(r <= 0 for r in ratios):
            raise UserError(f"mlp_ratios must be one positive number or one per stage, got {mlp_ratios!r}")
        in_chans = _positive_ints("in_chans", [in_chans])[0]
        if num_classes < 0:
            raise UserError(f"num_classes must be >= 0, got {num_classes}")
        if not 0.0 <= drop_path_rate < 1.0 or not 0.0 <= drop_rate < 1.0:
            raise UserError("drop_rate and drop_path_rate must be in [0, 1)")
        image_size = _as_pair(image_size)
        mixer_kwargs = dict(mixer_kwargs or {})
        per_block: list[list[str]] = []
        for i, names in enumerate(token_mixers):
            names = [names] * depths[i] if isinstance(names, str) else list(names)
            if len(names) != depths[i] or not all(isinstance(n, str) for n in names):
                raise UserError(f"stage {i}: token_mixers must be one mixer name or one per block "
                                f"({depths[i]}), got {token_mixers[i]!r}")
            per_block.append(names)
        specs = [[get_mixer_spec(name) for name in names] for names in per_block]  # UserError names it
        for name in mixer_kwargs:
            get_mixer_spec(name)
        create_norm(norm, 1)  # fail on an unknown norm before building anything

        self.num_classes = num_classes
        self.image_size = image_size
        self.resolutions: list[tuple[int, int]] = []
        resolution = tuple(_conv_out(s, in_patch_size, in_stride, in_pad) for s in image_size)
        for i in range(num_stages):
            if i > 0:
                resolution = tuple(_conv_out(s, down_patch_size, down_stride, down_pad) for s in resolution)
            if min(resolution) < 1:
                raise UserError(f"stage {i} would have resolution {resolution[0]}x{resolution[1]} for "
                                f"image_size {image_size}; use a larger image or fewer/gentler downsamplings")
            self.resolutions.append(resolution)  # type: ignore[arg-type]

        self.patch_embed = PatchEmbed(patch_size=in_patch_size, stride=in_stride, padding=in_pad,
                                      in_chans=in_chans, embed_dim=dims[0])
        total_blocks = sum(depths)
        network: list[nn.Module] = []
        for i, stage_specs in enumerate(specs):
            blocks = []
            for j, spec in enumerate(stage_specs):
                # Stochastic depth grows linearly with block index over the whole network (reference).
                rate = drop_path_rate * (j + sum(depths[:i])) / max(1, total_blocks - 1)
                blocks.append(MetaFormerBlock(
                    dims[i], self._build_mixer(spec.name, dims[i], self.resolutions[i], mixer_kwargs),
                    layout=spec.layout, mlp_ratio=ratios[i], norm=norm, drop=drop_rate, drop_path=rate,
                    layer_scale_init_value=layer_scale_init_value))
            network.append(nn.Sequential(*blocks))
            if i < num_stages - 1:
                network.append(PatchEmbed(patch_size=down_patch_size, stride=down_stride, padding=down_pad,
                                          in_chans=dims[i], embed_dim=dims[i + 1]))
        self.network = nn.ModuleList(network)
        self.norm = create_norm(norm, dims[-1])
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_linear)
        # mixers with a structured init (ConViT's GPSA local init) re-apply it after the generic Linear init,
        # as timm's ConVit does
        for module in self.modules():
            if module is not self and hasattr(module, "local_init"):
                module.local_init()

    @staticmethod
    def _build_mixer(name: str, dim: int, resolution: tuple[int, int],
                     mixer_kwargs: Mapping[str, Mapping[str, Any]]) -> nn.Module:
        try:
            return get_mixer_spec(name).factory(dim, resolution=resolution, **mixer_kwargs.get(name, {}))
        except TypeError as e:  # an unknown keyword in mixer_kwargs
            raise UserError(f"mixer {name!r}: {e}") from None

    @staticmethod
    def _init_linear(module: nn.Module) -> None:
        # The reference's cls_init_weights: ViT-style init of every Linear in the model.
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def from_stages(cls, stages: Sequence[Mapping[str, Any]], *, in_chans: int = 3, num_classes: int = 1000,
                    image_size: int | Sequence[int] = (224, 224), mlp_ratio: float = 4,
                    norm: str = "groupnorm", in_patch_size: int | None = None, in_stride: int | None = None,
                    in_pad: int | None = None, **kwargs: Any) -> MetaFormer:
        """Build from stage dicts ``{"mixer": name, "depth": int, "width": int}`` (optional ``"mlp_ratio"``).

        A hybrid stage gives ``"mixers": [name, ...]`` (one per block) instead of ``"mixer"``.

        The stem defaults to :func:`default_stem` of ``image_size``; other keywords go to :class:`MetaFormer`.
        """
        if isinstance(stages, Mapping) or not isinstance(stages, Sequence) or not stages:
            raise UserError("stages must be a non-empty list of {'mixer', 'depth', 'width'} dicts")
        allowed, required = {"mixer", "mixers", "depth", "width", "mlp_ratio"}, {"depth", "width"}
        for i, stage in enumerate(stages):
            if not isinstance(stage, Mapping):
                raise UserError(f"stage {i} must be a dict with keys mixer, depth, width; got {stage!r}")
            if ("mixer" in stage) == ("mixers" in stage):
                raise UserError(f"stage {i} needs exactly one of 'mixer' (one name) or 'mixers' (one per block)")
            if missing := required - set(stage):
                raise UserError(f"stage {i} lacks {', '.join(sorted(missing))}")
            if unknown := set(stage) - allowed:
                raise UserError(f"stage {i} has unknown keys {', '.join(sorted(unknown))}; "
                                f"allowed: {', '.join(sorted(allowed))}")
        stem = default_stem(_as_pair(image_size))
        return cls(
            depths=[s["depth"] for s in stages], dims=[s["width"] for s in stages],
            token_mixers=[s["mixer"] if "mixer" in s else list(s["mixers"]) for s in stages],
            mlp_ratios=[s.get("mlp_ratio", mlp_ratio) for s in stages],
            in_chans=in_chans, num_classes=num_classes, image_size=image_size, norm=norm,
            in_patch_size=stem[0] if in_patch_size is None else in_patch_size,
            in_stride=stem[1] if in_stride is None else in_stride,
            in_pad=stem[2] if in_pad is None else in_pad, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised last feature map ``(B, dims[-1], H, W)``."""
        x = self.patch_embed(x)
        for module in self.network:
            x = module(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(name="metaformer", family="metaformer", paper=_PAPER, input_shape=(3, 224, 224))
def metaformer(stages: Sequence[Mapping[str, Any]] | None = None, **kwargs: Any) -> MetaFormer:
    """A MetaFormer from stage dicts; see :meth:`MetaFormer.from_stages`."""
    if stages is None:
        raise UserError("metaformer needs stages=[{'mixer': ..., 'depth': ..., 'width': ...}, ...]")
    return MetaFormer.from_stages(stages, **kwargs)


def _poolformer(depths: list[int], dims: list[int], layer_scale_init_value: float,
                **kwargs: Any) -> MetaFormer:
    config: dict[str, Any] = dict(depths=depths, dims=dims, token_mixers=["pooling"] * len(depths),
                                  mlp_ratios=4, layer_scale_init_value=layer_scale_init_value)
    return MetaFormer(**{**config, **kwargs})


@register_model(name="poolformer_s12", family="metaformer", paper=_PAPER, input_shape=(3, 224, 224))
def poolformer_s12(**kwargs: Any) -> MetaFormer:
    """PoolFormer-S12 (11.9M parameters at 1000 classes)."""
    return _poolformer([2, 2, 6, 2], [64, 128, 320, 512], 1e-5, **kwargs)


@register_model(name="poolformer_s24", family="metaformer", paper=_PAPER, input_shape=(3, 224, 224))
def poolformer_s24(**kwargs: Any) -> MetaFormer:
    """PoolFormer-S24 (21M parameters)."""
    return _poolformer([4, 4, 12, 4], [64, 128, 320, 512], 1e-5, **kwargs)


@register_model(name="poolformer_s36", family="metaformer", paper=_PAPER, input_shape=(3, 224, 224))
def poolformer_s36(**kwargs: Any) -> MetaFormer:
    """PoolFormer-S36 (31M parameters)."""
    return _poolformer([6, 6, 18, 6], [64, 128, 320, 512], 1e-6, **kwargs)


@register_model(name="poolformer_m36", family="metaformer", paper=_PAPER, input_shape=(3, 224, 224))
def poolformer_m36(**kwargs: Any) -> MetaFormer:
    """PoolFormer-M36 (56M parameters)."""
    return _poolformer([6, 6, 18, 6], [96, 192, 384, 768], 1e-6, **kwargs)


@register_model(name="poolformer_m48", family="metaformer", paper=_PAPER, input_shape=(3, 224, 224))
def poolformer_m48(**kwargs: Any) -> MetaFormer:
    """PoolFormer-M48 (73M parameters)."""
    return _poolformer([8, 8, 24, 8], [96, 192, 384, 768], 1e-6, **kwargs)

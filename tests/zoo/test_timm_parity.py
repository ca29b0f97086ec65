"""Every zoo configuration that timm also has, in one place: the same parameter count as timm's, and where
archlab's names follow timm (timm being the reference implementation's own code base), the same state-dict
layout, so timm checkpoints load with a strict ``load_state_dict``.

Outputs are compared with timm's, on loaded weights, in each family's own tests (``test_vit.py``,
``test_convit.py``, ``test_inception.py``); PoolFormer's, whose names differ, here, through the renaming of
timm's state dict. This file also guards the counts and layouts of every twin, and that no zoo model with a timm
namesake is left out of the list.
"""

from __future__ import annotations

import re

import pytest
import torch

from archlab import zoo

# archlab name -> (timm name, whether the state-dict names follow timm). PoolFormer's names follow the
# official sail-sg/poolformer checkpoints (``network.0.0...``), which timm renamed.
TIMM_TWINS: dict[str, tuple[str, bool]] = {
    "poolformer_s12": ("poolformer_s12", False),
    "poolformer_s24": ("poolformer_s24", False),
    "poolformer_s36": ("poolformer_s36", False),
    "poolformer_m36": ("poolformer_m36", False),
    "poolformer_m48": ("poolformer_m48", False),
    "vit_tiny_patch16_224": ("vit_tiny_patch16_224", True),
    "vit_small_patch16_224": ("vit_small_patch16_224", True),
    "deit_tiny_patch16_224": ("deit_tiny_patch16_224", True),
    "deit_small_patch16_224": ("deit_small_patch16_224", True),
    "convit_tiny": ("convit_tiny", True),
    "convit_small": ("convit_small", True),
    "convit_base": ("convit_base", True),
    "inception_v4": ("inception_v4", True),
    "inception_resnet_v2": ("inception_resnet_v2", True),
}


def state_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TIMM_TWINS))
def test_parameter_count_equals_timm(name: str, timm) -> None:
    timm_name, same_names = TIMM_TWINS[name]
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours = zoo.create_model(name)
        theirs = timm.create_model(timm_name, pretrained=False)
    assert count(ours) == count(theirs) > 0
    if same_names:
        assert state_shapes(ours) == state_shapes(theirs)
    else:  # the same tensors under other names: the same multiset of shapes
        assert sorted(state_shapes(ours).values()) == sorted(state_shapes(theirs).values())


def test_every_zoo_model_with_a_timm_namesake_is_a_twin(timm) -> None:
    namesakes = set(zoo.list_models()) & set(timm.list_models())
    assert namesakes, "timm's registry should share names with the zoo"
    assert namesakes <= set(TIMM_TWINS), sorted(namesakes - set(TIMM_TWINS))


def sail_names_from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's PoolFormer state dict under the official sail-sg/poolformer names archlab keeps: stage ``i``'s
    blocks are ``network.{2i}``, the downsampling before stage ``i`` is ``network.{2i-1}``."""
    out = {}
    for key, value in state.items():
        new = re.sub(r"^stem\.conv\.", "patch_embed.proj.", key)
        new = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", lambda m: f"network.{2 * int(m[1])}.{m[2]}.", new)
        new = re.sub(r"^stages\.(\d+)\.downsample\.conv\.", lambda m: f"network.{2 * int(m[1]) - 1}.proj.", new)
        new = re.sub(r"layer_scale(\d)\.scale$", r"layer_scale_\1", new)
        new = re.sub(r"^head\.norm\.", "norm.", new)
        new = re.sub(r"^head\.fc\.", "head.", new)
        out[new] = value
    return out


@pytest.mark.parametrize("name", ["poolformer_s12", "poolformer_m36"])
def test_poolformer_loads_timm_weights_renamed_and_matches_its_features(name: str, timm) -> None:
    """Stem, blocks and downsamplings compute timm's function on timm's (renamed) weights. The heads differ by
    design: archlab keeps the official head (GroupNorm over the last map, then the average), timm pools first and
    then applies a LayerNorm (eps 1e-6), so only the feature map before the head is compared."""
    torch.manual_seed(0)
    theirs = timm.create_model(name, pretrained=False).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # off the init both share (layer scales 1e-5, zero biases), so a mixed-up name would show
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    ours = zoo.create_model(name).eval()
    ours.load_state_dict(sail_names_from_timm(theirs.state_dict()), strict=True)
    x = torch.randn(1, 3, 224, 224, generator=gen)
    with torch.no_grad():
        mine = ours.patch_embed(x)
        for module in ours.network:
            mine = module(mine)
        torch.testing.assert_close(mine, theirs.forward_features(x), atol=1e-4, rtol=1e-4)

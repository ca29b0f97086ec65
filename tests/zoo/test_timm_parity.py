"""Named configurations that timm also has: the same parameter count as timm's, and where archlab's names
follow timm (timm being the reference implementation's own code base), the same state-dict layout, so timm
checkpoints load with a strict ``load_state_dict``."""

from __future__ import annotations

import pytest
import torch

from archlab import zoo

# archlab name -> (timm name, whether the state-dict names follow timm). PoolFormer's names follow the
# official sail-sg/poolformer checkpoints (``network.0.0...``), which timm renamed. Families add their pairs.
TIMM_TWINS: dict[str, tuple[str, bool]] = {
    "poolformer_s12": ("poolformer_s12", False),
    "poolformer_s24": ("poolformer_s24", False),
    "poolformer_s36": ("poolformer_s36", False),
    "poolformer_m36": ("poolformer_m36", False),
}


def state_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TIMM_TWINS))
def test_parameter_count_equals_timm(name: str, timm) -> None:
    timm_name, same_names = TIMM_TWINS[name]
    ours = zoo.create_model(name)
    theirs = timm.create_model(timm_name, pretrained=False)
    assert count(ours) == count(theirs)
    if same_names:
        assert state_shapes(ours) == state_shapes(theirs)
        ours.load_state_dict(theirs.state_dict(), strict=True)

"""Every registered image token mixer learns inside the metaformer space: a short run on digits reaches at
least 95 % test accuracy (the vision-zoo acceptance check). A mixer that is wired wrong (no token mixing at all,
a broken residual, a mixer that destroys its input) fails this."""

from __future__ import annotations

import pytest
import torch

from archlab import zoo
from archlab.data import load_dataset
from archlab.space import create_space
from archlab.train import TrainConfig, evaluate, train_model

# mixers whose own cost needs a few more epochs at this scale
EPOCHS: dict[str, int] = {}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("mixer", zoo.list_mixers(causal=False))
def test_mixer_trains_to_95_percent_on_digits(mixer: str, digits) -> None:
    space = create_space("metaformer", input_shape=tuple(digits.input_shape), num_classes=digits.num_classes,
                         mixers=[mixer])
    # three stages: 8x8, 4x4 and 2x2 maps, so each mixer also meets the smallest map the space produces
    arch = space.validate({"stages": [{"mixer": mixer, "depth": 1, "width": w} for w in (32, 64, 64)],
                           "mlp_ratio": 2, "norm": "batchnorm"})
    torch.manual_seed(0)
    model = space.build(arch)
    cfg = TrainConfig(epochs=EPOCHS.get(mixer, 20), batch_size=32, lr=3e-3, seed=0, patience=None)
    train_model(model, digits.x_train, digits.y_train, digits.x_val, digits.y_val, cfg)
    _, test_acc = evaluate(model, digits.x_test, digits.y_test)
    assert test_acc >= 0.95, f"{mixer}: {test_acc:.4f} test accuracy"

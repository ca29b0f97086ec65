"""archlab.train: the Trainer (fidelities, early stopping, failure detection) and training techniques."""

from archlab.train._trainer import (
    TrainConfig,
    TrainResult,
    TrialFailed,
    evaluate,
    make_adamw,
    seed_everything,
    train_model,
)

__all__ = ["TrainConfig", "TrainResult", "TrialFailed", "evaluate", "make_adamw", "seed_everything", "train_model"]

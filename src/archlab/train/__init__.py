"""archlab.train: one training loop (:func:`fit`: any loss, fidelities, hooks, failure detection), the classifier
Trainer built on it (:func:`train_model`: evaluation, best weights, early stopping) and training techniques."""

from archlab.train._fit import (
    FitResult,
    FitState,
    Hook,
    TrialFailed,
    fit,
    make_adamw,
    seed_everything,
    shuffled_batches,
    warmup_cosine,
)
from archlab.train._precision import PRECISIONS, describe_precision, native_bf16, resolve_precision
from archlab.train._trainer import TrainConfig, TrainResult, eval_batch_size, evaluate, train_model

__all__ = ["PRECISIONS", "FitResult", "FitState", "Hook", "TrainConfig", "TrainResult", "TrialFailed",
           "describe_precision", "eval_batch_size", "evaluate", "fit", "make_adamw", "native_bf16", "resolve_precision",
           "seed_everything", "shuffled_batches", "train_model", "warmup_cosine"]

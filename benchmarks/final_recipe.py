"""One training recipe on one arch from scratch: how the final training's regularisers compare.

Trains a metaformer arch on the first ``--train`` images of a dataset with random flips plus the recipe's
extra ``TrainConfig`` fields, for a fixed number of epochs, and prints one JSON row (best and per-epoch
validation accuracy, last train and validation loss, seconds). The runs of commit 5595d27 used one thread, two runs at a
time, for the rows of BENCHMARKS.md's "label smoothing" table; raw rows:
``benchmarks/results/fashion_final_recipe_2026-11-27.jsonl``.

    python benchmarks/final_recipe.py --name ls --recipe '{"label_smoothing": 0.1}'
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from archlab.data import load_dataset
from archlab.space import create_space
from archlab.train import TrainConfig, train_model

FASHION_WINNER_5595D27 = {"stages": [{"mixer": "raftmlp", "depth": 2, "width": 16},
                              {"mixer": "activator", "depth": 3, "width": 64},
                              {"mixer": "pooling", "depth": 2, "width": 64},
                              {"mixer": "wavemix", "depth": 2, "width": 24}],
                   "mlp_ratio": 4, "norm": "batchnorm", "stem_stride": 4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="flips")
    ap.add_argument("--arch", type=json.loads, default=FASHION_WINNER_5595D27)
    ap.add_argument("--recipe", type=json.loads, default={}, help="extra TrainConfig fields as JSON")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--train", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, seed=0)
    space = create_space("metaformer", input_shape=data.input_shape, num_classes=data.num_classes)
    torch.manual_seed(0)
    model = space.build(space.validate(args.arch))
    cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=3e-3, patience=None, seed=0,
                      augment_flip=data.flip_invariant, **args.recipe)
    t0 = time.perf_counter()
    r = train_model(model, data.x_train[:args.train], data.y_train[:args.train], data.x_val, data.y_val, cfg)
    print(json.dumps({"name": args.name, "recipe": args.recipe, "params": sum(p.numel() for p in model.parameters()),
                      "best_val": r.val_accuracy, "curve": [round(p["val_accuracy"] * 100, 2) for p in r.curve],
                      "train_loss_last": r.curve[-1]["train_loss"], "val_loss_last": r.curve[-1]["val_loss"],
                      "seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()

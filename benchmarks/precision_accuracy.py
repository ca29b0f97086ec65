"""Does bfloat16 training cost accuracy? The textbook CNN (the `image` space's portfolio arch) trained through
archlab's trainer for the same wall clock in fp32 and in bf16 (autocast + channels-last) on Fashion-MNIST's full
training split, with the final training's recipe (flips, one-pixel shifts, label smoothing 0.1, batch 128), per
seed; test accuracy (evaluated in float32) and the epochs each reached.

    python benchmarks/precision_accuracy.py --seconds 150 --seeds 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from _results import save_results

from archlab.data import load_dataset
from archlab.search.portfolio import portfolio
from archlab.space import create_space
from archlab.train import TrainConfig, evaluate, native_bf16, train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = load_dataset(args.data, seed=0)
    space = create_space("image", input_shape=data.input_shape, num_classes=data.num_classes)
    name, arch = portfolio(space, 600)[0]
    rows = []
    for seed in args.seeds:
        for precision in ("fp32", "bf16"):
            torch.manual_seed(seed)
            model = space.build(arch)
            cfg = TrainConfig(epochs=1000, max_seconds=args.seconds, batch_size=128, lr=3e-3, patience=None,
                              augment_flip=data.flip_invariant, augment_shift=1, label_smoothing=0.1,
                              precision=precision, seed=seed)
            t0 = time.perf_counter()
            result = train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, cfg,
                                 eval_after=len(data.x_test))
            row = {"seed": seed, "precision": precision, "arch": name, "epochs": result.epochs,
                   "val_accuracy": result.val_accuracy, "test_accuracy": evaluate(model, data.x_test, data.y_test)[1],
                   "wall_s": time.perf_counter() - t0, "native_bf16": native_bf16()}
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    print("| seed | precision | epochs in the time | test accuracy |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['precision']} | {r['epochs']:.2f} | {100 * r['test_accuracy']:.2f} % |")
    save_results(args.json or Path(__file__).parent / f"results/precision_accuracy_{args.data}.json", args, rows)


if __name__ == "__main__":
    main()

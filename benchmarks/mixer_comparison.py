"""Every image token mixer side by side on digits, at an equal parameter budget.

Each mixer fills the same MetaFormer frame (three stages of one block at 8×8, 4×4 and 2×2, MLP ratio 2,
batchnorm, the same stem and downsampling); the stage widths (w, 2w, 2w) are chosen per mixer so that the
parameter count is the closest to the budget. Every model trains with the same recipe and seeds; reported: test
accuracy (mean and per seed), parameters, FLOPs and single-thread CPU latency at batch 1.

    python benchmarks/mixer_comparison.py --budget-params 60000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

from archlab import zoo
from archlab.data import load_dataset
from archlab.measure import count_flops, count_params, measure_latency
from archlab.space import create_space
from archlab.train import TrainConfig, evaluate, train_model


def arch_for(space, mixer: str, width: int):
    return space.validate({"stages": [{"mixer": mixer, "depth": 1, "width": w} for w in (width, 2 * width, 2 * width)],
                           "mlp_ratio": 2, "norm": "batchnorm"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-params", type=int, default=60_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--mixers", nargs="*", default=None)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "mixer_comparison.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("digits", seed=0)
    mixers = args.mixers or zoo.list_mixers(causal=False)
    rows = []
    for mixer in mixers:
        # the frame of the metaformer space, with any width a multiple of 4, so each mixer can meet the budget
        space = create_space("metaformer", input_shape=data.input_shape, num_classes=data.num_classes,
                             mixers=[mixer], widths=list(range(8, 257, 4)))
        candidates = []
        for width in range(8, 129, 4):
            try:
                candidates.append((abs(count_params(space.build(arch_for(space, mixer, width))) - args.budget_params),
                                   width))
            except Exception:  # noqa: BLE001  (a width the mixer cannot take, e.g. heads not dividing it)
                continue
        width = min(candidates)[1]
        arch = arch_for(space, mixer, width)
        accs = []
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = space.build(arch)
            train_model(model, data.x_train, data.y_train, data.x_val, data.y_val,
                        TrainConfig(epochs=args.epochs, batch_size=32, lr=3e-3, seed=seed, patience=None))
            accs.append(evaluate(model, data.x_test, data.y_test)[1])
        model = space.build(arch)
        row = {"mixer": mixer, "widths": [width, 2 * width, 2 * width], "params": count_params(model),
               "flops": count_flops(model, data.input_shape),
               "latency_ms": measure_latency(model, data.input_shape, repeats=50),
               "test_accuracy": statistics.mean(accs), "test_accuracy_per_seed": accs}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"\ndigits, {args.epochs} epochs, seeds {args.seeds}, budget {args.budget_params} params, "
          f"{platform.processor() or platform.machine()}")
    print("| mixer | widths | params | FLOPs | latency (ms, batch 1) | test accuracy (mean) | per seed |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["test_accuracy"]):
        print(f"| {r['mixer']} | {'/'.join(map(str, r['widths']))} | {r['params']:,} | {r['flops']:,} | "
              f"{r['latency_ms']:.2f} | {100 * r['test_accuracy']:.2f} % | "
              f"{', '.join(f'{100 * a:.2f}' for a in r['test_accuracy_per_seed'])} |")


if __name__ == "__main__":
    main()

"""ECO-M2F on digits: a 6-block multi-exit ViT, gates trained for a sweep of β, against fixed truncation at the
same mean depth (the accuracy of a mix of the two neighbouring fixed exits with that mean depth), 3 seeds.

    python benchmarks/eco_m2f.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from _results import save_results

from archlab.data import load_dataset
from archlab.dynamic.eco_m2f import (
    MultiExitViT,
    exit_qualities,
    gate_targets,
    gated_accuracy,
    train_gate,
    train_multi_exit,
)
from archlab.zoo.models.vit import VisionTransformer


def fixed_at(depth: float, fixed: list[float]) -> float:
    """Accuracy of fixed truncation mixed to mean depth ``depth`` (1..E blocks), interpolating neighbours."""
    lo = min(len(fixed), max(1, math.floor(depth)))
    hi = min(len(fixed), lo + 1)
    w = depth - lo
    return (1 - w) * fixed[lo - 1] + w * fixed[hi - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.01, 0.03, 0.1, 0.3])
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results/eco_m2f_digits.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("digits", seed=0)
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = MultiExitViT(VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=48,
                                               depth=args.depth, num_heads=3))
        train_multi_exit(model, data.x_train, data.y_train, epochs=args.epochs, seed=seed)
        with torch.no_grad():
            fixed = [(model.forward_exit(data.x_test, i).argmax(1) == data.y_test).float().mean().item()
                     for i in range(model.num_exits)]
        q = exit_qualities(model, data.x_val, data.y_val)
        for beta in args.betas:
            train_gate(model, data.x_val, gate_targets(q, beta, args.temperature), epochs=30, seed=seed)
            acc, depth = gated_accuracy(model, data.x_test, data.y_test)
            row = {"seed": seed, "beta": beta, "gated_accuracy": acc, "mean_depth": depth,
                   "fixed_at_same_depth": fixed_at(depth, fixed), "fixed_accuracies": fixed}
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    print("| seed | β | mean depth (blocks) | gated test acc. | fixed truncation at that depth | gate − fixed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        gain = 100 * (r["gated_accuracy"] - r["fixed_at_same_depth"])
        print(f"| {r['seed']} | {r['beta']} | {r['mean_depth']:.2f} | {100 * r['gated_accuracy']:.2f} % | "
              f"{100 * r['fixed_at_same_depth']:.2f} % | {gain:+.2f} |")
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

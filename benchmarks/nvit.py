"""NViT on digits: a ViT pruned to half of its CPU latency (NViT's saliency + latency table + distillation, then
fine-tuning) against uniform pruning to the same latency with the same fine-tuning, 3 seeds. Measured: test
accuracy, parameters, and the real CPU latency at ``--latency-batch`` (default 64; one thread, median of 50 calls)
of each network. (At batch 1 this small ViT is bound by per-operation overhead and no width pruning halves its
latency: see :class:`archlab.compress.nvit.LatencyTable`.)

    python benchmarks/nvit.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _results import save_results

from archlab.compress.nvit import LatencyTable, materialize, prune, uniform_masks
from archlab.data import load_dataset
from archlab.measure import count_params, measure_latency
from archlab.train import TrainConfig, evaluate, train_model
from archlab.zoo.models.vit import VisionTransformer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--finetune-epochs", type=int, default=20)
    ap.add_argument("--latency-batch", type=int, default=64)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results/nvit_digits.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("digits", seed=0)
    shape = tuple(data.input_shape)
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        vit = VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4,
                                num_heads=4, mlp_ratio=4)
        train_model(vit, data.x_train, data.y_train, data.x_val, data.y_val,
                    TrainConfig(epochs=args.epochs, patience=None, seed=seed))
        vit.eval()
        table = LatencyTable(vit, args.group_size, batch_size=args.latency_batch)
        ft = TrainConfig(epochs=args.finetune_epochs, lr=1e-3, patience=None, seed=seed)
        nv = prune(vit, data.x_train, data.y_train, target=args.target, group_size=args.group_size, table=table,
                   seed=seed)
        train_model(nv.model, data.x_train, data.y_train, data.x_val, data.y_val, ft)
        uni = materialize(vit, uniform_masks(vit, table, args.target, args.group_size))
        train_model(uni, data.x_train, data.y_train, data.x_val, data.y_val, ft)
        row = {"seed": seed}
        for name, model in (("original", vit), ("nvit", nv.model), ("uniform", uni)):
            model.eval()
            row[name] = {"test_accuracy": evaluate(model, data.x_test, data.y_test)[1],
                         "params": count_params(model),
                         "latency_ms": measure_latency(model, shape, batch_size=args.latency_batch, repeats=50)}
        row["nvit_heads_mlp"] = [nv.masks.shape(b) for b in range(len(vit.blocks))]
        row["nvit_predicted_latency_ms"] = nv.predicted_latency
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    print("| seed | original: acc. / params / ms | NViT: acc. / params / ms | uniform: acc. / params / ms |")
    print("|---|---|---|---|")
    for r in rows:
        cells = [f"{100 * r[k]['test_accuracy']:.2f} % / {r[k]['params']:,} / {r[k]['latency_ms']:.3f}"
                 for k in ("original", "nvit", "uniform")]
        print(f"| {r['seed']} | " + " | ".join(cells) + " |")
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

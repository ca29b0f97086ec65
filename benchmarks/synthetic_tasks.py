"""Selective copying and associative recall at length 256: selective SSMs and GLA against a same-size LSTM.

The Mamba paper (Gu & Dao, 2024, §4.1) shows that input-dependent (selective) state spaces solve
content-aware recall tasks that LTI models and small recurrent nets do not. Here every model is a
``sequence_classifier`` (token embedding, ``--depth`` layers of one mixer with an MLP of ratio 2, the last
position's output classified), its width chosen per mixer to come closest to ``--params``, trained with the
same recipe (AdamW, cosine, batch 32) on the built-in generated tasks (``archlab.data.synthetic``: 4,000
training / 500 validation / 500 test sequences of 256 tokens, fixed seeds), and scored on the test split.

    python benchmarks/synthetic_tasks.py --tasks associative-recall selective-copying --seconds 240
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _results import save_results  # benchmarks/ is on the path when a script runs

from archlab import zoo
from archlab.data import load_dataset
from archlab.measure import count_params
from archlab.train import TrainConfig, evaluate, train_model

WIDTHS = (32, 48, 64, 80, 96, 112, 128, 160)


def build(mixer: str, dim: int, depth: int, data) -> torch.nn.Module:
    return zoo.create_model("sequence_classifier", dim=dim, depth=depth, mixer=mixer, vocab_size=data.vocab_size,
                            num_classes=data.num_classes, seq_len=data.input_shape[0], mlp_ratio=2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["associative-recall", "selective-copying"])
    ap.add_argument("--mixers", nargs="+", default=["mamba", "gla", "lstm"])
    ap.add_argument("--params", type=int, default=100_000)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=240.0, help="training wall-clock per model")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/synthetic_tasks.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for task in args.tasks:
        data = load_dataset(task, seed=0)
        for mixer in args.mixers:
            dim = min(WIDTHS, key=lambda w: abs(count_params(build(mixer, w, args.depth, data)) - args.params))
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = build(mixer, dim, args.depth, data)
                cfg = TrainConfig(epochs=args.epochs, max_seconds=args.seconds, batch_size=32, lr=args.lr,
                                  patience=None, seed=seed)
                t0 = time.perf_counter()
                r = train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, cfg)
                _, test_acc = evaluate(model, data.x_test, data.y_test)
                row = {"task": task, "mixer": mixer, "seed": seed, "dim": dim, "params": count_params(model),
                       "epochs": r.epochs, "val_accuracy": r.val_accuracy, "test_accuracy": test_acc,
                       "seconds": time.perf_counter() - t0,
                       "curve": [round(p["val_accuracy"], 4) for p in r.curve]}
                rows.append(row)
                print(f"{task:18s} {mixer:6s} seed {seed} dim {dim:3d} params {row['params']:7,d} epochs "
                      f"{r.epochs:3d} val {r.val_accuracy:.3f} test {test_acc:.3f} ({row['seconds']:.0f}s)", flush=True)
    print()
    print(f"length 256, {args.depth} layers + MLP 2, ~{args.params:,} params, at most {args.epochs} epochs / "
          f"{args.seconds:.0f} s per model, lr {args.lr}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}")
    print("| task | mixer | width | params | epochs | test accuracy (per seed) |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        for mixer in args.mixers:
            rs = [r for r in rows if r["task"] == task and r["mixer"] == mixer]
            print(f"| {task} | {mixer} | {rs[0]['dim']} | {rs[0]['params']:,} | "
                  f"{', '.join(str(r['epochs']) for r in rs)} | "
                  f"{', '.join(format(r['test_accuracy'], '.3f') for r in rs)} |")
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

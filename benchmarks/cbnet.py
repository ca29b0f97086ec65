"""CBNet on Fashion-MNIST: the converting autoencoder + light classifier against the full CNN and BranchyNet, on
a hard-heavy test split (three hard images for every easy one; "hard": the early exit is not confident), 3 seeds.
Accuracy on the split, and CPU latency per image at batch 1 (one thread; the mean over the split's first
``--latency-images`` images, in the split's mixed order).

    python benchmarks/cbnet.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _results import save_results

from archlab.data import load_dataset
from archlab.dynamic.cbnet import (
    BranchyNet,
    CBNet,
    ConvertingAutoencoder,
    easy_mask,
    entropy,
    finetune_classifier,
    train_branchy,
    train_converter,
)
from archlab.measure import count_flops


def per_image_ms(fn, x: torch.Tensor) -> float:
    times = []
    with torch.inference_mode():
        for i in range(len(x)):
            t0 = time.perf_counter()
            fn(x[i:i + 1])
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.fmean(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--easy-share", type=float, default=0.5, help="threshold: this share of training images easy")
    ap.add_argument("--latency-images", type=int, default=400)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results/cbnet_fashion_mnist.json")
    args = ap.parse_args()
    data = load_dataset("fashion-mnist", seed=0)
    x, y = data.x_train[:args.train], data.y_train[:args.train]
    rows = []
    for seed in args.seeds:
        torch.set_num_threads(2)
        torch.manual_seed(seed)
        net = BranchyNet(1, 10, width=16)
        train_branchy(net, x, y, epochs=args.epochs, seed=seed)
        with torch.no_grad():
            ent = entropy(net.forward_early(x))
        threshold = ent.quantile(args.easy_share).item()
        easy = easy_mask(net, x, y, threshold)
        ae = ConvertingAutoencoder(1, width=16)
        train_converter(ae, x, y, easy, epochs=args.epochs, seed=seed)
        cb = CBNet(ae, net)
        finetune_classifier(cb, x, y, epochs=2, seed=seed)
        test_easy = easy_mask(net, data.x_test, data.y_test, threshold)
        hard_idx, easy_idx = torch.nonzero(~test_easy).squeeze(1), torch.nonzero(test_easy).squeeze(1)
        n_easy = min(len(easy_idx), len(hard_idx) // 3)
        idx = torch.cat([hard_idx[:3 * n_easy], easy_idx[:n_easy]])
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
        xs, ys = data.x_test[idx], data.y_test[idx]
        with torch.no_grad():
            acc = {"full": (net(xs).argmax(1) == ys).float().mean().item(),
                   "branchy": (net.forward_branchy(xs, threshold)[0].argmax(1) == ys).float().mean().item(),
                   "cbnet": (cb(xs).argmax(1) == ys).float().mean().item()}
        torch.set_num_threads(1)
        lat_x = xs[:args.latency_images]
        def branchy(t: torch.Tensor, net: BranchyNet = net, threshold: float = threshold) -> torch.Tensor:
            return net.forward_branchy(t, threshold)[0]

        lat = {"full": per_image_ms(net, lat_x), "branchy": per_image_ms(branchy, lat_x),
               "cbnet": per_image_ms(cb, lat_x)}
        flops = {"full": count_flops(net, (1, 28, 28)), "cbnet": count_flops(cb, (1, 28, 28))}
        row = {"seed": seed, "threshold": threshold, "split": {"hard": 3 * n_easy, "easy": n_easy},
               "accuracy": acc, "latency_ms": lat, "flops": flops}
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    print("| seed | full CNN: acc. / ms | BranchyNet: acc. / ms | CBNet: acc. / ms |")
    print("|---|---|---|---|")
    for r in rows:
        cells = [f"{100 * r['accuracy'][k]:.2f} % / {r['latency_ms'][k]:.3f}" for k in ("full", "branchy", "cbnet")]
        print(f"| {r['seed']} | " + " | ".join(cells) + " |")
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

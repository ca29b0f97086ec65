"""Weight-sharing search on NAS-Bench-201: DARTS (first order), GDAS and SPOS on the ``nb201`` space's supernet
with CIFAR-10, each derived cell looked up in the benchmark's table; for SPOS also Kendall's tau between the
inherited-weight validation accuracy of ``--candidates`` random cells and their table test accuracy.

The protocol of the NAS-Bench-201 paper's one-shot rows (Dong & Yang, ICLR 2020, §5: C=16, N=5, batch 64, SGD
0.025 cosine to 0.001, momentum 0.9, weight decay 3e-4; architecture Adam 3e-4, betas (0.5, 0.999), weight
decay 1e-3; random crops and flips), with two departures that the output records: the weights train on one half
of archlab's 45,000-image CIFAR-10 training split and the architecture on the other (the paper halves the
50,000), and each method runs for ``--seconds`` of wall clock, its cosine schedule laid over that time, instead
of 50 epochs. The derived cell (``argmax alpha`` per edge, ``none`` included) is looked up in the table for its
CIFAR-10 test accuracy (200 epochs; published: DARTS-V1 54.30, GDAS 93.51 on CIFAR-10).

    python benchmarks/nb201_oneshot.py --methods darts gdas spos --seconds 200 --device cuda --out results.json

SPOS trains on single uniformly sampled paths (weight decay 4e-5, the same SGD schedule) and then scores each
candidate on up to ``--eval-images`` images of the architecture half in batches of 500, after recalculating its
BatchNorm statistics on 20 training batches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

PUBLISHED = {"darts": 54.30, "gdas": 93.51, "spos": None}  # NAS-Bench-201 paper, Table 5, CIFAR-10 test (%)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, augment: bool = True):
    """An epoch callable: shuffled batches on ``x``'s device, with a random 4-pixel-padded crop (one offset per
    batch) and per-image flips."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def epoch(_: int):
        perm = torch.randperm(len(y), generator=gen).to(x.device)
        for i in range(0, len(y) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx]
            if augment:
                dx, dy = (int(v) for v in torch.randint(0, 9, (2,), generator=gen))
                xb = torch.nn.functional.pad(xb, (4, 4, 4, 4))[:, :, dy:dy + 32, dx:dx + 32]
                flip = (torch.rand(len(idx), generator=gen) < 0.5).to(x.device)
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yield xb, y[idx]

    return epoch


def main() -> None:
    from scipy.stats import kendalltau

    from archlab.bench import load_nb201_table
    from archlab.data import load_dataset
    from archlab.search.oneshot import darts, gdas, spos
    from archlab.space import Arch, create_space

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["darts", "gdas"], choices=["darts", "gdas", "spos"])
    ap.add_argument("--candidates", type=int, default=50, help="SPOS: random cells scored with inherited weights")
    ap.add_argument("--eval-images", type=int, default=10000, help="SPOS: images of the arch half that score a cell")
    ap.add_argument("--seconds", type=float, default=200)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="use only this many training images")
    ap.add_argument("--synthetic", type=int, default=0, help="this many random images instead of CIFAR-10 (a smoke "
                                                              "test of the script)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-table", action="store_true", help="do not look the derived cells up (no table here)")
    ap.add_argument("--out", type=Path, default=Path("nb201_oneshot.json"))
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    if args.synthetic:  # random images and labels: checks the script end to end, in seconds
        g = torch.Generator().manual_seed(args.seed)
        x, y = torch.randn(args.synthetic, 3, 32, 32, generator=g), torch.randint(0, 10, (args.synthetic,), generator=g)
    else:
        data = load_dataset("cifar10", seed=args.seed)
        x, y = data.x_train, data.y_train
    # the splits are ordered (by class, for CIFAR-10): limit and halve a seeded shuffle, or a part misses classes
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))[:args.limit or len(y)]
    x, y = x[order], y[order]
    half = len(y) // 2
    dev = torch.device(args.device)
    xw, yw, xa, ya = x[:half].to(dev), y[:half].to(dev), x[half:].to(dev), y[half:].to(dev)
    val = [(xa[i:i + args.batch_size], ya[i:i + args.batch_size]) for i in range(0, len(ya), args.batch_size)]
    space = create_space("nb201", input_shape=(3, 32, 32), num_classes=10, C=args.C, N=args.N)
    table = None if args.no_table else load_nb201_table()
    rows = []
    print(f"data on {dev} in {time.perf_counter() - t0:.1f} s: {half} + {len(ya)} images", flush=True)
    for method in args.methods:
        supernet = space.supernet(method, seed=args.seed).to(dev)
        start = time.perf_counter()
        train = batches(xw, yw, args.batch_size, args.seed)
        if method == "spos":
            n = min(args.eval_images, len(ya))
            scoring = [(xa[i:min(i + 500, n)], ya[i:min(i + 500, n)]) for i in range(0, n, 500)]
            result = spos(space, train, scoring, epochs=args.epochs, num_candidates=args.candidates,
                          supernet=supernet, seed=args.seed, max_seconds=args.seconds, amp=False)
        else:
            run = darts if method == "darts" else gdas
            result = run(space, train, val, epochs=args.epochs, supernet=supernet, seed=args.seed,
                         max_seconds=args.seconds, amp=False)
        cell = space.to_string(result.arch)
        row = {"method": method, "seed": args.seed, "seconds": time.perf_counter() - start,
               "epochs": len(result.history), "cell": cell, "history": result.history,
               "published_test": PUBLISHED[method]}
        if method != "spos":
            row["probabilities"] = supernet.probabilities()
        if table is not None:
            row["table_test_accuracy"] = table.row(result.arch)["test_accuracy"]
            if method == "spos" and result.history:
                scored = result.history[-1]["candidates"]
                inherited = [acc for _, acc in scored]
                tested = [table.row(Arch.from_json(arch))["test_accuracy"]
                          for arch, _ in scored]
                row["kendall_tau"] = float(kendalltau(inherited, tested)[0])
                row["candidate_table_test"] = tested
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("history", "probabilities")}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "device": str(dev),
                                    "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                                    "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()

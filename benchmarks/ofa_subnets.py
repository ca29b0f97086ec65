"""Once-for-All's promise on Fashion-MNIST (MAP.md row 35): subnets taken from the progressively shrunk supernet,
with their inherited weights and no retraining, against the same architectures trained from scratch for the same
number of epochs.

The supernet (:class:`archlab.search.oneshot.ofa.OFANet`, elastic kernel 3/5/7, expand 3/4/6, depth 2..3 per
stage) is trained for ``--epochs`` with progressive shrinking (full, kernel, depth, expand, with distillation from
the full network); its channels are re-sorted by importance after the first stage's training as the reference does
before elastic expand (here: once, at the end, which leaves the function unchanged). Then ``--subnets`` random
subnets are extracted, their BatchNorm statistics recalculated on training batches, and scored on the test split;
each is also trained from a fresh initialisation for ``--epochs`` epochs with the same optimizer and scored. The
acceptance asks every inherited subnet to be within 1.5 points of its from-scratch twin.

    ARCHLAB_DATA=... python benchmarks/ofa_subnets.py --data fashion-mnist --train-subset 20000 --epochs 6 \\
        --subnets 10 --json benchmarks/results/ofa_subnets.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch


def batches(x, y, size, seed):
    gen = torch.Generator().manual_seed(seed)

    def epoch(_):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), size):
            idx = order[i:i + size]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            yield torch.where(flip[:, None, None, None], xb.flip(-1), xb), y[idx]

    return epoch


def main() -> None:
    from archlab.data import load_dataset
    from archlab.search.oneshot import accuracy, classification_loss, recalibrate_batchnorm
    from archlab.search.oneshot.ofa import STAGES, OFANet, OFASubnets, sort_channels
    from archlab.search.oneshot.progressive import progressive_shrinking
    from archlab.train import fit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--train-subset", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--subnets", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    dev = torch.device(args.device)
    data = load_dataset(args.data, seed=args.seed)
    n = args.train_subset or len(data.y_train)
    order = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(args.seed))[:n]
    x, y = data.x_train[order].to(dev), data.y_train[order].to(dev)
    test = [(data.x_test[i:i + 500].to(dev), data.y_test[i:i + 500].to(dev)) for i in range(0, len(data.y_test), 500)]
    shape = tuple(data.x_train.shape[1:])
    torch.manual_seed(args.seed)
    net = OFANet(in_chans=shape[0], num_classes=data.num_classes, min_depth=2).to(dev)
    start = time.perf_counter()
    subnets = progressive_shrinking(OFASubnets(net), batches(x, y, args.batch_size, args.seed), stages=STAGES,
                                    epochs=args.epochs * len(STAGES), lr=args.lr, seed=args.seed, amp=False)
    supernet_s = time.perf_counter() - start
    sort_channels(net)
    rng = random.Random(args.seed)
    bn = list(batches(x, y, args.batch_size, args.seed + 1)(0))
    rows = []
    for i in range(args.subnets):
        s = subnets.sample(rng)
        inherited = recalibrate_batchnorm(subnets.extract(s), bn, 20)
        inherited_acc = accuracy(inherited, test)
        torch.manual_seed(args.seed + 100 + i)
        scratch = OFANet(**{**net.config, "stages": [(c, d, st) for (c, _, st), d in
                                                     zip(net.config["stages"], s.depths, strict=True)],
                            "min_depth": min(s.depths)})
        scratch = OFASubnets(scratch).extract(s).to(dev)  # the same architecture, fresh weights
        for p in scratch.parameters():
            if p.ndim > 1:
                torch.nn.init.kaiming_normal_(p)
        start = time.perf_counter()
        fit(scratch, batches(x, y, args.batch_size, args.seed + i), classification_loss, epochs=args.epochs,
            lr=args.lr, seed=args.seed + i, amp=False)
        row = {"subnet": {"depths": s.depths, "kernels": s.kernels, "expands": s.expands},
               "params": sum(p.numel() for p in inherited.parameters()), "inherited_test": inherited_acc,
               "scratch_test": accuracy(scratch, test), "scratch_seconds": time.perf_counter() - start}
        row["gap"] = row["inherited_test"] - row["scratch_test"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    within = sum(abs(r["gap"]) <= 0.015 or r["gap"] > 0 for r in rows)
    print(f"\n{args.data}, {n} training images, {args.epochs} epochs each (supernet: {args.epochs} per stage, "
          f"{supernet_s:.0f} s): inherited minus scratch, median {statistics.median(r['gap'] for r in rows):+.2%}, "
          f"worst {min(r['gap'] for r in rows):+.2%}; {within} / {len(rows)} within 1.5 points or better")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "supernet_seconds": supernet_s, "rows": rows}, indent=1, default=list))


if __name__ == "__main__":
    main()

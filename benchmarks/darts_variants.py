"""DARTS and its repairs side by side on one small task: DARTS, sharpDARTS (Max-W weighting and cosine power
annealing; with Max-W alone and the scalar softmax weighting as its ablation) and SD-DARTS, on the NB201 cell
(``nb201`` space, C and N small) with the digits dataset, several seeds.

What each run reports, after training the supernet for ``--epochs``:

- ``sharpness``: the top eigenvalue of the Hessian of the validation loss with respect to ``alpha`` (power iteration
  on Hessian-vector products by double backward, ``--power-iters`` steps), the quantity SD-DARTS and the DARTS
  robustness literature track: a sharper minimum loses more when ``alpha`` is discretised;
- ``supernet_val`` / ``derived_val``: validation accuracy of the mixed supernet and of its derived arch with the
  inherited weights (BatchNorm recalculated), and their difference, the discretisation ``gap``;
- ``parameter_free``: how many of the derived cell's six edges are ``none``, ``skip_connect`` or pooling (DARTS'
  known drift).

    python benchmarks/darts_variants.py --seeds 0 1 2 --epochs 20 --json benchmarks/results/darts_variants.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

VARIANTS = ("darts", "sharpdarts", "maxw-only", "sd-darts")
PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3", "max_pool_3x3")


def top_hessian_eigenvalue(supernet, batches, iters: int, seed: int) -> float:
    """The largest eigenvalue of d^2 L_val / d alpha^2 by power iteration."""
    alpha = supernet.arch_parameters()
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(a.shape, generator=gen) for a in alpha]
    eig = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((x * x).sum() for x in v))
        v = [x / norm for x in v]
        loss = sum(F.cross_entropy(supernet(x), y) for x, y in batches) / len(batches)
        grads = torch.autograd.grad(loss, alpha, create_graph=True)
        hv = torch.autograd.grad(sum((g * x).sum() for g, x in zip(grads, v, strict=True)), alpha)
        eig = float(sum((h * x).sum() for h, x in zip(hv, v, strict=True)))
        v = [h.detach() for h in hv]
    return eig


def run(variant: str, seed: int, args, data) -> dict:
    from archlab.search.oneshot import accuracy, darts, inherited_accuracy, sd_darts, sharpdarts
    from archlab.space import create_space

    torch.manual_seed(seed)
    x, y = data.x_train, data.y_train
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    half = len(y) // 2
    b = args.batch_size
    tr, va = order[:half], order[half:]
    train = [(x[tr[i:i + b]], y[tr[i:i + b]]) for i in range(0, half, b)]
    val = [(x[va[i:i + b]], y[va[i:i + b]]) for i in range(0, len(va), b)]
    space = create_space("nb201", input_shape=tuple(x.shape[1:]), num_classes=data.num_classes, C=args.C, N=args.N)
    start = time.perf_counter()
    common = dict(epochs=args.epochs, seed=seed, lr=args.lr, arch_lr=args.arch_lr)
    if variant == "darts":
        result = darts(space, train, val, **common)
    elif variant == "sharpdarts":
        result = sharpdarts(space, train, val, exponent_order=args.exponent_order, **common)
    elif variant == "maxw-only":  # Max-W weighting with DARTS' cosine: the weighting's share of sharpDARTS
        supernet = space.supernet("darts", seed=seed)
        supernet.mix = "max_w"
        result = darts(space, train, val, supernet=supernet, **common)
    else:
        result = sd_darts(space, train, val, interval=args.sd_interval, **common)
    seconds = time.perf_counter() - start
    supernet = result.supernet
    supernet_val = accuracy(supernet, val)
    derived_val = inherited_accuracy(supernet, result.arch, train, val)
    ops = space.ops(result.arch)
    return {"variant": variant, "seed": seed, "seconds": seconds, "cell": space.to_string(result.arch),
            "sharpness": top_hessian_eigenvalue(supernet, val[:args.hessian_batches], args.power_iters, seed),
            "supernet_val": supernet_val, "derived_val": derived_val, "gap": supernet_val - derived_val,
            "parameter_free": sum(op in PARAMETER_FREE for op in ops), "train_loss": result.history[-1]["train_loss"]}


def main() -> None:
    from archlab.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.025)
    ap.add_argument("--arch-lr", type=float, default=3e-3)
    ap.add_argument("--exponent-order", type=float, default=2.0)
    ap.add_argument("--sd-interval", type=int, default=20)
    ap.add_argument("--power-iters", type=int, default=20)
    ap.add_argument("--hessian-batches", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = load_dataset(args.data, seed=0)
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            row = run(variant, seed, args, data)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.data}, nb201 C={args.C} N={args.N}, {args.epochs} epochs, arch lr {args.arch_lr}, "
          f"seeds {args.seeds}: medians")
    print("| variant | sharpness | supernet val | derived val | gap | parameter-free edges | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for variant in args.variants:
        rs = [r for r in rows if r["variant"] == variant]

        def med(key, rs=rs):
            return statistics.median(r[key] for r in rs)

        print(f"| {variant} | {med('sharpness'):.3f} | {med('supernet_val'):.2%} | {med('derived_val'):.2%} | "
              f"{med('gap'):+.2%} | {med('parameter_free'):.0f} / 6 | {med('seconds'):.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=1))


if __name__ == "__main__":
    main()

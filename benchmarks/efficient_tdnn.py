"""EfficientTDNN's search on synthetic speakers (MAP.md row 50): predictor quality and the searched subnet against
uniform scaling at the same MACs budget.

Per seed: a small dynamic TDNN supernet is trained progressively (:func:`progressive_train`: full, then kernel,
depth and width shrinking with distillation from the full network) on ``archlab.data.speakers``; ``--sample``
random subnets are scored by inherited-weight validation accuracy (BatchNorm recalculated); the MLP predictor is
fitted on all but ``--held-out`` of them and its Spearman rho measured on the held-out ones; then at each budget
(quantiles of the sampled subnets' MACs) the evolutionary search picks a subnet by predicted accuracy and the
uniform-scaling baseline takes the largest single width ratio in budget. Both are scored on the test split with
inherited weights.

    python benchmarks/efficient_tdnn.py --seeds 0 1 2 --json benchmarks/results/efficient_tdnn.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr


def batches(x, y, size=32):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def run(seed: int, args) -> dict:
    from archlab.data.speakers import synthetic_speakers
    from archlab.search.oneshot.efficient_tdnn import (
        AccuracyPredictor,
        evolve,
        progressive_train,
        subnet_accuracy,
        subnet_macs,
        uniform_subnet,
    )
    from archlab.zoo.models.tdnn import DynamicTDNN

    train = batches(*synthetic_speakers(args.train, args.speakers, seed=100 + seed, noise=args.noise))
    val = batches(*synthetic_speakers(args.val, args.speakers, seed=200 + seed, noise=args.noise))
    test = batches(*synthetic_speakers(args.test, args.speakers, seed=300 + seed, noise=args.noise))
    torch.manual_seed(seed)
    net = DynamicTDNN(in_feats=16, out_embeds=32, num_blocks=4, channels=args.channels, kernel_sizes=5,
                      catconv_channels=2 * args.channels, bottleneck_dim=16, scale=4, num_classes=args.speakers)
    start = time.perf_counter()
    subnets = progressive_train(net, train, epochs=args.epochs, seed=seed)
    train_s = time.perf_counter() - start
    rng = random.Random(seed)
    sampled = []
    while len(sampled) < args.sample:
        s = subnets.sample(rng)
        if all(s != t for t, _ in sampled):
            sampled.append((s, subnet_accuracy(subnets, s, train, val)))
    fit_on, held = sampled[:-args.held_out], sampled[-args.held_out:]
    enc = torch.tensor([subnets.encode(s) for s, _ in fit_on])
    predictor = AccuracyPredictor(enc.shape[1]).fit(enc, torch.tensor([a for _, a in fit_on]), seed=seed)
    with torch.no_grad():
        predicted = predictor(torch.tensor([subnets.encode(s) for s, _ in held])).tolist()
    rho = float(spearmanr(predicted, [a for _, a in held]).statistic)

    cache: dict = {}

    def macs(s):
        if s not in cache:
            cache[s] = subnet_macs(subnets, s, 40)
        return cache[s]

    def fitness(s):
        with torch.no_grad():
            return float(predictor(torch.tensor([subnets.encode(s)])))

    all_macs = sorted(macs(s) for s, _ in sampled)
    rows = []
    for q in args.budgets:
        budget = all_macs[int(q * (len(all_macs) - 1))]
        best, _ = evolve(subnets, fitness, macs, budget, population=args.population, generations=args.generations,
                         seed=seed)
        uniform = uniform_subnet(subnets, macs, budget)
        rows.append({"quantile": q, "budget_macs": budget,
                     "nas": {"subnet": best.to_dict(), "macs": macs(best),
                             "test": subnet_accuracy(subnets, best, train, test)},
                     "uniform": {"subnet": uniform.to_dict(), "macs": macs(uniform),
                                 "test": subnet_accuracy(subnets, uniform, train, test)}})
    full = subnet_accuracy(subnets, subnets.largest(), train, test)
    return {"seed": seed, "train_seconds": train_s, "full_test": full, "predictor_spearman": rho, "budgets": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--speakers", type=int, default=10)
    ap.add_argument("--noise", type=float, default=1.2)
    ap.add_argument("--train", type=int, default=1024)
    ap.add_argument("--val", type=int, default=512)
    ap.add_argument("--test", type=int, default=512)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--sample", type=int, default=150)
    ap.add_argument("--held-out", type=int, default=50)
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.25, 0.5])
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = []
    for seed in args.seeds:
        r = run(seed, args)
        results.append(r)
        print(json.dumps(r), flush=True)
    print(f"\nsynthetic speakers ({args.speakers}), supernet channels {args.channels}, {args.epochs} epochs, "
          f"seeds {args.seeds}")
    print(f"predictor Spearman rho on {args.held_out} held-out subnets: "
          + ", ".join(f"{r['predictor_spearman']:.2f}" for r in results)
          + f" (median {statistics.median(r['predictor_spearman'] for r in results):.2f})")
    print("| budget (quantile of sampled MACs) | NAS test acc (median) | uniform test acc (median) | NAS wins |")
    print("| --- | --- | --- | --- |")
    for i, q in enumerate(args.budgets):
        nas = [r["budgets"][i]["nas"]["test"] for r in results]
        uni = [r["budgets"][i]["uniform"]["test"] for r in results]
        wins = sum(a > b for a, b in zip(nas, uni, strict=True))
        print(f"| {q:.2f} | {statistics.median(nas):.2%} | {statistics.median(uni):.2%} | {wins} / {len(nas)} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": results},
                                        indent=1))


if __name__ == "__main__":
    main()

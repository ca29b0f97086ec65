"""What zero-cost proxies cost per NAS-Bench-201 cell on this machine, and what the shared pass saves.

For ``--cells`` cells drawn as ``archlab proxies --space nb201 --sample N --seed S`` draws them, on the same fixed
batch of 64 CIFAR-10 training images, each cell is built under the seed and scored ``--repeats`` times:

- each proxy on its own (``compute_proxies(model, x, y, [name])``: its own forward and backward), and
- every proxy at once through the shared pass (``compute_proxies(model, x, y, names)``: one forward, one
  cross-entropy backward, one input-Jacobian backward, GraSP's second pass), which is what ``archlab proxies``
  runs.

A row per cell records the median seconds of each; the summary gives the median per cell over cells, the sum of
the one-at-a-time costs against the shared pass (their ratio), and the time all proxies take for 1,000 cells at the
median shared cost. Building the model is timed apart (``build``). The first cell is scored once before timing
(warm-up).

    ARCHLAB_DATA=../shared/data python benchmarks/proxy_cost.py --cells 20 --repeats 3 \
        --json benchmarks/results/proxy_cost.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _results import device_name, save_results

from archlab.data import load_dataset
from archlab.proxies import DEFAULT_BATCH_PROXIES, compute_proxies, proxy_batch, sample_archs
from archlab.space import create_space


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--proxies", default=",".join(DEFAULT_BATCH_PROXIES))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    names = [n for n in args.proxies.split(",") if n]
    data = load_dataset("cifar10", seed=args.seed)
    space = create_space("nb201", input_shape=data.input_shape, num_classes=data.num_classes)
    x, y = proxy_batch(data.x_train, data.y_train, args.batch_size, args.seed)
    archs = sample_archs(space, args.cells, seed=args.seed)
    torch.manual_seed(args.seed)
    compute_proxies(space.build(archs[0]), x, y, names, seed=args.seed)  # warm-up
    rows = []
    for i, arch in enumerate(archs):
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        model = space.build(arch)
        build = time.perf_counter() - start
        alone = {n: statistics.median(timed(lambda n=n, m=model: compute_proxies(m, x, y, [n], seed=args.seed))
                                      for _ in range(args.repeats)) for n in names}
        shared = statistics.median(timed(lambda m=model: compute_proxies(m, x, y, names, seed=args.seed))
                                   for _ in range(args.repeats))
        rows.append({"cell": space.to_string(arch), "build_s": build, "alone_s": alone, "shared_s": shared,
                     "one_at_a_time_s": sum(alone.values())})
        print(f"[{i + 1}/{len(archs)}] shared {shared:.2f} s, one at a time {sum(alone.values()):.2f} s", flush=True)
    per_proxy = {n: statistics.median(r["alone_s"][n] for r in rows) for n in names}
    shared_med = statistics.median(r["shared_s"] for r in rows)
    alone_med = statistics.median(r["one_at_a_time_s"] for r in rows)
    build_med = statistics.median(r["build_s"] for r in rows)
    summary = {"device": device_name("cpu"), "threads": torch.get_num_threads(), "cells": len(rows),
               "repeats": args.repeats, "batch_size": args.batch_size, "per_proxy_median_s": per_proxy,
               "shared_median_s": shared_med, "one_at_a_time_median_s": alone_med,
               "speedup_shared": alone_med / shared_med, "build_median_s": build_med,
               "minutes_for_1000_cells": 1000 * (shared_med + build_med) / 60}
    print("per proxy, median s per cell: " + ", ".join(f"{n} {v:.3f}" for n, v in per_proxy.items()))
    print(f"all {len(names)} proxies: shared pass {shared_med:.2f} s per cell, one at a time {alone_med:.2f} s "
          f"({summary['speedup_shared']:.2f}x); 1,000 cells: {summary['minutes_for_1000_cells']:.1f} min")
    if args.json is not None:
        save_results(args.json, args, [{"summary": summary}, *rows])


if __name__ == "__main__":
    main()

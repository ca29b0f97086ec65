"""What a supernet costs against one standalone network of its space: seconds per training step and peak memory,
side by side, and archlab's memory estimate (:func:`archlab.search.oneshot.memory.estimate_training_memory`, the
guard of ``archlab search --max-memory``) against the measured peak.

Each measurement runs in a fresh process: it builds the model and a batch, records its peak resident memory
(``ru_maxrss``), trains ``--steps`` steps (SGD with momentum, as the one-shot methods; DARTS first order adds its
architecture step on a second batch; SPOS samples a path per step) and reads the peak again. The training's peak
is the difference; the estimate it is compared with leaves out the weights, which the baseline already holds.
This script's numbers set the estimate's backward-pass overhead (``BACKWARD_OVERHEAD``; BENCHMARKS.md).
Medians over ``--repeats`` processes.

    python benchmarks/supernet_cost.py --C 16 --N 5 --batch-size 64 --steps 10 --repeats 3 \\
        --json benchmarks/results/supernet_cost.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

STANDALONE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MODES = ("standalone", "spos", "gdas", "darts")


def child(mode: str, C: int, N: int, batch: int, steps: int) -> dict:
    import random

    import torch
    import torch.nn.functional as F

    from archlab.search.oneshot import arch_optimizer
    from archlab.search.oneshot.memory import estimate_training_memory
    from archlab.space import create_space

    torch.manual_seed(0)
    space = create_space("nb201", input_shape=(3, 32, 32), num_classes=10, C=C, N=N)
    arch = space.from_string(STANDALONE)
    model = space.build(arch) if mode == "standalone" else space.supernet(mode, seed=0)
    rng = random.Random(0)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    xv, yv = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    paths = ([{}] if mode in ("standalone", "darts") else [{}] * 8 if mode == "gdas"
             else [{"arch": space.sample(rng)} for _ in range(8)])  # as the one-shot strategies estimate
    if mode == "spos":
        model.set_arch(paths[0]["arch"])
    estimate = estimate_training_memory(model, x[:2], batch, forward_kwargs=paths)
    weights = [p for n, p in model.named_parameters() if not n.startswith("alpha")]
    opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    arch_opt = arch_optimizer(model) if mode in ("darts", "gdas") else None
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    for _ in range(steps):
        if mode == "spos":
            model.sample_arch(rng)
        if arch_opt is not None:
            arch_opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xv), yv).backward()
            arch_opt.step()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "seconds_per_step": seconds, "training_peak_mb": (peak - base) / 2**20,
            "estimate_mb": (estimate.total - estimate.weights) / 2**20, "estimate_total_mb": estimate.total_mb,
            "params": sum(p.numel() for p in weights)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.C, args.N, args.batch_size, args.steps)))
        return
    rows = []
    for repeat in range(args.repeats):
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--C", str(args.C), "--N", str(args.N),
                                  "--batch-size", str(args.batch_size), "--steps", str(args.steps)],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1]) | {"repeat": repeat}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = statistics.median(r["seconds_per_step"] for r in rows if r["mode"] == "standalone") \
        if "standalone" in args.modes else None
    print(f"\nnb201 C={args.C} N={args.N}, batch {args.batch_size}, {args.steps} steps, median of {args.repeats}")
    print("| model | params | s / step | × standalone | training peak MB | estimate MB | estimate / peak |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for mode in args.modes:
        rs = [r for r in rows if r["mode"] == mode]
        s = statistics.median(r["seconds_per_step"] for r in rs)
        peak = statistics.median(r["training_peak_mb"] for r in rs)
        est = statistics.median(r["estimate_mb"] for r in rs)
        summary.append({"mode": mode, "seconds_per_step": s, "training_peak_mb": peak, "estimate_mb": est})
        ratio = f"{s / base:.2f}" if base else "—"
        print(f"| {mode} | {rs[0]['params']:,} | {s:.3f} | {ratio} | {peak:.0f} | {est:.0f} | {est / peak:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows,
                                         "summary": summary}, indent=1))


if __name__ == "__main__":
    main()

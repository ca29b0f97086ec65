"""Training throughput of the textbook CNN on this CPU in fp32 and under bfloat16 autocast, with and without the
channels-last memory format: the question is whether archlab's trainer should train in bfloat16 on a CPU that has
bfloat16 instructions (``avx512_bf16`` / AMX), as it does on CUDA.

Each variant trains the same network (``benchmarks/textbook_cnn.py``'s) on random 28×28 batches of 128 for
``--steps`` steps after ``--warmup`` steps, AdamW, fp32 master weights; the median step time of ``--repeats``
interleaved runs is reported with the ratio to fp32.

    python benchmarks/cpu_precision.py --steps 40 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from textbook_cnn import TextbookCNN  # noqa: E402

VARIANTS = {"fp32": (False, False), "fp32 channels-last": (False, True), "bf16 autocast": (True, False),
            "bf16 autocast channels-last": (True, True)}


def step_time(bf16: bool, channels_last: bool, steps: int, warmup: int, batch: int) -> float:
    torch.manual_seed(0)
    model = TextbookCNN(1, 10)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    results: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(args.repeats):
        for name, (bf16, cl) in VARIANTS.items():
            results[name].append(step_time(bf16, cl, args.steps, args.warmup, args.batch_size))
    base = statistics.median(results["fp32"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print("| variant | ms / step (median) | × fp32 speed |")
    print("| --- | --- | --- |")
    for name, ts in results.items():
        t = statistics.median(ts)
        print(f"| {name} | {1000 * t:.1f} | {base / t:.2f} |")


if __name__ == "__main__":
    main()

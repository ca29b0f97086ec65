"""Speed of Mamba's chunked selective scan against the sequential reference scan, forward + backward.

Both scans compute the same function (tests/zoo/test_mamba.py holds them equal); this measures the time of one
forward and backward pass at L = 1,024 and 4,096 (batch, d_inner, d_state 16 as given), the median of a few
repetitions, prints a table with the speed-up, and writes ``benchmarks/results/scan_speed.json``.

    python benchmarks/scan_speed.py [--lengths 1024 4096] [--batch 1] [--d-inner 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from archlab.zoo.mixers.mamba import default_chunk_size, selective_scan_chunked, selective_scan_ref

RESULTS = Path(__file__).parent / "results" / "scan_speed.json"


def _inputs(batch: int, d_inner: int, d_state: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"u": (batch, d_inner, length), "delta": (batch, d_inner, length), "B": (batch, d_state, length),
              "C": (batch, d_state, length), "z": (batch, d_inner, length)}
    args = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    args["A"] = -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)  # S4D-Real
    args["D"] = torch.ones(d_inner)
    args["delta_bias"] = torch.full((d_inner,), -3.0)
    return {k: v.requires_grad_(True) for k, v in args.items()}


def _time_fwd_bwd(scan, args: dict[str, torch.Tensor], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        for t in args.values():
            t.grad = None
        start = time.perf_counter()
        out = scan(**args, delta_softplus=True)
        out.square().sum().backward()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--d-inner", type=int, default=128)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequential-repeats", type=int, default=None,
                        help="repetitions of the (slow) sequential scan; default: --repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for length in args.lengths:
        inputs = _inputs(args.batch, args.d_inner, args.d_state, length)
        _time_fwd_bwd(selective_scan_chunked, inputs, 1)  # warm-up (allocator, kernels)
        chunked = _time_fwd_bwd(selective_scan_chunked, inputs, args.repeats)
        sequential = _time_fwd_bwd(selective_scan_ref, inputs, args.sequential_repeats or args.repeats)
        row = {"length": length, "batch": args.batch, "d_inner": args.d_inner, "d_state": args.d_state,
               "chunk_size": default_chunk_size(length),
               "chunked_s": statistics.median(chunked), "sequential_s": statistics.median(sequential),
               "chunked_runs": chunked, "sequential_runs": sequential}
        row["speedup"] = row["sequential_s"] / row["chunked_s"]
        rows.append(row)

    print(f"selective scan, forward + backward, batch {args.batch}, d_inner {args.d_inner}, "
          f"d_state {args.d_state}, float32, {torch.get_num_threads()} thread(s); median seconds")
    print(f"{'L':>6} {'chunk':>6} {'sequential':>11} {'chunked':>9} {'speed-up':>9}")
    for r in rows:
        print(f"{r['length']:>6} {r['chunk_size']:>6} {r['sequential_s']:>11.3f} {r['chunked_s']:>9.3f} "
              f"{r['speedup']:>8.1f}x")
    result = {"benchmark": "mamba selective scan: chunked vs sequential reference (forward + backward)",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "processor": platform.processor(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()

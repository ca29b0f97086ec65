"""Chunked Gated Linear Attention against its token-by-token recurrence: forward + backward wall time.

Both forms compute the same function (tests/zoo/test_gla.py holds them to 1e-5); the chunked one replaces L
sequential state updates by L / C of them plus matrix products inside each chunk. Timed here on the bare
recurrence (``recurrent_gla`` vs ``chunk_gla``; the projections around it are the same in both) and on the whole
layer, at L = 1,024 and 4,096, median of ``--repeats`` runs after one warm-up, in wall time and in process
CPU time (the robust figure on a shared machine with ``--threads 1``).

    python benchmarks/scan_speed_gla.py            # writes benchmarks/results/scan_speed_gla.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from archlab.zoo import create_mixer
from archlab.zoo.mixers.gla import chunk_gla, recurrent_gla


def _time(fn, repeats: int, warmup=None) -> tuple[float, float]:
    """Median wall time and median process CPU time of ``fn``. On a shared machine the wall time also counts
    waiting for a core; the CPU time (all threads together) does not, so with ``--threads 1`` it is the
    figure that survives a busy machine."""
    (warmup or fn)()  # one untimed call first (allocator, dispatch caches)
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _ratios(rec: tuple[float, float], chk: tuple[float, float]) -> dict:
    return {"recurrent_s": rec[0], "chunk_s": chk[0], "speedup": rec[0] / chk[0],
            "recurrent_cpu_s": rec[1], "chunk_cpu_s": chk[1], "speedup_cpu": rec[1] / chk[1]}


def bench_kernel(length: int, batch: int, heads: int, dk: int, dv: int, chunk: int, repeats: int,
                 device: str) -> dict:
    torch.manual_seed(0)
    shape_k, shape_v = (batch, heads, length, dk), (batch, heads, length, dv)
    q, k = torch.randn(shape_k, device=device), torch.randn(shape_k, device=device)
    v = torch.randn(shape_v, device=device)
    gk = F.logsigmoid(torch.randn(shape_k, device=device)) / 16
    leaves = [t.requires_grad_(True) for t in (q, k, v, gk)]

    def run(form):
        def fn():
            for t in leaves:
                t.grad = None
            o, _ = form()
            o.sum().backward()
            if device != "cpu":
                torch.cuda.synchronize()
        return fn

    scale = dk ** -0.5
    # the recurrent reference warms up on a short prefix: a full untimed run of it at L = 4,096 costs as
    # much as the timed one and adds nothing once its few small kernels have been dispatched
    short = [t[:, :, :64].detach().requires_grad_(True) for t in (q, k, v, gk)]
    rec = _time(run(lambda: recurrent_gla(q, k, v, gk, scale)), repeats,
                warmup=lambda: recurrent_gla(*short, scale)[0].sum().backward())
    chk = _time(run(lambda: chunk_gla(q, k, v, gk, scale, chunk_size=chunk)), repeats)
    return {"what": "recurrence", "L": length, "batch": batch, "heads": heads, "d_k": dk, "d_v": dv,
            "chunk": chunk, **_ratios(rec, chk)}


def bench_layer(length: int, batch: int, dim: int, chunk: int, repeats: int, device: str) -> dict:
    torch.manual_seed(0)
    layer = create_mixer("gla", dim, chunk_size=chunk).to(device)
    x = torch.randn(batch, length, dim, device=device, requires_grad=True)

    def run(mode):
        def fn():
            layer.zero_grad()
            x.grad = None
            layer(x, mode=mode).sum().backward()
            if device != "cpu":
                torch.cuda.synchronize()
        return fn

    rec = _time(run("recurrent"), repeats, warmup=lambda: layer(x[:, :64].detach(), mode="recurrent").sum().backward())
    chk = _time(run("chunk"), repeats)
    return {"what": "layer", "L": length, "batch": batch, "dim": dim, "heads": layer.num_heads, "chunk": chunk,
            **_ratios(rec, chk)}


def _load() -> float | None:
    # CPU timings are only comparable on an otherwise idle machine: record how busy this one was
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--dim", type=int, default=128, help="layer width (heads of d_k 16, d_v 32 for 128)")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per form and length (median reported)")
    ap.add_argument("--what", choices=("both", "recurrence", "layer"), default="both")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "scan_speed_gla.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    layer = create_mixer("gla", args.dim)
    rows = []
    for length in args.lengths:
        todo = []
        if args.what in ("both", "recurrence"):
            todo.append(lambda length=length: bench_kernel(length, args.batch, layer.num_heads, layer.head_k_dim,
                                                           layer.head_v_dim, args.chunk, args.repeats,
                                                           args.device))
        if args.what in ("both", "layer"):
            todo.append(lambda length=length: bench_layer(length, args.batch, args.dim, args.chunk, args.repeats,
                                                          args.device))
        for bench in todo:
            row = bench()
            rows.append(row)
            print(f"{row['what']:>10}  L={length:5d}  recurrent {row['recurrent_s'] * 1e3:9.1f} ms "
                  f"(cpu {row['recurrent_cpu_s'] * 1e3:9.1f})  chunk {row['chunk_s'] * 1e3:8.1f} ms "
                  f"(cpu {row['chunk_cpu_s'] * 1e3:8.1f})  speed-up {row['speedup']:6.1f}x "
                  f"(cpu {row['speedup_cpu']:6.1f}x)", flush=True)
    result = {"benchmark": "scan_speed_gla", "measure": "median wall and process-CPU time of forward + backward",
              "device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
              "repeats": args.repeats, "load_average_1min": _load(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""SLAB's claim on CPU: an SLA + BN transformer block against a softmax-attention + LayerNorm block.

Both blocks have the same width, heads and MLP, and see the same ``(B, N, C)`` tokens; N = 3136 is a 56x56
map (a Swin/PVT first stage at 224x224 input) attended globally. The SLA block is timed in its deploy form:
PRepBN ends training as RepBN, which :meth:`SLABBlock.reparameterize` folds into the following Linears, so
it has no normalisation left at all; the softmax block keeps its LayerNorms. Inference only (eval, no grad),
median of ``--repeats`` runs after a warm-up.

    python benchmarks/sla_vs_softmax.py --tokens 3136 --dim 96 --heads 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch

from archlab.zoo.mixers.sla import SLABBlock


def time_block(block: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        block(x)  # warm-up: allocations, kernel selection
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            block(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=3136, help="a square number: the map is sqrt x sqrt")
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    side = math.isqrt(args.tokens)
    if side * side != args.tokens:
        parser.error(f"--tokens must be a square number, got {args.tokens}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x = torch.randn(args.batch, args.tokens, args.dim)
    sla = SLABBlock(args.dim, (side, side), args.heads, norm="prepbn", attn="sla").eval()
    sla.reparameterize()
    sla_unfolded = SLABBlock(args.dim, (side, side), args.heads, norm="repbn", attn="sla").eval()
    softmax = SLABBlock(args.dim, (side, side), args.heads, norm="layernorm", attn="softmax").eval()
    result = {
        "tokens": args.tokens, "dim": args.dim, "heads": args.heads, "batch": args.batch, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "sla_bn_folded_s": time_block(sla, x, args.repeats),
        "sla_bn_unfolded_s": time_block(sla_unfolded, x, args.repeats),
        "softmax_ln_s": time_block(softmax, x, args.repeats),
    }
    result["speedup_softmax_over_sla"] = result["softmax_ln_s"] / result["sla_bn_folded_s"]
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

"""Every ``archlab compress`` method on one trained model, measured in one run beside the uncompressed model:
test accuracy (PyTorch and ONNX Runtime), parameters, FLOPs, and CPU latency at batch 1 (PyTorch and ONNX Runtime,
one thread, median of 50 calls).

The model is a run's best: ``--run RUN`` or, without it, a fresh ``archlab search`` of ``--data`` for ``--budget``
(kept in ``--work``) in the space of ``--family``: ``image`` (the default image space: its winners are
convolutional, so the low-rank methods, which factorise linear layers, do not apply to them) or ``vit`` (the
``metaformer`` space with attention as its only token mixer: a small ViT). Rows go to ``--json`` (default
``benchmarks/results/compression_<data>_<family>.json``); a method that does not apply is a row with its reason.

    python benchmarks/compression.py --data fashion-mnist --budget 5m --family image --work /tmp/compress_bench
    python benchmarks/compression.py --data fashion-mnist --budget 5m --family vit --work /tmp/compress_bench

The character-LM family of the issue is not covered: ``archlab compress`` refuses token-id models.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from _results import save_results

from archlab.compress._run import METHODS, CompressSettings, compress_run
from archlab.errors import UserError
from archlab.study import SearchConfig, parse_duration, run_search

FAMILIES = {"image": {"space": "image"}, "vit": {"space": "metaformer", "mixers": ("attention",)}}
KEYS = ("accuracy", "onnx_accuracy", "params", "flops", "torch_latency_ms", "onnx_latency_ms", "onnx_bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a finished run folder (default: search one first)")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--budget", default="5m")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--rank", type=float, default=0.5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/archlab_compress_bench"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    run = args.run
    if run is None:
        run = args.work / f"run-{args.data}-{args.family}-{args.seed}"
        if not (run / "best").is_dir():
            shutil.rmtree(run, ignore_errors=True)
            print(f"searching {args.data} ({args.family}) for {args.budget} into {run}", file=sys.stderr)
            run_search(SearchConfig(data=args.data, budget_s=parse_duration(args.budget), seed=args.seed,
                                    **FAMILIES[args.family]), run, report=False)
    rows = []
    for method in args.methods:
        out = args.work / f"{run.name}-{method}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        try:
            result = compress_run(run, method, out, CompressSettings(rank=args.rank, seed=args.seed))
        except UserError as e:  # the method does not apply to this model: say so in the table
            rows.append({"method": method, "skipped": str(e)})
            print(method, "skipped:", e, file=sys.stderr)
            continue
        seconds = time.perf_counter() - t0
        if not any(r["method"] == "none (original)" for r in rows):
            rows.insert(0, {"method": "none (original)", **{k: result["before"].get(k) for k in KEYS}})
        after = {k: result["after"].get(k) for k in KEYS}
        rows.append({"method": method, **after, "compress_seconds": seconds, "structure": result["structure"]})
        print(rows[-1], file=sys.stderr)
    print("| method | test acc. (PyTorch) | test acc. (ORT) | params | FLOPs | PyTorch ms | ORT ms | ONNX bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['method']} | does not apply: {r['skipped']} |" + " |" * (len(KEYS) - 1))
            continue
        cells = [r["method"]] + ["—" if r.get(k) is None else (f"{100 * r[k]:.2f} %" if "accuracy" in k else
                                                              f"{r[k]:.3f}" if k.endswith("_ms") else f"{r[k]:,}")
                                 for k in KEYS]
        print("| " + " | ".join(cells) + " |")
    save_results(args.json or Path(__file__).parent / f"results/compression_{args.data}_{args.family}.json", args,
                 rows)


if __name__ == "__main__":
    main()

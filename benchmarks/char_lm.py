"""Tiny-Shakespeare character LM: one small model per sequence-mixer family at (nearly) equal parameters.

Every model is ``sequence_lm`` with ``depth`` layers of one mixer and an MLP of ratio 2 after each (so the
attention-free mixers and attention get the same block), its width chosen per mixer to come closest to
``--params``. All train on the same random windows (seeded) for the same wall-clock budget, then report
validation bits per character over the whole validation split (55,770 characters), training tokens/s and
step-decoding tokens/s (batch 1, one thread). Training throughput is also given as a fraction of this
machine's measured matmul rate (a 1024 x 1024 float32 matmul on the same threads): the model's training
FLOP rate, 3x the forward FLOPs that ``torch.utils.flop_counter`` counts (matmuls and convolutions; the scans'
elementwise work is not counted, so this is the share of peak the useful matmul work reaches).

    python benchmarks/char_lm.py --params 200000 --seconds 120 --seeds 0
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _results import device_name, save_results  # benchmarks/ is on the path when a script runs

from archlab import zoo
from archlab.data import load_char_corpus
from archlab.measure import count_flops, count_params
from archlab.train.lm import decode_tokens_per_s, evaluate_bpc, train_lm

DEFAULT_MIXERS = ("causal_attention", "gla", "mamba", "ssd", "s4d", "lmu", "lstm")
WIDTHS = (32, 48, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256)


def build(mixer: str, dim: int, depth: int, vocab: int, block: int) -> torch.nn.Module:
    return zoo.create_model("sequence_lm", dim=dim, depth=depth, mixer=mixer, vocab_size=vocab, mlp_ratio=2.0,
                            norm="layernorm", seq_len=block)


def width_for(mixer: str, target: int, depth: int, vocab: int, block: int) -> int:
    return min(WIDTHS, key=lambda w: abs(count_params(build(mixer, w, depth, vocab, block)) - target))


def matmul_flops_per_s(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mixers", nargs="+", default=list(DEFAULT_MIXERS))
    ap.add_argument("--params", type=int, default=200_000)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=120.0, help="training wall-clock per model")
    ap.add_argument("--steps", type=int, default=None,
                    help="also stop after this many steps (the earlier of the two ends the run and its schedule)")
    ap.add_argument("--device", default="cpu",
                    help="torch device to train and score on; on a GPU the CPU-only columns (decode tokens/s, "
                         "share of the matmul rate) are left out")
    ap.add_argument("--save-dir", type=Path, default=None, help="save each trained model's weights here")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/char_lm.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_char_corpus("tinyshakespeare")
    vocab = len(corpus.vocab)
    on_cpu = args.device == "cpu"
    peak = matmul_flops_per_s() if on_cpu else None
    if on_cpu:
        print(f"matmul rate: {peak / 1e9:.1f} GFLOP/s on {args.threads} threads", flush=True)
    rows = []
    for mixer in args.mixers:
        dim = width_for(mixer, args.params, args.depth, vocab, args.block)
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = build(mixer, dim, args.depth, vocab, args.block).to(args.device)
            t0 = time.perf_counter()
            r = train_lm(model, corpus.train, corpus.val, block_size=args.block, batch_size=args.batch,
                         steps=args.steps, max_seconds=args.seconds, lr=3e-3, seed=seed, eval_tokens=16_384)
            train_s = time.perf_counter() - t0
            val_bpc = evaluate_bpc(model, corpus.val, args.block)
            if args.save_dir is not None:
                args.save_dir.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), args.save_dir / f"char_lm_{mixer}_seed{seed}.pt")
            model.cpu()
            train_flops_per_token = 3 * count_flops(model, (args.block,), input_dtype="long") / args.block
            decode = decode_tokens_per_s(model, prompt_len=64, n_new=256, vocab_size=vocab) if on_cpu else None
            peak_fraction = train_flops_per_token * r.train_tokens_per_s / peak if on_cpu else None
            row = {"mixer": mixer, "seed": seed, "dim": dim, "params": count_params(model), "steps": r.steps,
                   "val_bpc": val_bpc, "train_tokens_per_s": r.train_tokens_per_s, "decode_tokens_per_s": decode,
                   "train_s": train_s, "train_flops_per_token": train_flops_per_token,
                   "matmul_flops_per_s": peak, "peak_fraction": peak_fraction}
            rows.append(row)
            print(f"{mixer:17s} seed {seed} dim {dim:3d} params {row['params']:7,d} steps {r.steps:5d} "
                  f"val bpc {val_bpc:.3f} train {r.train_tokens_per_s:8.0f} tok/s"
                  + (f" ({100 * peak_fraction:.1f} % of matmul) decode {decode:6.0f} tok/s" if on_cpu else ""),
                  flush=True)
    print()
    print(f"tiny Shakespeare, {args.depth} layers + MLP 2, block {args.block}, batch {args.batch}, "
          f"{args.seconds:.0f} s per model" + (f" or {args.steps} steps" if args.steps else "")
          + f", seeds {args.seeds}, {args.threads} threads, {device_name(args.device)}")
    print("| mixer | width | params | steps | val bits/char | train tokens/s | train FLOP rate / matmul rate | "
          "decode tokens/s (batch 1) |")
    print("|---|---|---|---|---|---|---|---|")
    for mixer in args.mixers:
        rs = [r for r in rows if r["mixer"] == mixer]
        print(f"| {mixer} | {rs[0]['dim']} | {rs[0]['params']:,} | {statistics.mean(r['steps'] for r in rs):.0f} | "
              f"{statistics.mean(r['val_bpc'] for r in rs):.3f} | "
              f"{statistics.mean(r['train_tokens_per_s'] for r in rs):,.0f} | "
              + (f"{100 * statistics.mean(r['peak_fraction'] for r in rs):.1f} % | "
                 f"{statistics.mean(r['decode_tokens_per_s'] for r in rs):,.0f} |"
                 if on_cpu else "(CPU only) | (CPU only) |"))
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

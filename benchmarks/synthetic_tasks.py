"""Selective copying and multi-query associative recall at length 256: Mamba and GLA against a same-size LSTM.

The Mamba paper (Gu & Dao, COLM 2024, §4.1) shows that input-dependent (selective) state spaces solve content-aware
tasks that LTI models and small recurrent nets do not; Zoology (Arora, Eyuboglu et al., ICLR 2024) measures the
same for associative recall with many queries per sequence (MQAR). Every model here is a ``sequence_lm`` (embedding,
``--depth`` layers of one mixer each followed by an MLP of ratio 2, LayerNorm, an untied output layer), its width
chosen per mixer to come closest to ``--params``, trained with the same recipe (AdamW without weight decay,
cosine, batch 32, the same wall-clock) on a fresh generated batch at every step
(:func:`archlab.train.seqtasks.train_on_task`), optionally with a length curriculum (``--lengths``, the last one
the task's length), and scored on 1,000 test sequences of the full length drawn from another seed:

- ``selective-copying``: :func:`archlab.data.selective_copying_batch` (s4's layout: 16 tokens from 14 values
  scattered in noise, then 16 markers at which they must be emitted in order; chance 1/14);
- ``mqar``: :func:`archlab.data.multiquery_recall_batch` (``--pairs`` key-value pairs, every key asked once
  later on; vocabulary 64, chance 1/32).

The trained models are also scored on longer sequences (``--test-lengths``, default 512 and 1,024: the Mamba
paper tests its models beyond the training length). For MQAR each run also records its accuracy by query (the
first, second, .. key asked) beside what answering by elimination would score (:func:`archlab.train.seqtasks.
recall_profile`): a model that has learned no key-value binding can still reach about 34 % that way.

    python benchmarks/synthetic_tasks.py --tasks selective-copying mqar --seconds 1200 --lengths 64 128 256
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _results import device_name, save_results  # benchmarks/ is on the path when a script runs

from archlab import zoo
from archlab.data import multiquery_recall_batch, selective_copying_batch
from archlab.measure import count_params
from archlab.train.seqtasks import evaluate_task, predict, recall_profile, train_on_task

WIDTHS = (32, 40, 48, 56, 64, 72, 80, 96, 112, 128)
# --mixers names: a registered mixer, or a variant of one
VARIANTS = {"gla-conv": {"mixer": "gla", "use_short_conv": True},  # fla's short convolutions on q, k, v
            "mamba-mimetic": {"mixer": "mamba", "mimetic": True},  # Trockman et al.'s initialisation
            # ... with the convolution starting as a positive sum of the current and previous token
            "mamba-mimetic-shift": {"mixer": "mamba", "mimetic": True, "mimetic_conv_shift": 0.5},
            # ... with B keyed by the previous token and C by the current one (B_s = C_{s-1} at the start)
            "mamba-mimetic-keys": {"mixer": "mamba", "mimetic": True, "mimetic_shifted_keys": True},
            # the shifted convolution with a larger state (the key dimension of the linear attention it starts
            # as); the width comes down to keep the parameters
            **{f"mamba-mimetic-shift-n{n}": {"mixer": "mamba", "mimetic": True, "mimetic_conv_shift": 0.5,
                                             "d_state": n} for n in (32, 64, 128)}}
TEST_SEED = 10_000


def task_batch(task: str, pairs: int):
    if task == "selective-copying":
        return 16, lambda n, rng, length: selective_copying_batch(n, length=length, n_memorize=16, vocab=16, seed=rng)
    if task == "mqar":
        return 64, lambda n, rng, length: multiquery_recall_batch(n, length=length, n_pairs=pairs, vocab=64,
                                                                   seed=rng)
    raise SystemExit(f"unknown task {task!r}; known: selective-copying, mqar")


def build(mixer: str, dim: int, depth: int, vocab: int) -> torch.nn.Module:
    return zoo.create_model("sequence_lm", dim=dim, depth=depth, mixer=VARIANTS.get(mixer, mixer), vocab_size=vocab,
                            mlp_ratio=2.0, norm="layernorm", tie_embeddings=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["selective-copying", "mqar"])
    ap.add_argument("--mixers", nargs="+", default=["mamba", "gla", "gla-conv", "lstm"],
                    help=f"registered sequence mixers, or {', '.join(VARIANTS)}")
    ap.add_argument("--params", type=int, default=70_000)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=8, help="key-value pairs per MQAR sequence")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256],
                    help="length curriculum, equal shares of the run (of the time, or of --steps if that ends "
                         "it first); the last is the task's length")
    ap.add_argument("--seconds", type=float, default=1200.0, help="training wall-clock per model")
    ap.add_argument("--steps", type=int, default=None,
                    help="also stop after this many steps (the earlier of the two ends the run and its schedule)")
    ap.add_argument("--device", default="cpu", help="torch device to train and score on, e.g. cuda")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--test-lengths", type=int, nargs="*", default=[512, 1024],
                    help="also score the trained models on these longer sequences (length extrapolation)")
    ap.add_argument("--save-dir", type=Path, default=None, help="save each trained model's weights here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/synthetic_tasks.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    length = args.lengths[-1]
    rows = []
    for task in args.tasks:
        vocab, make = task_batch(task, args.pairs)
        tests = {n: make(args.n_test, np.random.default_rng(TEST_SEED), n) for n in [length, *args.test_lengths]}
        for mixer in args.mixers:
            dim = min(WIDTHS, key=lambda w: abs(count_params(build(mixer, w, args.depth, vocab)) - args.params))
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = build(mixer, dim, args.depth, vocab).to(args.device)
                t0 = time.perf_counter()
                last = [t0]

                def progress(point: dict, task=task, mixer=mixer, last=last) -> None:
                    if time.perf_counter() - last[0] >= 60:
                        last[0] = time.perf_counter()
                        print(f"  {task} {mixer} step {point['step']:5d} {point['seconds']:5.0f}s "
                              f"loss {point['loss']:.3f}", flush=True)

                r = train_on_task(model, make, lengths=args.lengths, steps=args.steps, max_seconds=args.seconds,
                                  batch_size=32,
                                  lr=args.lr, weight_decay=args.weight_decay, seed=seed,
                                  on_step=progress)
                scores = {n: evaluate_task(model, x, y) for n, (x, y) in tests.items()}
                token_acc, seq_acc = scores[length]
                if args.save_dir is not None:
                    args.save_dir.mkdir(parents=True, exist_ok=True)
                    torch.save(model.state_dict(), args.save_dir / f"{task}_{mixer}_seed{seed}.pt")
                row = {"task": task, "mixer": mixer, "seed": seed, "dim": dim, "params": count_params(model),
                       "steps": r.steps, "steps_per_length": r.steps_per_length, "token_accuracy": token_acc,
                       "sequence_accuracy": seq_acc,
                       "longer": {n: {"token_accuracy": a, "sequence_accuracy": b} for n, (a, b) in scores.items()
                                  if n != length},
                       "train_tokens_per_s": r.train_tokens_per_s,
                       # MQAR: accuracy by query (1st .. last key asked) against answering by elimination
                       **({"recall_profile": recall_profile(predict(model, tests[length][0]), tests[length][1])}
                          if task == "mqar" else {}),
                       "seconds": time.perf_counter() - t0,
                       "loss_curve": [(p["step"], round(p["loss"], 4)) for p in r.curve]}
                rows.append(row)
                print(f"{task:18s} {mixer:6s} seed {seed} dim {dim:3d} params {row['params']:7,d} steps "
                      f"{r.steps:5d} token acc {token_acc:.3f} sequence acc {seq_acc:.3f} "
                      f"({row['seconds']:.0f}s); longer: "
                      + ", ".join(f"{n}: {a:.3f}" for n, (a, _) in scores.items() if n != length), flush=True)
                if "recall_profile" in row:
                    profile = row["recall_profile"]
                    print("  accuracy by query (1st .. last key asked): "
                          + " ".join(f"{a:.2f}" for a in profile["accuracy_by_query"]) + "; by elimination: "
                          + " ".join(f"{a:.2f}" for a in profile["elimination_accuracy"])
                          + f"; answers among the values not asked yet: {profile['among_unasked']:.3f}", flush=True)
    print()
    print(f"length {length} (curriculum {args.lengths}), {args.depth} layers + MLP 2, ~{args.params:,} params, "
          f"{args.seconds:.0f} s per model, lr {args.lr}, batch 32, {args.threads} threads, "
          f"{device_name(args.device)}" + (f", at most {args.steps} steps" if args.steps else ""))
    longer = " | ".join(f"token accuracy at {n}" for n in args.test_lengths)
    print(f"| task | mixer | width | params | steps | token accuracy (per seed) | sequence accuracy | {longer} |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(args.test_lengths))
    for task in args.tasks:
        for mixer in args.mixers:
            rs = [r for r in rows if r["task"] == task and r["mixer"] == mixer]
            print(f"| {task} | {mixer} | {rs[0]['dim']} | {rs[0]['params']:,} | "
                  f"{', '.join(str(r['steps']) for r in rs)} | "
                  f"{', '.join(format(r['token_accuracy'], '.3f') for r in rs)} | "
                  f"{', '.join(format(r['sequence_accuracy'], '.3f') for r in rs)} | "
                  + " | ".join(", ".join(format(r["longer"][n]["token_accuracy"], ".3f") for r in rs)
                               for n in args.test_lengths) + " |")
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

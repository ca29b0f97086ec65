"""mmMamba on a tiny image + text decoder: the pure Mamba-2 student, hybrids, and the mixers' cost with length.

MAP row 67's check: a decoder-only transformer that reads an 8x8 digit as 16 patch tokens and writes its name
(``archlab.zoo.models.vl_decoder``) is distilled by :func:`archlab.compress.mmmamba.mmmamba_distill` into students
whose attention layers become Mamba-2 layers seeded from it: the pure student (every layer), hybrids keeping one or
two attention layers (evenly spread), and the pure student trained with stage 3 alone for the same total steps
(what stages 1 and 2 add). Every arm sees the same batches; accuracy is the exact match of the greedy caption on the
test split; "recovered" is the arm's accuracy over the teacher's.

Then the mixers alone: one causal attention layer against its seeded Mamba-2 layer (forward, batch 1, width 64,
4 heads, one thread) at growing lengths: the median of repeated timings, and their ratio.

    python benchmarks/mmmamba.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _results import device_name, save_results  # benchmarks/ is on the path when a script runs

from archlab.compress.mmmamba import convert, hybrid_layers, mmmamba_distill, seed_from_attention
from archlab.data import load_dataset
from archlab.train import fit, seed_everything, shuffled_batches
from archlab.zoo.mixers.causal_attention import CausalSelfAttention
from archlab.zoo.models.vl_decoder import TinyVLDecoder, caption_accuracy, caption_loss, caption_task


def task_loss(logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), batch[-1].flatten(), ignore_index=-100)


def run_seed(seed: int, args: argparse.Namespace) -> list[dict]:
    d = load_dataset("digits", seed=seed)
    task = caption_task({"train": d.x_train, "test": d.x_test}, {"train": d.y_train, "test": d.y_test})
    train = task.inputs["train"]
    seed_everything(seed)
    teacher = TinyVLDecoder(vocab_size=len(task.vocab), depth=args.depth, dim=args.dim, n_heads=4)
    fit(teacher, shuffled_batches(*train, batch_size=64, seed=seed), caption_loss, epochs=args.teacher_epochs,
        steps_per_epoch=-(-len(train[0]) // 64), lr=3e-3, amp=False)
    teacher_acc = caption_accuracy(teacher, task)
    rows = [{"seed": seed, "arm": "teacher (attention)", "keep": list(range(args.depth)), "accuracy": teacher_acc,
             "recovered": 1.0}]
    print(f"seed {seed} teacher {teacher_acc:.4f}", flush=True)
    total = sum(args.steps)
    arms = [("pure Mamba-2, stages 1-2-3", (), tuple(args.steps)),
            ("pure Mamba-2, stage 3 only", (), (0, 0, total)),
            ("hybrid, 1 attention layer", hybrid_layers(args.depth, 1), tuple(args.steps)),
            ("hybrid, 2 attention layers", hybrid_layers(args.depth, 2), tuple(args.steps))]
    for name, keep, steps in arms:
        gen = torch.Generator().manual_seed(seed + 1)

        def batches(step: int, gen: torch.Generator = gen) -> tuple[torch.Tensor, ...]:
            idx = torch.randint(0, len(train[0]), (64,), generator=gen)
            return tuple(t[idx] for t in train)

        student = convert(teacher, keep, seed=seed)
        seeded = caption_accuracy(student, task)
        t0 = time.perf_counter()
        mmmamba_distill(teacher, student, batches, steps=steps, task_loss=task_loss)
        acc = caption_accuracy(student, task)
        rows.append({"seed": seed, "arm": name, "keep": list(keep), "steps": list(steps), "seeded_accuracy": seeded,
                     "accuracy": acc, "recovered": acc / teacher_acc, "seconds": time.perf_counter() - t0})
        print(f"seed {seed} {name:30s} {acc:.4f} (recovered {acc / teacher_acc:.3f}; seeded {seeded:.3f})",
              flush=True)
    return rows


@torch.no_grad()
def mixer_latency(lengths: list[int], repeats: int) -> list[dict]:
    torch.manual_seed(0)
    attn = CausalSelfAttention(64, 4).eval()
    ssm = seed_from_attention(attn).eval()
    rows = []
    for length in lengths:
        x = torch.randn(1, length, 64)
        times = {}
        for name, layer in (("attention", attn), ("mamba2", ssm)):
            layer(x)
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                layer(x)
                samples.append(time.perf_counter() - t0)
            times[name] = statistics.median(samples) * 1e3
        rows.append({"length": length, "attention_ms": times["attention"], "mamba2_ms": times["mamba2"],
                     "speedup": times["attention"] / times["mamba2"]})
        print(f"length {length:6d} attention {times['attention']:8.2f} ms  mamba-2 {times['mamba2']:8.2f} ms  "
              f"speed-up {times['attention'] / times['mamba2']:.2f}x", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, nargs=3, default=[150, 150, 300], help="steps of stages 1, 2 and 3")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/mmmamba.json"))
    args = ap.parse_args()
    rows = [r for seed in args.seeds for r in run_seed(seed, args)]
    torch.set_num_threads(1)
    latency = mixer_latency(args.lengths, args.repeats)
    save_results(args.json, args, rows + [{"latency": r} for r in latency] + [{"machine": device_name("cpu")}])


if __name__ == "__main__":
    main()

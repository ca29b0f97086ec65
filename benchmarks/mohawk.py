"""MOHAWK on tiny Shakespeare: distil a 2-layer attention character LM into a discrete Mamba-2 (SSD) one.

MAP row 57's check: the student distilled in stages 1 -> 2 -> 3 (:func:`archlab.compress.mohawk_distill`) against
the same student trained from scratch for the same number of steps. Two more arms separate what the stages add:
the student that starts from the teacher's shared weights (embedding, norms, MLPs, head) and is then trained with
stage 3 only (knowledge distillation), or on the data alone (cross-entropy), for the same steps.

The teacher is ``sequence_lm`` with ``causal_attention`` (RoPE) trained first on random windows; every student has
the same width, depth and MLPs with ``ssd`` mixers of as many heads as the teacher. All arms read windows of the
same length and batch from the training split (one fixed stream, seeded) and are scored by validation bits per
character over the whole validation split.

    python benchmarks/mohawk.py --teacher-steps 2000 --student-steps 300 --stage-steps 50 50
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _results import device_name, save_results  # benchmarks/ is on the path when a script runs

from archlab import zoo
from archlab.compress import mohawk_distill, transfer_weights
from archlab.data import load_char_corpus
from archlab.measure import count_params
from archlab.train.lm import evaluate_bpc, train_lm


def build(mixer: dict, dim: int, depth: int, vocab: int, block: int) -> torch.nn.Module:
    return zoo.create_model("sequence_lm", dim=dim, depth=depth, mixer=mixer, vocab_size=vocab, mlp_ratio=2.0,
                            norm="layernorm", seq_len=block, tie_embeddings=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--d-state", type=int, default=32, help="the student's SSD state size per head")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--teacher-steps", type=int, default=2000)
    ap.add_argument("--student-steps", type=int, default=300,
                    help="every student arm's total steps (far fewer than the teacher's, as in the paper)")
    ap.add_argument("--stage-steps", type=int, nargs=2, default=[50, 50],
                    help="MOHAWK's stage 1 and 2 steps; stage 3 takes the rest of --student-steps")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--stage-lr", type=float, default=1e-2, help="learning rate of stages 1 and 2")
    ap.add_argument("--teacher-weights", type=Path, default=None,
                    help="load the teacher from this file if it exists, else train it and save it here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="default: benchmarks/results/mohawk_seed<SEED>.json")
    args = ap.parse_args()
    args.json = args.json or Path(f"benchmarks/results/mohawk_seed{args.seed}.json")
    stage3 = args.student_steps - sum(args.stage_steps)
    if stage3 < 1:
        raise SystemExit(f"--student-steps {args.student_steps} must exceed the stage 1 and 2 steps "
                         f"{args.stage_steps}")
    torch.set_num_threads(args.threads)
    corpus = load_char_corpus("tinyshakespeare")
    vocab = len(corpus.vocab)
    heads = args.dim // args.head_dim
    attention = {"mixer": "causal_attention", "num_heads": heads}
    ssd = {"mixer": "ssd", "n_v_heads": heads, "n_qk_heads": heads, "d_state": args.d_state}

    def student() -> torch.nn.Module:
        torch.manual_seed(args.seed + 1)
        return build(ssd, args.dim, args.depth, vocab, args.block)

    gen = torch.Generator().manual_seed(args.seed + 2)
    starts = torch.randint(0, len(corpus.train) - args.block, (args.student_steps, args.batch), generator=gen)
    offsets = torch.arange(args.block)

    def batches(step: int) -> torch.Tensor:  # the same windows, in the same order, for every distilled arm
        return corpus.train[starts[step][:, None] + offsets]

    def report(name: str, model: torch.nn.Module, steps: int, seconds: float, extra: dict | None = None) -> dict:
        bpc = evaluate_bpc(model, corpus.val, args.block)
        row = {"arm": name, "params": count_params(model), "steps": steps, "seconds": seconds, "val_bpc": bpc,
               **(extra or {})}
        print(f"{name:34s} params {row['params']:7,d} steps {steps:5d} {seconds:6.0f}s  val bits/char {bpc:.3f}",
              flush=True)
        return row

    rows = []
    torch.manual_seed(args.seed)
    teacher = build(attention, args.dim, args.depth, vocab, args.block)
    if args.teacher_weights is not None and args.teacher_weights.exists():
        teacher.load_state_dict(torch.load(args.teacher_weights, weights_only=True))
        rows.append(report("teacher (attention), loaded", teacher, args.teacher_steps, 0.0))
    else:
        t0 = time.perf_counter()
        r = train_lm(teacher, corpus.train, corpus.val, block_size=args.block, batch_size=args.batch,
                     steps=args.teacher_steps, lr=args.lr, seed=args.seed, eval_tokens=16_384)
        rows.append(report("teacher (attention)", teacher, r.steps, time.perf_counter() - t0))
        if args.teacher_weights is not None:
            args.teacher_weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save(teacher.state_dict(), args.teacher_weights)
    teacher.eval()

    for name, copy_teacher in (("student from scratch", False), ("teacher's weights + cross-entropy", True)):
        model = student()
        if copy_teacher:
            transfer_weights(teacher, model)
        t0 = time.perf_counter()
        r = train_lm(model, corpus.train, corpus.val, block_size=args.block, batch_size=args.batch,
                     steps=args.student_steps, lr=args.lr, seed=args.seed + 3, eval_tokens=16_384)
        rows.append(report(name, model, r.steps, time.perf_counter() - t0))

    arms = [("teacher's weights + stage 3 only", (0, 0, args.student_steps)),
            ("MOHAWK stages 1 -> 2 -> 3", (*args.stage_steps, stage3))]
    for name, steps in arms:
        model = student()
        t0 = time.perf_counter()
        res = mohawk_distill(teacher, model, batches, steps=steps, lr=(args.stage_lr, args.stage_lr, args.lr),
                             weight_decay=0.1, log_every=50)  # train_lm's weight decay, as the other arms
        rows.append(report(name, model, sum(steps), time.perf_counter() - t0,
                           {"stage_steps": list(steps), "curves": res.curves}))

    print()
    print(f"tiny Shakespeare, {args.depth} layers of width {args.dim} + MLP 2, {heads} heads, block {args.block}, "
          f"batch {args.batch}; teacher {args.teacher_steps} steps; students {args.student_steps} steps "
          f"(MOHAWK {args.stage_steps[0]} + {args.stage_steps[1]} + {stage3}); seed {args.seed}, {args.threads} "
          f"threads, {device_name('cpu')}")
    print("| arm | params | steps | val bits/char |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['arm']} | {row['params']:,} | {row['steps']:,} | {row['val_bpc']:.3f} |")
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

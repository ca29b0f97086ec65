"""Return of the Encoder's distillation at toy scale: a tiny encoder-decoder student trained with the KD loss from
a decoder-only teacher, against the same student trained with cross-entropy alone.

Elfeki et al. (2025) distil a decoder-only teacher into their encoder-decoder student with
``alpha * KL(p_teacher || p_student) + (1 - alpha) * CE``, alpha 0.9
(:func:`archlab.zoo.models.encdec_lm.distillation_loss`). Here the task is sorting: the source is 6-12 symbols
from 10 followed by a separator, the target the same symbols in ascending order, then EOS. The teacher, a
decoder-only :class:`DecoderLM` (``--teacher-layers`` x ``--teacher-width``) reading ``[source, target]``, learns it
from a fresh batch at every step (plenty of data). Each student (``encdec_lm_tiny``: 2 encoder + 1 decoder layers
of width 64) sees only ``--n-train`` labelled pairs, for the same steps and recipe; the KD student also gets the
teacher's next-token distributions at the target positions (word-level KD on the gold targets; the reference
additionally samples targets from the teacher). Both are scored on 1,000 unseen pairs: exact match of the greedy
output, and token accuracy. ``--seeds`` repeats the students (data, init) with the one teacher.

    python benchmarks/encdec_kd.py --n-train 256 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save_results  # noqa: E402

from archlab.zoo import create_model  # noqa: E402
from archlab.zoo.models.encdec_lm import DecoderLM, DecoderLMConfig, distillation_loss, teacher_logits_for_targets  # noqa: E402

PAD, BOS, EOS, SEP, FIRST = 0, 1, 2, 3, 4  # the symbols are FIRST .. FIRST + n_symbols - 1
N_SYMBOLS, MIN_LEN, MAX_LEN = 10, 6, 12
SRC_LEN, TGT_LEN = MAX_LEN + 1, MAX_LEN + 1  # source: symbols + SEP, left-padded; target: sorted + EOS, right-padded
VOCAB = FIRST + N_SYMBOLS


def sorting_pairs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` pairs: sources ``(n, SRC_LEN)`` (left-padded, ending in SEP), targets ``(n, TGT_LEN)`` (right-padded)."""
    src = torch.full((n, SRC_LEN), PAD)
    tgt = torch.full((n, TGT_LEN), PAD)
    lengths = torch.randint(MIN_LEN, MAX_LEN + 1, (n,), generator=gen)
    symbols = torch.randint(FIRST, FIRST + N_SYMBOLS, (n, MAX_LEN), generator=gen)
    for i, length in enumerate(lengths.tolist()):
        s = symbols[i, :length]
        src[i, SRC_LEN - length - 1:] = torch.cat([s, torch.tensor([SEP])])
        tgt[i, :length + 1] = torch.cat([s.sort().values, torch.tensor([EOS])])
    return src, tgt


def corrupt(tgt: torch.Tensor, noise: float, gen: torch.Generator) -> torch.Tensor:
    """Each symbol of the targets (not EOS, not padding) replaced by a uniformly random symbol with probability
    ``noise``: noisy labels whose most likely value is still the clean one."""
    flip = (torch.rand(tgt.shape, generator=gen) < noise) & (tgt >= FIRST)
    return torch.where(flip, torch.randint(FIRST, FIRST + N_SYMBOLS, tgt.shape, generator=gen), tgt)


def decoder_inputs(tgt: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full((len(tgt), 1), BOS), tgt[:, :-1]], 1)


def train_teacher(args: argparse.Namespace) -> DecoderLM:
    torch.manual_seed(1000)
    teacher = DecoderLM(DecoderLMConfig(n_layer=args.teacher_layers, n_embd=args.teacher_width,
                                        qkv_embd=args.teacher_width, hidden_dim=4 * args.teacher_width, n_head=4,
                                        n_kv_head=2, block_size=SRC_LEN + TGT_LEN, dropout=0.0, vocab_size=VOCAB))
    opt = torch.optim.AdamW(teacher.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(1000)
    start = time.perf_counter()
    for step in range(args.teacher_steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 100) * (1 - step / args.teacher_steps)
        src, tgt = sorting_pairs(args.batch, gen)
        tgt = corrupt(tgt, args.label_noise, gen)
        logits = teacher_logits_for_targets(teacher(torch.cat([src, tgt], 1)), SRC_LEN, TGT_LEN)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 500 == 0:
            print(f"  teacher step {step + 1} loss {loss.item():.4f} ({time.perf_counter() - start:.0f}s)",
                  flush=True)
    return teacher.eval()


@torch.no_grad()
def teacher_exact_match(teacher: DecoderLM, src: torch.Tensor, tgt: torch.Tensor) -> float:
    out = teacher.generate(src, max_new_tokens=TGT_LEN)[:, SRC_LEN:]
    return _exact(out, tgt)


def _exact(out: torch.Tensor, tgt: torch.Tensor) -> float:
    """Exact match up to and including EOS (what follows EOS is ignored)."""
    out = F.pad(out, (0, max(0, TGT_LEN - out.shape[1])), value=EOS)[:, :TGT_LEN]
    keep = tgt != PAD
    return ((out == tgt) | ~keep).all(1).float().mean().item()


@torch.no_grad()
def evaluate(student: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor) -> tuple[float, float]:
    student.eval()
    exact = _exact(student.generate(src, max_new_tokens=TGT_LEN)[:, 1:], tgt)
    logits = student(src, decoder_inputs(tgt))
    keep = tgt != PAD
    token = (logits.argmax(-1)[keep] == tgt[keep]).float().mean().item()
    student.train()
    return exact, token


def train_student(args: argparse.Namespace, seed: int, teacher: DecoderLM | None, data, test) -> dict:
    torch.manual_seed(seed)
    student = create_model("encdec_lm_tiny", vocab_size=VOCAB)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr)
    src_all, tgt_all = data
    if teacher is not None:
        with torch.no_grad():
            teacher_all = teacher_logits_for_targets(teacher(torch.cat([src_all, tgt_all], 1)), SRC_LEN, TGT_LEN)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    start = time.perf_counter()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 100) * (1 - step / args.steps)
        pick = torch.randint(len(src_all), (args.batch,), generator=gen)
        src, tgt = src_all[pick], tgt_all[pick]
        logits = student(src, decoder_inputs(tgt))
        if teacher is None:
            loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD)
        else:
            keep = tgt != PAD  # the KL at the real target positions, the CE at the same ones
            loss = distillation_loss(logits[keep], teacher_all[pick][keep], tgt[keep], alpha=args.alpha,
                                     temperature=args.temperature, ignore_index=PAD).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            exact, token = evaluate(student, *test)
            curve.append({"step": step + 1, "loss": loss.item(), "exact_match": exact, "token_accuracy": token})
    exact, token = curve[-1]["exact_match"], curve[-1]["token_accuracy"]
    return {"seed": seed, "kd": teacher is not None, "exact_match": exact, "token_accuracy": token,
            "best_exact_match": max(p["exact_match"] for p in curve), "seconds": time.perf_counter() - start,
            "params": sum(p.numel() for p in student.parameters()), "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=256, help="labelled pairs the students see")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--alpha", type=float, default=0.9, help="the reference's kd_alpha")
    parser.add_argument("--label-noise", type=float, default=0.0,
                        help="probability that a target symbol of the training data is replaced by a random one")
    parser.add_argument("--temperature", type=float, default=1.0, help="1: the reference (no softening)")
    parser.add_argument("--teacher-layers", type=int, default=4)
    parser.add_argument("--teacher-width", type=int, default=128)
    parser.add_argument("--teacher-steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-file", type=Path, default=None,
                        help="load the teacher's weights from here if it exists, else save them here after training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "encdec_kd.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    test = sorting_pairs(1000, torch.Generator().manual_seed(99))
    if args.teacher_file is not None and args.teacher_file.exists():
        teacher = train_teacher(argparse.Namespace(**{**vars(args), "teacher_steps": 0}))
        teacher.load_state_dict(torch.load(args.teacher_file, weights_only=True))
        print(f"teacher loaded from {args.teacher_file}", flush=True)
    else:
        print("training the teacher", flush=True)
        teacher = train_teacher(args)
        if args.teacher_file is not None:
            torch.save(teacher.state_dict(), args.teacher_file)
    teacher_acc = teacher_exact_match(teacher, *test)
    teacher_params = sum(p.numel() for p in teacher.parameters())
    print(f"teacher: {teacher_params:,} parameters, exact match {100 * teacher_acc:.1f} % on the test pairs",
          flush=True)
    rows = []
    for seed in args.seeds:
        gen = torch.Generator().manual_seed(seed)
        src, tgt = sorting_pairs(args.n_train, gen)
        data = src, corrupt(tgt, args.label_noise, gen)
        for kd in (False, True):
            row = train_student(args, seed, teacher if kd else None, data, test)
            row.update(teacher_params=teacher_params, teacher_exact_match=teacher_acc, n_train=args.n_train,
                       torch=torch.__version__, machine=platform.processor() or platform.machine())
            rows.append(row)
            print(f"seed {seed} {'KD' if kd else 'CE'} student: exact match {100 * row['exact_match']:.1f} %, "
                  f"token accuracy {100 * row['token_accuracy']:.1f} % ({row['seconds']:.0f}s)", flush=True)
    for kd in (False, True):
        scores = [r["exact_match"] for r in rows if r["kd"] == kd]
        print(f"{'KD' if kd else 'CE'}: exact match {100 * statistics.mean(scores):.1f} % mean over "
              f"{len(scores)} seeds")
    save_results(args.json, args, rows)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

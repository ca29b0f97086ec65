"""MosaicBERT's claim at CPU scale: masked-LM loss against wall-clock, a tiny MosaicBERT against a tiny classic BERT.

MosaicBERT (Portes et al., NeurIPS 2023) reaches a given quality sooner than Hugging Face BERT through ALiBi,
a GeGLU feed-forward, unpadding (pad tokens cost nothing; the last layer and the head run only on the masked
tokens) and a 30 % masking rate. Here both models see tiny Shakespeare (``$ARCHLAB_DATA``) as the reference sees
C4: one sequence per speech (the text between blank lines), cut into pieces of at most ``--seq-len`` characters
and padded to ``--seq-len`` (the reference pads every sequence to 128). They have the same width, depth, heads and
``intermediate_size`` (as BERT-Base and MosaicBERT-Base do; MosaicBERT's GeGLU makes it the larger one), and the
same recipe except the masking rate (MosaicBERT 30 %, BERT 15 %): AdamW (betas 0.9, 0.98, eps 1e-6, weight decay
1e-5), a linear warm-up over the first 6 % of the wall-clock budget then a linear decay to 2 % of the peak,
batch ``--batch``, ``--seconds`` of training each on ``--threads`` threads, one after the other.

Every ``--seconds / --evals`` seconds of training (the clock stops while it evaluates), each model's MLM loss is
measured on the same validation sequences with the same 15 % masks (BERT's rate, for both), so the curves compare.

    python benchmarks/mosaicbert_vs_bert.py --seconds 600 --threads 1
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save_results  # noqa: E402

from archlab.data import CharCorpus, load_char_corpus  # noqa: E402
from archlab.zoo import create_model  # noqa: E402
from archlab.zoo.models.mosaicbert import mlm_mask  # noqa: E402

PAD, MASK, OFFSET = 0, 1, 2  # character ids are shifted past the pad and mask tokens
RECIPES = {"mosaicbert": ("mosaicbert_tiny_char", 0.30), "bert": ("bert_tiny_char", 0.15)}


def speeches(corpus: CharCorpus, ids: torch.Tensor, seq_len: int) -> list[torch.Tensor]:
    """The text of ``ids`` split at blank lines, each speech cut into chunks of at most ``seq_len`` characters;
    chunks shorter than 8 characters are dropped."""
    text = "".join(corpus.vocab[i] for i in ids.tolist())
    out = []
    for speech in text.split("\n\n"):
        out.extend(c for c in corpus.encode(speech.strip("\n")).split(seq_len) if c.numel() >= 8)
    return out


def pad_batch(seqs: list[torch.Tensor], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), seq_len), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :s.numel()] = s + OFFSET
    return ids, (ids != PAD).long()


def lr_at(peak: float, progress: float, warmup: float = 0.06, final: float = 0.02) -> float:
    if progress < warmup:
        return peak * max(progress / warmup, 1e-3)
    return peak * (1 - (1 - final) * min(1.0, (progress - warmup) / (1 - warmup)))


@torch.no_grad()
def val_loss(model: torch.nn.Module, batches: list[tuple[torch.Tensor, ...]]) -> float:
    model.eval()
    total, count = 0.0, 0
    for inputs, mask, labels in batches:
        n = int((labels >= 0).sum())
        total += model(inputs, mask, labels=labels).loss.item() * n
        count += n
    model.train()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=512, help="both models' intermediate_size")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seconds", type=float, default=600.0, help="training wall-clock per model")
    parser.add_argument("--evals", type=int, default=10, help="validation points per run")
    parser.add_argument("--n-val", type=int, default=512, help="validation sequences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "mosaicbert_vs_bert.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    corpus = load_char_corpus("tinyshakespeare")
    vocab = corpus.vocab_size + OFFSET
    train = speeches(corpus, corpus.train, args.seq_len)
    val = speeches(corpus, torch.cat([corpus.val, corpus.test]), args.seq_len)[:args.n_val]
    fill = sum(s.numel() for s in train) / (len(train) * args.seq_len)
    print(f"{len(train):,} training and {len(val)} validation sequences; {100 * fill:.0f} % of the training "
          f"positions are real tokens", flush=True)
    gen = torch.Generator().manual_seed(args.seed + 1000)
    val_batches = []
    for i in range(0, len(val), 64):
        ids, mask = pad_batch(val[i:i + 64], args.seq_len)
        inputs, labels = mlm_mask(ids, vocab_size=vocab, mask_token_id=MASK, mlm_probability=0.15,
                                  special_token_ids=(PAD, MASK), attention_mask=mask, generator=gen)
        val_batches.append((inputs, mask, labels))

    rows = []
    for name in args.models:
        registered, rate = RECIPES[name]
        torch.manual_seed(args.seed)
        model = create_model(registered, vocab_size=vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                             num_attention_heads=args.heads, intermediate_size=args.intermediate,
                             max_position_embeddings=args.seq_len, hidden_dropout_prob=0.0)
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=lr_at(args.lr, 0.0), betas=(0.9, 0.98), eps=1e-6,
                                weight_decay=1e-5)
        data_gen = torch.Generator().manual_seed(args.seed)
        curve = [{"seconds": 0.0, "step": 0, "val_loss": val_loss(model, val_batches)}]
        print(f"{name}: {params:,} parameters, masking {100 * rate:.0f} %; val loss {curve[0]['val_loss']:.3f}",
              flush=True)
        model.train()
        step, trained, tokens, next_eval = 0, 0.0, 0, args.seconds / args.evals
        while trained < args.seconds:
            picks = torch.randint(len(train), (args.batch,), generator=data_gen).tolist()
            ids, mask = pad_batch([train[i] for i in picks], args.seq_len)
            inputs, labels = mlm_mask(ids, vocab_size=vocab, mask_token_id=MASK, mlm_probability=rate,
                                      special_token_ids=(PAD, MASK), attention_mask=mask, generator=data_gen)
            start = time.perf_counter()
            loss = model(inputs, mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            trained += time.perf_counter() - start
            step += 1
            tokens += int(mask.sum())
            for group in opt.param_groups:
                group["lr"] = lr_at(args.lr, trained / args.seconds)
            if trained >= next_eval or trained >= args.seconds:
                curve.append({"seconds": trained, "step": step, "train_loss": loss.item(),
                              "val_loss": val_loss(model, val_batches)})
                next_eval += args.seconds / args.evals
                print(f"  {name} {trained:6.0f}s step {step:5d} train {loss.item():.3f} val "
                      f"{curve[-1]['val_loss']:.3f}", flush=True)
        rows.append({"model": name, "registered": registered, "params": params, "mask_rate": rate,
                     "steps": step, "seconds": trained, "tokens_per_s": tokens / trained,
                     "steps_per_s": step / trained, "final_val_loss": curve[-1]["val_loss"],
                     "final_val_bits_per_masked_char": curve[-1]["val_loss"] / math.log(2), "curve": curve,
                     "torch": torch.__version__, "machine": platform.processor() or platform.machine()})
    save_results(args.json, args, rows)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

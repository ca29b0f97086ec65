"""Return of the Encoder's profile on CPU: first-token latency and decoding speed against input length, for an
encoder-decoder small LM and the decoder-only model of the same parameter count.

Elfeki et al. (2025) report that at equal parameters an encoder-decoder (encoder : decoder layers 2 : 1) answers
with 47 % lower first-token latency and 4.7x the throughput of a decoder-only model on edge devices: the input is
read once by the encoder, and each new token then runs only the decoder's third of the layers (plus cross-attention
to a fixed-size encoder cache), where the decoder-only model runs every layer per token over a cache that holds the
whole input. Both models are archlab's (:mod:`archlab.zoo.models.encdec_lm`): :class:`Mu` with ``--encoder-layers``
and ``--decoder-layers``, and :class:`DecoderLM` from :func:`decoder_lm_config_matching` (same width, heads,
vocabulary and parameter count). Both decode greedily with their KV caches, batch ``--batch``.

For each input length: first-token latency is the time of ``generate(x, 1)`` (the encoder or the prefill, then one
token); decoding speed is ``(n - 1) / (t_n - t_1)`` tokens/s per sequence for ``--new-tokens`` n; medians of
``--repeats``, the two models taking turns. Weights are random and EOS is disabled, so every run decodes all n tokens.

    python benchmarks/encdec_latency.py --lengths 64 128 256 512 1024 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save_results  # noqa: E402

from archlab.zoo.models.encdec_lm import (  # noqa: E402
    DecoderLM,
    Mu,
    MuConfig,
    decoder_lm_config_matching,
    decoder_param_count,
    encdec_param_count,
)


def timed(model: torch.nn.Module, x: torch.Tensor, new_tokens: int) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(x, max_new_tokens=new_tokens)
        seconds = time.perf_counter() - start
    added = out.shape[1] - (1 if isinstance(model, Mu) else x.shape[1])  # Mu's output starts with BOS
    assert added == new_tokens, (type(model).__name__, added, new_tokens)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=1024, help="MLP width of the encoder-decoder")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--encoder-layers", type=int, default=8)
    parser.add_argument("--decoder-layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1, help="1: one user on a device, as the paper measures")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "encdec_latency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    # eos_token_id -1 is never produced: both models decode every requested token
    config = MuConfig(n_encoder_layer=args.encoder_layers, n_decoder_layer=args.decoder_layers, n_embd=args.width,
                      qkv_embd=args.width, hidden_dim=args.hidden, n_head=args.heads, n_kv_head=args.kv_heads,
                      block_size=max(args.lengths) + args.new_tokens, dropout=0.0, vocab_size=args.vocab,
                      eos_token_id=-1)
    decoder_config = decoder_lm_config_matching(config)
    models = {"encoder-decoder": Mu(config).eval(), "decoder-only": DecoderLM(decoder_config).eval()}
    params = {"encoder-decoder": encdec_param_count(config), "decoder-only": decoder_param_count(decoder_config)}
    for name, model in models.items():
        assert sum(p.numel() for p in model.parameters()) == params[name]
    print(f"encoder-decoder {args.encoder_layers}+{args.decoder_layers} layers, {params['encoder-decoder']:,} "
          f"parameters; decoder-only {decoder_config.n_layer} layers (MLP {decoder_config.hidden_dim}), "
          f"{params['decoder-only']:,} parameters", flush=True)

    rows = []
    for length in args.lengths:
        x = torch.randint(3, args.vocab, (args.batch, length), generator=torch.Generator().manual_seed(length))
        for model in models.values():  # warm-up
            timed(model, x, 2)
        first = {name: [] for name in models}
        full = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                first[name].append(timed(model, x, 1))
                full[name].append(timed(model, x, args.new_tokens))
        row = {"input_length": length, "new_tokens": args.new_tokens, "batch": args.batch}
        for name in models:
            t1, tn = statistics.median(first[name]), statistics.median(full[name])
            row[name] = {"params": params[name], "first_token_ms": 1000 * t1, "total_ms": 1000 * tn,
                         "decode_tokens_per_s": (args.new_tokens - 1) / max(tn - t1, 1e-9),
                         "end_to_end_tokens_per_s": args.new_tokens / tn}
        ed, do = row["encoder-decoder"], row["decoder-only"]
        row["first_token_latency_change"] = ed["first_token_ms"] / do["first_token_ms"] - 1
        row["decode_speedup"] = ed["decode_tokens_per_s"] / do["decode_tokens_per_s"]
        rows.append(row)
        print(f"input {length:5d}: first token {ed['first_token_ms']:.1f} vs {do['first_token_ms']:.1f} ms "
              f"({100 * row['first_token_latency_change']:+.0f} %), decoding {ed['decode_tokens_per_s']:.0f} vs "
              f"{do['decode_tokens_per_s']:.0f} tokens/s ({row['decode_speedup']:.2f}x)", flush=True)
    for row in rows:
        row.update(torch=torch.__version__, machine=platform.processor() or platform.machine(),
                   threads=args.threads)
    save_results(args.json, args, rows)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

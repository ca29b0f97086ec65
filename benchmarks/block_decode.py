"""Block Transformer's claim on CPU: greedy batch decoding against a vanilla GPT-NeoX LM of equal parameters.

The Block Transformer (Ho et al., NeurIPS 2024) decodes each token with a small token decoder whose KV cache holds
only the current block (at most ``expansion_ratio + L_B - 1`` positions) and runs its block decoder, whose cache
holds one position per block, once per ``L_B`` tokens. A vanilla decoder attends over the whole context with every
layer at every token, and its cache grows by one position per token in every layer. The paper measures generation
throughput in two settings, which this script repeats at a CPU scale:

- decode-heavy: a 128-token prompt, 2,048 new tokens;
- prefill-heavy: a 2,048-token prompt, 128 new tokens.

Both models are built from the same GPT-NeoX layers (:mod:`archlab.zoo.models.block_transformer`): the Block
Transformer with ``--layers`` layers in each decoder, the vanilla model
(:func:`~archlab.zoo.models.block_transformer.vanilla_baseline`) at the token decoder's width with the depth
that comes closest to its parameter count. Throughput is ``batch x new tokens / seconds`` for the whole
``generate`` call (prompt included, as in the paper), the median of ``--repeats`` runs, the two models taking turns.
The weights are random: a greedy step costs the same whatever the weights are (no early stop).

    python benchmarks/block_decode.py --width 256 --layers 4 --batch 8 --threads 2
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

from archlab.zoo.models.block_transformer import BlockTransformer, vanilla_baseline  # noqa: E402

SETTINGS = {"decode-heavy": (128, 2048), "prefill-heavy": (2048, 128)}


def time_generate(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(prompt, new_tokens)
        seconds = time.perf_counter() - start
    assert out.shape == (prompt.shape[0], prompt.shape[1] + new_tokens)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=256, help="byte-level, as the tiny Shakespeare models")
    parser.add_argument("--block-length", type=int, default=4)
    parser.add_argument("--width", type=int, default=256, help="both decoders' and the vanilla model's width")
    parser.add_argument("--layers", type=int, default=4, help="layers of each of the two decoders")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "block_decode.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    block = BlockTransformer(vocab_size=args.vocab, block_length=args.block_length, block_hidden_size=args.width,
                             block_num_hidden_layers=args.layers, block_num_attention_heads=args.heads,
                             token_hidden_size=args.width, token_num_hidden_layers=args.layers,
                             token_num_attention_heads=args.heads).eval()
    vanilla = vanilla_baseline(block).eval()
    models = {"block": block, "vanilla": vanilla}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    print(f"block transformer: 2 x {args.layers} layers, {params['block']:,} parameters; vanilla: "
          f"{len(vanilla.gpt_neox.layers)} layers, {params['vanilla']:,} parameters", flush=True)

    rows = []
    for setting in args.settings:
        prompt_len, new_tokens = SETTINGS[setting]
        prompt = torch.randint(0, args.vocab, (args.batch, prompt_len), generator=torch.Generator().manual_seed(1))
        for model in models.values():  # warm-up: allocations, kernel selection
            time_generate(model, prompt[:, :max(prompt_len // 8, args.block_length)], 16)
        times = {name: [] for name in models}
        for r in range(args.repeats):
            for name, model in models.items():
                times[name].append(time_generate(model, prompt, new_tokens))
                print(f"  {setting} repeat {r + 1}/{args.repeats} {name}: {times[name][-1]:.2f} s", flush=True)
        context = prompt_len + new_tokens
        row = {"setting": setting, "prompt": prompt_len, "new_tokens": new_tokens, "batch": args.batch}
        for name, model in models.items():
            seconds = statistics.median(times[name])
            row[name] = {"params": params[name], "seconds": seconds, "times": times[name],
                         "tokens_per_s": args.batch * new_tokens / seconds,
                         "kv_cache_values": model.kv_cache_entries(context)["total_values"]}
        row["speedup"] = row["vanilla"]["seconds"] / row["block"]["seconds"]
        rows.append(row)
        print(f"{setting}: block {row['block']['tokens_per_s']:.0f} tok/s, vanilla "
              f"{row['vanilla']['tokens_per_s']:.0f} tok/s, speed-up {row['speedup']:.2f}x; KV cache at "
              f"{context} tokens: {row['block']['kv_cache_values']:,} vs {row['vanilla']['kv_cache_values']:,} "
              f"values per sequence", flush=True)
    for row in rows:
        row.update(torch=torch.__version__, machine=platform.processor() or platform.machine())
    save_results(args.json, args, rows)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""The textbook baseline a user would write by hand instead of searching: a plain VGG-style CNN trained for a
wall clock, in one short file with its own loop (it stands for the user's 50 lines, so it uses nothing of archlab
but the data loader, to train and test on the same splits as ``archlab search``).

The network (Simonyan & Zisserman, "Very Deep Convolutional Networks", ICLR 2015, at toy scale): conv-BN-ReLU
32, 32, max-pool, 64, 64, max-pool, 128, global average pool, linear (140k parameters on 1-channel inputs). The
recipe: AdamW (weight decay 5e-4) with a one-cycle learning rate (Smith & Topin, "Super-Convergence", 2019: 30 %
warm-up to 3e-3, cosine down) laid over the wall clock, so the run ends with a decayed rate whenever the clock
stops it; batch 128, random flips on flip-invariant data, label smoothing 0.1. It trains on the training split
and is tested on the test split once, at the end.

    python benchmarks/textbook_cnn.py --data fashion-mnist --seconds 600 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (32, 32, "pool", 64, 64, "pool", 128)


class TextbookCNN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, widths=WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            if w == "pool":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def one_cycle(progress: float, peak: float = 3e-3, warmup: float = 0.3) -> float:
    if progress < warmup:
        return peak * (0.04 + 0.96 * progress / warmup)
    return 0.5 * peak * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def train_for(data, seconds: float, seed: int, batch_size: int = 128) -> dict:
    """Train the textbook CNN on ``data`` (an archlab Dataset) for ``seconds`` of wall clock, then test it."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = TextbookCNN(data.input_shape[0], data.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=one_cycle(0.0), weight_decay=5e-4)
    x, y = data.x_train, data.y_train
    gen = torch.Generator().manual_seed(seed)
    steps, progress = 0, 0.0
    reserve = 0.0  # seconds the test pass takes, learnt from the first epoch's time per example
    while progress < 1.0:
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            xb = x[idx]
            if data.flip_invariant:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            elapsed = time.perf_counter() - start
            if steps == 20:  # a test example costs about a third of a training example
                reserve = 1.5 + elapsed / (20 * batch_size) * len(data.y_test) / 3
            progress = elapsed / max(1.0, seconds - reserve)
            if progress >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = one_cycle(progress)
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in zip(data.x_test.split(1000), data.y_test.split(1000), strict=True):
            correct += int((model(xb).argmax(1) == yb).sum())
    return {"test_accuracy": correct / len(data.y_test), "epochs": steps / math.ceil(len(y) / batch_size),
            "steps": steps, "wall_s": time.perf_counter() - start,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    from archlab.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = load_dataset(args.data, seed=args.seed)
    row = train_for(data, args.seconds - (time.perf_counter() - t0), args.seed)
    print(json.dumps({**vars(args), **row}))


if __name__ == "__main__":
    main()

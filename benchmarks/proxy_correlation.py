"""Zero-cost proxies against trained accuracy on the metaformer space (digits).

Samples archs (``space.sample(seed=1000 + i)``), scores each at initialisation on one batch of 64 training
images with every proxy of :mod:`archlab.proxies`, trains it at the ``search_vs_optuna.py`` fidelity (8 epochs,
batch 32) and prints Kendall τ of each proxy with the validation accuracy. Training runs on a GPU when there is
one (the fidelity is epochs, so the device does not change what is learned beyond floating-point order).

    python benchmarks/proxy_correlation.py --archs 30
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from scipy.stats import kendalltau

from archlab.data import load_dataset
from archlab.measure import count_params
from archlab.proxies import compute_proxies
from archlab.space import create_space
from archlab.train import TrainConfig, train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=30)
    ap.add_argument("--mixers", default="attention,mlp,pooling,sepconv")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "proxy_correlation_digits.json")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_dataset("digits", seed=0)
    space = create_space("metaformer", input_shape=data.input_shape, num_classes=data.num_classes,
                         mixers=args.mixers.split(","))
    idx = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))[:64]
    rows = []
    for i in range(args.archs):
        arch = space.sample(seed=1000 + i)
        torch.manual_seed(0)
        model = space.build(arch)
        scores = compute_proxies(model, data.x_train[idx], data.y_train[idx])
        scores["params"] = count_params(model)
        result = train_model(model.to(device), data.x_train.to(device), data.y_train.to(device),
                             data.x_val.to(device), data.y_val.to(device),
                             TrainConfig(epochs=8, batch_size=32, lr=3e-3, seed=0))
        rows.append({"arch": arch.to_dict(), "val": result.val_accuracy, **scores})
        print(i, round(result.val_accuracy, 4), {k: round(v, 3) for k, v in scores.items()}, flush=True)
    args.json.write_text(json.dumps(rows, indent=1))
    for name in ("naswot", "synflow", "grad_norm", "snip", "jacob_cov", "params"):
        tau = kendalltau([r[name] for r in rows], [r["val"] for r in rows]).statistic
        print(f"{name}: Kendall tau {tau:.3f}")


if __name__ == "__main__":
    main()

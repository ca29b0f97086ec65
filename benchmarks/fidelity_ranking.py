"""Does the search's short trial rank archs as the final training would? One arch at a time, two fidelities.

For each arch (``--archs`` names from ``ARCHS`` below, or ``--arch-json NAME=JSON``) it trains, with the main
job's settings for ``--data`` and ``--budget``:

* ``trial``: exactly what a search trial does (the run's trial config: its time fidelity on the search subset,
  batch, learning rate, early stopping);
* ``final``: what the final training does, but from scratch: all training images, ``--final-seconds`` of
  training (the final share of the budget), random flips on flip-invariant data, label smoothing 0.1, random
  shifts of ``--shift`` pixels (default: the main job's), no early stopping.

Each (arch, fidelity) prints and saves one row (validation and test accuracy, epochs, curve). The runs recorded
in commit a948789 used it to show why the 30-minute Fashion-MNIST search ends below 91 %:

    python benchmarks/fidelity_ranking.py --archs searched pool_attn --fidelity trial final --shift 0
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from _results import save_results

from archlab.data import load_dataset
from archlab.space import create_space
from archlab.study import SearchConfig, TrainingEvaluator
from archlab.study._config import final_train_config

ARCHS = {
    # the winner of the session-4 30-minute Fashion-MNIST search, seed 0 (90.79 % test after its final training)
    "searched": {"stages": [{"mixer": "raftmlp", "depth": 3, "width": 16},
                            {"mixer": "activator", "depth": 3, "width": 64},
                            {"mixer": "pooling", "depth": 2, "width": 64},
                            {"mixer": "wavemix", "depth": 1, "width": 24}],
                 "mlp_ratio": 4, "norm": "batchnorm", "stem_stride": 4},
    # the same, every width doubled
    "searched_x2": {"stages": [{"mixer": "raftmlp", "depth": 3, "width": 32},
                               {"mixer": "activator", "depth": 3, "width": 128},
                               {"mixer": "pooling", "depth": 2, "width": 128},
                               {"mixer": "wavemix", "depth": 1, "width": 48}],
                    "mlp_ratio": 4, "norm": "batchnorm", "stem_stride": 4},
    # a hand-written arch of the same space: PoolFormer stages, then one attention stage (as in CAFormer)
    "pool_attn": {"stages": [{"mixer": "pooling", "depth": 2, "width": 64},
                             {"mixer": "pooling", "depth": 2, "width": 128},
                             {"mixer": "attention", "depth": 1, "width": 128}],
                  "mlp_ratio": 3, "norm": "batchnorm", "stem_stride": 4},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--budget", type=float, default=1800.0, help="the main job's budget in seconds")
    ap.add_argument("--archs", nargs="+", default=["searched", "pool_attn"])
    ap.add_argument("--arch-json", nargs="*", default=[], help="NAME=JSON, more archs")
    ap.add_argument("--fidelity", nargs="+", choices=["trial", "final"], default=["trial", "final"])
    ap.add_argument("--trial-seconds", type=float, default=None, help="override the trial's time fidelity")
    ap.add_argument("--train-subset", type=int, default=None, help="override the search subset (0: all)")
    ap.add_argument("--final-seconds", type=float, default=1080.0)
    ap.add_argument("--shift", type=int, default=None, help="final training's random shift in pixels "
                                                            "(default: the main job's; the rows of commit a948789: 0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fidelity_ranking.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    archs = {name: ARCHS[name] for name in args.archs}
    archs.update({k: json.loads(v) for k, v in (a.split("=", 1) for a in args.arch_json)})
    data = load_dataset(args.data, seed=0)
    cfg = SearchConfig(data=args.data, budget_s=args.budget, trial_seconds=args.trial_seconds,
                       train_subset=args.train_subset).resolve(len(data.y_train))
    space = create_space("metaformer", input_shape=data.input_shape, num_classes=data.num_classes)
    trial_cfg = cfg.trial_config()
    final_cfg = final_train_config(trial_cfg, data, cfg.final_epochs, args.final_seconds)
    if args.shift is not None:
        final_cfg = replace(final_cfg, augment_shift=args.shift)
    rows = []
    for fidelity in args.fidelity:
        evaluator = (TrainingEvaluator(space, data, trial_cfg, train_subset=cfg.search_subset()) if fidelity == "trial"
                     else TrainingEvaluator(space, data, final_cfg))
        for name, arch in archs.items():
            t0 = time.perf_counter()
            r = evaluator(space.validate(arch))
            row = {"arch_name": name, "fidelity": fidelity, "state": r.state, "reason": r.reason,
                   "val_accuracy": r.metrics.get("val_accuracy"), "test_accuracy": r.metrics.get("test_accuracy"),
                   "params": r.metrics.get("params"), "epochs": len(r.curve),
                   "curve": [round(p["val_accuracy"] * 100, 2) for p in r.curve],
                   "seconds": time.perf_counter() - t0, "arch": arch}
            print(json.dumps(row), flush=True)
            rows.append(row)
            save_results(args.out, args, rows)


if __name__ == "__main__":
    main()

"""archlab's default search strategy against plain Optuna TPE, side by side.

Both search the same space (``metaformer``) on the same data and splits, evaluate archs with the same
evaluator and training fidelity, and get the same wall-clock budget per seed. The Optuna arm is what a user of
Optuna alone would write: ``study.optimize`` over an objective that suggests an arch define-by-run and trains
it. Reported per seed: best validation accuracy, the test accuracy of that arch, trials evaluated and
duplicate archs trained.

    python benchmarks/search_vs_optuna.py --budget 120s --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import optuna
import torch

from archlab.data import load_dataset
from archlab.search import DEFAULT_STRATEGY
from archlab.study import SearchConfig, TrainingEvaluator, make_space, parse_duration, run_search


def run_archlab(cfg: SearchConfig) -> dict:
    with TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = run_search(cfg, Path(tmp) / "run", report=False)
        wall = time.perf_counter() - t0
    return {"best_val": s["best"]["val_accuracy"], "best_test": s["best"]["test_accuracy"],
            "trials": s["trials"]["completed"] + s["trials"]["failed"], "duplicates_trained": 0,
            "wall_s": wall}


def run_optuna(cfg: SearchConfig) -> dict:
    data = load_dataset(cfg.data, seed=cfg.seed)
    cfg = cfg.resolve(len(data.y_train))
    space = make_space(cfg, data.input_shape, data.num_classes)
    evaluator = TrainingEvaluator(space, data, cfg.trial_config(), cfg.constraint_list, cfg.search_subset())
    seen: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        arch = space.suggest(trial)
        seen.append(arch.key)
        r = evaluator(arch)
        if r.state != "complete":
            raise optuna.TrialPruned(r.reason)
        trial.set_user_attr("test_accuracy", r.metrics["test_accuracy"])
        return r.metrics["val_accuracy"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    t0 = time.perf_counter()
    study.optimize(objective, timeout=cfg.budget_s)
    wall = time.perf_counter() - t0
    best = study.best_trial
    return {"best_val": best.value, "best_test": best.user_attrs["test_accuracy"], "trials": len(study.trials),
            "duplicates_trained": len(seen) - len(set(seen)), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--budget", default="120s", help="wall budget per arm and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=8, help="max epochs per trial (both arms)")
    ap.add_argument("--trial-seconds", default="8s", help="time fidelity per trial (both arms)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = parse_duration(args.budget)
    rows = []
    for seed in args.seeds:
        cfg = SearchConfig(data=args.data, strategy=DEFAULT_STRATEGY, budget_s=budget, seed=seed,
                           epochs=args.epochs, trial_seconds=parse_duration(args.trial_seconds),
                           final_epochs=0, export_onnx=False)
        for arm, fn in ((f"archlab {DEFAULT_STRATEGY}", run_archlab), ("optuna tpe", run_optuna)):
            r = {"arm": arm, "seed": seed, **fn(cfg)}
            rows.append(r)
            print(f"seed {seed} {arm:12s} best val {r['best_val']:.4f} test {r['best_test']:.4f} "
                  f"trials {r['trials']:3d} duplicates trained {r['duplicates_trained']} ({r['wall_s']:.0f}s)",
                  flush=True)
    print()
    print(f"{args.data}, budget {args.budget} per run, fidelity {args.epochs} epochs / {args.trial_seconds}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print("| arm | mean best val acc | mean test acc of best | per-seed test acc | mean trials | dup. trained |")
    print("|---|---|---|---|---|---|")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm]
        print(f"| {arm} | {statistics.mean(r['best_val'] for r in rs):.4f} | "
              f"{statistics.mean(r['best_test'] for r in rs):.4f} | "
              f"{', '.join(format(r['best_test'], '.4f') for r in rs)} | "
              f"{statistics.mean(r['trials'] for r in rs):.1f} | "
              f"{sum(r['duplicates_trained'] for r in rs)} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

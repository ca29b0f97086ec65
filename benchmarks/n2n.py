"""N2N on digits: an 8-layer CNN teacher compressed by layer removal then layer shrinkage, 3 seeds.

The issue's check: at least 3x fewer parameters at most 2 points below the teacher (test accuracy), and the mean
reward rising over the episodes (the first 5 episodes' mean against the last 5's, per stage).

    python benchmarks/n2n.py --seeds 0 1 2 --episodes 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _results import save_results

from archlab.compress.n2n import LayerSpec, SpecNet, n2n_stage
from archlab.data import load_dataset
from archlab.train import TrainConfig, evaluate, train_model

TEACHER = [LayerSpec("conv", 32), LayerSpec("conv", 32), LayerSpec("conv", 64, stride=2), LayerSpec("conv", 64),
           LayerSpec("conv", 64), LayerSpec("conv", 128, stride=2), LayerSpec("fc", 128), LayerSpec("fc", 64)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--rollouts", type=int, default=5)
    ap.add_argument("--kd-epochs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results/n2n_digits.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("digits", seed=0)
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        teacher = SpecNet(TEACHER, 1, 10)
        train_model(teacher, data.x_train, data.y_train, data.x_val, data.y_val,
                    TrainConfig(epochs=30, patience=None, seed=seed))
        acc_t = evaluate(teacher, data.x_val, data.y_val)[1]
        test_t = evaluate(teacher, data.x_test, data.y_test)[1]
        params_t = sum(p.numel() for p in teacher.parameters())
        common = dict(episodes=args.episodes, rollouts=args.rollouts, kd_epochs=args.kd_epochs, seed=seed,
                      teacher_accuracy=acc_t, teacher_params=params_t)
        removal = n2n_stage("removal", teacher, teacher, data.x_train, data.y_train, data.x_val, data.y_val,
                            **common)
        shrink = n2n_stage("shrinkage", teacher, removal.model, data.x_train, data.y_train, data.x_val, data.y_val,
                           **common)
        final = shrink if shrink.reward >= removal.reward else removal
        test_s = evaluate(final.model, data.x_test, data.y_test)[1]
        row = {"seed": seed, "teacher_params": params_t, "teacher_val": acc_t, "teacher_test": test_t,
               "student_params": final.params, "student_val": final.accuracy, "student_test": test_s,
               "compression": params_t / final.params, "test_drop_points": 100 * (test_t - test_s),
               "removal_specs": [vars(s) for s in removal.specs], "final_specs": [vars(s) for s in final.specs],
               "removal_mean_rewards": removal.mean_rewards, "shrink_mean_rewards": shrink.mean_rewards,
               "removal_first5_last5": [statistics.mean(removal.mean_rewards[:5]),
                                        statistics.mean(removal.mean_rewards[-5:])],
               "shrink_first5_last5": [statistics.mean(shrink.mean_rewards[:5]),
                                       statistics.mean(shrink.mean_rewards[-5:])],
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print({k: v for k, v in row.items() if not k.endswith(("specs", "mean_rewards"))}, file=sys.stderr,
              flush=True)
    print("| seed | teacher params | test | student params | test | compression | drop (points) | "
          "removal reward first 5 → last 5 | shrinkage reward first 5 → last 5 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['teacher_params']:,} | {100 * r['teacher_test']:.2f} % | "
              f"{r['student_params']:,} | {100 * r['student_test']:.2f} % | {r['compression']:.1f}x | "
              f"{r['test_drop_points']:.2f} | {r['removal_first5_last5'][0]:.3f} → {r['removal_first5_last5'][1]:.3f}"
              f" | {r['shrink_first5_last5'][0]:.3f} → {r['shrink_first5_last5'][1]:.3f} |")
    save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

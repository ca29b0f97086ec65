"""archlab's search strategies against plain Optuna TPE, side by side.

Three arms search the same space (``metaformer``) on the same data and splits, evaluate archs with the same
evaluator and training fidelity, and get the same wall-clock budget per seed under the same rule: a trial
starts only while budget is left, and its time fidelity is capped at what is left (archlab's own rule; the
Optuna arm's objective passes the remaining seconds to the evaluator, so its last trial no longer runs past).

- ``archlab rea``: ``run_search`` with archlab's default strategy (regularized evolution with the zero-cost
  warm-up and median stopping);
- ``archlab tpe``: ``run_search`` with ``--strategy tpe`` (Optuna's TPE behind archlab's ledger and loop, with
  the same zero-cost warm start of its first trials, ``--warmstart proxies``; results recorded before the
  warm start applied to every strategy had none);
- ``optuna tpe``: what a user of Optuna alone would write, ``study.optimize`` over an objective that suggests
  an arch define-by-run and trains it.

The arms of a seed run one after the other, in an order that rotates with the seed, so that drifts in the
machine's load do not always fall on the same arm. Reported per seed: best validation accuracy, the test
accuracy of that arch, trials evaluated and duplicate archs trained; then, per pair of arms, the paired
difference of best validation accuracy over seeds (mean, standard deviation, Wilcoxon signed-rank and paired
t-test p-values).

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/search_vs_optuna.py --budget 120s \\
        --seeds 0 1 2 3 4 5 6 7 8 9 --json benchmarks/results/search_vs_optuna.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import optuna
import torch
from scipy import stats

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


def run_archlab_tpe(cfg: SearchConfig) -> dict:
    return run_archlab(replace(cfg, strategy="tpe"))


def run_optuna(cfg: SearchConfig) -> dict:
    data = load_dataset(cfg.data, seed=cfg.seed)
    cfg = cfg.resolve(len(data.y_train))
    space = make_space(cfg, data.input_shape, data.num_classes)
    evaluator = TrainingEvaluator(space, data, cfg.trial_config(), cfg.constraint_list, cfg.search_subset())
    seen: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        arch = space.suggest(trial)
        seen.append(arch.key)
        remaining = cfg.budget_s - (time.perf_counter() - t0)
        r = evaluator(arch, seconds=remaining)
        if r.state != "complete":
            raise optuna.TrialPruned(r.reason)
        trial.set_user_attr("test_accuracy", r.metrics["test_accuracy"])
        return r.metrics["val_accuracy"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    t0 = time.perf_counter()  # the data and evaluator above are set up before the clock, as run_search does
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
    arms = ((f"archlab {DEFAULT_STRATEGY}", run_archlab), ("archlab tpe", run_archlab_tpe), ("optuna tpe", run_optuna))
    rows = []
    for k, seed in enumerate(args.seeds):
        cfg = SearchConfig(data=args.data, strategy=DEFAULT_STRATEGY, budget_s=budget, seed=seed,
                           epochs=args.epochs, trial_seconds=parse_duration(args.trial_seconds),
                           final_epochs=0, export_onnx=False)
        for arm, fn in arms[k % len(arms):] + arms[:k % len(arms)]:  # the order rotates with the seed
            r = {"arm": arm, "seed": seed, **fn(cfg)}
            rows.append(r)
            print(f"seed {seed} {arm:12s} best val {r['best_val']:.4f} test {r['best_test']:.4f} "
                  f"trials {r['trials']:3d} duplicates trained {r['duplicates_trained']} ({r['wall_s']:.0f}s)",
                  flush=True)
    print()
    print(f"{args.data}, budget {args.budget} per run, fidelity {args.epochs} epochs / {args.trial_seconds}, "
          f"{len(args.seeds)} seeds, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(summary_table(rows))
    print()
    print(paired_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def summary_table(rows: list[dict]) -> str:
    out = ["| arm | median best val acc | mean best val acc | mean test acc of best | median trials | "
           "max wall s | dup. trained |", "|---|---|---|---|---|---|---|"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm]
        out.append(f"| {arm} | {statistics.median(r['best_val'] for r in rs):.4f} | "
                   f"{statistics.mean(r['best_val'] for r in rs):.4f} | "
                   f"{statistics.mean(r['best_test'] for r in rs):.4f} | "
                   f"{statistics.median(r['trials'] for r in rs):.0f} | {max(r['wall_s'] for r in rs):.1f} | "
                   f"{sum(r['duplicates_trained'] for r in rs)} |")
    return "\n".join(out)


def paired_table(rows: list[dict]) -> str:
    """Per pair of arms, the difference of best validation accuracy on the seeds both ran."""
    by = {(r["arm"], r["seed"]): r for r in rows}
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    out = ["| pair (a − b) | seeds | mean diff (points) | sd (points) | a wins / ties / b wins | "
           "Wilcoxon p | paired t p |", "|---|---|---|---|---|---|---|"]
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            seeds = sorted({s for (arm, s) in by if arm == a} & {s for (arm, s) in by if arm == b})
            d = [100 * (by[a, s]["best_val"] - by[b, s]["best_val"]) for s in seeds]
            if len(d) < 2:
                continue
            sd = statistics.stdev(d)
            wins, ties = sum(x > 1e-12 for x in d), sum(abs(x) <= 1e-12 for x in d)
            nonzero = [x for x in d if abs(x) > 1e-12]
            w = stats.wilcoxon(nonzero).pvalue if len(nonzero) >= 2 else float("nan")
            t = stats.ttest_rel([by[a, s]["best_val"] for s in seeds],
                                [by[b, s]["best_val"] for s in seeds]).pvalue if sd > 0 else float("nan")
            out.append(f"| {a} − {b} | {len(d)} | {statistics.mean(d):+.2f} | {sd:.2f} | "
                       f"{wins} / {ties} / {len(d) - wins - ties} | {w:.2f} | {t:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()

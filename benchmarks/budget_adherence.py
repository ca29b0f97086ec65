"""Does ``archlab search --budget B`` end within its budget? The whole command's wall time against B.

For each dataset and budget, the real command runs in a subprocess from start to exit (Python start-up, imports,
data loading, search, final training, ONNX export and report all count), in a fresh folder. A row records the
budget, the wall time, their ratio and what the run's summary says about its phases (search seconds, final
training seconds, trials). The promise under test: wall <= 1.1 x budget, or budget + 5 s for the shortest budget.

Datasets: ``digits``; a 3-class image folder of 16x16 RGB PNGs written here (``folder16``); the ``sequence``
space on ``associative-recall``.

    python benchmarks/budget_adherence.py --budgets 20 60 180 --json benchmarks/results/budget_adherence.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from main_job import timed_search  # benchmarks/ is on the path when a script runs
from PIL import Image

CASES = {
    "digits": ["--data", "digits"],
    "folder16": ["--data", "{folder}"],
    "sequence": ["--space", "sequence", "--data", "associative-recall"],
}


def image_folder(root: Path, classes: int = 3, per_class: int = 60, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            pixels[:, :, c] = np.clip(pixels[:, :, c].astype(int) + 60, 0, 255)  # a learnable colour cue
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def allowed(budget: float) -> float:
    return max(1.1 * budget, budget + 5.0)


def run(case: str, budget: float, folder: Path, tmp: Path) -> dict:
    args = [a.format(folder=folder) for a in CASES[case]] + ["--budget", f"{budget:g}s"]
    wall, proc, summary = timed_search(args, tmp / f"{case}-{budget:g}")
    row = {"case": case, "budget_s": budget, "wall_s": wall, "ratio": wall / budget, "allowed_s": allowed(budget),
           "within": wall <= allowed(budget), "exit": proc.returncode}
    if summary is None:
        row["stderr"] = proc.stderr[-1000:]
        return row
    final = summary.get("final") or {}
    row.update(search_s=(summary.get("search") or {}).get("elapsed_s"), final_s=final.get("cost_s"),
               final_state=final.get("state", "complete" if final else None),
               run_s=summary.get("elapsed_s"), trials=summary["trials"]["completed"] + summary["trials"]["failed"],
               test_accuracy=summary["best"]["test_accuracy"] if summary.get("best") else None)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", type=float, nargs="+", default=[20, 60, 180], help="seconds")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with TemporaryDirectory() as tmp:
        folder = image_folder(Path(tmp) / "folder16")
        for budget in args.budgets:
            for case in args.cases:
                row = run(case, budget, folder, Path(tmp))
                rows.append(row)
                print(f"{case:9s} budget {budget:5.0f} s  wall {row['wall_s']:6.1f} s  ratio {row['ratio']:.2f}  "
                      f"{'ok' if row['within'] else 'OVER'}" + (f"  exit {row['exit']}" if row["exit"] else ""),
                      flush=True)
    print("\n| case | budget | wall | wall / budget | within 1.1x (or +5 s) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['budget_s']:.0f} s | {r['wall_s']:.1f} s | {r['ratio']:.2f} | "
              f"{'yes' if r['within'] else '**no**'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

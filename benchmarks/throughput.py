"""Trials per minute for cheap trials: 1, 2 and 4 workers on SQLite, JournalStorage and PostgreSQL, and the Ray
executor's overhead per trial against the local one, side by side in one run.

Each trial is a lookup in the synthetic NAS-Bench-201 table (``archlab.bench.synthetic_nb201_table``) that also
sleeps ``--trial-ms`` milliseconds in the worker, standing in for a very short training; the search is random
search, ``--trials`` trials, a fresh ledger for every cell of the grid. ``workers = 1`` runs in the driver process
(no pool); more workers run in local processes (``--executor local``) or Ray actors (``--executor ray``, a local
Ray instance of ``max(workers)`` CPUs). The pools' start-up is timed apart (``startup_s``: the first trial's
latency minus a trial) and left out of the per-trial rate. PostgreSQL is the throw-away server the tests use
(``tests/_postgres.py``), or ``--postgres URL``.

    python benchmarks/throughput.py --trials 200 --trial-ms 20 --json benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _results import save_results

from archlab.bench import TableEvaluator, synthetic_nb201_table
from archlab.search import create_strategy
from archlab.study import Budget, Ledger, search

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


class SleepyTable(TableEvaluator):
    """A table lookup that takes ``ms`` milliseconds, like a (very) short training."""

    instant = False

    def __init__(self, table, ms: float) -> None:
        super().__init__(table)
        self.ms = ms

    def __call__(self, arch, *, monitor=None, seconds=None):
        time.sleep(self.ms / 1000)
        return super().__call__(arch)


def one(storage: str, workers: int, executor: str, args: argparse.Namespace, table) -> dict:
    ledger = Ledger(storage, space=table.space)
    first: list[float] = []
    start = time.perf_counter()

    def progress(event: dict) -> None:
        if event.get("event") == "trial" and not first:
            first.append(time.perf_counter() - start)

    search(table.space, SleepyTable(table, args.trial_ms), create_strategy("random", table.space, seed=0), ledger,
           Budget(trials=args.trials), workers=workers, executor=executor, progress=progress)
    wall = time.perf_counter() - start
    startup = max(0.0, (first[0] if first else 0.0) - args.trial_ms / 1000)
    rows = Ledger(storage, create=False, space=table.space).trials()
    ok = sum(r["state"] == "COMPLETE" for r in rows)
    per_min = 60 * (args.trials - 1) / max(1e-9, wall - (first[0] if first else 0.0))
    return {"storage": storage.split("://")[0], "workers": workers, "executor": executor, "trials": ok,
            "wall_s": wall, "startup_s": startup, "trials_per_min": per_min}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--trial-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--postgres", default=None, help="a server URL (default: a throw-away server)")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    table = synthetic_nb201_table(seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from contextlib import nullcontext

        from _postgres import fresh_database, throwaway_postgres

        server = nullcontext(args.postgres) if args.postgres else throwaway_postgres(Path(tmp) / "pg")
        with server as pg:
            for i, workers in enumerate(args.workers):
                storages = {"sqlite": f"sqlite:///{tmp}/l{i}.db", "journal": f"journal://{tmp}/l{i}.log",
                            "postgresql": fresh_database(pg, "bench")}
                for name, url in storages.items():
                    row = one(url, workers, "local", args, table)
                    rows.append(row)
                    print(f"{name:10s} {workers} worker(s) local: {row['trials_per_min']:8.0f} trials/min "
                          f"(start-up {row['startup_s']:.1f} s)", flush=True)
            if not args.no_ray:
                import ray

                ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
                try:
                    for workers in args.workers:
                        row = one(f"sqlite:///{tmp}/ray{workers}.db", workers, "ray", args, table)
                        rows.append(row)
                        local = next(r for r in rows if r["storage"] == "sqlite" and r["workers"] == workers
                                     and r["executor"] == "local")
                        row["overhead_ms_per_trial_vs_local"] = 1000 * 60 * (
                            1 / row["trials_per_min"] - 1 / local["trials_per_min"]) * workers
                        print(f"sqlite     {workers} worker(s) ray:   {row['trials_per_min']:8.0f} trials/min "
                              f"(start-up {row['startup_s']:.1f} s; "
                              f"{row['overhead_ms_per_trial_vs_local']:+.1f} ms a trial against local)", flush=True)
                finally:
                    ray.shutdown()
    if args.json is not None:
        save_results(args.json, args, rows)


if __name__ == "__main__":
    main()

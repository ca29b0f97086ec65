"""Rank correlations of the shipped NAS-Bench-201 proxy tables with the benchmark's CIFAR-10 test accuracy, with the
majority votes of several proxies beside the single proxies.

Reads the tables ``archlab`` ships (``archlab.bench.load_nb201_proxies``: every proxy on 1,000 cells sampled with
seed 0, ``nwot`` also on 3,000) and the NAS-Bench-201 table of ``$ARCHLAB_DATA``; for each proxy, and for each vote
(``archlab.proxies.vote_scores``: an arch ranks by how many others the majority of the voting proxies prefer it to),
the Spearman rho and Kendall tau with the 200-epoch CIFAR-10 test accuracy, on the cells where the proxy (every
voting proxy) has a score. The vote Abdelfattah et al. publish (ICLR 2021, rho .82) is ``synflow, jacob_cov, snip``.

    ARCHLAB_DATA=../shared/data python benchmarks/nb201_proxy_correlations.py \\
        --json benchmarks/results/nb201_proxy_correlations.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _results import save_results

from archlab.bench import DATASETS, NB201_PROXY_FILES, load_nb201_proxies, load_nb201_table
from archlab.proxies import DEFAULT_BATCH_PROXIES, VOTE_PROXIES, proxy_correlations

#: The votes compared: the published one, and the best single proxies of this table together.
VOTES: dict[str, tuple[str, ...]] = {
    "vote(synflow,jacob_cov,snip)": VOTE_PROXIES,
    "vote(synflow,nwot,jacob_cov)": ("synflow", "nwot", "jacob_cov"),
    "vote(synflow,nwot,snip)": ("synflow", "nwot", "snip"),
    "vote(synflow,nwot,jacob_cov,snip,flops)": ("synflow", "nwot", "jacob_cov", "snip", "flops"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    table = load_nb201_table()
    column = table.columns[DATASETS["cifar10"]]
    results = []
    for names, votes in ((DEFAULT_BATCH_PROXIES, VOTES), (("nwot",), {})):
        shipped = load_nb201_proxies(names)
        rows = [{"arch": arch, **dict(zip(shipped.names, scores, strict=True))} for arch, scores in
                shipped.scores.items()]
        acc = [100 * float(column[table.space.index(arch)]) for arch in shipped.scores]
        corr = proxy_correlations(rows, acc, shipped.names, votes=votes)
        for name, rho in corr["spearman"].items():
            results.append({"score": name, "file": shipped.file, "cells": shipped.cells,
                            "n": corr["n_by_proxy"][name], "spearman": rho, "kendall": corr["kendall"][name],
                            "command": NB201_PROXY_FILES[shipped.file]["command"]})
    width = max(len(r["score"]) for r in results)
    for r in results:
        rho = "-" if r["spearman"] is None else f"{r['spearman']:+.3f}"
        tau = "-" if r["kendall"] is None else f"{r['kendall']:+.3f}"
        print(f"{r['score']:<{width}}  rho {rho}  tau {tau}  n {r['n']:>5}  ({r['file']})")
    if args.json is not None:
        save_results(args.json, args, results)


if __name__ == "__main__":
    main()

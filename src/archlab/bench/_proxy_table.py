"""Zero-cost proxy scores of NAS-Bench-201 cells, computed by archlab and shipped with it, so that training-free
searches on NB201 (RoBoT, NASWOT) run in seconds.

Two gzip CSV files in ``archlab/bench/data`` (the columns of ``archlab proxies``: ``arch``, one column per proxy,
``seconds``, ``errors``), each written by one command on CIFAR-10 of the shared data folder, at initialisation, on
one fixed batch of 64 training images (the zero-cost-nas protocol):

- ``nb201_proxies_cifar10.csv.gz``: every proxy of ``archlab proxies`` but zen on a uniform random sample of 1,000
  of the 15,625 cells (``--sample 1000 --seed 0``).
- ``nb201_nwot_cifar10.csv.gz``: ``nwot`` (NASWOT) alone, forward-only and cheaper, on 3,000 cells
  (``--sample 3000 --seed 0 --proxies nwot``; its first 1,000 cells are the sample above, as a larger sample of
  the same seed extends a smaller one).

:data:`NB201_PROXY_FILES` holds each file's command and size; :func:`load_nb201_proxies` picks the largest file
that has every proxy asked for.
"""

from __future__ import annotations

import csv
import functools
import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from archlab.errors import DataError, SpaceError, UserError
from archlab.space import Arch, create_space

__all__ = ["NB201_PROXY_FILES", "ProxyTable", "load_nb201_proxies"]

_COMMAND = "ARCHLAB_DATA=../shared/data archlab proxies --space nb201 --data cifar10 --seed 0 --batch-size 64"
#: file name -> (how many cells, the command that wrote it, before gzip)
NB201_PROXY_FILES: dict[str, dict[str, Any]] = {
    "nb201_proxies_cifar10.csv.gz": {
        "cells": 1000, "command": f"{_COMMAND} --sample 1000 --out nb201_proxies_cifar10.csv"},
    "nb201_nwot_cifar10.csv.gz": {
        "cells": 3000, "command": f"{_COMMAND} --sample 3000 --proxies nwot --out nb201_nwot_cifar10.csv"},
}


@dataclass(frozen=True)
class ProxyTable:
    """Proxy scores of some NB201 cells: ``scores[arch]`` is a tuple in the order of ``names`` (NaN where a proxy
    failed on that cell); ``file`` and ``command`` say where they come from."""

    names: tuple[str, ...]
    scores: dict[Arch, tuple[float, ...]]
    file: str
    command: str

    @property
    def cells(self) -> int:
        return len(self.scores)

    def describe(self) -> str:
        return (f"{self.cells:,} NAS-Bench-201 cells drawn uniformly at random (seed 0) of 15,625, scored by "
                f"{', '.join(self.names)} on one batch of 64 CIFAR-10 training images ({self.file})")


def load_nb201_proxies(proxies: Sequence[str]) -> ProxyTable:
    """The shipped scores of ``proxies`` (from the file with the most cells that has them all)."""
    names = tuple(proxies)
    if not names:
        raise UserError("no proxy asked for")
    best: tuple[str, list[str]] | None = None
    for file, _meta in sorted(NB201_PROXY_FILES.items(), key=lambda kv: -kv[1]["cells"]):
        header = _header(file)
        if all(n in header for n in names):
            best = (file, header)
            break
    if best is None:
        have = sorted({c for f in NB201_PROXY_FILES for c in _header(f)}
                      - {"arch", "seconds", "errors"})
        raise UserError(f"no shipped NB201 proxy table has {', '.join(names)}; it has {', '.join(have)}")
    file = best[0]
    space = create_space("nb201", input_shape=(3, 32, 32), num_classes=10)
    scores: dict[Arch, tuple[float, ...]] = {}
    for line, row in enumerate(_rows(file)[1], start=2):
        try:
            arch = space.from_string(row["arch"])
            scores[arch] = tuple(_number(row[n]) for n in names)
        except (SpaceError, ValueError) as e:
            raise DataError(f"{file}, line {line}: {e}") from None
    return ProxyTable(names, scores, file, NB201_PROXY_FILES[file]["command"])


def _number(text: str) -> float:
    return float(text) if text.strip() else math.nan


@functools.cache
def _header(file: str) -> tuple[str, ...]:
    return tuple(_rows(file, header_only=True)[0])


def _rows(file: str, header_only: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    path = files("archlab.bench") / "data" / file
    try:
        with gzip.open(str(path), "rt", newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            return header, ([] if header_only else list(reader))
    except (OSError, EOFError, csv.Error) as e:
        raise DataError(f"the shipped proxy table {file} cannot be read ({e}); reinstall archlab") from None

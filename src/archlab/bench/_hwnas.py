"""Measured device latency and energy of every NAS-Bench-201 cell, from HW-NAS-Bench-360 (roldebijvank/
HW-NAS-Bench-360; after Li et al., "HW-NAS-Bench: Hardware-Aware Neural Architecture Search Benchmark", ICLR 2021).

The file is ``hwnasbench360.parquet``: one row per (cell, device, framework, task), 187,500 rows, the cell named by
its NB201 index (``arch_idx``). Devices are a Raspberry Pi 5 (``pi5``: LiteRT, ONNX Runtime and PyTorch Mobile,
latency and energy) and a Pixel phone (``pixel``: LiteRT, latency only). The ``cifar100`` task is the one whose
network is the NB201 CIFAR network (32x32 inputs; it differs from the CIFAR-10 one only in the classifier's 100
outputs), so its measurements are the ones given for the NB201 table. Values are as the benchmark measured them:
the median latency in milliseconds (``lat_ms_median``) and the energy in millijoules (``energy_mj``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from archlab.errors import DataError

__all__ = ["HWNAS_COLUMNS", "HWNAS_FILE", "HWNAS_TARGETS", "hardware_column", "load_hwnas_measurements"]

HWNAS_FILE = "hwnasbench360.parquet"
HWNAS_COLUMNS = ("arch_idx", "device", "framework", "task", "lat_ms_median", "energy_mj")
# (device, framework) pairs the file measures, and whether it has their energy
HWNAS_TARGETS = {("pi5", "litert"): True, ("pi5", "onnx"): True, ("pi5", "torchmobile"): True,
                 ("pixel", "litert"): False}


def hardware_column(kind: str, device: str, framework: str) -> str:
    """The table column of a measurement: ``latency_ms_pi5_onnx``, ``energy_mj_pi5_litert``..."""
    return f"{'latency_ms' if kind == 'latency' else 'energy_mj'}_{device}_{framework}"


def load_hwnas_measurements(path: str | os.PathLike, rows: int, *, task: str = "cifar100") -> dict[str, np.ndarray]:
    """Latency (and energy, where measured) of each of ``rows`` cells on every (device, framework) of the file, as
    columns named by :func:`hardware_column`. Missing columns, a missing device, a cell measured twice or not at
    all, or an index outside the table is a one-line :class:`DataError`."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"HW-NAS-Bench-360 file {file} does not exist")
    try:
        import pyarrow.parquet as pq

        schema_names = pq.read_schema(file).names
        missing = [c for c in HWNAS_COLUMNS if c not in schema_names]
        if missing:
            raise DataError(f"HW-NAS-Bench-360 file {file}: missing column(s) {missing}")
        data = pq.read_table(file, columns=list(HWNAS_COLUMNS), filters=[("task", "=", task)])
        index = data.column("arch_idx").to_numpy().astype(np.int64)
        device = data.column("device").to_numpy(zero_copy_only=False).astype(str)
        framework = data.column("framework").to_numpy(zero_copy_only=False).astype(str)
        latency = data.column("lat_ms_median").to_numpy(zero_copy_only=False).astype(np.float64)
        energy = data.column("energy_mj").to_numpy(zero_copy_only=False).astype(np.float64)
    except DataError:
        raise
    except Exception as e:  # pyarrow's errors: not a parquet file, truncated, unreadable
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"HW-NAS-Bench-360 file {file} cannot be read: {msg}") from None
    columns: dict[str, np.ndarray] = {}
    for (dev, fw), has_energy in HWNAS_TARGETS.items():
        mask = (device == dev) & (framework == fw)
        where = f"HW-NAS-Bench-360 file {file}, {dev}/{fw}/{task}"
        cells = index[mask]
        if len(cells) != rows:
            raise DataError(f"{where}: {len(cells):,} rows, expected {rows:,}")
        if cells.min() < 0 or cells.max() >= rows or len(np.unique(cells)) != rows:
            raise DataError(f"{where}: the cells are not each of the {rows:,} NB201 indices once")
        kinds = (("latency", latency), ("energy", energy)) if has_energy else (("latency", latency),)
        for kind, values in kinds:
            column = np.empty(rows)
            column[cells] = values[mask]
            if np.isnan(column).any() or (column < 0).any():
                bad = int(cells[np.flatnonzero(np.isnan(values[mask]) | (values[mask] < 0))[0]])
                raise DataError(f"{where}: cell {bad} has no valid {kind} measurement")
            columns[hardware_column(kind, dev, fw)] = column
    return columns

"""The NAS-Bench-201 table (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
Search", ICLR 2020) as a :class:`~archlab.bench.Table` over the ``nb201`` space.

The file is ``nb201_robot.csv`` (the shared data folder, ``$ARCHLAB_DATA``, or a path): one row per cell, 15,625 in
the benchmark's index order, exported from the NAS-Bench-201 data that RoBoT (hzf1174/RoBoT) ships. A lookup
gives what the NB201 search protocol uses: the 12-epoch CIFAR-10 validation accuracy (the reward, ``val_accuracy``)
and the seconds that training cost (``cost_s``, charged to a cost-clock budget), plus the 200-epoch test
accuracies on CIFAR-10, CIFAR-100 and ImageNet16-120, which are kept from strategies (``test_*``). Accuracies are
fractions (the CSV's percentages / 100), as archlab's ``val_accuracy`` is everywhere.

With ``hwnasbench360.parquet`` beside the CSV (or given as ``hardware=``), each cell also carries its measured
latency and energy on a Raspberry Pi 5 and a Pixel phone (:mod:`archlab.bench._hwnas`): columns
``latency_ms_<device>_<framework>`` and ``energy_mj_<device>_<framework>``, and ``latency_ms`` / ``energy_mj`` for
the chosen ``device`` and ``framework`` (default: pi5, ONNX Runtime), to be objectives or constraints.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from archlab.bench._hwnas import HWNAS_FILE, HWNAS_TARGETS, hardware_column, load_hwnas_measurements
from archlab.bench._table import Table
from archlab.data.builtin import env_data_dir
from archlab.errors import DataError, SpaceError
from archlab.space import create_space

__all__ = ["NB201_COLUMNS", "NB201_FILE", "NB201_ROWS", "load_nb201_table"]

NB201_FILE = "nb201_robot.csv"
NB201_ROWS = 15_625
# CSV column -> metric name (accuracies in % in the file, fractions here)
NB201_COLUMNS = {
    "cifar10_valid_acc_12ep": "val_accuracy",
    "cifar10_train_cost_12ep_s": "cost_s",
    "cifar10_test_acc_200ep": "test_accuracy",
    "cifar100_test_acc_200ep": "test_cifar100_accuracy",
    "imagenet16_test_acc_200ep": "test_imagenet16_accuracy",
}
_PERCENT = {"val_accuracy", "test_accuracy", "test_cifar100_accuracy", "test_imagenet16_accuracy"}


def _find(path: str | os.PathLike | None) -> Path:
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / NB201_FILE
        if not p.is_file():
            raise DataError(f"NAS-Bench-201 table {p} does not exist")
        return p
    folder = env_data_dir()
    if folder is None or not (folder / NB201_FILE).is_file():
        where = f"{folder}" if folder is not None else "ARCHLAB_DATA (not set)"
        raise DataError(f"NAS-Bench-201 table {NB201_FILE} not found in {where}: set ARCHLAB_DATA to the shared "
                        "data folder or pass the file's path")
    return folder / NB201_FILE


def load_nb201_table(path: str | os.PathLike | None = None, *, num_classes: int = 10,
                     hardware: str | os.PathLike | bool | None = None, device: str = "pi5",
                     framework: str = "onnx") -> Table:
    """The NAS-Bench-201 table from ``path`` (a file or a folder; default ``$ARCHLAB_DATA/nb201_robot.csv``).

    Checked on load: the columns are there, there are 15,625 rows, and every row's ``arch_str`` is a cell of the
    ``nb201`` space whose benchmark index is the row's ``index``. Any failure is a one-line :class:`DataError`.

    ``hardware``: the HW-NAS-Bench-360 file of device measurements; ``None`` takes ``hwnasbench360.parquet`` beside
    the CSV when it is there, ``False`` none, ``True`` requires the one beside the CSV. ``device`` and ``framework``
    pick the measurements that ``latency_ms`` and ``energy_mj`` stand for.
    """
    if (device, framework) not in HWNAS_TARGETS:
        raise DataError(f"no HW-NAS-Bench-360 measurements for device {device!r} with framework {framework!r}; "
                        "choose from " + ", ".join(f"{d}/{f}" for d, f in HWNAS_TARGETS))
    file = _find(path)
    try:
        with open(file, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("index", "arch_str", *NB201_COLUMNS) if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"NAS-Bench-201 table {file}: missing column(s) {missing}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"NAS-Bench-201 table {file} cannot be read: {e}") from None
    if len(rows) != NB201_ROWS:
        raise DataError(f"NAS-Bench-201 table {file}: {len(rows):,} rows, expected {NB201_ROWS:,}")
    space = create_space("nb201", input_shape=(3, 32, 32), num_classes=num_classes)
    columns = {name: np.empty(NB201_ROWS) for name in NB201_COLUMNS.values()}
    filled = np.zeros(NB201_ROWS, dtype=bool)
    for line, row in enumerate(rows, start=2):
        try:
            index = space.index(space.from_string(row["arch_str"]))
        except SpaceError as e:
            raise DataError(f"NAS-Bench-201 table {file}, line {line}: {e}") from None
        if str(index) != row["index"].strip():
            raise DataError(f"NAS-Bench-201 table {file}, line {line}: arch {row['arch_str']} has benchmark index "
                            f"{index}, the row says {row['index']}")
        for column, name in NB201_COLUMNS.items():
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                raise DataError(f"NAS-Bench-201 table {file}, line {line}: {column} is not a number "
                                f"({row[column]!r})") from None
            columns[name][index] = value / 100.0 if name in _PERCENT else value
        filled[index] = True
    if not filled.all():  # unreachable with distinct, checked indices; kept as the invariant the table needs
        raise DataError(f"NAS-Bench-201 table {file}: {int((~filled).sum())} cells have no row")
    if hardware is not False:
        beside = file.parent / HWNAS_FILE
        given = beside if hardware in (None, True) else Path(hardware)
        if hardware is not None or given.is_file():
            columns.update(load_hwnas_measurements(given, NB201_ROWS))
            columns["latency_ms"] = columns[hardware_column("latency", device, framework)]
            if HWNAS_TARGETS[(device, framework)]:
                columns["energy_mj"] = columns[hardware_column("energy", device, framework)]
    return Table(space, space.index, columns,
                 hidden=("test_accuracy", "test_cifar100_accuracy", "test_imagenet16_accuracy"))

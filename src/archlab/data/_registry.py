"""The registry of built-in datasets, in the zoo's style: a loader module decorates its loaders with
:func:`register_dataset`, and importing the ``archlab.data`` package (which imports every loader module)
registers them. :func:`archlab.data.load_dataset` finds a name here.

A registered dataset is one of three kinds: ``"fractions"`` (no official test split: validation and test are
fractions of all examples, the loader takes ``val_fraction`` and ``test_fraction``), ``"official_test"`` (the
loader keeps its official test split and takes ``val_fraction``, ``data_dir`` and ``download``) or ``"fixed"``
(generated with fixed split sizes, the loader takes only ``seed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archlab.errors import DataError

__all__ = ["DatasetSpec", "KINDS", "dataset_spec", "list_registered", "register_dataset"]

KINDS = ("fractions", "official_test", "fixed")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Callable
    kind: str
    val_fraction: float | None = None  # the defaults of the split
    test_fraction: float | None = None


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, kind: str, val_fraction: float | None = None,
                     test_fraction: float | None = None) -> Callable[[Callable], Callable]:
    """Register a loader under ``name`` (a decorator); ``val_fraction`` / ``test_fraction`` are its defaults."""
    if kind not in KINDS:
        raise ValueError(f"dataset kind must be one of {KINDS}, got {kind!r}")

    def deco(loader: Callable) -> Callable:
        if name in _DATASETS and _DATASETS[name].loader is not loader:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = DatasetSpec(name, loader, kind, val_fraction, test_fraction)
        return loader

    return deco


def list_registered(kind: str | None = None) -> list[str]:
    """Registered names (in registration order), optionally of one kind."""
    return [n for n, s in _DATASETS.items() if kind is None or s.kind == kind]


def dataset_spec(name: str) -> DatasetSpec | None:
    return _DATASETS.get(name)


def check_no_fractions(spec: DatasetSpec, val_fraction: float | None, test_fraction: float | None) -> None:
    if val_fraction is not None or test_fraction is not None:
        raise DataError(f"dataset {spec.name!r} is generated with fixed split sizes: it takes no val_fraction or "
                        f"test_fraction (call {spec.loader.__module__}.{spec.loader.__name__} with "
                        "n_train/n_val/n_test instead)")

"""The entry point: :func:`load_dataset` by built-in name or by path, and :func:`list_datasets`."""

from __future__ import annotations

import os
from pathlib import Path

from archlab.data import builtin, files, synthetic, text, ucr  # noqa: F401  (builtin, synthetic register loaders)
from archlab.data._dataset import Dataset
from archlab.data._registry import check_no_fractions, dataset_spec, list_registered
from archlab.errors import DataError

__all__ = ["list_datasets", "load_dataset"]

_USER_FRACTIONS = (0.1, 0.2)
_UCR_PREFIX = "ucr:"
_UCR_VAL_FRACTION = 0.2


def list_datasets() -> list[str]:
    """The names of the built-in datasets: images, then the generated token tasks.

    UCR problems (``ucr:<Name>``) are a family, not listed; ``tinyshakespeare`` is a corpus
    (:func:`archlab.data.load_char_corpus`), not a classification dataset.
    """
    return [*list_registered("fractions"), *list_registered("official_test"), *list_registered("fixed")]


def _is_user_path(text: str) -> bool:
    if Path(text).exists():
        return True
    # "images.idx,labels.idx": a pair of IDX files.
    parts = text.split(",")
    return len(parts) == 2 and all(Path(p.strip()).is_file() for p in parts)


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Dataset:
    """Load a built-in dataset by name (see :func:`list_datasets`) or a user's dataset by path.

    Split rule (fixed under ``seed``, stratified by class, the test split never overlapping the others): a
    source with an official test split (Fashion-MNIST, CIFAR-10, an image folder with ``train/`` and
    ``test/``, IDX ``train``/``t10k`` pairs, an npz with ``x_test``/``y_test``) keeps it, and validation is
    ``val_fraction`` of its training part. Otherwise test is ``test_fraction`` and validation
    ``val_fraction`` of all examples, the rest is training. ``None`` means the dataset's default: 0.1
    validation / 0.2 test, except digits, whose default is 0.2 / 0.2 (a 60/20/20 split).

    Inputs are float32 ``(N, C, H, W)``, normalised per channel with the mean and std of the training split.
    A built-in name takes precedence over a folder of the same name (write ``./digits`` for the folder).
    ``data_dir`` and ``download`` apply to built-in datasets: see :mod:`archlab.data.builtin`.

    Sequence data: ``ucr:<Name>`` (e.g. ``ucr:GunPoint``) is a UCR/UEA problem as float32 ``(N, C, L)`` with
    its official test split and ``val_fraction`` (default 0.2) of its training split for validation (see
    :mod:`archlab.data.ucr`). ``selective-copying``, ``associative-recall`` and ``listops`` are generated int64
    token tasks with fixed split sizes, so they take no fractions (see :mod:`archlab.data.synthetic`).
    ``tinyshakespeare`` is a character corpus, not a classification dataset: load it with
    :func:`archlab.data.load_char_corpus`.
    """
    text_arg = os.fspath(name_or_path)
    key = text_arg.strip().lower().replace("_", "-")
    spec = dataset_spec(key)
    if spec is not None and spec.kind == "fixed":
        check_no_fractions(spec, val_fraction, test_fraction)
        return spec.loader(seed=seed)
    if key.startswith(_UCR_PREFIX):
        if test_fraction is not None:
            raise DataError(f"dataset {text_arg.strip()!r} keeps its official test split: it takes no test_fraction")
        return ucr.load_ucr(text_arg.strip()[len(_UCR_PREFIX):], seed=seed, data_dir=data_dir,
                            val_fraction=_UCR_VAL_FRACTION if val_fraction is None else val_fraction)
    if key in text.BUILTIN_CORPORA:
        raise DataError(f"{key!r} is a character corpus, not a classification dataset: load it with "
                        "archlab.data.load_char_corpus")
    if spec is not None:
        val = spec.val_fraction if val_fraction is None else val_fraction
        if spec.kind == "fractions":
            return spec.loader(seed=seed, val_fraction=val,
                               test_fraction=spec.test_fraction if test_fraction is None else test_fraction)
        return spec.loader(seed=seed, val_fraction=val, data_dir=data_dir, download=download)
    if _is_user_path(text_arg):
        val = _USER_FRACTIONS[0] if val_fraction is None else val_fraction
        test = _USER_FRACTIONS[1] if test_fraction is None else test_fraction
        return files.load_path(text_arg, seed=seed, val_fraction=val, test_fraction=test)
    raise DataError(f"unknown dataset {text_arg!r}: not a built-in ({', '.join(list_datasets())}, "
                    "ucr:<Name>) nor an existing path")

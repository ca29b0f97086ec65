"""UCR/UEA time-series classification sets, read from their ``.ts`` files (built-in names ``ucr:<Name>``).

The archives: Dau, Bagnall, Kamgar, Yeh, Zhu, Gharghabi, Ratanamahatana and Keogh, "The UCR Time Series
Archive", IEEE/CAA J. Autom. Sinica 2019, and Bagnall et al., "The UEA multivariate time series classification
archive, 2018", arXiv:1811.00075. The ``aeon`` package (1.6.0) bundles a few of them (ACSF1, ArrowHead,
BasicMotions, GunPoint, ItalyPowerDemand, OSULeaf, ...) under
``aeon/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts``.

The files are parsed here rather than through ``aeon.datasets.load_classification``: installing aeon 1.6.0
would downgrade numpy (numba 0.63 requires numpy < 2.4), so archlab only reads aeon's bundled files when aeon is
installed, without importing it. The format follows aeon's ``load_from_ts_file``
(``aeon/datasets/_data_loaders.py``): ``#`` comments, ``@`` header tags, then one case per line, channels
separated by ``:``, values by ``,``, the class label last; ``?`` or ``NaN`` mark missing values. Unlike aeon,
class labels keep their case.

Search order for ``<Name>_TRAIN.ts`` and ``<Name>_TEST.ts``: ``data_dir`` (itself, ``<Name>/``, ``ucr/<Name>/``),
``$ARCHLAB_DATA`` (``ucr/<Name>/``, ``<Name>/``), aeon's bundled folder, the cache (``ucr/<Name>/``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from pathlib import Path

import numpy as np

from archlab.data._dataset import Dataset, build_dataset
from archlab.data._download import cache_dir
from archlab.data.builtin import env_data_dir, unique_paths
from archlab.errors import DataError

__all__ = ["load_ucr", "read_ts", "ucr_search_path"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def _aeon_data_dir() -> Path | None:
    # find_spec on a top-level package locates it without executing it (aeon's import needs pandas/numba)
    try:
        spec = importlib.util.find_spec("aeon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def ucr_search_path(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ``<name>_TRAIN.ts`` and ``<name>_TEST.ts``, in order."""
    given = Path(data_dir) if data_dir is not None else None
    env = env_data_dir()
    aeon = _aeon_data_dir()
    return unique_paths([
        given,
        given / name if given else None,
        given / "ucr" / name if given else None,
        env / "ucr" / name if env else None,
        env / name if env else None,
        aeon / name if aeon else None,
        cache_dir() / "ucr" / name,
    ])


def read_ts(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read an equal-length ``.ts`` classification file: ``(x (N, C, L) float64, labels (N,) str, declared)``.

    ``declared`` is the ``@classLabel`` list in header order (empty if the header declares none). Missing
    values become NaN. Time-stamped, unequal-length and regression (``@targetLabel``) files raise
    :class:`DataError`.
    """
    path = Path(path)
    header: dict[str, str] = {}
    cases: list[list[np.ndarray]] = []
    labels: list[str] = []
    in_data = False
    try:
        with open(path, encoding="utf-8") as f:
            for number, raw in enumerate(f, start=1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if not in_data:
                    if not line.startswith("@"):
                        raise DataError(f"{path}:{number}: expected a @tag before @data, got {line[:40]!r}")
                    key, _, value = line[1:].partition(" ")
                    key = key.lower()
                    if key == "data":
                        in_data = True
                    else:
                        header[key] = value.strip()
                    continue
                *channels, label = line.split(":")
                if not channels:
                    raise DataError(f"{path}:{number}: a case needs values and a class label separated by ':'")
                try:
                    cases.append([np.array([_value(v) for v in c.split(",")], dtype=np.float64)
                                  for c in channels])
                except ValueError as e:
                    raise DataError(f"{path}:{number}: {e}") from None
                labels.append(label.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if header.get("timestamps", "false").lower() == "true":
        raise DataError(f"{path}: time-stamped .ts files are not supported")
    if header.get("targetlabel", "false").lower() == "true":
        raise DataError(f"{path} is a regression problem (@targetLabel), not classification")
    class_label = header.get("classlabel", "").split()
    if not class_label or class_label[0].lower() != "true":
        raise DataError(f"{path}: the header declares no class labels (@classLabel true ...)")
    if not cases:
        raise DataError(f"{path} holds no cases")
    lengths = {len(c) for case in cases for c in case}
    widths = {len(case) for case in cases}
    if len(widths) != 1:
        raise DataError(f"{path}: cases have different numbers of channels {sorted(widths)}")
    if len(lengths) != 1:
        raise DataError(f"{path}: series of unequal lengths ({min(lengths)}..{max(lengths)}) are not supported; "
                        "use the equal-length version of the problem")
    return np.stack([np.stack(case) for case in cases]), np.array(labels), tuple(class_label[1:])


def _value(text: str) -> float:
    text = text.strip()
    if text == "?" or text.lower() == "nan":
        return float("nan")
    return float(text)


def _class_indices(labels: np.ndarray, declared: tuple[str, ...], what: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(declared)}
    unknown = sorted(set(labels.tolist()) - set(index))
    if unknown:
        raise DataError(f"{what}: class label(s) {', '.join(map(repr, unknown[:5]))} are not declared in "
                        f"@classLabel ({' '.join(declared)})")
    return np.array([index[v] for v in labels.tolist()], dtype=np.int64)


def load_ucr(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    data_dir: str | os.PathLike | None = None,
) -> Dataset:
    """A UCR/UEA classification problem as a :class:`Dataset` named ``ucr:<name>``.

    The official test split is kept as the test set; validation is ``val_fraction`` of the official training
    split, stratified by class with :func:`~archlab.data._dataset.stratified_order` under ``seed``. Inputs are
    float32 ``(N, C, L)``, normalised per channel with the mean and standard deviation of the training split
    (after the validation examples are removed). Classes are in ``@classLabel`` order.
    """
    name = str(name).strip()
    if name.lower().startswith("ucr:"):
        name = name[4:]
    if not _NAME.match(name):
        raise DataError(f"load_ucr: {name!r} is not a UCR problem name (letters, digits, '_' and '-')")
    searched = ucr_search_path(name, data_dir)
    folder = next((p for p in searched if (p / f"{name}_TRAIN.ts").is_file() and (p / f"{name}_TEST.ts").is_file()),
                  None)
    if folder is None:
        hint = ("aeon is installed but does not bundle it: put the archive's .ts files there"
                if _aeon_data_dir() is not None else
                "`pip install aeon==1.6.0` bundles ACSF1, ArrowHead, BasicMotions, GunPoint, ItalyPowerDemand "
                "and OSULeaf, or put the archive's .ts files in $ARCHLAB_DATA/ucr/<Name>/")
        raise DataError(f"UCR dataset {name!r} not found: looked for {name}_TRAIN.ts and {name}_TEST.ts in "
                        f"{', '.join(str(p) for p in searched)}; {hint}")
    x_train, labels_train, declared = read_ts(folder / f"{name}_TRAIN.ts")
    x_test, labels_test, declared_test = read_ts(folder / f"{name}_TEST.ts")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"UCR {name}: train series are {x_train.shape[1:]} (channels, length), test series "
                        f"{x_test.shape[1:]}")
    if not declared:
        declared = declared_test
    y_train = _class_indices(labels_train, declared, f"{folder / name}_TRAIN.ts")
    y_test = _class_indices(labels_test, declared, f"{folder / name}_TEST.ts")
    for split, x in (("TRAIN", x_train), ("TEST", x_test)):
        if not np.isfinite(x).all():
            raise DataError(f"UCR {name}_{split}.ts has missing values; impute them before loading")
    # build_dataset works on (N, C, H, W): a series is an image of height 1, and its split, statistics and
    # normalisation are then exactly those of the image datasets
    data = build_dataset(f"ucr:{name}", x_train[:, :, None, :], y_train, declared, x_test=x_test[:, :, None, :],
                         y_test=y_test, seed=seed, val_fraction=val_fraction, test_fraction=0.0)
    return dataclasses.replace(data, x_train=data.x_train[:, :, 0, :].contiguous(),
                               x_val=data.x_val[:, :, 0, :].contiguous(), x_test=data.x_test[:, :, 0, :].contiguous())

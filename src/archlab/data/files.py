"""Datasets from a user's own files: an image folder, IDX files, an ``.npz`` with ``x``/``y``, or a CSV.

:func:`load_path` recognises the format of a path; the ``load_*`` functions read one format each. All return a
:class:`~archlab.data.Dataset` split and normalised by the rule of :func:`archlab.data.load_dataset`: a
source with an official test split (an image folder with ``train/`` and ``test/``, IDX ``train-*``/``t10k-*``
pairs, an npz with ``x_test``/``y_test``) keeps it and carves validation from its training part; otherwise
``test_fraction`` and ``val_fraction`` of all examples go to test and validation.

Labels may be integers or strings; both are mapped to ``0..K-1`` in sorted order and kept, as text, in
``Dataset.classes``.
"""

from __future__ import annotations

import csv
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from archlab.data._dataset import Dataset, build_dataset, encode_labels
from archlab.data._idx import read_idx, read_idx_header
from archlab.errors import DataError

__all__ = ["load_csv", "load_idx", "load_image_folder", "load_npz", "load_path"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                            ".pbm"})
LABEL_COLUMNS = ("label", "y", "target", "class")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F"})
_IDX_NAME = re.compile(r"^(?P<prefix>.*?)[-_.]?(?P<kind>images|labels)[-_.]idx(?P<ndim>\d)[-_.]ubyte(\.gz)?$")


def _name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def load_path(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Dataset:
    """Load a dataset from a user path, recognising its format.

    - a folder with class sub-folders of images (or ``train/`` and ``test/`` folders that each hold them);
    - a folder holding IDX files (``<prefix>-images-idx3-ubyte[.gz]`` with
      ``<prefix>-labels-idx1-ubyte[.gz]``; the prefixes ``train`` and ``t10k``/``test`` give the official
      test split);
    - an IDX images file (its labels file is found by replacing ``images``/``idx3`` by ``labels``/``idx1``),
      or ``"images_path,labels_path"``;
    - a ``.npz`` file (:func:`load_npz`) or a ``.csv`` file (:func:`load_csv`).
    """
    split = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    text = os.fspath(path)
    p = Path(text)
    if not p.exists() and "," in text:
        images, labels = (Path(s.strip()) for s in text.split(",", 1))
        if images.is_file() and labels.is_file():
            return load_idx(images, labels, **split)
    if p.is_dir():
        if _idx_groups(p):
            return _load_idx_folder(p, **split)
        return load_image_folder(p, **split)
    if not p.is_file():
        raise DataError(f"no such file or folder: {p}")
    suffix = p.name.lower()
    if suffix.endswith(".npz"):
        return load_npz(p, **split)
    if suffix.endswith(".csv"):
        return load_csv(p, **split)
    labels = _labels_beside(p)
    if labels is not None:
        return load_idx(p, labels, **split)
    raise DataError(f"unrecognised data file {p}: expected an image folder, IDX files, .npz or .csv")


# ---------------------------------------------------------------------------------------------- image folder


def _class_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*")
                  if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))


def _scan_images(root: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for index, name in enumerate(classes):
        folder = root / name
        if folder.is_dir():
            found = _image_files(folder)
            files += found
            labels += [index] * len(found)
    return files, labels


def _decode_images(files: list[Path]) -> np.ndarray:
    """Decode all images to one ``(N, C, H, W)`` uint8 array; sizes must agree; any colour image gives C=3."""
    size: tuple[int, int] | None = None
    first: Path | None = None
    colour = False
    for f in files:
        try:
            with Image.open(f) as im:
                if size is None:
                    size, first = im.size, f
                elif im.size != size:
                    raise DataError(f"image {f} is {im.size[0]}x{im.size[1]}, but {first} is "
                                    f"{size[0]}x{size[1]}; all images must share one size")
                colour = colour or im.mode not in _GRAY_MODES
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {f}: {e}") from e
    assert size is not None
    channels = 3 if colour else 1
    out = np.empty((len(files), channels, size[1], size[0]), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                if im.mode in ("I", "I;16", "I;16L", "I;16B", "F"):
                    # 16-bit / float grayscale: rescaling each image by its own range would make pixel
                    # values incomparable between images, so clip to 0..255 as Pillow's own conversion does.
                    array = np.clip(np.asarray(im, dtype=np.float64), 0, 255).astype(np.uint8)
                    if colour:
                        array = np.repeat(array[..., None], 3, axis=-1)
                else:
                    array = np.asarray(im.convert("RGB" if colour else "L"))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {f}: {e}") from e
        out[i] = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return out


def load_image_folder(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Dataset:
    """An image-classification dataset from a folder with one sub-folder of images per class.

    Images are decoded with Pillow to 8 bits; if every image is grayscale the dataset has 1 channel, otherwise
    3 (grayscale images among colour ones are converted to RGB). All images must have one size. If the folder
    holds ``train/`` and ``test/`` sub-folders, each with the class sub-folders, ``test/`` is the test split.
    Classes are the sub-folder names in sorted order. Pixel values are divided by 255 before normalisation.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    split = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = sorted({d.name for part in ("train", "test") for d in _class_folders(root / part)})
        if len(classes) < 2:
            raise DataError(f"image folder {root} has {len(classes)} class folder(s) in train/ and test/; "
                            "need at least 2")
        train_files, train_labels = _scan_images(root / "train", classes)
        test_files, test_labels = _scan_images(root / "test", classes)
        for part, files in (("train", train_files), ("test", test_files)):
            if not files:
                raise DataError(f"image folder {root / part} holds no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        x = _decode_images(train_files + test_files)
        n = len(train_files)
        return build_dataset(root.name, x[:n], np.asarray(train_labels), tuple(classes), x_test=x[n:],
                             y_test=np.asarray(test_labels), scale=255.0, **split)
    classes = [d.name for d in _class_folders(root)]
    if len(classes) < 2:
        raise DataError(f"image folder {root} has {len(classes)} class folder(s); need at least 2 "
                        "(one sub-folder of images per class)")
    files, labels = _scan_images(root, classes)
    if not files:
        raise DataError(f"image folder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    counts = np.bincount(np.asarray(labels), minlength=len(classes))
    if (counts == 0).any():
        empty = [c for c, k in zip(classes, counts, strict=True) if k == 0]
        raise DataError(f"image folder {root}: class folder(s) {', '.join(empty)} hold no images")
    return build_dataset(root.name, _decode_images(files), np.asarray(labels), tuple(classes), scale=255.0,
                         **split)


# ---------------------------------------------------------------------------------------------------- IDX


def _idx_groups(folder: Path) -> dict[str, dict[str, Path]]:
    groups: dict[str, dict[str, Path]] = {}
    for f in sorted(folder.iterdir()):
        m = _IDX_NAME.match(f.name)
        if m and f.is_file():
            groups.setdefault(m["prefix"], {})[m["kind"]] = f
    return groups


def _labels_beside(images: Path) -> Path | None:
    name = images.name
    if "images" not in name:
        return None
    candidate = name.replace("images", "labels").replace("idx3", "idx1")
    for alt in (candidate, candidate.removesuffix(".gz"), candidate + ".gz"):
        if (images.parent / alt).is_file() and alt != name:
            return images.parent / alt
    return None


def _load_idx_folder(folder: Path, **split: float) -> Dataset:
    groups = _idx_groups(folder)
    incomplete = sorted(p or "(no prefix)" for p, g in groups.items() if set(g) != {"images", "labels"})
    if incomplete:
        raise DataError(f"IDX folder {folder}: prefix(es) {', '.join(incomplete)} lack an images or a "
                        "labels file")
    train_key = "train" if "train" in groups else None
    test_key = next((k for k in ("t10k", "test") if k in groups), None)
    if train_key and test_key and len(groups) == 2:
        return load_idx(groups[train_key]["images"], groups[train_key]["labels"],
                        test_images=groups[test_key]["images"], test_labels=groups[test_key]["labels"],
                        **split)
    if len(groups) == 1:
        (only,) = groups.values()
        return load_idx(only["images"], only["labels"], **split)
    raise DataError(f"IDX folder {folder} holds {len(groups)} image/label pairs "
                    f"({', '.join(sorted(groups))}); expected one pair, or train + t10k (or test)")


def _idx_images(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        return array[:, None, None, :]
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        return _channels_first(array, str(path))
    raise DataError(f"IDX images file {path} has {array.ndim} dimensions; expected 2 to 4")


def _read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    # Count check on headers first: a mismatch is reported without decompressing 50 MB of pixels.
    _, image_shape = read_idx_header(images)
    _, label_shape = read_idx_header(labels)
    if image_shape[0] != label_shape[0]:
        raise DataError(f"IDX count mismatch: {images} holds {image_shape[0]} images but {labels} holds "
                        f"{label_shape[0]} labels")
    x = read_idx(images)
    y = read_idx(labels)
    if y.ndim != 1:
        raise DataError(f"IDX labels file {labels} has shape {y.shape}; expected one dimension")
    return _idx_images(x, images), y


def load_idx(
    images: str | os.PathLike,
    labels: str | os.PathLike,
    *,
    test_images: str | os.PathLike | None = None,
    test_labels: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    name: str | None = None,
    classes: tuple[str, ...] | None = None,
) -> Dataset:
    """A dataset from IDX files (gzipped or not): images ``(N, H, W)`` (or ``(N, F)``) and labels ``(N,)``.

    With ``test_images``/``test_labels`` those are the test split. uint8 pixels are divided by 255.
    ``classes`` names the label values ``0..K-1`` (by default the label values themselves, as text).
    """
    images, labels = Path(images), Path(labels)
    x, y = _read_idx_pair(images, labels)
    x_test = y_test = None
    if (test_images is None) != (test_labels is None):
        raise DataError("load_idx: give both test_images and test_labels, or neither")
    if test_images is not None and test_labels is not None:
        x_test, y_test = _read_idx_pair(Path(test_images), Path(test_labels))
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    if classes is None:
        if y_test is None:
            y_index, found = encode_labels(y, str(labels))
        else:
            y_index, found = encode_labels(np.concatenate([y, y_test]), str(labels))
            y_index, y_test = y_index[: len(y)], y_index[len(y) :]
        classes = found
    else:
        y_index = y.astype(np.int64)
        y_test = None if y_test is None else y_test.astype(np.int64)
    return build_dataset(name or _idx_prefix_name(images), x, y_index, tuple(classes), x_test=x_test,
                         y_test=y_test, scale=scale, seed=seed, val_fraction=val_fraction,
                         test_fraction=test_fraction)


def _idx_prefix_name(images: Path) -> str:
    m = _IDX_NAME.match(images.name)
    prefix = m["prefix"] if m else ""
    return images.parent.name if prefix in ("", "train") else prefix


# ---------------------------------------------------------------------------------------------------- npz


def _channels_first(x: np.ndarray, what: str) -> np.ndarray:
    """``(N, C, H, W)`` if dimension 1 is 1 or 3 (PyTorch order), else ``(N, H, W, C)`` if the last is."""
    if x.shape[1] in (1, 3):
        return x
    if x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise DataError(f"{what}: 4-d inputs of shape {x.shape} have no channel axis of size 1 or 3 "
                    "(expected (N, C, H, W) or (N, H, W, C))")


def _as_nchw(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        return _channels_first(x, what)
    raise DataError(f"{what}: x must have 2 to 4 dimensions ((N, F), (N, H, W), (N, C, H, W) or "
                    f"(N, H, W, C)), got shape {x.shape}")


def _npz_inputs(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype.kind not in "uifb":
        raise DataError(f"{what}: x must be numeric, got dtype {x.dtype}")
    return _as_nchw(x.astype(np.float32) if x.dtype == np.bool_ else x, what)


def load_npz(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Dataset:
    """A dataset from an ``.npz`` holding ``x`` (inputs) and ``y`` (integer or string labels).

    The layout of ``x`` is read from its shape: ``(N, F)`` is tabular (stored as ``(N, 1, 1, F)``),
    ``(N, H, W)`` is single-channel images, and a 4-d ``x`` is ``(N, C, H, W)`` when its dimension 1 is 1 or
    3, else ``(N, H, W, C)`` when its last dimension is 1 or 3 (so an ``(N, 3, H, 3)`` array is read channels
    first). uint8 inputs are divided by 255. Optional ``x_test``/``y_test`` arrays give the test split. The
    file is read with ``allow_pickle=False``: object arrays are refused.
    """
    p = Path(path)
    what = f"npz file {p}"
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DataError(f"{what} lacks array(s) {', '.join(repr(k) for k in missing)} "
                                f"(it holds {', '.join(repr(k) for k in z.files) or 'nothing'})")
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test") if k in z.files}
    except DataError:
        raise
    except ValueError as e:
        raise DataError(f"{what}: cannot read it without pickle ({e})") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read {what}: {e}") from e
    x = _npz_inputs(arrays["x"], what)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    y = arrays["y"]
    if len(x) != len(y):
        raise DataError(f"{what}: x has {len(x)} examples but y has {len(y)} labels")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{what}: give both x_test and y_test, or neither")
    if "x_test" not in arrays:
        y_index, classes = encode_labels(y, what)
        return build_dataset(p.stem, x, y_index, classes, seed=seed, val_fraction=val_fraction,
                             test_fraction=test_fraction, scale=scale)
    x_test = _npz_inputs(arrays["x_test"], what)
    if x_test.dtype != x.dtype:
        # Mixed dtypes: use values as they are (8-bit pixels are only rescaled when both splits are 8-bit).
        x, x_test, scale = x.astype(np.float64), x_test.astype(np.float64), 1.0
    y_test = arrays["y_test"]
    if len(x_test) != len(y_test):
        raise DataError(f"{what}: x_test has {len(x_test)} examples but y_test has {len(y_test)} labels")
    try:
        y_all = np.concatenate([y, y_test])
    except ValueError as e:
        raise DataError(f"{what}: y and y_test cannot be combined ({e})") from e
    y_index, classes = encode_labels(y_all, what)
    return build_dataset(p.stem, x, y_index[: len(y)], classes, x_test=x_test, y_test=y_index[len(y) :],
                         seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, scale=scale)


# ---------------------------------------------------------------------------------------------------- CSV


def _integer_labels(values: list[str]) -> np.ndarray | None:
    try:
        return np.asarray([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return None


def load_csv(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Dataset:
    """A dataset from a CSV file with a header row and numeric feature columns.

    The label column is the first of ``label``, ``y``, ``target``, ``class`` (case-insensitive) in the header,
    else the last column. Labels that all parse as integers are integers, otherwise strings. If the number of
    features F is a perfect square S*S, rows are 1xSxS images (e.g. MNIST as CSV); otherwise the inputs have
    shape ``(1, 1, F)``. Values are used as they are (no /255).
    """
    p = Path(path)
    what = f"CSV file {p}"
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {what}: {e}") from e
    if not rows:
        raise DataError(f"{what} is empty")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise DataError(f"{what} has a header but no data rows")
    if len(header) < 2:
        raise DataError(f"{what} needs at least one feature column and a label column")
    lowered = [h.lower() for h in header]
    label_at = next((lowered.index(n) for n in LABEL_COLUMNS if n in lowered), len(header) - 1)
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{what}: row {line} has {len(row)} fields, the header has {len(header)}")
    labels = [row[label_at].strip() for row in body]
    features = [row[:label_at] + row[label_at + 1 :] for row in body]
    try:
        x = np.asarray(features, dtype=np.float64)
    except ValueError:
        for line, row in enumerate(features, start=2):
            for column, cell in enumerate(row):
                try:
                    float(cell)
                except ValueError:
                    name = header[column if column < label_at else column + 1]
                    raise DataError(f"{what}: non-numeric value {cell!r} in column {name!r}, "
                                    f"row {line}") from None
        raise
    if not np.isfinite(x).all():
        line, column = np.argwhere(~np.isfinite(x))[0]
        name = header[column if column < label_at else column + 1]
        raise DataError(f"{what}: NaN or infinite value in column {name!r}, row {line + 2}")
    integer = _integer_labels(labels)
    y_index, classes = encode_labels(integer if integer is not None else np.asarray(labels, dtype=str), what)
    n_features = x.shape[1]
    side = math.isqrt(n_features)
    shape = (1, side, side) if side * side == n_features else (1, 1, n_features)
    return build_dataset(p.stem, x.astype(np.float32).reshape(len(x), *shape), y_index, classes, seed=seed,
                         val_fraction=val_fraction, test_fraction=test_fraction)

"""The :class:`Dataset` type, the stratified split rule and per-channel normalisation.

Every loader in :mod:`archlab.data` ends in :func:`build_dataset`: it receives raw arrays (images as
``(N, C, H, W)``, labels as integer indices), splits them with :func:`stratified_order` and normalises all
splits with the per-channel mean and standard deviation of the training split only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from archlab.errors import DataError

__all__ = ["Dataset", "build_dataset", "encode_labels", "stratified_order"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset split into train / validation / test tensors, ready for a model.

    ``x_*`` are float32 tensors of shape ``(N, C, H, W)`` already normalised with ``mean`` and ``std``
    (per channel, computed on the training split only); ``y_*`` are int64 class indices into ``classes``.
    Tabular data has the shape ``(N, 1, 1, F)``. Sequence data is either float32 ``(N, C, L)`` (time series,
    normalised per channel like images) or int64 token ids ``(N, L)`` (``mean`` and ``std`` empty,
    ``vocab_size`` set). Datasets compare by identity (they hold tensors).
    ``scale`` is what the raw values (as the files hold them, e.g. 0-255 pixels) were divided by before the
    normalisation, so ``(raw / scale - mean) / std`` gives the model's input (the exported ONNX graph does this).
    ``flip_invariant`` says whether mirroring an image left-right keeps its label (true of clothing and of
    CIFAR-10's objects, false of digits); training may then use random flips as augmentation.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_invariant: bool = False
    vocab_size: int | None = None  # token-id inputs: ids are in [0, vocab_size)
    scale: float = 1.0  # raw values (as the files hold them) were divided by this before mean/std normalisation

    def __post_init__(self) -> None:
        shape = tuple(self.x_train.shape[1:])
        tokens = self.vocab_size is not None
        ndims = (2,) if tokens else (3, 4)
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim not in ndims or tuple(x.shape[1:]) != shape:
                what = "(N, L) token ids" if tokens else "(N, C, H, W) images or (N, C, L) sequences"
                raise DataError(f"dataset {self.name!r}: x_{split} has shape {tuple(x.shape)}, "
                                f"expected {what} of shape (N, *{shape})")
            if tokens and (x.dtype != torch.int64 or (x.numel() and not 0 <= int(x.min()) <= int(x.max())
                                                        < self.vocab_size)):
                raise DataError(f"dataset {self.name!r}: x_{split} must hold int64 token ids in "
                                f"[0, {self.vocab_size})")
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(f"dataset {self.name!r}: y_{split} has {len(y)} labels for {len(x)} inputs")
        channels = 0 if tokens else shape[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(f"dataset {self.name!r}: mean/std must have one value per channel ({channels})")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input: ``(C, H, W)`` for images, ``(C, L)`` for series, ``(L,)`` for tokens."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def input_dtype(self) -> str:
        """``"long"`` for token ids, else ``"float"`` (the convention of :func:`archlab.measure.example_input`)."""
        return "long" if self.vocab_size is not None else "float"

    @property
    def num_classes(self) -> int:
        """The number of classes (the length of ``classes``)."""
        return len(self.classes)

    def subset_train(self, n: int, seed: int) -> Dataset:
        """A copy whose training split is a stratified subset of ``n`` examples (a lower training fidelity).

        Validation and test splits, ``mean`` and ``std`` are unchanged (statistics stay those of the full
        training split, so results at different fidelities are evaluated on identically normalised data).
        The same ``(n, seed)`` always gives the same subset; ``n >= len(x_train)`` returns the full split.
        """
        if n < 1:
            raise DataError(f"subset_train: n must be at least 1, got {n}")
        if n >= len(self.y_train):
            return self
        order = stratified_order(self.y_train.numpy(), seed)
        keep = torch.from_numpy(np.sort(order[:n]))
        return dataclasses.replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep])

    def describe(self) -> dict:
        """A JSON-serialisable summary: name, split sizes, input shape, classes, mean and std."""
        return {
            "name": self.name,
            "sizes": {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)},
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "flip_invariant": self.flip_invariant,
            "scale": self.scale,
            **({"vocab_size": self.vocab_size} if self.vocab_size is not None else {}),
        }

    def __repr__(self) -> str:
        d = self.describe()
        return (f"Dataset(name={self.name!r}, sizes={d['sizes']}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(labels))`` in which every prefix is stratified by class.

    Each class's examples are shuffled and spread evenly over ``[0, 1)``: the k-th of ``n_c`` examples gets
    the key ``(k + u) / n_c`` with ``u`` uniform in ``[0, 1)``. Sorting by key interleaves the classes, so
    any prefix (and any contiguous slice) holds each class in proportion to its size, within one example.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise DataError(f"{name} must be strictly between 0 and 1, got {value}")
    return value


def split_indices(
    labels: np.ndarray, seed: int, fractions: tuple[float, ...]
) -> list[np.ndarray]:
    """Stratified, seeded, disjoint index sets: one per fraction, then the rest (each sorted, none empty)."""
    n = len(labels)
    order = stratified_order(labels, seed)
    parts: list[np.ndarray] = []
    start = 0
    for fraction in fractions:
        size = max(1, int(round(fraction * n)))
        parts.append(np.sort(order[start : start + size]))
        start += size
    parts.append(np.sort(order[start:]))
    if any(len(p) == 0 for p in parts):
        raise DataError(f"too few examples ({n}) to split into non-empty train/validation/test sets")
    return parts


def encode_labels(values: np.ndarray, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map integer or string labels to indices ``0..K-1`` in sorted order; return them and the class names.

    Integer-valued floats are accepted as integers; other floats, NaN, objects and booleans are refused.
    """
    values = np.asarray(values)
    if values.ndim != 1:
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        else:
            raise DataError(f"{what}: labels must be one-dimensional, got shape {values.shape}")
    if values.dtype.kind == "S":
        try:
            values = np.char.decode(values, "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{what}: labels are bytes that are not UTF-8") from e
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DataError(f"{what}: labels must be integers or strings, got non-integer floats")
        values = values.astype(np.int64)
    if values.dtype.kind not in "iuU":
        raise DataError(f"{what}: labels must be integers or strings, got dtype {values.dtype}")
    uniques, indices = np.unique(values, return_inverse=True)
    return indices.astype(np.int64).reshape(-1), tuple(str(u) for u in uniques.tolist())


def _to_float(x: np.ndarray, scale: float) -> torch.Tensor:
    # np.array copies: the tensor must own writable memory (inputs may be read-only views of a file).
    t = torch.from_numpy(np.array(x, dtype=np.float32))
    if scale != 1.0:
        t.div_(scale)
    return t


def build_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    scale: float = 1.0,
    flip_invariant: bool = False,
) -> Dataset:
    """Split, scale (divide by ``scale``) and normalise raw arrays into a :class:`Dataset`.

    ``x`` is ``(N, C, H, W)`` of any numeric dtype, ``y`` int64 indices into ``classes``. Without an official
    test split (``x_test is None``), test takes ``test_fraction`` and validation ``val_fraction`` of all
    examples; with one, validation takes ``val_fraction`` of ``x`` and the rest is the training split.
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    y = np.asarray(y, dtype=np.int64)
    _check_arrays(name, x, y, classes)
    if x_test is None:
        test_fraction = _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise DataError(f"val_fraction + test_fraction must be below 1, "
                            f"got {val_fraction + test_fraction}")
        test_idx, val_idx, train_idx = split_indices(y, seed, (test_fraction, val_fraction))
        x_test, y_test = x[test_idx], y[test_idx]
    else:
        if y_test is None:
            raise DataError(f"dataset {name!r}: test inputs given without test labels")
        y_test = np.asarray(y_test, dtype=np.int64)
        _check_arrays(f"{name} (test split)", x_test, y_test, classes)
        if tuple(x_test.shape[1:]) != tuple(x.shape[1:]):
            raise DataError(f"dataset {name!r}: test inputs have shape {tuple(x_test.shape[1:])}, "
                            f"training inputs {tuple(x.shape[1:])}")
        val_idx, train_idx = split_indices(y, seed, (val_fraction,))
    x_train_raw = x[train_idx]
    mean, std = _channel_statistics(x_train_raw, scale)
    x_train = _to_float(x_train_raw, scale)
    del x_train_raw
    x_val = _to_float(x[val_idx], scale)
    x_test_t = _to_float(x_test, scale)
    for t in (x_train, x_val, x_test_t):
        t.sub_(torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        t.div_(torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=torch.from_numpy(y[train_idx]),
        x_val=x_val,
        y_val=torch.from_numpy(y[val_idx]),
        x_test=x_test_t,
        y_test=torch.from_numpy(np.ascontiguousarray(y_test)),
        classes=tuple(classes),
        mean=mean,
        std=std,
        flip_invariant=flip_invariant,
        scale=float(scale),
    )


def _check_arrays(name: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> None:
    if x.ndim != 4:
        raise DataError(f"dataset {name!r}: inputs must be (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) != len(y):
        raise DataError(f"dataset {name!r}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"dataset {name!r} is empty")
    if x.dtype.kind not in "uifb":
        raise DataError(f"dataset {name!r}: inputs must be numeric, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"dataset {name!r}: inputs contain NaN or infinite values")
    if len(classes) < 2:
        raise DataError(f"dataset {name!r} has {len(classes)} class(es); classification needs at least 2")
    if y.min() < 0 or y.max() >= len(classes):
        raise DataError(f"dataset {name!r}: labels must lie in 0..{len(classes) - 1}")


def _channel_statistics(x: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``x / scale``, accumulated in float64 without a float copy."""
    channels = x.shape[1]
    if x.dtype == np.uint8:
        # Exact and fast: a histogram of the 256 possible values per channel.
        values = np.arange(256, dtype=np.float64)
        mean, var = np.empty(channels), np.empty(channels)
        for c in range(channels):
            # torch.bincount counts uint8 directly; numpy's would first widen every value to int64.
            channel = torch.from_numpy(np.ascontiguousarray(x[:, c])).reshape(-1)
            counts = torch.bincount(channel, minlength=256).numpy().astype(np.float64)
            mean[c] = counts @ values / counts.sum()
            var[c] = counts @ (values - mean[c]) ** 2 / counts.sum()
    else:
        # Two passes over chunks: float32 sums over ~10^8 values lose digits, and a float64 copy of a whole
        # dataset would cost more memory than the dataset.
        chunk = 4096
        count = x.shape[0] * x.shape[2] * x.shape[3]
        total = np.zeros(channels)
        for start in range(0, len(x), chunk):
            total += x[start : start + chunk].sum(axis=(0, 2, 3), dtype=np.float64)
        mean = total / count
        squares = np.zeros(channels)
        for start in range(0, len(x), chunk):
            centred = x[start : start + chunk].astype(np.float64) - mean.reshape(1, -1, 1, 1)
            squares += np.square(centred).sum(axis=(0, 2, 3))
        var = squares / count
    mean, std = mean / scale, np.sqrt(var) / scale
    # A constant channel carries no information; dividing by 1 keeps it finite (and zero).
    std = np.where(std > 1e-12, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)

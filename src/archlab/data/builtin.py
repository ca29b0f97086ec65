"""The built-in datasets ``digits``, ``fashion-mnist`` and ``cifar10``, with their search paths and downloads.

- digits: scikit-learn's copy of the UCI optical digits (Alpaydin & Kaynak, 1998), 1,797 8x8 grayscale
  images.
- fashion-mnist: Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
  Learning Algorithms", 2017 (github.com/zalandoresearch/fashion-mnist): 60,000 + 10,000 28x28 grayscale IDX
  images.
- cifar10: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009: 50,000 + 10,000 32x32
  RGB images, read from the official python batches or from ``cifar10_jpeg.npz`` (a JPEG re-encoding,
  quality 75).

Files are looked up in ``data_dir``, then ``$ARCHLAB_DATA``, then system folders, then the cache
(``$XDG_CACHE_HOME/archlab``, by default ``~/.cache/archlab``); ``download=True`` fetches missing files into
the cache from the official mirrors.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from archlab._io import atomic_path
from archlab.data._dataset import Dataset, build_dataset
from archlab.data._download import cache_dir, download_file, file_md5
from archlab.data._idx import read_idx, read_idx_header
from archlab.data._pickle import restricted_load
from archlab.data._registry import register_dataset
from archlab.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "decode_cifar10_jpeg",
    "fetch_dataset",
    "load_cifar10",
    "load_cifar10_batches",
    "load_cifar10_jpeg",
    "load_digits",
    "load_fashion_mnist",
]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# name -> (md5 of the official .gz, shape recorded in its IDX header)
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", (60000,)),
    "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", (10000,)),
}
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BATCHES = "cifar-10-batches-py"
CIFAR10_JPEG = "cifar10_jpeg.npz"


def env_data_dir() -> Path | None:
    """The folder `ARCHLAB_DATA` names, or None."""
    value = os.environ.get("ARCHLAB_DATA")
    return Path(value) if value else None


def unique_paths(paths: Iterable[Path | None]) -> list[Path]:
    """The paths given, without None and without repeats, in order."""
    seen: list[Path] = []
    for p in paths:
        if p is not None and p not in seen:
            seen.append(p)
    return seen


# ---------------------------------------------------------------------------------------------------- digits


@register_dataset("digits", kind="fractions", val_fraction=0.2, test_fraction=0.2)
def load_digits(*, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, 1 channel, pixels / 16), split 60/20/20 by default."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[:, None]
    classes = tuple(str(c) for c in bunch.target_names)
    return build_dataset("digits", x, bunch.target.astype(np.int64), classes, seed=seed,
                         val_fraction=val_fraction, test_fraction=test_fraction, scale=16.0)


# ---------------------------------------------------------------------------------------------- Fashion-MNIST


def fashion_mnist_search_path(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for the four Fashion-MNIST IDX files, in order."""
    env = env_data_dir()
    given = Path(data_dir) if data_dir is not None else None
    return unique_paths([
        given,
        given / "fashion-mnist" if given else None,
        env / "fashion-mnist" if env else None,
        env,
        FASHION_MNIST_SYSTEM_DIR,
        cache_dir() / "fashion-mnist",
    ])


def _find_idx_set(folder: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for name in FASHION_MNIST_FILES:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _find_fashion_mnist(data_dir: str | os.PathLike | None) -> dict[str, Path] | None:
    """The four IDX files from the first folder of the search path that holds them all, or None."""
    return next((found for folder in fashion_mnist_search_path(data_dir)
                 if (found := _find_idx_set(folder)) is not None), None)


def download_fashion_mnist(folder: Path | None = None) -> dict[str, Path]:
    """Download the four Fashion-MNIST files (md5 and IDX header checked) into ``folder`` (default: cache)."""
    folder = folder or cache_dir() / "fashion-mnist"
    paths: dict[str, Path] = {}
    for name, (md5, shape) in FASHION_MNIST_FILES.items():
        target = folder / f"{name}.gz"
        if not (target.is_file() and file_md5(target) == md5):
            download_file(FASHION_MNIST_URL + f"{name}.gz", target, md5=md5)
        _, found = read_idx_header(target)
        if found != shape:
            raise DataError(f"downloaded {target} has IDX shape {found}, expected {shape}")
        paths[name] = target
    return paths


@register_dataset("fashion-mnist", kind="official_test", val_fraction=0.1)
def load_fashion_mnist(
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Dataset:
    """Fashion-MNIST: the official 10,000-image test split; validation is ``val_fraction`` of the 60,000."""
    files = _find_fashion_mnist(data_dir)
    if files is None:
        if not download:
            searched = fashion_mnist_search_path(data_dir)
            raise DataError(
                "Fashion-MNIST not found: looked for train-images-idx3-ubyte[.gz] and its three companions "
                f"in {', '.join(str(p) for p in searched)}; install it with "
                "`apt-get install dataset-fashion-mnist`, set ARCHLAB_DATA, or pass download=True "
                "(CLI: --download)"
            )
        files = download_fashion_mnist()
    x_train = read_idx(files["train-images-idx3-ubyte"])
    y_train = read_idx(files["train-labels-idx1-ubyte"])
    x_test = read_idx(files["t10k-images-idx3-ubyte"])
    y_test = read_idx(files["t10k-labels-idx1-ubyte"])
    for name, array in (("train-images-idx3-ubyte", x_train), ("train-labels-idx1-ubyte", y_train),
                        ("t10k-images-idx3-ubyte", x_test), ("t10k-labels-idx1-ubyte", y_test)):
        expected = FASHION_MNIST_FILES[name][1]
        if array.shape != expected or array.dtype != np.uint8:
            raise DataError(f"{files[name]} holds {array.dtype} {array.shape}, expected uint8 {expected}")
    return build_dataset("fashion-mnist", x_train[:, None], y_train.astype(np.int64), FASHION_MNIST_CLASSES,
                         x_test=x_test[:, None], y_test=y_test.astype(np.int64), seed=seed,
                         val_fraction=val_fraction, test_fraction=0.0, scale=255.0, flip_invariant=True)


# --------------------------------------------------------------------------------------------------- CIFAR-10


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = restricted_load(path.read_bytes(), str(path))
    except OSError as e:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {e}") from e
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch {path} is a {type(batch).__name__}, expected a dict")
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"CIFAR-10 batch {path} lacks b'data' or b'labels'")
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"CIFAR-10 batch {path}: data {data.dtype} {data.shape} with {len(labels)} labels, "
                        "expected uint8 (N, 3072) with N labels")
    if labels.dtype.kind not in "iu" or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"CIFAR-10 batch {path}: labels must be integers 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10_batches(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                 tuple[str, ...]]:
    """Read the official CIFAR-10 python batches with a restricted unpickler.

    Returns ``(x_train, y_train, x_test, y_test, classes)`` with uint8 ``(N, 3, 32, 32)`` images. ``folder``
    holds ``data_batch_1``.. ``data_batch_5``, ``test_batch`` and ``batches.meta``.
    """
    folder = Path(folder)
    train_files = sorted(folder.glob("data_batch_*"), key=lambda p: (len(p.name), p.name))
    test_file = folder / "test_batch"
    if not train_files or not test_file.is_file():
        raise DataError(f"{folder} is not a CIFAR-10 python batches folder "
                        "(it needs data_batch_* and test_batch)")
    train = [_cifar_batch(p) for p in train_files]
    x_test, y_test = _cifar_batch(test_file)
    classes = CIFAR10_CLASSES
    meta_file = folder / "batches.meta"
    if meta_file.is_file():
        meta = restricted_load(meta_file.read_bytes(), str(meta_file))
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if not isinstance(names, list) or len(names) != 10:
            raise DataError(f"{meta_file} lacks a list of 10 b'label_names'")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test,
            classes)


def _spread(n: int, limit: int | None) -> np.ndarray:
    # Evenly spaced rather than the first `limit`: the files may be sorted by class.
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(limit, 1)).round().astype(np.int64))


def decode_cifar10_jpeg(
    jpeg: np.ndarray, offsets: np.ndarray, indices: np.ndarray | None = None
) -> np.ndarray:
    """Decode the concatenated JPEGs ``jpeg[offsets[i]:offsets[i+1]]`` to uint8 ``(n, 3, 32, 32)``.

    The 32x32 RGB fast path feeds the bytes straight to Pillow's JPEG decoder (about twice as fast as
    ``Image.open``); an image that is not 32x32 falls back to ``Image.open`` and is reported with its size.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    count = len(offsets) - 1
    if count < 0 or offsets[0] < 0 or offsets[-1] > len(jpeg) or (np.diff(offsets) <= 0).any():
        raise DataError(f"CIFAR-10 JPEG offsets are not increasing within the {len(jpeg)}-byte buffer")
    indices = np.arange(count) if indices is None else np.asarray(indices, dtype=np.int64)
    buffer = np.ascontiguousarray(jpeg, dtype=np.uint8).tobytes()
    bounds = offsets.tolist()
    out = np.empty((len(indices), 32, 32, 3), dtype=np.uint8)
    frombytes = Image.frombytes
    for row, i in enumerate(indices.tolist()):
        data = buffer[bounds[i] : bounds[i + 1]]
        try:
            out[row] = np.asarray(frombytes("RGB", (32, 32), data, "jpeg", "RGB", ""))
        except (ValueError, OSError):
            out[row] = _decode_slow(data, i)
    return out.transpose(0, 3, 1, 2).copy()


def _decode_slow(data: bytes, i: int) -> np.ndarray:
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (32, 32):
                raise DataError(f"CIFAR-10 JPEG image {i} is {im.size[0]}x{im.size[1]}, expected 32x32")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"CIFAR-10 JPEG image {i} cannot be decoded: {e}") from e


def _jpeg_cache_path(source: Path) -> Path:
    stat = source.stat()
    return cache_dir() / f"{source.stem}-{stat.st_size}-{stat.st_mtime_ns}.npz"


def _read_jpeg_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            x_train, x_test = z["x_train"], z["x_test"]
    except (OSError, KeyError, ValueError, EOFError):
        return None
    if x_train.shape[1:] != (3, 32, 32) or x_test.shape[1:] != (3, 32, 32) or x_train.dtype != np.uint8:
        return None
    return x_train, x_test


def _write_jpeg_cache(path: Path, x_train: np.ndarray, x_test: np.ndarray) -> None:
    # Written to a temporary file then renamed: a concurrent reader sees either no cache or a whole one.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".part") as tmp, open(tmp, "wb") as f:
            np.savez(f, x_train=x_train, x_test=x_test)
        stem = path.name.rsplit("-", 2)[0]
        for stale in path.parent.glob(f"{stem}-*-*.npz"):
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"archlab: cannot cache decoded CIFAR-10 in {path.parent}: {e}", stacklevel=3)


def load_cifar10_jpeg(
    path: str | os.PathLike, *, limit: int | None = None, cache: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read ``cifar10_jpeg.npz``: ``(x_train, y_train, x_test, y_test, classes)``, uint8 (N, 3, 32, 32).

    Decoding 60,000 JPEGs takes seconds, so the decoded arrays are cached in the cache folder under a key made
    of the source file's size and modification time. ``limit`` keeps at most that many evenly spaced images
    per split (no cache is read or written then) for quick checks.
    """
    source = Path(path)
    what = f"CIFAR-10 JPEG file {source}"
    try:
        with np.load(source, allow_pickle=False) as z:
            missing = [k for k in ("train_jpeg", "train_offsets", "train_labels", "test_jpeg", "test_offsets",
                                   "test_labels") if k not in z.files]
            if missing:
                raise DataError(f"{what} lacks array(s) {', '.join(missing)}")
            classes = CIFAR10_CLASSES
            if "classes" in z.files:
                classes = tuple(str(c) for c in z["classes"].tolist())
            labels, offsets = {}, {}
            for split in ("train", "test"):
                labels[split] = z[f"{split}_labels"].astype(np.int64)
                offsets[split] = z[f"{split}_offsets"]
                if len(labels[split]) != len(offsets[split]) - 1:
                    raise DataError(f"{what}: {split} has {len(labels[split])} labels for "
                                    f"{len(offsets[split]) - 1} images")
            picks = {split: _spread(len(labels[split]), limit) for split in ("train", "test")}
            cache_path = _jpeg_cache_path(source) if cache and limit is None else None
            cached = _read_jpeg_cache(cache_path) if cache_path is not None and cache_path.is_file() else None
            sizes = (len(labels["train"]), len(labels["test"]))
            if cached is not None and (len(cached[0]), len(cached[1])) == sizes:
                x_train, x_test = cached
            else:
                x_train = decode_cifar10_jpeg(z["train_jpeg"], offsets["train"], picks["train"])
                x_test = decode_cifar10_jpeg(z["test_jpeg"], offsets["test"], picks["test"])
                if cache_path is not None:
                    _write_jpeg_cache(cache_path, x_train, x_test)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {what}: {e}") from e
    return x_train, labels["train"][picks["train"]], x_test, labels["test"][picks["test"]], classes


def cifar10_search_path(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ``cifar-10-batches-py/`` or ``cifar10_jpeg.npz``, in order."""
    return unique_paths([Path(data_dir) if data_dir is not None else None, env_data_dir(), cache_dir()])


def _find_cifar10(data_dir: str | os.PathLike | None) -> tuple[str, Path] | None:
    for folder in cifar10_search_path(data_dir):
        # The python batches hold the exact pixels; the JPEG file is a lossy re-encoding, so batches win.
        for batches in (folder / CIFAR10_BATCHES, folder):
            if (batches / "test_batch").is_file() and (batches / "data_batch_1").is_file():
                return "batches", batches
        if (folder / CIFAR10_JPEG).is_file():
            return "jpeg", folder / CIFAR10_JPEG
    return None


def download_cifar10(folder: Path | None = None) -> Path:
    """Download and unpack the CIFAR-10 python batches (md5-checked) into ``folder`` (default: the cache)."""
    folder = folder or cache_dir()
    target = folder / CIFAR10_BATCHES
    if (target / "test_batch").is_file():
        return target
    archive = folder / "cifar-10-python.tar.gz"
    if not (archive.is_file() and file_md5(archive) == CIFAR10_MD5):
        download_file(CIFAR10_URL, archive, md5=CIFAR10_MD5, timeout=120.0)
    wanted = {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"}
    staging = Path(tempfile.mkdtemp(prefix=".cifar-10-batches-py.", dir=folder))
    try:
        # Only the known regular files are copied out, by name: nothing in the archive chooses a path.
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in wanted:
                    source = tar.extractfile(member)
                    assert source is not None
                    (staging / name).write_bytes(source.read())
        if missing := wanted - {p.name for p in staging.iterdir()}:
            raise DataError(f"{archive} lacks {', '.join(sorted(missing))}")
        os.replace(staging, target)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot unpack {archive}: {e}") from e
    finally:
        if staging.exists():
            for p in staging.iterdir():
                p.unlink()
            staging.rmdir()
    archive.unlink(missing_ok=True)
    return target


def fetch_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Download a built-in dataset's files into the cache when they are not found (``--download`` of the CLI).

    Fashion-MNIST and CIFAR-10 are fetched from their official addresses and checked against their published
    md5 sums; digits ships with scikit-learn and a path is the user's own, so for those nothing happens and
    ``None`` is returned. Returns where the files are. A failed or corrupt download is a :class:`DataError`.
    """
    if name == "fashion-mnist":
        files = _find_fashion_mnist(data_dir) or download_fashion_mnist()
        return files["train-images-idx3-ubyte"].parent
    if name == "cifar10":
        found = _find_cifar10(data_dir)
        return found[1] if found is not None else download_cifar10()
    return None


@register_dataset("cifar10", kind="official_test", val_fraction=0.1)
def load_cifar10(
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    limit: int | None = None,
) -> Dataset:
    """CIFAR-10 with its official 10,000-image test split; validation is ``val_fraction`` of the 50,000.

    ``limit`` (for quick checks) keeps at most that many evenly spaced images per official split.
    """
    found = _find_cifar10(data_dir)
    if found is None:
        if not download:
            searched = ", ".join(str(p) for p in cifar10_search_path(data_dir))
            raise DataError(f"CIFAR-10 not found: looked for {CIFAR10_BATCHES}/ or {CIFAR10_JPEG} in "
                            f"{searched}; set ARCHLAB_DATA, pass data_dir, or pass download=True "
                            "(CLI: --download)")
        found = ("batches", download_cifar10())
    kind, path = found
    if kind == "jpeg":
        x_train, y_train, x_test, y_test, classes = load_cifar10_jpeg(path, limit=limit)
    else:
        x_train, y_train, x_test, y_test, classes = load_cifar10_batches(path)
        keep_train, keep_test = _spread(len(y_train), limit), _spread(len(y_test), limit)
        x_train, y_train, x_test, y_test = x_train[keep_train], y_train[keep_train], x_test[keep_test], \
            y_test[keep_test]
    return build_dataset("cifar10", x_train, y_train, classes, x_test=x_test, y_test=y_test, seed=seed,
                         val_fraction=val_fraction, test_fraction=0.0, scale=255.0, flip_invariant=True)

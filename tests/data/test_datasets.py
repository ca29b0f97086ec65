"""Built-in datasets (digits, Fashion-MNIST, CIFAR-10), the split rule and normalisation."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archlab.data import Dataset, list_datasets, load_dataset, write_idx
from archlab.data import builtin as builtin_module
from archlab.data._dataset import build_dataset, split_indices, stratified_order
from archlab.errors import DataError

IN_CI = bool(os.environ.get("CI"))
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def raw_pixels(x: torch.Tensor, data: Dataset, scale: float) -> np.ndarray:
    """Undo normalisation and scaling: the stored pixel values, rounded to integers."""
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return np.rint(((x.double() * std + mean) * scale).numpy()).astype(np.int64)


def row_keys(x: np.ndarray) -> list[bytes]:
    return [r.tobytes() for r in x.reshape(len(x), -1)]


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


# --------------------------------------------------------------------------------------------- split rule


def test_list_datasets() -> None:
    assert list_datasets() == ["digits", "fashion-mnist", "cifar10", "selective-copying", "associative-recall",
                               "listops"]


def test_split_indices_are_disjoint_cover_and_stratified() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    test, val, train = split_indices(labels, seed=3, fractions=(0.2, 0.1))
    everything = np.concatenate([test, val, train])
    assert sorted(everything.tolist()) == list(range(len(labels)))
    assert (len(test), len(val), len(train)) == (40, 20, 140)
    for part, fraction in ((test, 0.2), (val, 0.1), (train, 0.7)):
        counts = np.bincount(labels[part], minlength=4)
        # Within one example of the exact proportion for every class.
        assert np.all(np.abs(counts - fraction * np.bincount(labels)) <= 1), counts


def test_stratified_order_depends_on_seed_only() -> None:
    labels = np.repeat(np.arange(3), 40)
    assert np.array_equal(stratified_order(labels, 5), stratified_order(labels, 5))
    assert not np.array_equal(stratified_order(labels, 5), stratified_order(labels, 6))


def test_digits_sizes_and_default_60_20_20(digits: Dataset) -> None:
    sizes = digits.describe()["sizes"]
    assert sum(sizes.values()) == 1797
    assert (sizes["test"], sizes["val"]) == (359, 359)
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.classes == tuple(str(i) for i in range(10))
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64


def test_digits_splits_partition_the_data(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    original = load_digits().images.astype(np.int64)[:, None]
    splits = [raw_pixels(getattr(digits, f"x_{s}"), digits, 16.0) for s in ("train", "val", "test")]
    # Every loaded image is an original one with its label, and the multiset of images is preserved.
    loaded = np.concatenate(splits)
    labels = torch.cat([digits.y_train, digits.y_val, digits.y_test]).numpy()
    assert sorted(zip(row_keys(loaded), labels.tolist(), strict=True)) == sorted(
        zip(row_keys(original), load_digits().target.tolist(), strict=True))


def test_digits_split_is_stratified(digits: Dataset) -> None:
    total = np.bincount(np.concatenate([digits.y_train, digits.y_val, digits.y_test]), minlength=10)
    for split in ("train", "val", "test"):
        y = getattr(digits, f"y_{split}").numpy()
        share = np.bincount(y, minlength=10) / len(y)
        assert np.abs(share - total / total.sum()).max() < 0.02, split


def test_same_seed_same_split_other_seed_other_split(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_train, digits.y_train)
    assert not torch.equal(other.x_test, digits.x_test)


def test_normalisation_uses_train_statistics_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(400, 2, 4, 4))
    x_test = rng.normal(13.0, 2.0, size=(100, 2, 4, 4))  # a shifted test set must not move the statistics
    y, y_test = np.arange(400) % 4, np.arange(100) % 4
    data = build_dataset("shifted", x, y, ("a", "b", "c", "d"), x_test=x_test, y_test=y_test, seed=0,
                         val_fraction=0.25, test_fraction=0.2)
    assert torch.allclose(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(data.x_train.std(dim=(0, 2, 3), correction=0), torch.ones(2), atol=1e-4)
    assert np.allclose(data.mean, [3.0, 3.0], atol=0.2) and np.allclose(data.std, [2.0, 2.0], atol=0.2)
    assert data.x_test.mean() > 4.0  # (13 - 3) / 2 = 5 standard deviations away


def test_digits_train_is_standardised(digits: Dataset) -> None:
    assert abs(float(digits.x_train.mean())) < 1e-5
    assert abs(float(digits.x_train.std(correction=0)) - 1.0) < 1e-4
    assert abs(float(digits.x_val.mean())) > 1e-4  # val was not used for the statistics


def test_subset_train_is_stratified_deterministic_and_from_train(digits: Dataset) -> None:
    small = digits.subset_train(200, seed=1)
    assert len(small.y_train) == 200 and small.x_val is digits.x_val and small.x_test is digits.x_test
    counts = np.bincount(small.y_train.numpy(), minlength=10)
    assert counts.min() >= 18 and counts.max() <= 22
    assert torch.equal(small.x_train, digits.subset_train(200, seed=1).x_train)
    assert not torch.equal(small.x_train, digits.subset_train(200, seed=2).x_train)
    train_keys = set(row_keys(digits.x_train.numpy()))
    assert all(k in train_keys for k in row_keys(small.x_train.numpy()))
    assert digits.subset_train(10**6, seed=0) is digits
    with pytest.raises(DataError, match="at least 1"):
        digits.subset_train(0, seed=0)


def test_describe_is_json(digits: Dataset) -> None:
    described = json.loads(json.dumps(digits.describe()))
    assert described["name"] == "digits" and described["input_shape"] == [1, 8, 8]
    assert described["num_classes"] == 10 and len(described["mean"]) == 1 and len(described["std"]) == 1
    assert set(described["sizes"]) == {"train", "val", "test"}


def test_explicit_fractions_and_bad_fractions() -> None:
    data = load_dataset("digits", seed=0, val_fraction=0.1, test_fraction=0.3)
    assert (len(data.y_val), len(data.y_test)) == (180, 539)
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("digits", val_fraction=0.0)
    with pytest.raises(DataError, match="below 1"):
        load_dataset("digits", val_fraction=0.5, test_fraction=0.5)


def test_unknown_name() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("foo")
    assert str(info.value) == ("unknown dataset 'foo': not a built-in (digits, fashion-mnist, cifar10, "
                               "selective-copying, associative-recall, listops, ucr:<Name>) nor an existing path")


# --------------------------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_debian_files() -> None:
    if not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        if IN_CI:
            pytest.fail(f"CI: Fashion-MNIST missing from {FASHION_SYSTEM_DIR} "
                        "(apt-get install dataset-fashion-mnist)")
        pytest.skip("dataset-fashion-mnist is not installed")
    data = load_dataset("fashion-mnist", seed=0, data_dir=FASHION_SYSTEM_DIR)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (54000, 6000, 10000)
    assert data.input_shape == (1, 28, 28)
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert np.bincount(data.y_test.numpy()).tolist() == [1000] * 10  # the official test split, untouched
    assert np.bincount(data.y_val.numpy()).tolist() == [600] * 10
    assert abs(float(data.x_train.mean())) < 1e-4


def _isolate_search_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setattr(builtin_module, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-system-copy")


def test_fashion_mnist_missing_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolate_search_path(monkeypatch, tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "given")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "download" in message
    assert str(tmp_path / "given") in message
    assert str(tmp_path / "cache" / "archlab" / "fashion-mnist") in message


class _FakeResponse(io.BytesIO):
    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}

    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


def _small_fashion_files(tmp_path: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(40) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8),
    }
    tmp_path.mkdir(parents=True)
    bodies = {}
    for name, array in arrays.items():
        write_idx(tmp_path / f"{name}.gz", array)
        bodies[name] = (tmp_path / f"{name}.gz").read_bytes()
    return bodies


def _fake_fashion_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN202
    """Small Fashion-MNIST files served by a fake ``urlopen`` (not yet installed): ``(bodies, requested,
    fake_urlopen)``; the search path is isolated and the expected md5 sums are the small files'."""
    _isolate_search_path(monkeypatch, tmp_path)
    bodies = _small_fashion_files(tmp_path / "server")
    shapes = {"train-images-idx3-ubyte": (40, 28, 28), "train-labels-idx1-ubyte": (40,),
              "t10k-images-idx3-ubyte": (20, 28, 28), "t10k-labels-idx1-ubyte": (20,)}
    files = {name: (hashlib.md5(body).hexdigest(), shapes[name]) for name, body in bodies.items()}
    monkeypatch.setattr(builtin_module, "FASHION_MNIST_FILES", files)
    requested: list[str] = []

    def fake_urlopen(request, timeout):  # noqa: ANN001, ANN202
        requested.append(request.full_url)
        return _FakeResponse(bodies[request.full_url.rsplit("/", 1)[1].removesuffix(".gz")])

    return bodies, requested, fake_urlopen


def test_fashion_mnist_download_into_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bodies, requested, fake_urlopen = _fake_fashion_server(monkeypatch, tmp_path)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    data = load_dataset("fashion-mnist", download=True)
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == (40, 20)
    assert all(u.startswith(builtin_module.FASHION_MNIST_URL) for u in requested) and len(requested) == 4
    cache = tmp_path / "cache" / "archlab" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in bodies)  # no temp files left
    # Found in the cache now: no second download.
    load_dataset("fashion-mnist")
    assert len(requested) == 4


def test_fetch_dataset_downloads_once_and_only_what_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """``archlab search --download``: fetch_dataset downloads the missing Fashion-MNIST files into the cache, then
    finds them there; digits and paths need nothing; an unreachable server is a one-line DataError."""
    from archlab.data import fetch_dataset

    _, requested, fake_urlopen = _fake_fashion_server(monkeypatch, tmp_path)

    def unreachable(request, timeout):  # noqa: ANN001, ANN202
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", unreachable)
    with pytest.raises(DataError, match="cannot download .*network is unreachable"):
        fetch_dataset("fashion-mnist")
    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    folder = fetch_dataset("fashion-mnist")
    assert folder == tmp_path / "cache" / "archlab" / "fashion-mnist" and len(requested) == 4
    assert fetch_dataset("fashion-mnist") == folder and len(requested) == 4  # found in the cache: no download
    assert fetch_dataset("digits") is None and fetch_dataset(str(tmp_path)) is None


def test_fashion_mnist_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolate_search_path(monkeypatch, tmp_path)
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path / "shared"))
    _small_fashion_files(tmp_path / "shared" / "fashion-mnist")
    shapes = {"train-images-idx3-ubyte": (40, 28, 28), "train-labels-idx1-ubyte": (40,),
              "t10k-images-idx3-ubyte": (20, 28, 28), "t10k-labels-idx1-ubyte": (20,)}
    monkeypatch.setattr(builtin_module, "FASHION_MNIST_FILES", {n: ("", s) for n, s in shapes.items()})
    # A data_dir with only some of the files is passed over; $ARCHLAB_DATA/fashion-mnist comes next.
    (tmp_path / "given").mkdir()
    write_idx(tmp_path / "given" / "train-images-idx3-ubyte", np.zeros((1, 28, 28), dtype=np.uint8))
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "given")
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == (40, 20)
    # A complete data_dir wins.
    for name, array in (("train-images-idx3-ubyte", np.zeros((30, 28, 28), np.uint8)),
                        ("train-labels-idx1-ubyte", np.arange(30, dtype=np.uint8) % 10),
                        ("t10k-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8)),
                        ("t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))):
        write_idx(tmp_path / "given" / name, array)
    monkeypatch.setattr(builtin_module, "FASHION_MNIST_FILES",
                        {n: ("", (30 if "train" in n else 10,) + s[1:]) for n, s in shapes.items()})
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "given")
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == (30, 10)


def test_download_with_wrong_md5_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolate_search_path(monkeypatch, tmp_path)
    bodies = _small_fashion_files(tmp_path / "server")
    monkeypatch.setattr(builtin_module, "FASHION_MNIST_FILES", {n: ("0" * 32, (1,)) for n in bodies})
    monkeypatch.setattr("urllib.request.urlopen", lambda request, timeout: _FakeResponse(b"not the file"))
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("fashion-mnist", download=True)
    cache = tmp_path / "cache" / "archlab" / "fashion-mnist"
    assert list(cache.iterdir()) == []


# --------------------------------------------------------------------------------------------- CIFAR-10


@pytest.fixture(scope="module")
def cifar_jpeg(shared_data: Path) -> Path:
    path = shared_data / "cifar10_jpeg.npz"
    if not path.is_file():
        if IN_CI:
            pytest.fail(f"CI: {path} is missing")
        pytest.skip(f"{path} is missing")
    return path


def test_cifar10_jpeg_full_counts_from_offsets(cifar_jpeg: Path) -> None:
    with np.load(cifar_jpeg, allow_pickle=False) as z:
        assert len(z["train_offsets"]) - 1 == 50000 and len(z["test_offsets"]) - 1 == 10000
        assert np.bincount(z["train_labels"]).tolist() == [5000] * 10
        assert np.bincount(z["test_labels"]).tolist() == [1000] * 10
        assert tuple(z["classes"].tolist()) == builtin_module.CIFAR10_CLASSES


def test_cifar10_fast_decoder_matches_pillow(cifar_jpeg: Path) -> None:
    with np.load(cifar_jpeg, allow_pickle=False) as z:
        jpeg, offsets = z["test_jpeg"], z["test_offsets"]
    picks = np.array([0, 1, 4999, 9999])
    fast = builtin_module.decode_cifar10_jpeg(jpeg, offsets, picks)
    assert fast.shape == (4, 3, 32, 32) and fast.dtype == np.uint8
    for row, i in enumerate(picks):
        with Image.open(io.BytesIO(jpeg[offsets[i] : offsets[i + 1]].tobytes())) as im:
            assert np.array_equal(fast[row], np.asarray(im.convert("RGB")).transpose(2, 0, 1))


def test_cifar10_limited_load(cifar_jpeg: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = builtin_module.load_cifar10(data_dir=cifar_jpeg.parent, limit=400, seed=0)
    assert data.input_shape == (3, 32, 32) and data.classes == builtin_module.CIFAR10_CLASSES
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (360, 40, 400)
    assert np.bincount(data.y_test.numpy()).tolist() == [40] * 10
    assert torch.allclose(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert 0.3 < data.mean[0] < 0.7 and 0.15 < data.std[0] < 0.35
    assert not (tmp_path / "archlab").exists()  # a limited load neither reads nor writes the cache


def _write_jpeg_npz(path: Path, n_train: int, n_test: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {"classes": np.array(builtin_module.CIFAR10_CLASSES)}
    originals = []
    for split, n in (("train", n_train), ("test", n_test)):
        blobs = []
        for _ in range(n):
            buffer = io.BytesIO()
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buffer, "JPEG", quality=75)
            blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        originals.append(blobs)
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        ends = np.cumsum([len(b) for b in blobs])
        arrays[f"{split}_offsets"] = np.concatenate([[0], ends]).astype(np.int64)
        arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays["train_offsets"]


def test_cifar10_jpeg_decode_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "data" / "cifar10_jpeg.npz"
    source.parent.mkdir()
    _write_jpeg_npz(source, 40, 20)
    first = builtin_module.load_cifar10_jpeg(source)
    cached = list((tmp_path / "cache" / "archlab").iterdir())
    assert len(cached) == 1 and str(source.stat().st_size) in cached[0].name

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded although a cache exists")

    monkeypatch.setattr(builtin_module, "decode_cifar10_jpeg", no_decoding)
    second = builtin_module.load_cifar10_jpeg(source)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # A changed source (new mtime) is decoded again and replaces the stale cache.
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    builtin_module.load_cifar10_jpeg(source)
    renewed = list((tmp_path / "cache" / "archlab").iterdir())
    assert len(renewed) == 1 and renewed[0] != cached[0]
    data = load_dataset("cifar10", data_dir=source.parent, seed=0)
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == (40, 20)


def _write_batch(path: Path, x: np.ndarray, labels: list[int], legacy_numpy: bool = False) -> None:
    # Protocol 2, like the official (Python 2) files.
    batch = {b"batch_label": b"test", b"labels": labels, b"data": x.reshape(len(x), -1),
             b"filenames": [b"img%d.png" % i for i in range(len(x))]}
    body = pickle.dumps(batch, protocol=2)
    if legacy_numpy:  # the official files name numpy < 2's module
        body = body.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"numpy.core.multiarray" in body
    path.write_bytes(body)


def test_cifar10_python_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (100, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    for b in range(5):
        labels = [i % 10 for i in range(20)]
        batch = train[20 * b : 20 * (b + 1)]
        _write_batch(folder / f"data_batch_{b + 1}", batch, labels, legacy_numpy=b == 0)
    _write_batch(folder / "test_batch", test, [i % 10 for i in range(20)])
    names = [n.encode() for n in builtin_module.CIFAR10_CLASSES]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    data = load_dataset("cifar10", data_dir=tmp_path, seed=0)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (90, 10, 20)
    assert data.classes == builtin_module.CIFAR10_CLASSES
    assert np.array_equal(raw_pixels(data.x_test, data, 255.0), test)  # exact pixels, official test order
    loaded = raw_pixels(torch.cat([data.x_train, data.x_val]), data, 255.0)
    assert sorted(row_keys(loaded.astype(np.uint8))) == sorted(row_keys(train))


class _Exploit:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_cifar10_unsafe_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    x = np.zeros((10, 3, 32, 32), dtype=np.uint8)
    _write_batch(folder / "data_batch_1", x, list(range(10)))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="unsafe pickle.*system"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_cifar10_malformed_batch(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    (folder / "test_batch").write_bytes(gzip.compress(b"garbage"))
    with pytest.raises(DataError, match="expected a dict"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_download_unpacks_only_the_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolate_search_path(monkeypatch, tmp_path)
    staging = tmp_path / "server" / "cifar-10-batches-py"
    staging.mkdir(parents=True)
    x = np.random.default_rng(0).integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _write_batch(staging / name, x, list(range(10)))
    names = [n.encode() for n in builtin_module.CIFAR10_CLASSES]
    (staging / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    (staging / "readme.html").write_text("not extracted")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging, arcname="cifar-10-batches-py")
    body = archive.read_bytes()
    monkeypatch.setattr(builtin_module, "CIFAR10_MD5", hashlib.md5(body).hexdigest())
    monkeypatch.setattr("urllib.request.urlopen", lambda request, timeout: _FakeResponse(body))
    data = load_dataset("cifar10", download=True)
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == (50, 10)
    cache = tmp_path / "cache" / "archlab"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py"]  # archive and staging removed
    assert "readme.html" not in {p.name for p in (cache / "cifar-10-batches-py").iterdir()}


def test_cifar10_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolate_search_path(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="CIFAR-10 not found.*download"):
        load_dataset("cifar10", data_dir=tmp_path / "given")

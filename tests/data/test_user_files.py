"""A user's own data: image folders, IDX files, npz and CSV, and the errors that bad input gives."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archlab.data import Dataset, load_dataset, read_idx, write_idx
from archlab.errors import DataError


def raw_values(data: Dataset, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """All inputs (train, val, test) with normalisation undone, and their labels."""
    x = torch.cat([data.x_train, data.x_val, data.x_test]).double()
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    y = torch.cat([data.y_train, data.y_val, data.y_test]).numpy()
    return ((x * std + mean) * scale).numpy(), y


def as_pairs(x: np.ndarray, y: np.ndarray, labels: tuple[str, ...] | None = None) -> list[tuple[bytes, str]]:
    x = np.rint(x).astype(np.int64).reshape(len(x), -1)
    names = [labels[i] for i in y] if labels is not None else [str(v) for v in y]
    return sorted(zip([r.tobytes() for r in x], names, strict=True))


# ------------------------------------------------------------------------------------------- image folder


def _write_images(root: Path, classes: dict[str, int], size: tuple[int, int] = (6, 5), mode: str = "L",
                  seed: int = 0) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    written = []
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / name / f"{i:03d}.png")
            written.append((pixels if mode == "L" else pixels.transpose(2, 0, 1), name))
    return written


def test_image_folder_round_trip_grayscale(tmp_path: Path) -> None:
    written = _write_images(tmp_path / "shapes", {"circle": 10, "square": 12, "star": 8})
    (tmp_path / "shapes" / "notes.txt").write_text("ignored")
    data = load_dataset(str(tmp_path / "shapes"), seed=0)
    assert data.classes == ("circle", "square", "star") and data.input_shape == (1, 5, 6)
    assert data.name == "shapes"
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (21, 3, 6)
    x, y = raw_values(data, 255.0)
    assert as_pairs(x, y, data.classes) == as_pairs(np.stack([w[0] for w in written]),
                                                    np.array([data.classes.index(w[1]) for w in written]),
                                                    data.classes)


def test_image_folder_rgb_has_three_channels(tmp_path: Path) -> None:
    written = _write_images(tmp_path / "rgb", {"a": 5, "b": 5, "c": 5}, mode="RGB")
    data = load_dataset(tmp_path / "rgb")
    assert data.input_shape == (3, 5, 6) and len(data.mean) == 3
    x, y = raw_values(data, 255.0)
    assert as_pairs(x, y, data.classes) == as_pairs(np.stack([w[0] for w in written]),
                                                    np.array([data.classes.index(w[1]) for w in written]),
                                                    data.classes)


def test_image_folder_train_test_layout(tmp_path: Path) -> None:
    _write_images(tmp_path / "set" / "train", {"a": 10, "b": 10, "c": 10}, seed=1)
    test = _write_images(tmp_path / "set" / "test", {"a": 2, "b": 3, "c": 4}, seed=2)
    data = load_dataset(tmp_path / "set", val_fraction=0.2)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (24, 6, 9)
    assert np.bincount(data.y_test.numpy()).tolist() == [2, 3, 4]
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x_test = np.rint(((data.x_test.double() * std + mean) * 255).numpy()).astype(np.uint8)
    assert np.array_equal(x_test[:, 0], np.stack([w[0] for w in test]))


def test_image_folder_mismatched_sizes(tmp_path: Path) -> None:
    _write_images(tmp_path / "mixed", {"a": 3, "b": 3})
    Image.new("L", (7, 7)).save(tmp_path / "mixed" / "b" / "odd.png")
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "mixed")
    message = str(info.value)
    assert "odd.png" in message and "7x7" in message and "6x5" in message


def test_image_folder_one_class(tmp_path: Path) -> None:
    _write_images(tmp_path / "lonely", {"only": 5})
    with pytest.raises(DataError, match="1 class folder"):
        load_dataset(tmp_path / "lonely")


def test_image_folder_unreadable_image(tmp_path: Path) -> None:
    _write_images(tmp_path / "broken", {"a": 3, "b": 3})
    (tmp_path / "broken" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        load_dataset(tmp_path / "broken")


# ---------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_writer_reader_round_trip(tmp_path: Path, dtype: type, suffix: str) -> None:
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    write_idx(tmp_path / f"a.idx{suffix}", array)
    back = read_idx(tmp_path / f"a.idx{suffix}")
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)
    assert (tmp_path / f"a.idx{suffix}").read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")


def _idx_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 7, 7), dtype=np.uint8), (np.arange(n) % 3).astype(np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_folder_round_trip(tmp_path: Path, suffix: str) -> None:
    x, y = _idx_data(60)
    write_idx(tmp_path / f"mine-images-idx3-ubyte{suffix}", x)
    write_idx(tmp_path / f"mine-labels-idx1-ubyte{suffix}", y)
    data = load_dataset(str(tmp_path))
    assert data.input_shape == (1, 7, 7) and data.classes == ("0", "1", "2")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (42, 6, 12)
    got_x, got_y = raw_values(data, 255.0)
    assert as_pairs(got_x, got_y) == as_pairs(x[:, None], y)
    # The images file alone (labels found beside it), and an explicit "images,labels" pair.
    same = load_dataset(tmp_path / f"mine-images-idx3-ubyte{suffix}")
    assert torch.equal(same.x_test, data.x_test)
    images = tmp_path / f"mine-images-idx3-ubyte{suffix}"
    labels = tmp_path / f"mine-labels-idx1-ubyte{suffix}"
    pair = load_dataset(f"{images},{labels}")
    assert torch.equal(pair.x_train, data.x_train)


def test_idx_train_t10k_gives_official_test(tmp_path: Path) -> None:
    x, y = _idx_data(30)
    x_test, y_test = _idx_data(9, seed=1)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x_test)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_test)
    data = load_dataset(tmp_path, val_fraction=0.2)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (24, 6, 9)
    assert data.y_test.tolist() == y_test.tolist()


def test_idx_count_mismatch(tmp_path: Path) -> None:
    x, y = _idx_data(20)
    write_idx(tmp_path / "d-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "d-labels-idx1-ubyte.gz", y[:15])
    with pytest.raises(DataError, match="count mismatch.*20 images.*15 labels"):
        load_dataset(tmp_path)


def test_idx_truncated_file(tmp_path: Path) -> None:
    x, y = _idx_data(20)
    write_idx(tmp_path / "d-images-idx3-ubyte", x)
    write_idx(tmp_path / "d-labels-idx1-ubyte", y)
    path = tmp_path / "d-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="implies"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------------------------------------------- npz


@pytest.mark.parametrize(
    ("shape", "to_nchw", "input_shape"),
    [
        ((60, 10), lambda a: a[:, None, None, :], (1, 1, 10)),
        ((60, 5, 6), lambda a: a[:, None], (1, 5, 6)),
        ((60, 3, 5, 6), lambda a: a, (3, 5, 6)),
        ((60, 1, 5, 6), lambda a: a, (1, 5, 6)),
        ((60, 5, 6, 3), lambda a: a.transpose(0, 3, 1, 2), (3, 5, 6)),
        ((60, 5, 6, 1), lambda a: a.transpose(0, 3, 1, 2), (1, 5, 6)),
    ],
)
def test_npz_layouts_round_trip(tmp_path: Path, shape: tuple, to_nchw, input_shape: tuple) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = np.arange(60) % 4
    np.savez(tmp_path / "set.npz", x=x, y=y)
    data = load_dataset(str(tmp_path / "set.npz"))
    assert data.input_shape == input_shape and data.name == "set" and len(data.mean) == input_shape[0]
    got_x, got_y = raw_values(data, 255.0)
    assert as_pairs(got_x, got_y) == as_pairs(to_nchw(x), y)


def test_npz_float_features_and_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7)).astype(np.float32)
    y = np.array(["dog", "cat", "bird", "cat", "dog"] * 10)
    np.savez(tmp_path / "animals.npz", x=x, y=y)
    data = load_dataset(tmp_path / "animals.npz")
    assert data.classes == ("bird", "cat", "dog")
    got_x, got_y = raw_values(data)
    order = np.lexsort(got_x.reshape(50, -1).T)
    expected = np.lexsort(x.T)
    assert np.allclose(got_x.reshape(50, -1)[order], x[expected], atol=1e-5)
    assert [data.classes[i] for i in got_y[order]] == y[expected].tolist()


def test_npz_with_official_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(40, 4)), y=np.arange(40) % 2,
             x_test=rng.normal(size=(10, 4)), y_test=np.arange(10) % 2)
    data = load_dataset(tmp_path / "t.npz")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (36, 4, 10)


def test_npz_splits_disjoint_and_covering(tmp_path: Path) -> None:
    x = np.arange(200 * 3, dtype=np.float64).reshape(200, 3)  # every row unique
    np.savez(tmp_path / "rows.npz", x=x, y=np.arange(200) % 5)
    data = load_dataset(tmp_path / "rows.npz", seed=4)
    mean, std = data.mean[0], data.std[0]

    def rows(t: torch.Tensor) -> set[int]:
        return {int(round(v)) for v in (t[:, 0, 0, 0].double() * std + mean).tolist()}

    train, val, test = rows(data.x_train), rows(data.x_val), rows(data.x_test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(x[:, 0].astype(int).tolist())


def test_npz_missing_y(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 3)), labels=np.zeros(10))
    with pytest.raises(DataError, match="lacks array.*'y'"):
        load_dataset(tmp_path / "bad.npz")


def test_npz_length_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 3)), y=np.arange(9) % 2)
    with pytest.raises(DataError, match="x has 10 examples but y has 9"):
        load_dataset(tmp_path / "bad.npz")


def test_npz_object_array_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.arange(2))
    with pytest.raises(DataError, match="without pickle"):
        load_dataset(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    ("x", "y", "problem"),
    [
        (np.zeros((10, 3)), np.zeros(10, dtype=int), "1 class"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "class|empty"),
        (np.full((10, 3), np.nan), np.arange(10) % 2, "NaN"),
        (np.zeros((10, 3)), np.linspace(0, 1, 10), "integers or strings"),
        (np.zeros((10, 4, 5, 6)), np.arange(10) % 2, "no channel axis"),
        (np.arange(4.0).reshape(2, 2), np.arange(2), "too few examples"),
        (np.array([["a", "b"]] * 10), np.arange(10) % 2, "numeric"),
    ],
)
def test_npz_bad_content(tmp_path: Path, x: np.ndarray, y: np.ndarray, problem: str) -> None:
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(DataError, match=problem):
        load_dataset(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------------------- CSV


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_csv_string_labels_and_label_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    features = rng.integers(0, 100, (45, 3))
    species = ["virginica", "setosa", "versicolor"] * 15
    rows = [[a, s, b, c] for (a, b, c), s in zip(features.tolist(), species, strict=True)]
    _write_csv(tmp_path / "iris.csv", ["sepal", "Class", "petal", "width"], rows)
    data = load_dataset(tmp_path / "iris.csv")
    assert data.classes == ("setosa", "versicolor", "virginica") and data.input_shape == (1, 1, 3)
    got_x, got_y = raw_values(data)
    assert as_pairs(got_x, got_y, data.classes) == sorted(
        (np.asarray(r, dtype=np.int64).tobytes(), s) for r, s in zip(features, species, strict=True))


def test_csv_square_features_are_images_and_last_column_is_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 16))
    rows = [p + [i % 3] for i, p in enumerate(pixels.tolist())]
    _write_csv(tmp_path / "mnist.csv", [f"p{i}" for i in range(16)] + ["digit"], rows)
    data = load_dataset(tmp_path / "mnist.csv")
    assert data.input_shape == (1, 4, 4) and data.classes == ("0", "1", "2")
    got_x, got_y = raw_values(data)
    assert as_pairs(got_x, got_y) == as_pairs(pixels.reshape(30, 1, 4, 4), np.arange(30) % 3)


def test_csv_nan_and_non_numeric(tmp_path: Path) -> None:
    _write_csv(tmp_path / "nan.csv", ["a", "b", "label"], [[1, 2, "x"], [3, "nan", "y"], [4, 5, "x"]] * 4)
    with pytest.raises(DataError, match="NaN.*column 'b', row 3"):
        load_dataset(tmp_path / "nan.csv")
    _write_csv(tmp_path / "text.csv", ["a", "b", "label"], [[1, 2, "x"], [3, "high", "y"]] * 4)
    with pytest.raises(DataError, match="non-numeric value 'high' in column 'b'"):
        load_dataset(tmp_path / "text.csv")


def test_csv_one_class(tmp_path: Path) -> None:
    _write_csv(tmp_path / "one.csv", ["a", "y"], [[i, "same"] for i in range(10)])
    with pytest.raises(DataError, match="1 class"):
        load_dataset(tmp_path / "one.csv")


def test_unrecognised_file(tmp_path: Path) -> None:
    (tmp_path / "thing.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match="unrecognised data file"):
        load_dataset(tmp_path / "thing.bin")

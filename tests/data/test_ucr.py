"""UCR/UEA time series: the .ts reader, the official split kept, stratified validation, training-only statistics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from archlab.data import Dataset, load_dataset, load_ucr
from archlab.data import ucr as ucr_module
from archlab.data.ucr import read_ts, ucr_search_path
from archlab.errors import DataError

HEADER = "# a comment\n@problemName Toy\n@timeStamps false\n@univariate false\n@dimensions 2\n" \
         "@equalLength true\n@seriesLength 5\n@classLabel true b a c\n@data\n"


def write_ts(path: Path, x: np.ndarray, labels: list[str], header: str = HEADER) -> None:
    lines = [":".join(",".join(repr(float(v)) for v in channel) for channel in case) + f":{label}"
             for case, label in zip(x, labels, strict=True)]
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")


def raw(x: torch.Tensor, data: Dataset) -> np.ndarray:
    """Undo the per-channel normalisation."""
    mean = torch.tensor(data.mean, dtype=torch.float64).view(1, -1, 1)
    std = torch.tensor(data.std, dtype=torch.float64).view(1, -1, 1)
    return (x.double() * std + mean).numpy()


def match_rows(found: np.ndarray, source: np.ndarray) -> np.ndarray:
    """For each row of ``found``, the index of the equal row of ``source`` (float32 round-off allowed)."""
    flat = source.reshape(len(source), -1)
    out = []
    for row in found.reshape(len(found), -1):
        close = np.flatnonzero(np.abs(flat - row).max(axis=1) < 1e-4 * (1 + np.abs(row).max()))
        assert len(close) == 1
        out.append(int(close[0]))
    return np.array(out)


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, np.ndarray, list[str], np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    labels_train = ["b", "a", "c"] * 10
    x_train = rng.normal(size=(30, 2, 5)) * np.array([1.0, 10.0]).reshape(1, 2, 1) + np.array([3.0, -5.0]
                                                                                                ).reshape(1, 2, 1)
    labels_test = ["a", "c", "b", "c", "a", "b", "b"]
    # the test series sit far from the training ones: statistics computed with them would show it
    x_test = rng.normal(size=(7, 2, 5)) + 100.0
    folder = tmp_path / "Toy"
    folder.mkdir()
    write_ts(folder / "Toy_TRAIN.ts", x_train, labels_train)
    write_ts(folder / "Toy_TEST.ts", x_test, labels_test)
    return tmp_path, x_train, labels_train, x_test, labels_test


def test_read_ts(toy) -> None:
    root, x_train, labels_train, _, _ = toy
    x, labels, declared = read_ts(root / "Toy" / "Toy_TRAIN.ts")
    assert x.shape == (30, 2, 5) and x.dtype == np.float64
    np.testing.assert_array_equal(x, x_train)  # repr() round-trips floats exactly
    assert labels.tolist() == labels_train and declared == ("b", "a", "c")


def test_official_split_kept_and_training_statistics(toy) -> None:
    root, x_train, labels_train, x_test, labels_test = toy
    data = load_ucr("Toy", data_dir=root, seed=1, val_fraction=0.2)
    assert data.name == "ucr:Toy" and data.input_shape == (2, 5) and data.input_dtype == "float"
    assert data.classes == ("b", "a", "c")  # @classLabel order
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (24, 6, 7)
    # the test set is the official one, in file order
    np.testing.assert_allclose(raw(data.x_test, data), x_test, rtol=1e-5, atol=1e-4)
    assert [data.classes[i] for i in data.y_test.tolist()] == labels_test
    # validation and training partition the official training file, with labels carried along
    rows_train, rows_val = match_rows(raw(data.x_train, data), x_train), match_rows(raw(data.x_val, data), x_train)
    assert sorted(rows_train.tolist() + rows_val.tolist()) == list(range(30))
    assert [data.classes[i] for i in data.y_train.tolist()] == [labels_train[i] for i in rows_train]
    assert np.bincount(data.y_val.numpy(), minlength=3).tolist() == [2, 2, 2]  # stratified
    # statistics: those of the training rows only (not validation, not test), population std per channel
    np.testing.assert_allclose(data.mean, x_train[rows_train].mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(data.std, x_train[rows_train].std(axis=(0, 2)), rtol=1e-6)
    assert abs(data.mean[0] - x_train.mean(axis=(0, 2))[0]) > 1e-6  # the validation rows were left out
    assert torch.allclose(data.x_train.mean(dim=(0, 2)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(data.x_train.std(dim=(0, 2), unbiased=False), torch.ones(2), atol=1e-5)
    assert float(data.x_test[:, 0].mean()) > 50  # test stays far away: it did not enter the statistics
    # same seed, same split; the built-in name goes through load_dataset
    again = load_dataset("ucr:Toy", data_dir=root, seed=1)
    assert torch.equal(again.x_val, data.x_val) and torch.equal(again.y_train, data.y_train)
    other = load_ucr("Toy", data_dir=root, seed=2)
    assert not torch.equal(other.y_train, data.y_train) or not torch.equal(other.x_train, data.x_train)


def test_search_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(ucr_module, "_aeon_data_dir", lambda: tmp_path / "aeon")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert ucr_search_path("GunPoint", tmp_path / "given") == [
        tmp_path / "given", tmp_path / "given" / "GunPoint", tmp_path / "given" / "ucr" / "GunPoint",
        tmp_path / "env" / "ucr" / "GunPoint", tmp_path / "env" / "GunPoint", tmp_path / "aeon" / "GunPoint",
        tmp_path / "cache" / "archlab" / "ucr" / "GunPoint",
    ]


def test_missing_dataset_names_aeon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ucr_module, "_aeon_data_dir", lambda: None)
    with pytest.raises(DataError, match=r"pip install aeon==1\.6\.0") as err:
        load_dataset("ucr:GunPoint")
    assert str(tmp_path / "ucr" / "GunPoint") in str(err.value)
    with pytest.raises(DataError, match="not a UCR problem name"):
        load_ucr("../etc")
    with pytest.raises(DataError, match="official test split"):
        load_dataset("ucr:GunPoint", test_fraction=0.2)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda h, d: (h, d.replace(":b\n", ":z\n", 1)), "not declared"),
    (lambda h, d: (h, d.replace(",", ",?,", 1)), "unequal|missing"),
    (lambda h, d: (h, d.split("\n", 1)[0].rsplit(",", 1)[0] + ":b\n" + d.split("\n", 1)[1]), "unequal"),
    (lambda h, d: (h.replace("@timeStamps false", "@timeStamps true"), d), "time-stamped"),
    (lambda h, d: (h.replace("@classLabel true b a c", "@targetLabel true"), d), "regression"),
    (lambda h, d: (h, d.replace("1", "x", 1)), "could not convert|x"),
])
def test_bad_files_raise(toy, edit, message: str) -> None:
    root = toy[0]
    path = root / "Toy" / "Toy_TRAIN.ts"
    header, body = path.read_text(encoding="utf-8").split("@data\n")
    new_header, new_body = edit(header + "@data\n", body)
    path.write_text(new_header + new_body, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_ucr("Toy", data_dir=root)


def test_missing_values_are_refused(toy) -> None:
    root, x_train, labels_train, _, _ = toy
    x = x_train.copy()
    x[3, 1, 2] = np.nan
    write_ts(root / "Toy" / "Toy_TRAIN.ts", x, labels_train)
    assert np.isnan(read_ts(root / "Toy" / "Toy_TRAIN.ts")[0][3, 1, 2])
    with pytest.raises(DataError, match="missing values"):
        load_ucr("Toy", data_dir=root)


@pytest.fixture
def gunpoint_folder() -> Path:
    folder = next((p for p in ucr_search_path("GunPoint") if (p / "GunPoint_TRAIN.ts").is_file()), None)
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("CI: GunPoint's .ts files must be available (pip install --no-deps aeon==1.6.0)",
                        pytrace=False)
        pytest.skip("GunPoint's .ts files are not available (pip install aeon==1.6.0, or copy them to "
                    "$ARCHLAB_DATA/ucr/GunPoint/)")
    return folder


def test_gunpoint_official_sizes(gunpoint_folder: Path) -> None:
    data = load_dataset("ucr:GunPoint", seed=0)
    # the UCR archive's GunPoint: 50 training and 150 test series of length 150, two classes
    assert len(data.y_train) + len(data.y_val) == 50 and len(data.y_val) == 10 and len(data.y_test) == 150
    assert data.input_shape == (1, 150) and data.classes == ("1", "2")
    x_train, labels, _ = read_ts(gunpoint_folder / "GunPoint_TRAIN.ts")
    rows = match_rows(raw(data.x_train, data), x_train)
    np.testing.assert_allclose(data.mean, [x_train[rows].mean()], rtol=1e-6)
    np.testing.assert_allclose(data.std, [x_train[rows].std()], rtol=1e-6)
    counts = np.bincount(np.array([int(v) - 1 for v in labels]), minlength=2)
    val_counts = np.bincount(data.y_val.numpy(), minlength=2)
    assert np.all(np.abs(val_counts - counts * 0.2) <= 1)  # stratified within one example

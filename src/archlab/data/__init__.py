"""Datasets for archlab: the built-in ``digits``, ``fashion-mnist`` and ``cifar10``, and a user's own files.

>>> from archlab.data import load_dataset
>>> data = load_dataset("digits", seed=0)          # 60/20/20 split, normalised with training statistics
>>> data.input_shape, data.num_classes
((1, 8, 8), 10)

:func:`load_dataset` also takes a path: an image folder (one sub-folder per class), IDX files, an ``.npz``
with ``x``/``y`` or a CSV (see :mod:`archlab.data.files`). Bad input raises :class:`archlab.errors.DataError`.
"""

from archlab.data._dataset import Dataset
from archlab.data._idx import read_idx, write_idx
from archlab.data._load import list_datasets, load_dataset
from archlab.data.builtin import load_cifar10, load_digits, load_fashion_mnist
from archlab.data.files import load_csv, load_idx, load_image_folder, load_npz, load_path

__all__ = [
    "Dataset",
    "list_datasets",
    "load_cifar10",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_image_folder",
    "load_npz",
    "load_path",
    "read_idx",
    "write_idx",
]

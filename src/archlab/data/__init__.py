"""Datasets for archlab: the built-in ``digits``, ``fashion-mnist`` and ``cifar10``, and a user's own files.

Sequence data: UCR/UEA time series (``ucr:<Name>``, :func:`load_ucr`), generated token tasks
(``selective-copying``, ``associative-recall``, ``listops``: :mod:`archlab.data.synthetic`) and character
corpora for language modelling (``tinyshakespeare``: :func:`load_char_corpus`, :func:`random_windows`).

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
from archlab.data.builtin import fetch_dataset, load_cifar10, load_digits, load_fashion_mnist
from archlab.data.files import load_csv, load_idx, load_image_folder, load_npz, load_path
from archlab.data.synthetic import (
    associative_recall,
    evaluate_listops,
    listops,
    multiquery_recall_batch,
    selective_copying,
    selective_copying_batch,
)
from archlab.data.text import CharCorpus, load_char_corpus, random_windows
from archlab.data.ucr import load_ucr

__all__ = [
    "CharCorpus",
    "Dataset",
    "associative_recall",
    "evaluate_listops",
    "fetch_dataset",
    "list_datasets",
    "listops",
    "load_char_corpus",
    "load_cifar10",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_image_folder",
    "load_npz",
    "load_path",
    "load_ucr",
    "multiquery_recall_batch",
    "random_windows",
    "read_idx",
    "selective_copying",
    "selective_copying_batch",
    "write_idx",
]

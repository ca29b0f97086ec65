"""A restricted unpickler for the CIFAR-10 python batches.

The official CIFAR-10 distribution (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009)
stores its batches as Python 2 pickles. Unpickling runs arbitrary code, so this loader resolves only the
globals that a dict of lists, bytes, ints and numpy arrays needs, and refuses everything else.
"""

from __future__ import annotations

import _codecs
import io
import pickle
from typing import Any

import numpy as np

from archlab.errors import DataError

__all__ = ["restricted_load"]


def _numpy_module(name: str) -> Any:
    # numpy >= 2 moved numpy.core to numpy._core (the old name is a deprecated alias); old pickles use either.
    core = getattr(np, "_core", None) or np.core
    return getattr(core, name)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "int"): int,
    ("__builtin__", "dict"): dict,
    ("__builtin__", "list"): list,
    ("__builtin__", "str"): str,
    ("__builtin__", "int"): int,
    # Python 3 pickles bytes at protocols < 3 as _codecs.encode(text, "latin1"): it only builds bytes.
    ("_codecs", "encode"): _codecs.encode,
}
for _package in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_package}.multiarray", "_reconstruct")] = _numpy_module("multiarray")._reconstruct
    _ALLOWED[(f"{_package}.multiarray", "scalar")] = _numpy_module("multiarray").scalar


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"unsafe pickle: refusing to load global {module}.{name}") from None


def restricted_load(data: bytes, what: str) -> Any:
    """Unpickle ``data`` allowing only builtin containers and numpy arrays; anything else raises DataError."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DataError as e:
        raise DataError(f"{what}: {e}") from None
    except Exception as e:  # a corrupt pickle can raise nearly anything (EOFError, ValueError, TypeError...)
        raise DataError(f"{what}: not a readable pickle ({type(e).__name__}: {e})") from e

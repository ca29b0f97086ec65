"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

Format (LeCun et al., "Gradient-based learning applied to document recognition", 1998;
yann.lecun.com/exdb/mnist): two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int,
0x0D float, 0x0E double), the number of dimensions, each dimension as a big-endian uint32, then the values in
big-endian C order. Files may be gzipped (recognised by their magic bytes, whatever their name).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from archlab._io import atomic_write_bytes
from archlab.errors import DataError

__all__ = ["read_idx", "read_idx_header", "write_idx"]

_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {v.newbyteorder("=").str: k for k, v in _TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _read_bytes(path: Path) -> bytes:
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e


def _parse_header(data: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path} is not an IDX file (bad dimension count {ndim})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return _TYPES[data[2]], shape, header


def read_idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """The value type and shape recorded in an IDX file's header (reads only the header)."""
    path = Path(path)
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as f:
            head = f.read(4)
            ndim = head[3] if len(head) == 4 else 0
            head += f.read(4 * ndim)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    dtype, shape, _ = _parse_header(head, path)
    return dtype, shape


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian array; a malformed file raises DataError."""
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape, header = _parse_header(data, path)
    count = int(np.prod(shape, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"IDX file {path} holds {len(data)} bytes, its header {shape} implies {expected}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else array


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends in ``.gz``. Written atomically."""
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str
    if key not in _CODES:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    code = _CODES[key]
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"IDX cannot store an array of {array.ndim} dimensions")
    body = (bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
            + np.ascontiguousarray(array, dtype=_TYPES[code]).tobytes())
    if path.name.endswith(".gz"):
        body = gzip.compress(body, mtime=0)
    atomic_write_bytes(path, body)

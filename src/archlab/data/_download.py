"""The cache folder and atomic, checksummed downloads (urllib only)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from archlab._io import atomic_path
from archlab.errors import DataError

__all__ = ["cache_dir", "download_file", "file_md5"]


def cache_dir() -> Path:
    """archlab's cache folder: ``$XDG_CACHE_HOME/archlab``, by default ``~/.cache/archlab`` (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "archlab"


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hexadecimal MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, destination: Path, *, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` atomically (temporary file, then ``os.replace``).

    The temporary file lives in the destination folder so that the rename cannot cross file systems; it is
    removed on any failure. When ``md5`` is given the download must match it, otherwise DataError.
    """
    try:
        with atomic_path(destination, suffix=".part") as tmp:
            with open(tmp, "wb") as out:
                request = urllib.request.Request(url, headers={"User-Agent": "archlab"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    while block := response.read(1 << 20):
                        out.write(block)
                        received += len(block)
            if expected is not None and received != int(expected):
                raise DataError(f"download of {url} was cut short: {received} of {expected} bytes")
            if md5 is not None and (actual := file_md5(tmp)) != md5:
                raise DataError(f"download of {url} is corrupt: md5 {actual}, expected {md5}")
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DataError(f"cannot download {url}: {e}") from e
    return destination

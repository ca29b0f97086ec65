"""Shared test set-up: fixed threads, and the data folder that CI provides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


def shared_data_dir() -> Path | None:
    """``$ARCHLAB_DATA`` (CI sets it to ../shared/data). Under CI its absence is a failure, not a skip."""
    value = os.environ.get("ARCHLAB_DATA")
    if value and Path(value).is_dir():
        return Path(value)
    if os.environ.get("CI"):
        pytest.fail("ARCHLAB_DATA must name the shared data folder under CI", pytrace=False)
    return None


@pytest.fixture
def data_dir() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("ARCHLAB_DATA is not set")
    return d

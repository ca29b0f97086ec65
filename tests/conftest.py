"""Shared test set-up: fixed threads, and the data folder that CI provides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

# a relative ARCHLAB_DATA (CI passes ../shared/data) must survive tests that change the working directory
if os.environ.get("ARCHLAB_DATA"):
    os.environ["ARCHLAB_DATA"] = str(Path(os.environ["ARCHLAB_DATA"]).resolve())


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (many tiny ops gain nothing from a second one), then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$ARCHLAB_DATA`` (CI sets it to ../shared/data). Under CI its absence is a failure, not a skip."""
    value = os.environ.get("ARCHLAB_DATA")
    if value and Path(value).is_dir():
        return Path(value)
    if os.environ.get("CI"):
        pytest.fail(f"CI: ARCHLAB_DATA must name the shared data folder (got {value!r})", pytrace=False)
    pytest.skip("ARCHLAB_DATA is not set")


@pytest.fixture(scope="session")
def timm():
    """timm as a test-only reference (installed with --no-deps; see tests/_timm.py). Under CI it must exist."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _timm import import_timm

    try:
        return import_timm()
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI: timm must be installed (pip install --no-deps timm==1.0.31)", pytrace=False)
        pytest.skip("timm is not installed")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> str:
    """A PostgreSQL server for the ledger tests: ``$ARCHLAB_TEST_POSTGRES``, else a throw-away one started here
    (tests/_postgres.py). Under CI a server that cannot start is a failure, not a skip."""
    import sys

    if os.environ.get("ARCHLAB_TEST_POSTGRES"):
        yield os.environ["ARCHLAB_TEST_POSTGRES"]
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _postgres import throwaway_postgres

    try:
        server = throwaway_postgres(tmp_path_factory.mktemp("postgres"))
        url = server.__enter__()
    except RuntimeError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI: PostgreSQL must be available for the ledger tests: {e}", pytrace=False)
        pytest.skip(f"no PostgreSQL: {e}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)

"""A throw-away PostgreSQL server for the ledger tests: Debian's server binaries, a data directory under a temporary
folder, listening on loopback only, trust authentication, no fsync; stopped (immediately) after the session.

``ARCHLAB_TEST_POSTGRES`` (a SQLAlchemy URL) uses an existing server instead. As root the server runs as the
``postgres`` user (PostgreSQL refuses to run as root), through ``runuser``, in a folder of its own under /tmp.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_postgres(root: Path) -> Iterator[str]:
    """Start a server with its data under ``root``; yield its URL; stop it. RuntimeError when it cannot start."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise RuntimeError("psycopg2 is not installed (pip install psycopg2-binary)") from None
    bindir = Path(found[-1]).parent
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root without runuser: cannot start PostgreSQL as another user")
        prefix = ["runuser", "-u", "postgres", "--"]
    root.mkdir(parents=True, exist_ok=True)
    own = None
    if prefix:  # the postgres user cannot enter a root-only temporary folder: a folder of its own in /tmp
        own = root = Path(tempfile.mkdtemp(prefix="archlab-pg-", dir="/tmp"))
        shutil.chown(root, "postgres")
    data, log = root / "pgdata", root / "postgres.log"
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "archlab", "-E", "UTF8", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
        f"-c full_page_writes=off -c max_connections=100", "start")
    try:
        yield f"postgresql+psycopg2://archlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


def fresh_database(url: str, prefix: str = "archlab") -> str:
    """A new empty database on the server of ``url``, and its URL (one archlab study per database: the ledger's
    study name is fixed)."""
    import uuid

    import psycopg2
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(host=base.host, port=base.port, user=base.username, password=base.password,
                            dbname=base.database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return base.set(database=name).render_as_string(hide_password=False)

"""A real PostgreSQL server and a real MLflow tracking server, started by the tests.

PostgreSQL comes from the system packages (``.ci/run`` installs them); the fixture runs a
throwaway cluster in a temporary directory on a free port. ``RESNET_BLOCKS_TEST_PG`` points
the tests at an existing server instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.servers import mlflow_server as start_mlflow_server

REPO = Path(__file__).resolve().parents[2]


def _pg_bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """URL of a PostgreSQL server (``postgresql://user@host:port``) without a database."""
    if os.environ.get("RESNET_BLOCKS_TEST_PG"):
        yield os.environ["RESNET_BLOCKS_TEST_PG"].rstrip("/")
        return
    bindir = _pg_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql); .ci/run installs them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's tmp dir: that is private to this user, and the server may run as
    # the postgres user.
    root = Path(tempfile.mkdtemp(prefix="resnet-blocks-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)  # fmt: skip
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", opts, "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: str, name: str) -> str:
    import psycopg

    conn = psycopg.connect(f"{server}/postgres", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{server}/{name}"


@pytest.fixture
def pg_url(postgres_server):
    """A fresh database for one test (Optuna storage)."""
    return create_database(postgres_server, f"optuna_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def mlflow_server(postgres_server, tmp_path_factory):
    """A real ``mlflow server`` with a PostgreSQL backend store; yields its URL."""
    backend = create_database(postgres_server, "mlflow")
    artifacts = tmp_path_factory.mktemp("mlartifacts")
    with start_mlflow_server(backend, artifacts, artifacts.parent / "mlflow-server.log", workers=2) as url:
        yield url

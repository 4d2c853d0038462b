"""A real PostgreSQL server and a real MLflow tracking server, started by the tests.

PostgreSQL comes from the system packages (``.ci/run`` installs them); the fixture runs a
throwaway cluster in a temporary directory on a free port. ``RESNET_BLOCKS_TEST_PG`` points
the tests at an existing server instead.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.servers import mlflow_server as start_mlflow_server
from tests.servers import pg_bindir, postgres_cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """URL of a PostgreSQL server (``postgresql://user@host:port``) without a database."""
    if os.environ.get("RESNET_BLOCKS_TEST_PG"):
        yield os.environ["RESNET_BLOCKS_TEST_PG"].rstrip("/")
        return
    if pg_bindir() is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql); .ci/run installs them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with postgres_cluster() as url:
        yield url


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

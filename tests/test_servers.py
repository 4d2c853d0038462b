"""The servers the tests start die with the process that started them, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import pg_bindir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

_OWNER = """
import sys, time
from pathlib import Path
from tests.servers import mlflow_server, postgres_cluster
root = Path(sys.argv[1])
with postgres_cluster() as pg, mlflow_server(f"sqlite:///{root / 'm.db'}", root / "a", root / "log") as url:
    print(pg.rsplit(":", 1)[1], url, flush=True)
    time.sleep(600)
"""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _groups(*marks: str) -> set[int]:
    """Process groups of the processes whose command line holds one of ``marks``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pgid,args"], capture_output=True, text=True, check=True).stdout
    return {int(line.split(None, 1)[0]) for line in out.splitlines()[1:] if any(m in line for m in marks)}


@pytest.mark.skipif(pg_bindir() is None and not os.environ.get("CI"), reason="PostgreSQL binaries not installed")
def test_servers_die_with_a_test_process_killed_outright(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)  # fmt: skip
    try:
        pg_port, url = owner.stdout.readline().split()
        assert url.startswith("http://127.0.0.1:")
        mlflow, postgres = _groups(f"--port {url.rsplit(':', 1)[1]}"), _groups(f"-p {pg_port} ")
        assert len(mlflow) == 1 and len(postgres) == 1 and owner.pid not in mlflow | postgres
        started = mlflow | postgres
        os.killpg(owner.pid, signal.SIGKILL)  # no finally runs
        owner.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_group_alive(g) for g in started) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not [g for g in started if _group_alive(g)]
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)

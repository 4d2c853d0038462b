"""Real servers for tests: a free local port, an ``mlflow server`` started as a subprocess, a
throwaway PostgreSQL cluster. Each dies with the process that started it (``tests.reaper``)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.reaper import reap_when_gone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str, artifacts: Path, log_path: Path, *, workers: int = 1, port: int | None = None
):
    """Run ``mlflow server`` on 127.0.0.1 (on ``port``, else a free one) until the block exits;
    yields its URL once /health answers."""
    port = port or free_port()
    log = open(log_path, "a")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_store_uri,
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its workers stop with it
    )  # fmt: skip
    reap_when_gone(proc.pid)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"mlflow server exited: {log_path.read_text()[-3000:]}") from None
                time.sleep(0.5)
        else:
            raise RuntimeError(f"mlflow server did not start: {log_path.read_text()[-3000:]}")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:  # (its graceful shutdown waits for idle keep-alive connections: seconds)
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def pg_bindir() -> Path | None:
    """The newest PostgreSQL server binaries of the system packages, if installed."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


@contextlib.contextmanager
def postgres_cluster():
    """A throwaway PostgreSQL cluster on a free port until the block exits; yields
    ``postgresql://user@host:port`` (no database)."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
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
    reap_when_gone(int((data / "postmaster.pid").read_text().split()[0]), remove=str(root))
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)

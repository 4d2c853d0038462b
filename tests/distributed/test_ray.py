"""Hydra's Ray launcher against a local Ray head on 127.0.0.1, on a PostgreSQL study.

Ray is not in the project's environment: hydra-ray-launcher pins ``cloudpickle<3`` and Ray
weighs about 400 MB, so it lives in an environment of its own (the README's Ray recipe:
``pip install -e . hydra-ray-launcher ray[default]``). This test runs there:
``.venv-ray/bin/python -m pytest tests/distributed/test_ray.py``; elsewhere it skips, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.test_workers import env, sweep_through_launcher
from tests.servers import free_port

ray = pytest.importorskip("ray", reason="Ray is not installed here (its own environment: see the README's Ray recipe)")


@pytest.fixture(autouse=True)
def _no_ray_token(monkeypatch):
    # One local machine: the head and the sweep agree on no token (Ray's token auth wants
    # the same token on every node, which a cluster set-up distributes).
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


@pytest.fixture
def ray_head(tmp_path):
    """``ray start --head`` on 127.0.0.1 with 2 CPUs; yields its address; ``ray stop`` after."""
    cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    port = free_port()
    start = subprocess.run(
        [cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        env=env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert start.returncode == 0, start.stdout[-3000:] + start.stderr[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([cli, "stop", "--force"], env=env(), capture_output=True, timeout=120)


def test_hydras_ray_launcher_runs_a_sweep_on_a_local_head(tmp_path, pg_url, mlflow_server, ray_head):
    # The plugin sets object_store_memory when the config leaves it unset, which current Ray
    # refuses when joining a running cluster ("must not be provided"): the recipe sets it null.
    children = sweep_through_launcher(
        tmp_path, pg_url, mlflow_server, "ray", "hydra/launcher=ray",
        f"hydra.launcher.ray.init.address={ray_head}", "+hydra.launcher.ray.init.object_store_memory=null",
    )  # fmt: skip
    assert all(r.info.status == "FINISHED" for r in children)
    assert all(r.data.tags["sweep.state"] == "COMPLETE" for r in children)

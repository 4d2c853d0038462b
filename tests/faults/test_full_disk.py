"""A disk that fills up during a run: one line naming what was kept, the run ended honestly
(or, when the store itself is full, ended by cleanup once there is space). A real tmpfs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.faults.processes import env

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 1.4 MB tmpfs: room for a new MLflow store and a few epochs, not for the model."""
    where = tmp_path / "small"
    where.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1400k", "tmpfs", str(where)], capture_output=True, text=True
    )
    if made.returncode != 0:
        message = f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_mid_run_is_one_line_naming_what_was_kept(small_disk):
    out = subprocess.run([sys.executable, "-m", "experiments.run", "trainer.epochs=2"], cwd=small_disk, env=env(),
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: no space left on device"), line
    kept = line.split("; kept in ", 1)[1]
    folder, files = kept.split(": ", 1)
    assert "metrics.jsonl" in files and "config.yaml" in files
    epochs = [json.loads(x) for x in open(os.path.join(folder, "metrics.jsonl")) if "val/accuracy" in x]
    assert [e["step"] for e in epochs] == [1, 2]  # every epoch it trained, on disk
    assert "model" not in files.split(", ") or os.path.exists(os.path.join(folder, "model", "MLmodel"))
    # The run's state: ended FAILED where the store took it, else (the store is full too)
    # ended by cleanup once there is room again, never left RUNNING.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("resnet-blocks").experiment_id])
    if "could not be ended in the store" in line:
        assert run.info.status == "RUNNING"
        cleanup = subprocess.run([sys.executable, "-m", "experiments.cleanup", "--tracking-uri", uri], cwd=small_disk,
                                 env=env(), capture_output=True, text=True, timeout=120)  # fmt: skip
        assert cleanup.returncode == 0, cleanup.stderr[-2000:]
        assert client.get_run(run.info.run_id).info.status == "KILLED"
    else:
        assert run.info.status == "FAILED" and run.data.tags["failure_reason"].startswith("no space left on device")

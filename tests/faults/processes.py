"""What the fault tests share: a tiny model, a child's environment, waiting on a real process
while watching its MLflow store."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.depths=[1,1,1]", "model.widths=[8,8,16]", "model.stem_width=8", "trainer.batch_size=128",
        "trainer.verbose=0"]  # fmt: skip


def env() -> dict[str, str]:
    """A child's environment: the repository importable, no inherited MLflow run or store."""
    out = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out.pop("MLFLOW_RUN_ID", None)
    out.pop("MLFLOW_TRACKING_URI", None)
    return out


def new_store(db: Path) -> str:
    """A SQLite MLflow store at ``db``, its schema created now: a test polling it while the run
    under test creates it would race that run's migrations."""
    uri = f"sqlite:///{db}"
    MlflowClient(uri).search_experiments()
    return uri


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("resnet-blocks")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def epochs_logged(uri: str) -> int:
    """Epochs of validation accuracy the (only) run in ``uri`` has logged so far."""
    found = runs(uri)
    return len(MlflowClient(uri).get_metric_history(found[0].info.run_id, "val/accuracy")) if found else 0


def wait_for(condition, timeout: float, proc: subprocess.Popen, what: str) -> None:
    """Poll ``condition`` until true; fail if ``proc`` ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"the process ended ({proc.returncode}) before {what}:\n{proc.communicate()[1][-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)

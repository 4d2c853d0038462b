"""Concurrent starts are safe: two sweeps creating the same new SQLite study (and MLflow
store) at the same moment both proceed, and the documented warning about several workers
on one SQLite study is printed."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.experiments.sweep.test_sweep import REPO, SMALL

pytestmark = pytest.mark.slow


def test_two_sweeps_starting_together_on_a_new_sqlite_study(tmp_path):
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.run",
                "+sweep=quick",
                *SMALL,
                "trainer.epochs=1",
                "hydra.sweeper.n_trials=4",
                "hydra/launcher=basic",
                f"hydra.sweeper.storage={storage}",
                f"hydra.sweep.dir={tmp_path / f'multirun{i}'}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
        assert "already exists" not in err and "Traceback" not in err
    text = "another sweep is running study 'quick' on this SQLite file"
    warned = [out + err for out, err in outs if text in out + err]
    assert len(warned) == 1  # the second one to start says so
    study = optuna.load_study(study_name="quick", storage=storage)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) >= 2
    assert not [t for t in study.trials if not t.state.is_finished()]
    client = MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "resnet-blocks"]
    parents = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1  # both workers found the same parent run

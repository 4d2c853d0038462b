"""tracking.system_metrics=true: MLflow samples the machine while the run trains."""

from __future__ import annotations

from experiments.run import run_task
from tests.experiments.conftest import runs_of


def test_system_metrics_are_logged_when_asked(make_cfg, mlflow_client, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    run_task(make_cfg("tracking.system_metrics=true", "tracking.log_model=false", "trainer.epochs=4"))
    (run,) = runs_of(mlflow_client)
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system


def test_no_system_metrics_by_default(make_cfg, mlflow_client):
    run_task(make_cfg("tracking.log_model=false"))
    (run,) = runs_of(mlflow_client)
    assert not [k for k in run.data.metrics if k.startswith("system/")]

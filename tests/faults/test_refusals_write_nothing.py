"""Refused input writes nothing: no MLflow store, run or study is created for a command that
ends in a one-line refusal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.experiments.test_run import _write_jpegs
from tests.faults.processes import TINY, env
from tests.servers import free_port

pytestmark = pytest.mark.slow


def _run(tmp_path, *overrides):
    return subprocess.run([sys.executable, "-m", "experiments.run", *TINY, *overrides], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_corrupt_image_is_named_before_any_store_or_run_is_written(tmp_path):
    _write_jpegs(tmp_path / "imgs", per_class=12, size=(16, 16))
    bad = tmp_path / "imgs" / "cat" / "003.jpg"
    bad.write_bytes(bad.read_bytes()[:120])
    out = _run(tmp_path, "data=image_folder", f"data.path={tmp_path / 'imgs'}", "data.image_size=[16,16]",
               f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"hydra.run.dir={tmp_path / 'out'}")  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: data.path: received ") and str(bad) in line, line
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "m.db").exists()  # no store, so no FAILED run in it


def test_an_unreachable_postgresql_storage_leaves_no_tracking_store(tmp_path):
    storage = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/optuna"
    out = _run(tmp_path, "+sweep=quick", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=1",
               f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"hydra.sweep.dir={tmp_path / 'multirun'}")  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: hydra.sweeper.storage: cannot open Optuna storage '{storage}'"), line
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "m.db").exists()


_LAMBDA_MODEL = """
import sys, keras, mlflow
mlflow.set_tracking_uri(sys.argv[1])
inp = keras.Input((8, 8, 1))
x = keras.layers.Flatten()(keras.layers.Lambda(lambda t: t / 16.0)(inp))
model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))
with mlflow.start_run() as run:
    mlflow.keras.log_model(model, name="model")
print(run.info.run_id)
"""


def test_a_model_with_a_lambda_layer_is_refused_in_one_line_by_evaluate(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    made = subprocess.run([sys.executable, "-c", _LAMBDA_MODEL, uri], cwd=tmp_path, env=env(), capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    run_id = made.stdout.strip().splitlines()[-1]
    out = subprocess.run([sys.executable, "-m", "experiments.evaluate", run_id, f"tracking.tracking_uri={uri}", "data=digits"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: RUN_ID|MODEL_URI: received 'runs:/{run_id}/model'") and "Lambda" in line
    client = MlflowClient(uri)
    assert len(client.search_runs([client.get_experiment_by_name("Default").experiment_id])) == 1
    assert client.get_experiment_by_name("resnet-blocks") is None or not client.search_runs(
        [client.get_experiment_by_name("resnet-blocks").experiment_id]
    )

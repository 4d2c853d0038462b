"""What a logged model takes: the source's own values (digits 0-16 as scikit-learn gives them,
pixels 0-255) in uint8 or any float, with or without a single channel's axis; anything else
is one line naming what it takes."""

from __future__ import annotations

import mlflow
import mlflow.keras
import mlflow.pyfunc
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from sklearn.datasets import load_digits

from experiments import evaluate
from experiments.data import _hold_out
from experiments.preprocessing import Preprocessing, input_metadata
from experiments.tracking.resnet_blocks_pyfunc import input_problem
from tests.experiments.conftest import CONF, FAST, runs_of

DIGITS = input_metadata(Preprocessing((8, 8, 1), (8, 8), None, None, 16.0, "digits, as load_digits() gives them"))
FOLDER = input_metadata(Preprocessing((None, None, 3), (32, 32), None, None))


def test_the_metadata_states_the_input():
    assert DIGITS["shape"] == [None, 8, 8, 1] and DIGITS["value_range"] == [0, 16]
    assert DIGITS["expected"] == (
        "(n, 8, 8) or (n, 8, 8, 1), uint8 or float, values 0-16 (digits, as load_digits() gives them)"
    )
    assert FOLDER["expected"] == "(n, h, w, 3), uint8 or float, values 0-255 (pixels)"


@pytest.mark.parametrize(
    ("spec", "x", "problem"),
    [
        (DIGITS, np.zeros((5, 8, 8)), None),
        (DIGITS, np.full((5, 8, 8, 1), 16, "uint8"), None),
        (DIGITS, np.full((5, 8, 8, 1), 16.0, "float32"), None),
        (DIGITS, np.zeros((5, 32, 32, 3)), "input: received shape (5, 32, 32, 3); expected (n, 8, 8) or (n, 8, 8, 1)"),
        (DIGITS, np.zeros((5, 8, 8, 3)), "input: received shape (5, 8, 8, 3)"),
        (DIGITS, np.zeros((5, 64)), "input: received shape (5, 64)"),
        (DIGITS, np.full((5, 8, 8), 255, "uint8"), "input: received values 255 to 255; expected (n, 8, 8)"),
        (DIGITS, np.full((5, 8, 8), -1.0), "input: received values -1 to -1"),
        (DIGITS, np.full((5, 8, 8), np.nan), "input: received values nan to nan"),
        (DIGITS, np.full((5, 8, 8), "1"), "input: received dtype <U1"),
        (DIGITS, np.full((5, 8, 8), 0.75), "input: received values 0.75 to 0.75, as if scaled to 0-1 (multiply by 16)"),
        (DIGITS, np.full((5, 8, 8), 1, "uint8"), None),  # (integers 0-1 are values the source gives)
        (FOLDER, np.full((2, 50, 70, 3), 0.5, "float32"), "input: received values 0.5 to 0.5, as if scaled to 0-1"),
        (FOLDER, np.zeros((2, 50, 70, 3), "uint8"), None),
        (FOLDER, np.zeros((2, 50, 70)), "input: received shape (2, 50, 70); expected (n, h, w, 3)"),
    ],
)
def test_input_problems_are_one_line_naming_the_expected_input(spec, x, problem):
    got = input_problem(x, spec)
    if problem is None:
        assert got is None
    else:
        assert got is not None and got.startswith(problem) and "\n" not in got
        assert got.endswith(spec["expected"])


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One tiny digits run with its logged model: (tracking URI, run, its objective, overrides)."""
    from mlflow.tracking import MlflowClient

    from experiments.run import run_task

    uri = f"sqlite:///{tmp_path_factory.mktemp('serving') / 'mlflow.db'}"
    # A high learning rate for a few epochs: validation accuracy goes down as well as up.
    overrides = [*FAST, "trainer.epochs=5", "trainer.learning_rate=0.4", f"tracking.tracking_uri={uri}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    objective = run_task(cfg)
    (run,) = runs_of(MlflowClient(uri))
    mlflow.set_tracking_uri(uri)
    return uri, run, objective, overrides


def _digits_test_split():
    """The run's test images and labels, straight from scikit-learn: float64, 0-16, (n, 8, 8)."""
    d = load_digits()
    _, (index, labels) = _hold_out(np.arange(len(d.target)), d.target.astype("int32"), 0.15)
    return d.images[index], labels


@pytest.mark.slow
def test_pyfunc_takes_load_digits_values_in_any_dtype_like_the_keras_flavour(digits_run):
    _, run, _, _ = digits_run
    uri = f"runs:/{run.info.run_id}/model"
    images, labels = _digits_test_split()
    assert images.dtype == np.float64 and images.shape == (270, 8, 8) and images.max() == 16
    model = mlflow.pyfunc.load_model(uri)
    as_given = model.predict(images)
    np.testing.assert_allclose(model.predict(images.astype("uint8")), as_given, atol=1e-6)
    # The run's own test accuracy, measured by the trained model on the pipeline's 0-255 images.
    assert (as_given.argmax(1) == labels).mean() == pytest.approx(run.data.metrics["test/accuracy"], abs=1e-4)
    # With the channel axis, float32 (a fresh load: Keras 3.15's predict fails on an unknown
    # rank once one model object has seen both ranks).
    with_channel = mlflow.pyfunc.load_model(uri).predict(images[..., None].astype("float32"))
    np.testing.assert_allclose(with_channel, as_given, atol=1e-6)
    keras_model = mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True})
    np.testing.assert_allclose(keras_model.predict(images[..., None], verbose=0), with_channel, atol=1e-5)
    meta = model.metadata.metadata
    assert meta["input"]["value_range"] == [0, 16] and meta["preprocessing"]["value_range"] == [0, 16]
    assert meta["input"]["expected"].startswith("(n, 8, 8) or (n, 8, 8, 1), uint8 or float, values 0-16 (digits")
    assert model.metadata.get_input_schema() is None  # (MLflow would accept one dtype and rank only)
    assert model.metadata.get_output_schema().inputs[0].shape == (-1, 10)


@pytest.mark.slow
def test_a_wrong_shape_is_one_line_naming_the_expected_input(digits_run, capsys):
    tracking_uri, run, _, _ = digits_run
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([run.info.run_id, "data=synthetic", "data.image_size=[32,32]", "data.num_classes=10",
                       "data.num_samples=40", "data.test_split=0.25", f"tracking.tracking_uri={tracking_uri}"])  # fmt: skip
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "input: received shape (" in err and ", 32, 32, 3); expected (n, 8, 8) or (n, 8, 8, 1)" in err
    assert "values 0-16 (digits, as sklearn.datasets.load_digits() gives them)" in err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (lambda d: np.zeros((5, 32, 32, 3), "float32"), "input: received shape (5, 32, 32, 3); "),
        (lambda d: (d * 15).astype("uint8"), "input: received values 0 to 240; "),  # 0-255 pixels, 0-16 model
        (lambda d: d - 8.0, "input: received values -8 to 8; "),  # centred
        (lambda d: d.astype(str), "input: received dtype <U"),
    ],
    ids=["shape", "pixels-into-digits", "centred", "strings"],
)
def test_the_pyfunc_model_refuses_input_it_does_not_take_in_one_line(digits_run, given, problem):
    """A plain ``mlflow.pyfunc`` user (the check ships inside the model): one line naming
    what the model takes, no array printed, never a silent prediction."""
    _, run, _, _ = digits_run
    images, _ = _digits_test_split()
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    with pytest.raises(ValueError) as raised:
        model.predict(given(images))
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and message.startswith(problem), message
    assert message.endswith("expected (n, 8, 8) or (n, 8, 8, 1), uint8 or float, values 0-16 "
                            "(digits, as sklearn.datasets.load_digits() gives them)")  # fmt: skip
    assert model.metadata.flavors["python_function"]["loader_module"] == "resnet_blocks_pyfunc"


# In a fresh interpreter: the run's validation images (the project's own split), fed to the
# logged model as the source gives them; prints the accuracy.
FRESH_VAL = """
import json, sys
import mlflow.pyfunc, numpy as np
from hydra import compose, initialize_config_dir
from experiments.config import register_configs
from experiments.data import load_data
register_configs()
conf, uri, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    cfg = compose("config", overrides=overrides)
data = load_data(cfg.data, batch_size=256, with_test=False)
batches = list(data.val)
x = np.concatenate([b[0].numpy() for b in batches])
y = np.concatenate([b[1].numpy() for b in batches])
probs = mlflow.pyfunc.load_model(uri).predict(data.preprocessing.source_values(x))
print(json.dumps({"accuracy": float((probs.argmax(1) == y).mean()), "n": len(y)}))
"""


@pytest.mark.slow
def test_the_logged_models_validation_accuracy_is_the_reported_objective(digits_run, tmp_path):
    """One number per quantity: what the run returns to a sweep, what MLflow shows as
    best/val/accuracy and what the logged model scores on the validation split are the same."""
    import json
    import os
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    from tests.experiments.conftest import REPO

    tracking_uri, run, objective, overrides = digits_run
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_VAL, str(CONF), f"runs:/{run.info.run_id}/model", json.dumps(overrides)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    reported = run.data.metrics["best/val/accuracy"]
    assert objective == pytest.approx(reported, abs=1e-6)
    assert fresh["accuracy"] == pytest.approx(reported, abs=1e-4)
    # The model kept is the best epoch's, and says which: its epoch's val/accuracy is the best.
    client = MlflowClient(tracking_uri)
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/accuracy")}
    assert sorted(history) == [1, 2, 3, 4, 5]
    epoch = int(run.data.metrics["model/epoch"])
    assert history[epoch] == pytest.approx(reported, abs=1e-6) == max(history.values())
    # best/val/accuracy is a running best, one value per epoch: its chart never goes down.
    best = [m for m in client.get_metric_history(run.info.run_id, "best/val/accuracy")]
    steps = [m.step for m in sorted(best, key=lambda m: (m.step, m.timestamp))]
    values = [m.value for m in sorted(best, key=lambda m: (m.step, m.timestamp))]
    assert steps == [1, 2, 3, 4, 5], steps
    assert values == sorted(values) and values[-1] == pytest.approx(reported, abs=1e-6)
    assert values == pytest.approx([max(history[s] for s in range(1, k + 1)) for k in steps], abs=1e-6)

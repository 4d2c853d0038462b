"""Models users take away: raw images in, preprocessing inside, MLflow Models that load in
an interpreter that cannot import this project, with validation-time predictions."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import mlflow
import mlflow.keras
import numpy as np
import pytest

from experiments.preprocessing import serving_model
from experiments.run import log_serving_model, plan_run, seeded_data
from experiments.tracking import RunTracker
from experiments.train import train
from tests.experiments.test_run import _write_jpegs

# A fresh interpreter in which resnet_blocks, experiments and hydra_plugins cannot be imported
# (as on a machine where this project is not installed); it loads each model with
# mlflow.pyfunc and predicts on the raw images given.
LOAD_ELSEWHERE = r"""
import importlib.abc, json, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("resnet_blocks", "experiments", "hydra_plugins", "tests"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, NotInstalled())
import mlflow, mlflow.pyfunc, numpy as np

mlflow.set_tracking_uri(sys.argv[1])
for run_id, x_path, out_path in json.loads(sys.argv[2]):
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    np.save(out_path, model.predict(np.load(x_path)))
print("project modules:", sorted(m for m in sys.modules if m.split(".")[0] in ("resnet_blocks", "experiments")))
"""


def _train_and_log(cfg):
    """Train ``cfg``, log its serving model; return (run id, val images as the source gives
    them, val predictions)."""
    plan = plan_run(cfg, build=False)
    data = seeded_data(cfg)
    result = train(cfg, plan.spec, data)
    pixels = np.concatenate([x.numpy() for x, _ in data.val])
    raw = data.preprocessing.source_values(pixels)
    assert np.array_equal(raw, np.round(raw))  # the source's own values (digits: 0-16), exactly
    raw = raw.astype("uint8")
    expected = result.model.predict(data.val, verbose=0)  # what validation saw
    tracker = RunTracker(cfg.tracking.tracking_uri, cfg.tracking.experiment_name)
    with tracker.open(run_name="serving") as tr:
        log_serving_model(tr, result.model, data, cfg.tracking.register_model)
    return tracker.run_id, raw, expected


@pytest.mark.slow
def test_logged_models_predict_raw_images_like_validation_without_the_project(
    make_cfg, tracking_uri, mlflow_client, tmp_path
):
    folder = tmp_path / "imgs"
    _write_jpegs(folder, size=(32, 32))
    cases = {
        "digits": make_cfg("tracking.register_model=digits-resnet"),
        "image_folder": make_cfg("data=image_folder", f"data.path={folder}", "data.augment=true"),
        "cifar_shaped": make_cfg(
            "data=synthetic", "data.image_size=[32,32]", "data.num_classes=10", "data.num_samples=96",
            "data.normalize=true", "data.augment=true",
        ),
    }  # fmt: skip
    # Given as users have them: digits as load_digits() (float64, 0-16, no channel axis),
    # folder images as 0-255 floats, CIFAR-shaped ones as uint8 pixels.
    given = {"digits": lambda x: x[..., 0].astype("float64"), "image_folder": lambda x: x.astype("float32")}
    jobs, expected = [], {}
    for name, cfg in cases.items():
        run_id, raw, probs = _train_and_log(cfg)
        np.save(tmp_path / f"{name}.x.npy", given.get(name, lambda x: x)(raw))
        jobs.append((run_id, str(tmp_path / f"{name}.x.npy"), str(tmp_path / f"{name}.out.npy")))
        expected[name] = probs
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ELSEWHERE, tracking_uri, json.dumps(jobs)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "project modules: []" in out.stdout
    for name in cases:
        got = np.load(tmp_path / f"{name}.out.npy")
        np.testing.assert_allclose(got, expected[name], atol=1e-5, err_msg=name)
    # Every model shows in MLflow's model views; the digits one is registered.
    logged = mlflow_client.search_logged_models([mlflow_client.get_experiment_by_name("resnet-blocks").experiment_id])
    assert sorted(m.source_run_id for m in logged) == sorted(j[0] for j in jobs)
    (version,) = mlflow_client.search_model_versions("name='digits-resnet'")
    assert version.run_id == jobs[0][0]
    model = mlflow.pyfunc.load_model("models:/digits-resnet/1")
    assert model.metadata.metadata["class_names"] == [str(i) for i in range(10)]
    assert model.metadata.metadata["input"]["shape"] == [None, 8, 8, 1]
    assert model.metadata.metadata["input"]["value_range"] == [0, 16]


def test_serving_model_resizes_native_images_as_the_pipeline_does(make_cfg):
    """Digits at 16x16: the shipped model takes the native 8x8 images and resizes them itself."""
    import tensorflow as tf

    cfg = make_cfg("data.image_size=[16,16]", "trainer.epochs=1")
    data = seeded_data(cfg)
    result = train(cfg, plan_run(cfg, build=False).spec, data)
    assert data.preprocessing.raw_shape == (8, 8, 1) and data.preprocessing.image_size == (16, 16)
    raw = data.example  # the source's own values: 0-16
    assert raw.shape[1:] == (8, 8, 1) and raw.max() <= 16 and np.array_equal(raw, np.round(raw))
    served = serving_model(result.model, data.preprocessing)
    assert not [layer for layer in served.layers if type(layer).__name__.startswith("Random")]
    resized = tf.image.resize(tf.constant(raw * (255 / 16), tf.float32), (16, 16))  # the pipeline's 0-255, resized
    np.testing.assert_allclose(np.asarray(served(raw)), np.asarray(result.model(resized)), atol=1e-5)
    # uint8 and floats alike.
    np.testing.assert_allclose(np.asarray(served(raw.astype("uint8"))), np.asarray(served(raw)), atol=1e-6)


def test_a_cifar10_model_takes_photos_of_any_size(make_cfg, cifar_cache):
    """CIFAR-10's shipped model takes 0-255 pixels of any size: at the native 32x32 it is the
    trained model (the resize inside is an identity), other sizes are resized as the pipeline
    resizes, and its metadata says so."""
    import tensorflow as tf

    from experiments.preprocessing import input_metadata

    cfg = make_cfg("data=cifar10", "trainer.epochs=1", "tracking.log_model=false")
    data = seeded_data(cfg)
    result = train(cfg, plan_run(cfg, build=False).spec, data)
    assert data.preprocessing.raw_shape == (None, None, 3) and data.preprocessing.image_size == (32, 32)
    assert input_metadata(data.preprocessing)["shape"] == [None, None, None, 3]
    served = serving_model(result.model, data.preprocessing)
    native = data.example.astype("float32")
    assert native.shape[1:] == (32, 32, 3)
    np.testing.assert_allclose(np.asarray(served(native)), np.asarray(result.model(native)), atol=1e-5)
    large = tf.image.resize(tf.constant(native), (48, 40)).numpy()
    expected = result.model(tf.image.resize(tf.constant(large), (32, 32)))
    np.testing.assert_allclose(np.asarray(served(large)), np.asarray(expected), atol=1e-4)
    np.testing.assert_allclose(np.asarray(served(native.astype("uint8"))), np.asarray(served(native)), atol=1e-6)


def test_statistics_are_weights_of_the_model(make_cfg):
    cfg = make_cfg("trainer.epochs=1")
    data = seeded_data(cfg)
    result = train(cfg, plan_run(cfg, build=False).spec, data)
    norm = result.model.get_layer("normalize")
    mean, variance = (np.asarray(w) for w in norm.weights[:2])
    np.testing.assert_allclose(mean.ravel(), data.preprocessing.mean, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(variance).ravel(), data.preprocessing.std, rtol=1e-5)


def test_mlflow_keras_flavour_still_needs_its_model_directory_made(tmp_path):
    """``experiments.tracking.models._KerasFlavour`` makes the model directory before MLflow's keras
    flavour writes the input example. When this test fails, MLflow no longer needs that:
    remove the shim and log with ``mlflow.keras.log_model``."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(FileNotFoundError):
        mlflow.keras.save_model(model, str(tmp_path / "m"), input_example=np.zeros((1, 2), "float32"))

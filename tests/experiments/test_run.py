"""experiments.run: real Hydra composition, real Keras training, real MLflow store."""

from __future__ import annotations

import json
import math
import os
import sys
import tarfile
from pathlib import Path

import keras
import mlflow.keras
import numpy as np
import pytest
from PIL import Image

from experiments.cli import RunFailure
from experiments.run import RunHooks, plan_run, run_task
from resnet_blocks import SpecError
from tests.experiments.conftest import REPO, runs_of


def test_digits_run_records_everything(make_cfg, mlflow_client):
    cfg = make_cfg("tracking.run_name=digits-test")
    value = run_task(cfg)
    (run,) = runs_of(mlflow_client)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "digits-test"
    # The returned objective is the best val/accuracy over epochs.
    history = mlflow_client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [m.step for m in history] == [1, 2]
    assert value == pytest.approx(max(m.value for m in history))
    for name in ("train/loss", "train/accuracy", "val/loss", "lr"):
        assert len(mlflow_client.get_metric_history(run.info.run_id, name)) == 2, name
    metrics = run.data.metrics
    assert metrics["model/trainable_params"] > 0 and metrics["model/macs"] > 0
    assert metrics["perf/train_images_per_s"] > 0 and metrics["perf/wall_time_s"] > 0
    params = run.data.params
    assert params["model.depths"] == "[1, 1, 1]" and params["trainer.epochs"] == "2"
    assert params["data.source"] == "digits"
    tags = run.data.tags
    assert tags["data.source"] == "digits" and "version.tensorflow" in tags and "version.keras" in tags
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model_summary.txt", "cost.json", "preprocessing.json"} <= artifacts
    prep = mlflow_client.download_artifacts(run.info.run_id, "preprocessing.json")
    prep = json.loads(Path(prep).read_text())
    assert prep["class_names"] == [str(i) for i in range(10)] and len(prep["mean"]) == len(prep["std"]) == 1
    assert metrics["data/num_test"] == 270 and metrics["data/num_val"] + metrics["data/num_train"] == 1797 - 270
    assert "test/accuracy" in metrics
    # The data as an MLflow dataset input: origin, a digest of the splits, their sizes.
    (dataset_input,) = mlflow_client.get_run(run.info.run_id).inputs.dataset_inputs
    dataset = dataset_input.dataset
    sizes = [int(metrics[f"data/num_{k}"]) for k in ("train", "val", "test")]
    assert dataset.name == "digits " + "/".join(map(str, sizes)) and len(dataset.digest) == 10
    assert "load_digits" in dataset.source
    assert {t.key: t.value for t in dataset_input.tags}["test_images"] == "270"
    # An MLflow Model (MLflow's model views list it) that loads with Keras safe mode and
    # predicts 10 class probabilities from raw uint8 images.
    (logged,) = mlflow_client.search_logged_models([run.info.experiment_id])
    assert logged.source_run_id == run.info.run_id and logged.name == "model"
    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model", load_model_kwargs={"safe_mode": True})
    probs = model.predict(np.zeros((2, 8, 8, 1), "uint8"), verbose=0)
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_label_smoothing_warmup_step_adamw(make_cfg, mlflow_client):
    cfg = make_cfg(
        "trainer.distribute=mirrored",  # one replica on this CPU; the same code path as several GPUs
        "trainer.optimizer=adamw",
        "trainer.learning_rate=0.003",
        "trainer.schedule=step",
        "trainer.warmup_epochs=1",
        "trainer.label_smoothing=0.1",
        "trainer.early_stopping_patience=5",
        "tracking.log_model=false",
    )
    assert 0 < run_task(cfg) <= 1
    (run,) = runs_of(mlflow_client)
    lrs = [m.value for m in mlflow_client.get_metric_history(run.info.run_id, "lr")]
    assert lrs[0] > 0 and len(lrs) == 2


def _write_jpegs(root, classes=("cat", "dog", "owl"), per_class=10, size=(10, 12)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.full((*size, 3), 60 * c, dtype=np.uint8)
            img = np.clip(base + rng.integers(0, 40, size=base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i:03d}.jpg")


def test_image_folder_directory_and_archive(make_cfg, mlflow_client, tmp_path):
    folder = tmp_path / "imgs" / "train"
    _write_jpegs(folder)
    cfg = make_cfg("data=image_folder", f"data.path={folder}", "data.image_size=[16,16]", "tracking.log_model=false")
    assert 0 <= run_task(cfg) <= 1
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="train")
    cache = tmp_path / "cache"
    cfg = make_cfg(
        "data=image_folder", f"data.path={archive}", f"data.cache_dir={cache}", "data.image_size=[16,16]",
        "tracking.log_model=false",
    )  # fmt: skip
    run_task(cfg)
    extracted = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(extracted) == 1 and (extracted[0] / ".complete").exists()
    run_task(cfg)  # second time: reuses the extraction
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == extracted
    runs = runs_of(mlflow_client)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params["data.source"] for r in runs} == {"image_folder"}


def test_image_folder_decodes_once_per_process_with_the_same_batches(make_cfg, tmp_path, monkeypatch):
    import tensorflow as tf

    from experiments import data as data_module

    folder = tmp_path / "imgs"
    _write_jpegs(folder)
    overrides = ("data=image_folder", f"data.path={folder}", "data.augment=true", "data.image_size=[16,16]")

    def batches(*extra):
        splits = data_module.load_data(make_cfg(*overrides, *extra).data, batch_size=8)
        return [[(x.numpy(), y.numpy()) for x, y in ds] for ds in (splits.train, splits.val)]

    decodes = []
    decode_image = tf.io.decode_image
    monkeypatch.setattr(tf.io, "decode_image", lambda *a, **k: (decodes.append(1), decode_image(*a, **k))[1])
    monkeypatch.setattr(data_module, "_DECODED", {})
    from_files = batches("data.cache=false")  # data.cache=false: decoded by the pipeline, nothing kept
    assert data_module._DECODED == {} and decodes
    first = batches()
    assert len(data_module._DECODED) == 1
    decodes.clear()
    second = batches()  # the same images in the same process: nothing decoded again
    assert decodes == []
    monkeypatch.setattr(data_module, "DECODED_CACHE_MB", 0)  # pixels over the limit: decoded by the pipeline
    monkeypatch.setattr(data_module, "_DECODED", {})
    over_limit = batches()
    assert data_module._DECODED == {} and decodes
    for a, b, c in zip(from_files, first, second):
        assert len(a) == len(b) == len(c) > 0
        for (xa, ya), (xb, yb), (xc, yc) in zip(a, b, c):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(yb, yc)
            np.testing.assert_allclose(xa, xb, atol=1e-5)
            np.testing.assert_array_equal(xb, xc)
    for a, d in zip(from_files, over_limit):
        for (xa, ya), (xd, yd) in zip(a, d):
            np.testing.assert_array_equal(xa, xd)
            np.testing.assert_array_equal(ya, yd)


def test_cifar10_through_keras_cache(make_cfg, mlflow_client, cifar_cache):
    cfg = make_cfg("data=cifar10", "tracking.log_model=false")
    run_task(cfg)
    (run,) = runs_of(mlflow_client)
    assert run.info.status == "FINISHED"
    assert "test/accuracy" in run.data.metrics and "test/loss" in run.data.metrics
    assert run.data.tags["data.source"] == "cifar10"


def test_synthetic_source(make_cfg):
    cfg = make_cfg("data=synthetic", "data.image_size=[16,16]", "data.num_classes=4", "data.num_samples=64")
    assert 0 <= run_task(cfg) <= 1


def test_validation_split_is_deterministic(make_cfg):
    from experiments.data import load_data

    cfg = make_cfg()
    a = np.concatenate([y.numpy() for _, y in load_data(cfg.data, batch_size=64).val])
    b = np.concatenate([y.numpy() for _, y in load_data(cfg.data, batch_size=64).val])
    c = np.concatenate([y.numpy() for _, y in load_data(make_cfg("data.seed=5").data, batch_size=64).val])
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_batch_order_does_not_depend_on_the_process_history(make_cfg):
    """A sweep worker builds trial after trial: each trial's shuffled, augmented batches must be
    those of a fresh process (they were not while the pipeline was built before seeding)."""
    import tensorflow as tf

    from experiments.run import seeded_data

    cfg = make_cfg("data.augment=true", "data.crop_padding=1")

    def first_batches():
        x, y = next(iter(seeded_data(cfg).train))
        return x.numpy(), y.numpy()

    x1, y1 = first_batches()
    keras.utils.set_random_seed(123)  # what an earlier trial with another seed leaves behind
    tf.random.uniform((7,))  # ... and random ops it ran
    x2, y2 = first_batches()
    assert np.array_equal(y1, y2) and np.array_equal(x1, x2)


def test_background_metrics_are_all_stored_in_order_before_the_run_ends(tracking_uri, mlflow_client):
    # Per-epoch metrics go to the store from a thread (training does not wait for it); the
    # run must not end before they are in, each with its step and the time it was logged.
    from experiments.tracking import RunTracker

    tracker = RunTracker(tracking_uri, "resnet-blocks")
    with tracker.open(run_name="background") as tr:
        for step in range(1, 41):
            tr.log_metrics({"val/accuracy": step / 100, "train/loss": 1 / step}, step=step, background=True)
        tr.log_metrics({"best/val/accuracy": 0.4})  # a direct write waits for the queued ones
    (run,) = runs_of(mlflow_client)
    assert run.info.status == "FINISHED"
    history = mlflow_client.get_metric_history(run.info.run_id, "val/accuracy")
    assert sorted(m.step for m in history) == list(range(1, 41))
    by_step = sorted(history, key=lambda m: m.step)
    assert [m.timestamp for m in by_step] == sorted(m.timestamp for m in by_step)
    assert run.data.metrics["best/val/accuracy"] == 0.4


def test_a_metric_refused_in_the_background_fails_the_run(tracking_uri, mlflow_client):
    from mlflow.exceptions import MlflowException

    from experiments.tracking import RunTracker

    with pytest.raises(MlflowException, match="bad\\?key"):
        with RunTracker(tracking_uri, "resnet-blocks").open(run_name="refused") as tr:
            tr.log_metrics({"bad?key": 1.0}, step=1, background=True)
    (run,) = runs_of(mlflow_client)
    assert run.info.status == "FAILED"
    assert "bad?key" in run.data.tags["failure_reason"]


@pytest.mark.parametrize("fused_norm", ["true", "false"])
def test_nonfinite_loss_fails_the_run(make_cfg, mlflow_client, fused_norm):
    # Unfused, the NaN reaches the loss; fused, BN+ReLU zeroes NaN activations and the NaN
    # batch-norm statistics give the divergence away.
    cfg = make_cfg(
        "model.plugins=[tests.plugins.faulty]",
        "model.block=nan_regular",
        f"model.fused_norm={fused_norm}",
        "tracking.log_model=false",
    )
    with pytest.raises(RunFailure, match="non-finite"):
        run_task(cfg)
    (run,) = runs_of(mlflow_client)
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["failure_reason"]


@pytest.mark.parametrize("mirrored", [False, True])
def test_finite_guard_reads_current_weights(mirrored):
    # The guard reads each weight when the epoch ends (plain variables by one raw read op,
    # mirrored ones through .numpy()): a statistic that turns NaN after training began is caught.
    import tensorflow as tf

    from experiments.train import FiniteLossGuard, NonFiniteLossError

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if mirrored else tf.distribute.get_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    guard = FiniteLossGuard()
    guard.set_model(model)
    guard.on_train_begin()
    guard.on_epoch_end(0, {"loss": 1.0})  # all finite
    guard.on_epoch_end(1, {"loss": 1.0})
    variance = next(w for w in model.weights if "moving_variance" in w.path)
    variance.assign(np.array([1.0, np.nan, 1.0], "float32"))
    # A finite loss: only the weights give it away, read while the next epoch trains, so
    # training stops at a later epoch's end or, at the latest, when it ends.
    with pytest.raises(NonFiniteLossError, match="moving_variance"):
        guard.on_epoch_end(2, {"loss": 1.0})
        guard.on_train_end()
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):  # the loss: at once
        guard.on_train_begin()
        guard.on_epoch_end(0, {"loss": float("nan")})
    guard.close(quiet=True)


def test_a_model_built_before_its_run_opens_trains_the_same(make_cfg, mlflow_client):
    # A sweep's job builds (and checks) its model before it records anything; where the model
    # was built must not change how it trains.
    from experiments.run import build_for_training

    cfg = make_cfg("tracking.log_model=false")
    built_in_training = run_task(cfg)
    checked = []

    def vet(plan):
        checked.append(plan.spec)
        return build_for_training(cfg, plan.spec)

    built_first = run_task(cfg, RunHooks(vet=vet))
    assert len(checked) == 1 and built_first == built_in_training
    losses = [
        [m.value for m in mlflow_client.get_metric_history(r.info.run_id, "train/loss")] for r in runs_of(mlflow_client)
    ]
    assert len(losses) == 2 and losses[0] == losses[1]


def test_a_vetted_out_model_records_nothing(make_cfg, mlflow_client):
    def vet(plan):
        raise RuntimeError("over budget")

    with pytest.raises(RuntimeError, match="over budget"):
        run_task(make_cfg(), RunHooks(vet=vet))
    assert not runs_of(mlflow_client)


@pytest.mark.parametrize("with_test", [False, True])
def test_the_training_slot_is_given_back_once_the_last_epoch_ends(make_cfg, with_test):
    # A sweep's next trial may train as soon as this one's last epoch is done, not only when
    # fit() has returned; with a test split, only once the test evaluation is done too.
    import dataclasses

    from experiments.run import seeded_data
    from experiments.train import train

    class Slot:
        held, releases, held_at_train_end = False, 0, None

        def __enter__(self):
            self.held = True
            return self

        def __exit__(self, *exc):
            self.release()

        def release(self):
            if self.held:
                self.held, self.releases = False, self.releases + 1

    slot = Slot()

    class AtTrainEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            slot.held_at_train_end = slot.held

    cfg = make_cfg()
    data = seeded_data(cfg)
    if not with_test:  # (digits holds out a test split)
        data = dataclasses.replace(data, test=None, num_test=0)
    result = train(cfg, plan_run(cfg).spec, data, callbacks=(AtTrainEnd(),), slot=slot)
    assert result.epochs_run == 2 and bool(result.test) == with_test
    assert slot.releases == 1 and slot.held_at_train_end is with_test


@pytest.mark.parametrize("overrides", [(), ("trainer.label_smoothing=0.1", "trainer.mixed_precision=mixed_bfloat16")])
def test_the_train_step_is_traced_once(make_cfg, monkeypatch, overrides):
    # Keras would create the compiled metrics' variables inside the first traced train step,
    # and TensorFlow then traces the step a second time (0.3 s of a small ResNet's first
    # epoch): training creates them beforehand.
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    from experiments.run import seeded_data
    from experiments.train import train

    traces = []
    train_step = TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda self, data: traces.append(1) or train_step(self, data))
    cfg = make_cfg(*overrides)
    result = train(cfg, plan_run(cfg).spec, seeded_data(cfg))
    assert result.epochs_run == 2 and math.isfinite(result.history["train/loss"][-1])
    assert len(traces) == 1


def test_interrupt_marks_run_killed(make_cfg, mlflow_client):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_task(make_cfg(), RunHooks(callbacks=(Interrupt(),)))
    (run,) = runs_of(mlflow_client)
    assert run.info.status == "KILLED"


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model.block=bottleneck", "model.shortcut=projection"],
        ["model.block=regular_v1", "model.depths=[2,1,1]"],
        ["model=cifar_resnet20"],
        ["model.plugins=[tests.plugins.faulty]", "model.block=eager_variable_regular"],  # falls back
    ],
)
def test_dry_build_counts_exactly_what_a_real_build_has(make_cfg, overrides):
    # The sweeper vets each architecture with a dry build whose weights are only declared.
    from experiments.run import build_model_for_config, dry_build
    from resnet_blocks import model_cost

    cfg = make_cfg(*overrides)
    spec = plan_run(cfg, build=False).spec
    assert dry_build(spec) == model_cost(build_model_for_config(spec))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.source=mnist"], "data.source: received 'mnist'; allowed: one of digits, cifar10"),
        (["trainer.epochs=-1"], "trainer.epochs: received -1"),
        (["trainer.optimizer=rmsprop"], "trainer.optimizer: received 'rmsprop'; allowed: one of sgd, adamw"),
        (["data=image_folder", "data.path=/no/such/folder"], "data.path: received '/no/such/folder'"),
        (["model.strides=[1,2,3]"], "model.strides[2]: received 3; allowed: 1 or 2"),
        (["objective=[val/acc]"], "objective[0]: received 'val/acc'"),
        (["model.input_shape=[32,32,3]"], "model.input_shape: received [32, 32, 3]"),
        (["model.block=bottleneck", "+model.block_args.expansion=0"], "model.block_args.expansion: received 0"),
        (["model.widths=[8,16,16]"], "model.shortcut: received 'zero_pad'"),  # stem 16 -> 8 channels
    ],
)
def test_bad_config_is_rejected_before_work(make_cfg, overrides, message):
    with pytest.raises(SpecError) as err:
        plan_run(make_cfg(*overrides))
    assert message in str(err.value)


BAD_OVERRIDES = [
    ["data.source=mnist"],
    ["trainer.epochs=-1"],
    ["data=image_folder", "data.path=/no/such/folder"],
    ["trainer.optimizer=rmsprop"],
    ["trainer.epoch=3"],  # misspelt key: Hydra's schema rejects it
]


def test_bad_overrides_exit_cleanly_without_a_run(tmp_path):
    from tests.parallel import run_together

    dirs = [tmp_path / str(i) for i in range(len(BAD_OVERRIDES))]
    procs = run_together([
        dict(args=[sys.executable, "-m", "experiments.run", *overrides, f"hydra.run.dir={d}/out"], cwd=REPO,
             env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}"})
        for d, overrides in zip(dirs, BAD_OVERRIDES)
    ])  # fmt: skip
    for d, overrides, proc in zip(dirs, BAD_OVERRIDES, procs):
        assert proc.returncode != 0, overrides
        key = overrides[-1].split("=")[0]
        assert key in proc.stderr, (overrides, proc.stderr)
        assert "Traceback" not in proc.stderr, (overrides, proc.stderr)
        assert not (d / "mlflow.db").exists(), f"{overrides}: no MLflow store (so no run) may be created"


def test_default_run_is_valid_and_meets_accuracy(make_cfg, mlflow_client):
    """The default configuration, unshrunk: the README's promise of >= 97% on digits."""
    cfg = make_cfg("tracking.log_model=false", fast=False)
    assert run_task(cfg) >= 0.97
    (run,) = runs_of(mlflow_client)
    assert run.info.status == "FINISHED" and math.isfinite(run.data.metrics["best/val/accuracy"])


def test_checkpoint_restore_resumes_an_interrupted_run(make_cfg, mlflow_client, tmp_path):
    """trainer.checkpoint_dir: rerunning after an interruption continues from the last epoch."""

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    cfg = make_cfg(f"trainer.checkpoint_dir={tmp_path / 'ckpt'}", "trainer.epochs=3", "tracking.log_model=false")
    with pytest.raises(KeyboardInterrupt):
        run_task(cfg, RunHooks(callbacks=(StopAfterFirstEpoch(),)))
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch-0001"]
    value = run_task(cfg)
    killed, resumed = sorted(runs_of(mlflow_client), key=lambda r: r.info.start_time)
    assert killed.info.status == "KILLED" and resumed.info.status == "FINISHED"
    assert resumed.data.metrics["train/epochs_resumed"] == 1  # epoch 1 was not trained again
    history = mlflow_client.get_metric_history(resumed.info.run_id, "val/accuracy")
    assert [m.step for m in history] == [1, 2, 3]  # epoch 1 replayed from the checkpoint: no gap
    # The objective is the kept (best) epoch's, counted over all three epochs.
    assert value == max(m.value for m in history) == resumed.data.metrics["best/val/accuracy"]
    assert not (tmp_path / "ckpt").exists()  # finished: its checkpoints are gone


def test_mixed_precision_bfloat16(make_cfg):
    cfg = make_cfg("trainer.mixed_precision=mixed_bfloat16", "trainer.epochs=1", "tracking.enabled=false")
    assert 0 <= run_task(cfg) <= 1
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards

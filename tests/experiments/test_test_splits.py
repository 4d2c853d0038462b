"""Test splits: fixed held-out parts, test folders with the training classes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.data import load_data, split_sizes
from experiments.run import plan_run
from resnet_blocks import SpecError
from tests.experiments.test_run import _write_jpegs


def _labels(ds) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in ds])


def _pixels(ds) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in ds])


def test_digits_test_part_is_fixed_whatever_the_seed_and_subsample(make_cfg):
    a = load_data(make_cfg().data, batch_size=64)
    b = load_data(make_cfg("data.seed=3", "data.max_samples=600").data, batch_size=64)
    assert a.num_test == b.num_test == 270
    np.testing.assert_array_equal(_pixels(a.test), _pixels(b.test))
    # Never seen in training or validation: no test image is among them (digits has a few
    # exact duplicates, so compare against the test images' own multiset).
    held = {x.tobytes() for x in _pixels(a.test)}
    seen = [x.tobytes() for x in np.concatenate([_pixels(a.train), _pixels(a.val)])]
    assert len(seen) == 1797 - 270 and sum(s in held for s in seen) <= 5
    assert split_sizes(make_cfg().data) == (a.num_train, a.num_val, a.num_test)
    assert split_sizes(make_cfg("data.seed=3", "data.max_samples=600").data) == (b.num_train, b.num_val, b.num_test)


def test_image_folder_test_path_and_test_split(make_cfg, tmp_path):
    _write_jpegs(tmp_path / "train", per_class=10, size=(32, 32))
    _write_jpegs(tmp_path / "test", per_class=4, size=(32, 32))
    cfg = make_cfg("data=image_folder", f"data.path={tmp_path / 'train'}", f"data.test_path={tmp_path / 'test'}")
    data = load_data(cfg.data, batch_size=8)
    assert (data.num_train + data.num_val, data.num_test) == (30, 12)
    assert sorted(np.bincount(_labels(data.test))) == [4, 4, 4]
    assert split_sizes(cfg.data) == (data.num_train, data.num_val, data.num_test)
    cfg = make_cfg("data=image_folder", f"data.path={tmp_path / 'train'}", "data.test_split=0.3")
    data = load_data(cfg.data, batch_size=8)
    assert (data.num_train + data.num_val, data.num_test) == (21, 9)
    assert split_sizes(cfg.data) == (data.num_train, data.num_val, data.num_test)


def test_test_folder_with_other_classes_names_both_lists(make_cfg, tmp_path):
    _write_jpegs(tmp_path / "train", classes=("cat", "dog", "owl"), per_class=3)
    _write_jpegs(tmp_path / "test", classes=("cat", "dog", "emu"), per_class=2)
    cfg = make_cfg("data=image_folder", f"data.path={tmp_path / 'train'}", f"data.test_path={tmp_path / 'test'}")
    with pytest.raises(SpecError) as err:
        plan_run(cfg, build=False)
    text = str(err.value)
    assert text.startswith("data.test_path:") and "['cat', 'dog', 'owl']" in text and "['cat', 'dog', 'emu']" in text


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.test_split=1.2"], "data.test_split: received 1.2"),
        (["data.test_split=0.85"], "data.test_split: received 0.85"),  # with validation_split 0.2: nothing left
        (["data.test_path=/tmp"], "data.test_path: received '/tmp'"),  # digits: image folders only
        (["data=cifar10", "data.test_split=0.1"], "0 for cifar10"),
        (["data=image_folder", "data.path=/tmp", "data.test_path=/nonexistent"], "data.test_path: received"),
    ],
)
def test_bad_test_split_settings_are_rejected(make_cfg, overrides, expected):
    with pytest.raises(SpecError, match=expected.replace("(", r"\(").replace("[", r"\[")):
        plan_run(make_cfg(*overrides), build=False)


def test_a_run_that_never_evaluates_its_test_split_does_not_load_it(make_cfg):
    from experiments.run import seeded_data

    full = load_data(make_cfg().data, batch_size=64)
    bare = load_data(make_cfg().data, batch_size=64, with_test=False)
    assert full.test is not None and bare.test is None
    assert bare.num_test == full.num_test == 270  # still held out (and counted), only not loaded
    np.testing.assert_array_equal(_pixels(bare.train), _pixels(full.train))
    np.testing.assert_array_equal(_pixels(bare.val), _pixels(full.val))
    assert seeded_data(make_cfg("trainer.evaluate_test=false")).test is None  # (a sweep's trials: always)
    assert seeded_data(make_cfg()).test is not None


def test_cifar10_without_its_test_batch_never_reads_it(make_cfg, tmp_path, monkeypatch):
    import pickle

    import keras

    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path / "keras"))
    cache = tmp_path / "keras" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(1, 6):
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(range(10)) * 2}
        (cache / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (cache / "test_batch").write_bytes(b"not a pickle: reading it would fail")
    cfg = make_cfg("data=cifar10")
    data = load_data(cfg.data, batch_size=16, with_test=False)
    assert data.test is None and data.num_train + data.num_val == 100
    assert data.num_test == split_sizes(cfg.data)[2] == 10_000  # (the test batch's size, unread)
    with pytest.raises(Exception):  # noqa: B017 - whatever the unpickler raises: it was read
        load_data(cfg.data, batch_size=16)


def test_an_image_folders_test_images_are_listed_but_not_decoded_without_the_test_split(make_cfg, tmp_path):
    _write_jpegs(tmp_path / "train", per_class=6, size=(16, 16))
    for c in ("cat", "dog", "owl"):  # test images that cannot be decoded: decoding them would fail
        (tmp_path / "test" / c).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "test" / c / f"{i}.jpg").write_bytes(b"not an image")
    cfg = make_cfg("data=image_folder", f"data.path={tmp_path / 'train'}", f"data.test_path={tmp_path / 'test'}")
    data = load_data(cfg.data, batch_size=8, with_test=False)
    assert data.test is None and data.num_test == 6 and data.num_train + data.num_val == 18
    with pytest.raises(SpecError, match="cannot be decoded"):
        load_data(cfg.data, batch_size=8)


@pytest.mark.slow
def test_a_sweeps_trials_never_read_cifar10s_test_batch(cifar_cache, tmp_path):
    """End to end: trials of a sweep on CIFAR-10 train and report with a test batch that would
    fail if read (selection is on validation only; the test split is finalize's)."""
    from tests.experiments.sweep.test_sweep import load, sweep_call

    (cifar_cache / "test_batch").write_bytes(b"not a pickle: reading it would fail")
    call = sweep_call(tmp_path, "data=cifar10", "hydra.sweeper.n_trials=1", "trainer.epochs=1",
                      "hydra.sweeper.baselines=[]")  # fmt: skip
    call["env"]["KERAS_HOME"] = str(cifar_cache.parents[2])  # (the subprocess's Keras cache: the fixture's)
    import subprocess

    proc = subprocess.run(**call, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = load(tmp_path).trials
    assert len(trials) == 1 and trials[0].state.name == "COMPLETE"

"""Keras's private API we use (experiments/keras_internals.py) is still there and does what we rely on."""

from __future__ import annotations

import pickle

import numpy as np

from experiments.keras_internals import keras_home, load_cifar_batch


def test_keras_home_is_the_directory_keras_resolved(monkeypatch, tmp_path):
    # Keras resolves KERAS_HOME (or ~/.keras) once, at import, into this module variable; the
    # tests redirect downloads through it too (tests/experiments/test_run.py).
    import keras

    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path / "k"))
    assert keras_home() == tmp_path / "k"


def test_a_cifar_batch_file_loads_as_images_and_labels(tmp_path):
    images = np.arange(2 * 3072, dtype="uint8").reshape(2, 3072)
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": images, b"labels": [3, 7]}))
    x, y = load_cifar_batch(str(batch))
    assert x.shape == (2, 3, 32, 32) and list(y) == [3, 7]
    assert (x.reshape(2, -1) == images).all()

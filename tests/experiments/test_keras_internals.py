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


def test_fit_iterates_a_dataset_this_many_times_per_epoch():
    """A resumed run advances its data by ``FIT_ITERATIONS_PER_EPOCH`` iterations per epoch
    trained (experiments.train): each epoch of ``fit`` must see the order of that iteration."""
    import keras
    import tensorflow as tf

    from experiments.keras_internals import FIT_ITERATIONS_PER_EPOCH

    def data():
        ds = tf.data.Dataset.range(8).shuffle(8, seed=1, reshuffle_each_iteration=True)
        return ds.map(lambda v: (tf.cast(tf.reshape(v, [1]), "float32"), 0.0)).batch(8).prefetch(2)

    class Probe(keras.Model):  # records the batch each train step sees
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)
            self.seen = tf.Variable(tf.zeros([8]), trainable=False)

        def call(self, x):
            return self.dense(x)

        def train_step(self, batch):
            self.seen.assign(batch[0][:, 0])
            return {"first": batch[0][0, 0]}

    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.seen.numpy().tolist()))
    model = Probe()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(data(), epochs=3, verbose=0, callbacks=[record], shuffle=False)
    fresh = data()
    orders = [next(iter(fresh))[0][:, 0].numpy().tolist() for _ in range(3 * FIT_ITERATIONS_PER_EPOCH)]
    assert seen == [orders[e * FIT_ITERATIONS_PER_EPOCH] for e in range(3)]

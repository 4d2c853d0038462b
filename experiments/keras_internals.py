"""Keras's private API, fenced here: each use with its reason and a test that fails when Keras
changes under it (``tests/experiments/test_keras_internals.py``, and
``test_the_train_step_is_traced_once`` in ``tests/experiments/test_run.py``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def keras_home() -> Path:
    """Keras's cache directory (``KERAS_HOME``, else ``~/.keras``, as Keras resolves it): where
    ``keras.datasets.cifar10`` keeps its download. No public accessor exists."""
    from keras.src.backend import config as keras_config

    return Path(os.path.expanduser(keras_config.keras_home()))


def load_cifar_batch(path: str):
    """One CIFAR-10 batch file as Keras's own loader reads it (images, labels): the cached
    batches load without ``keras.datasets.cifar10.load_data``'s download check."""
    from keras.src.datasets.cifar import load_batch

    return load_batch(path)


def create_training_variables(model, dataset) -> None:
    """Build the compiled metrics and losses now, eagerly. Without a distribution strategy
    set, Keras leaves that to the first traced train step, which then creates their
    variables, and TensorFlow traces the step a second time. Building them here saves that
    trace: 0.3 s of a small ResNet's first epoch (1.07 s to 0.75 s on digits, measured).
    They are built from the model's symbolic output and the data's element spec (13 ms; Keras's
    own symbolic build runs the whole model again: 78 ms). Private Keras API: where it
    fails, training goes on as before."""
    try:
        from keras.src import backend  # (no public equivalent of these three)

        x_spec, y_spec = dataset.element_spec[:2]
        x = backend.KerasTensor(x_spec.shape, backend.standardize_dtype(x_spec.dtype))
        y = backend.KerasTensor(y_spec.shape, backend.standardize_dtype(y_spec.dtype))
        (y_pred,) = model.outputs
        backend.compute_output_spec(model.compute_metrics, x, y, y_pred, sample_weight=None)
        backend.compute_output_spec(model._compute_loss, x, y, y_pred, sample_weight=None, training=False)  # noqa: SLF001 - the compiled loss, as the train step calls it
    except Exception as err:  # noqa: BLE001 - only an optimisation
        log.debug("compiled metrics left to the first train step: %s", err)


# How many times ``Model.fit`` iterates a finite training dataset per epoch (TensorFlow
# backend, no ``steps_per_epoch``): once for the epoch, and once more as the epoch ends, when
# Keras's epoch iterator makes the next epoch's iterator ahead (``EpochIterator`` in
# keras/src/trainers/epoch_iterator.py), which it then makes again. Each iteration draws new
# shuffle and augmentation seeds, so a run resumed after ``k`` epochs advances its dataset by
# ``k`` times this to see what the uninterrupted run saw (experiments.train). Behaviour, not
# an API: ``test_fit_iterates_a_dataset_this_many_times_per_epoch`` measures it.
FIT_ITERATIONS_PER_EPOCH = 2

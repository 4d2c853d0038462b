"""The model a run keeps is its best epoch's: whatever epoch is best, however training ends,
the weights left in the model are the ones that epoch's validation metrics were measured on."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from experiments.metrics import keras_name
from experiments.train import KeepBestEpoch


def _kept(metric: str, values: list[float]) -> tuple[int, np.ndarray]:
    """Epochs whose weights are all ``epoch + 1`` report ``values``: the epoch kept, and the weights."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    keep = KeepBestEpoch(metric)
    keep.set_model(model)
    keep.set_params({"epochs": len(values)})
    keep.on_train_begin()
    for epoch, value in enumerate(values):
        model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        keep.on_epoch_end(epoch, {keras_name(metric): value})
    keep.on_train_end()
    return keep.epoch, model.get_weights()[0]


@pytest.mark.parametrize(
    ("metric", "values", "best"),
    [
        ("val/accuracy", [0.5, 0.9, 0.7, 0.8], 1),  # the best epoch in the middle: restored
        ("val/accuracy", [0.5, 0.6, 0.7, 0.8], 3),  # the last epoch best: kept as it is
        ("val/loss", [1.0, 0.4, 0.6, float("nan")], 1),  # lower is better; a non-finite epoch never wins
        ("val/accuracy", [0.9, 0.9, 0.8, 0.7], 0),  # a tie keeps the earlier epoch
    ],
)
def test_the_model_holds_the_best_epochs_weights_when_training_ends(metric, values, best):
    epoch, weights = _kept(metric, values)
    assert epoch == best
    assert np.all(weights == best + 1)

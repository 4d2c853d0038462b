"""A resumed run stops early at the epoch an uninterrupted one would: Keras's own
``EarlyStopping`` fed every epoch is the reference (this fails if Keras's counting changes)."""

from __future__ import annotations

import keras
import pytest

from experiments.train import ResumableEarlyStopping


def _stopped_at(callback, values, first_epoch=0) -> int | None:
    """Feed ``values`` (epochs ``first_epoch``...) to ``callback``; the epoch it stops at."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # (as fit sets it)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(values, start=first_epoch):
        callback.on_epoch_end(epoch, {callback.monitor: value})
        if model.stop_training:
            return epoch
    return None


SERIES = {
    "accuracy": ("val/accuracy", True, [0.5, 0.7, 0.69, 0.71, 0.70, 0.70, 0.65, 0.72, 0.6, 0.6, 0.6, 0.6]),
    "loss": ("val/loss", False, [1.0, 0.8, 0.9, 0.85, 0.79, 0.8, 0.81, 0.82, 0.7, 0.75, 0.76, 0.77]),
}


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("patience", [1, 2, 3])
def test_resumed_early_stopping_stops_where_an_uninterrupted_one_does(name, patience):
    metric, maximize, values = SERIES[name]
    reference = _stopped_at(keras.callbacks.EarlyStopping(monitor=metric.replace("/", "_"), patience=patience,
                                                          mode="max" if maximize else "min"), values)  # fmt: skip
    assert reference is not None  # (the series does stop: the comparison means something)
    assert _stopped_at(ResumableEarlyStopping(metric, patience, maximize), values) == reference
    for k in range(1, reference + 1):  # killed after epoch k, resumed from its checkpoint
        resumed = ResumableEarlyStopping(metric, patience, maximize)
        resumed.on_resume([{metric: v, "train/loss": 0.0} for v in values[:k]])
        assert _stopped_at(resumed, values[k:], first_epoch=k) == reference, k
        plain = keras.callbacks.EarlyStopping(monitor=metric.replace("/", "_"), patience=patience,
                                              mode="max" if maximize else "min")  # fmt: skip
        if k == reference and patience > 1:  # what Keras alone does: it starts counting over
            assert _stopped_at(plain, values[k:], first_epoch=k) != reference

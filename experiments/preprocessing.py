"""The model as it is trained and shipped: preprocessing layers in front of the network.

Data sources give raw pixels (0-255, as float32 batches); the trained model rescales and
normalises them itself with Keras preprocessing layers whose statistics (the training
split's per-channel mean and variance) are weights. The shipped model adds a resize from the
source's native size and uses standard Keras layers only, so it loads with plain Keras (or
``mlflow.pyfunc``) in a process that has never imported this project. Augmentation stays in
the input pipeline: it never enters a saved model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become the network's input, and the statistics of the training split.

    ``raw_shape``: what the source gives (``None`` height/width: images of any size);
    ``image_size``: the network's input size; ``mean``/``std``: per channel, in [0, 1] units
    (None with ``data.normalize=false``)."""

    raw_shape: tuple[int | None, int | None, int]
    image_size: tuple[int, int]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @property
    def resizes(self) -> bool:
        return tuple(self.raw_shape[:2]) != tuple(self.image_size)

    def to_dict(self) -> dict[str, Any]:
        """What is logged with a run and stored in the model's metadata."""
        return {
            "raw_shape": list(self.raw_shape),
            "image_size": list(self.image_size),
            "rescale": "1/255",
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
        }


def _rescale_and_normalize(x, prep: Preprocessing):
    from keras import layers

    # float32 whatever the precision policy: these are the statistics' units.
    x = layers.Rescaling(1.0 / 255.0, dtype="float32", name="rescale")(x)
    if prep.mean is None:
        return x
    norm = layers.Normalization(axis=-1, dtype="float32", name="normalize")
    x = norm(x)
    mean, std = np.asarray(prep.mean, "float32"), np.asarray(prep.std, "float32")
    norm.set_weights([mean, std**2, np.asarray(0, "int64")])
    norm.finalize_state()
    return x


def with_preprocessing(network, prep: Preprocessing):
    """``network`` behind rescaling and normalisation: the model that is trained on raw
    pixels of the network's input size."""
    import keras

    inputs = keras.Input(tuple(network.input_shape[1:]), name="image")
    return keras.Model(inputs, network(_rescale_and_normalize(inputs, prep)), name="preprocessed_resnet")


def network_of(model):
    """The ResNet inside a model from :func:`with_preprocessing` (or ``model`` itself)."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if len(nested) == 1 else model


def serving_model(trained, prep: Preprocessing):
    """The model to ship: raw images of the source's native size in (uint8 or 0-255 floats),
    class probabilities out; resize, rescale and normalisation inside; standard Keras layers
    only. Its outputs equal ``trained``'s on images of the network's input size."""
    import keras
    from keras import layers

    from resnet_blocks.portable import standard_layers_copy

    network = standard_layers_copy(network_of(trained))
    inputs = keras.Input(tuple(prep.raw_shape), name="image")
    x = inputs
    if prep.resizes:
        h, w = prep.image_size
        x = layers.Resizing(h, w, interpolation="bilinear", dtype="float32", name="resize")(x)
    # training=False is fixed in the graph: a shipped model never updates its batch-norm
    # statistics, however it is called (behind Keras's Resizing layer, a direct call
    # ``model(x)`` otherwise runs the layers after it in training mode: Keras 3.15).
    outputs = network(_rescale_and_normalize(x, prep), training=False)
    return keras.Model(inputs, outputs, name="resnet_blocks_model")

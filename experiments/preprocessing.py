"""The model as it is trained and shipped: preprocessing layers in front of the network.

Data sources give raw pixels (0-255, as float32 batches); the trained model rescales and
normalises them itself with Keras preprocessing layers whose statistics (the training
split's per-channel mean and variance) are weights. The shipped model takes the source's own
values instead (digits: 0-16, as scikit-learn gives them; other sources: 0-255 pixels), adds
a resize from the source's native size and uses standard Keras layers only, so it loads with
plain Keras (or ``mlflow.pyfunc``) in a process that has never imported this project.
Augmentation stays in the input pipeline: it never enters a saved model.
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
    (None with ``data.normalize=false``); ``value_max``: the top of the source's own value
    range (0-``value_max``), what the shipped model takes (the pipelines give 0-255 whatever
    it is); ``values``: what those values are, for messages."""

    raw_shape: tuple[int | None, int | None, int]
    image_size: tuple[int, int]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    value_max: float = 255.0
    values: str = "pixels"

    @property
    def resizes(self) -> bool:
        return tuple(self.raw_shape[:2]) != tuple(self.image_size)

    def source_values(self, pixels: np.ndarray) -> np.ndarray:
        """The pipeline's 0-255 images as the source's own values (what the shipped model takes)."""
        return from_pixels(pixels, self.value_max)

    def to_dict(self) -> dict[str, Any]:
        """What is logged with a run and stored in the model's metadata (``value_range`` and
        ``rescale``: the shipped model's input and its first layer)."""
        return {
            "raw_shape": list(self.raw_shape),
            "image_size": list(self.image_size),
            "value_range": [0, _number(self.value_max)],
            "rescale": f"1/{_number(self.value_max)}",
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
        }


def from_pixels(pixels: np.ndarray, value_max: float) -> np.ndarray:
    """0-255 images (a pipeline's) as values 0-``value_max`` (float32; unchanged for 255)."""
    if value_max == 255.0:
        return np.asarray(pixels)
    # (x * max) / 255 in float64: digits' multiples of 255/16 come back as exact integers.
    return (np.asarray(pixels, "float64") * value_max / 255.0).astype("float32")


def _number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


# -- what the shipped model takes, stated and checked --------------------------------------
def input_metadata(prep: Preprocessing) -> dict[str, Any]:
    """The shipped model's input, for its metadata: ``shape`` (``None``: any size), ``dtype``,
    ``value_range`` and ``expected``, one line saying all of it (the check shipped in the model,
    :func:`experiments.tracking.resnet_blocks_pyfunc.input_problem`, uses it)."""
    return {
        "shape": [None, *prep.raw_shape],
        "dtype": "uint8 or any float (cast to float32 inside)",
        "value_range": [0, _number(prep.value_max)],
        "expected": _expected(prep.raw_shape, prep.value_max, prep.values),
    }


def _expected(raw_shape, value_max: float, values: str) -> str:
    (h, w), c = (("h", "w")[i] if d is None else d for i, d in enumerate(raw_shape[:2])), raw_shape[2]
    shapes = f"(n, {h}, {w}) or (n, {h}, {w}, 1)" if c == 1 else f"(n, {h}, {w}, {c})"
    return f"{shapes}, uint8 or float, values 0-{_number(value_max)} ({values})"


def _rescale_and_normalize(x, prep: Preprocessing, value_max: float = 255.0):
    from keras import layers

    # float32 whatever the precision policy: these are the statistics' units.
    x = layers.Rescaling(1.0 / value_max, dtype="float32", name="rescale")(x)
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
    """The model to ship: images as the source gives them in (its native size and its own
    values, 0-``prep.value_max``; uint8 or any float), class probabilities out; resize,
    rescale and normalisation inside; standard Keras layers only. Its outputs on the source's
    values equal ``trained``'s on the pipeline's (0-255, the network's input size)."""
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
    outputs = network(_rescale_and_normalize(x, prep, prep.value_max), training=False)
    return keras.Model(inputs, outputs, name="resnet_blocks_model")

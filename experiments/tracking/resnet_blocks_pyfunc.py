"""The ``mlflow.pyfunc`` loader of the models this project logs, shipped inside each one
(``code/resnet_blocks_pyfunc.py``): it checks the input against the model's metadata before
predicting, so that values outside the source's range (0-255 pixels into a digits model that
takes 0-16) are one line naming what the model takes instead of silently wrong predictions.

MLflow's own Keras pyfunc checks nothing without an input schema, and an input schema would
accept one dtype and rank only. This file imports only numpy at module level and MLflow and
Keras when a model loads: it runs where this project is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

MODULE = "resnet_blocks_pyfunc"  # the loader module's name inside the model (this file's name)


def input_problem(x, spec: Mapping[str, Any]) -> str | None:
    """One line saying why ``x`` is not what the model of ``spec`` (the ``input`` entry of its
    metadata: ``shape``, ``value_range``, ``expected``) takes, or None when it is."""
    shape = tuple(None if d is None else int(d) for d in spec["shape"][1:])
    dims = tuple(int(d) for d in x.shape)
    expected = f"expected {spec['expected']}"
    channel_less = shape[-1] == 1 and len(dims) == len(shape)  # (n, h, w): Keras adds the channel
    wanted = shape[:-1] if channel_less else shape
    if len(dims) != len(wanted) + 1 or any(want is not None and want != got for want, got in zip(wanted, dims[1:])):
        return f"input: received shape {dims}; {expected}"
    dtype = np.dtype(getattr(x.dtype, "as_numpy_dtype", x.dtype))
    if dtype.kind not in "uif":
        return f"input: received dtype {dtype}; {expected}"
    if not dims[0] or not int(np.prod(dims)):
        return None
    values = np.asarray(x)
    low, high = float(np.min(values)), float(np.max(values))
    top = float(spec["value_range"][1])
    if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-6 or high > top * (1 + 1e-6):
        return f"input: received values {low:g} to {high:g}; {expected}"
    if dtype.kind == "f" and top > 1 and 0 < high <= 1:  # (the commonest slip: images already divided by the top)
        return f"input: received values {low:g} to {high:g}, as if scaled to 0-1 (multiply by {top:g}); {expected}"
    return None


class CheckedKerasModel:
    """The logged Keras model behind ``mlflow.pyfunc``: predictions are those of
    ``mlflow.keras.load_model(uri).predict``, for input the model takes."""

    def __init__(self, model, spec: Mapping[str, Any] | None):
        self.model = model
        self.spec = spec

    def get_raw_model(self):
        return self.model

    def predict(self, data, params=None):
        if hasattr(data, "to_numpy") and not isinstance(data, np.ndarray):  # a pandas frame
            data = data.to_numpy()
        x = np.asarray(data)
        if self.spec is not None:
            problem = input_problem(x, self.spec)
            if problem is not None:
                raise ValueError(problem)
        import keras

        return keras.ops.convert_to_numpy(self.model.predict(x, verbose=0))


def _load_pyfunc(path: str) -> CheckedKerasModel:
    """Called by ``mlflow.pyfunc.load_model`` with the model's folder."""
    import mlflow.keras
    from mlflow.models import Model

    root = path if os.path.isfile(os.path.join(path, "MLmodel")) else os.path.dirname(path)
    spec = (Model.load(os.path.join(root, "MLmodel")).metadata or {}).get("input")
    return CheckedKerasModel(mlflow.keras.load_model(root), spec)

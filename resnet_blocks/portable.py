"""A copy of a built ResNet made of standard Keras layers only, sharing nothing but values.

Our two custom layers are optimisations or conveniences: ``FusedBatchNormalization`` is
Keras's ``BatchNormalization`` computed by a TensorFlow kernel, and ``SubsampleChannelPad``
(the option-A shortcut) is a strided subsample plus zero channels. A model that contains them
loads only where ``resnet_blocks`` is importable (and, for the fused layer, on TensorFlow). The
copy made here replaces them with the standard layers that compute the same function, with
the same weights, so a saved model loads with plain Keras on any backend.
"""

from __future__ import annotations

import keras
from keras import layers

from resnet_blocks.layers import FusedBatchNormalization, SubsampleChannelPad


def _pad_as_standard_layers(layer: SubsampleChannelPad) -> keras.Sequential:
    """``SubsampleChannelPad`` as stock layers: a 1x1 max-pool with the stride keeps pixels
    ``0, s, 2s, ...``; the zero channels are a 3-D zero padding of a trailing unit axis."""
    shape = tuple(layer.input.shape[1:])
    first, second = layer.pad_channels // 2, layer.pad_channels - layer.pad_channels // 2
    stack: list[keras.layers.Layer] = [keras.Input(shape)]
    if layer.stride > 1:
        stack.append(layers.MaxPooling2D(1, strides=layer.stride, data_format=layer.data_format))
    out = layer.compute_output_shape((None, *shape))[1:]
    if layer.data_format == "channels_last":
        sub = (out[0], out[1], shape[2], 1)
        pad = ((0, 0), (0, 0), (first, second))
    else:
        sub = (shape[0], out[1], out[2], 1)
        pad = ((first, second), (0, 0), (0, 0))
    stack += [layers.Reshape(sub), layers.ZeroPadding3D(pad, data_format="channels_last"), layers.Reshape(out)]
    return keras.Sequential(stack, name=layer.name)


def _standard_layer(layer):
    if isinstance(layer, FusedBatchNormalization):
        return layers.BatchNormalization.from_config(layer.get_config())
    if isinstance(layer, SubsampleChannelPad):
        return _pad_as_standard_layers(layer)
    return layer.__class__.from_config(layer.get_config())


def standard_layers_copy(model: keras.Model) -> keras.Model:
    """A functional copy of ``model`` in which our custom layers are replaced by standard
    Keras layers computing the same outputs; weights are copied by layer name.

    Layers of user plugin blocks are cloned as they are: a model using them still needs
    their code to load."""
    copy = keras.models.clone_model(model, clone_function=_standard_layer)
    for layer in model.layers:
        if layer.weights:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy

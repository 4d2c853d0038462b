"""Our custom Keras layers: the zero-pad shortcut's channel pad and the fused batch norm.

Importing this module imports Keras (and TensorFlow on its backend); the build context
blocks use is :mod:`resnet_blocks.context`, which imports Keras only when it builds.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
else:  # FusedBatchNormalization is Keras's BatchNormalization there
    tf = None


@keras.saving.register_keras_serializable(package="resnet_blocks")
class SubsampleChannelPad(layers.Layer):
    """Option-A shortcut: strided spatial subsampling, then zero channels appended.

    Parameter free. Subsampling keeps pixels ``0, stride, 2*stride, ...`` which gives
    ``ceil(size / stride)`` outputs, the same size as a fixed-padded strided 3x3 conv.
    """

    def __init__(self, stride: int, pad_channels: int, data_format: str = "channels_last", **kwargs: Any):
        super().__init__(**kwargs)
        self.stride = int(stride)
        self.pad_channels = int(pad_channels)
        self.data_format = data_format

    def call(self, x):
        s = self.stride
        if self.data_format == "channels_last":
            x = x[:, ::s, ::s, :]
            pads = [[0, 0], [0, 0], [0, 0], [self.pad_channels // 2, self.pad_channels - self.pad_channels // 2]]
        else:
            x = x[:, :, ::s, ::s]
            pads = [[0, 0], [self.pad_channels // 2, self.pad_channels - self.pad_channels // 2], [0, 0], [0, 0]]
        return keras.ops.pad(x, pads)

    def compute_output_shape(self, input_shape):
        def sub(n):
            return None if n is None else -(-n // self.stride)

        b, a1, a2, a3 = input_shape
        if self.data_format == "channels_last":
            return (b, sub(a1), sub(a2), None if a3 is None else a3 + self.pad_channels)
        return (b, None if a1 is None else a1 + self.pad_channels, sub(a2), sub(a3))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "stride": self.stride,
            "pad_channels": self.pad_channels,
            "data_format": self.data_format,
        }


@keras.saving.register_keras_serializable(package="resnet_blocks")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras's ``BatchNormalization``, computed by TensorFlow's fused batch-norm kernel.

    Keras 3 normalises with separate moments, subtract, scale and shift ops (and upcasts
    bfloat16 to float32 around them); ``FusedBatchNormV3`` does the forward pass in one kernel
    and the backward pass in another, which trains ResNet-20 and ResNet-50 1.2-1.4x faster on
    CPU (``benchmarks/throughput.py``). Same weights, same moving-average update (without
    Bessel's correction, as Keras), so a checkpoint loads into either layer. Inputs it cannot
    fuse (not 4-D channels-last, masks, renorm, synchronized), and every input on the JAX and
    PyTorch backends, take Keras's path: a model saved on one backend loads on another.
    """

    def _fusable(self, inputs, mask) -> bool:
        if tf is None:
            return False
        rank = len(inputs.shape)
        axis = self.axis if self.axis >= 0 else self.axis + rank
        return (
            rank == 4
            and axis == 3
            and mask is None
            and not self.renorm
            and not self.synchronized
            and inputs.dtype in (tf.float32, tf.float16, tf.bfloat16)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones((channels,), tf.float32)
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros((channels,), tf.float32)
        training = bool(training and self.trainable)  # a frozen layer normalises with its moving statistics
        empty = tf.constant([], tf.float32)  # training: the kernel computes the batch statistics
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=gamma,
            offset=beta,
            mean=empty if training else tf.convert_to_tensor(self.moving_mean),
            variance=empty if training else tf.convert_to_tensor(self.moving_variance),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=training,
        )
        if training:
            # The kernel returns the unbiased batch variance; Keras averages the biased one.
            count = tf.cast(tf.size(inputs, out_type=tf.int64) // channels, tf.float32)
            variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

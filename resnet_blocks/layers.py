"""Shared building pieces: the build context every block uses, and our one custom layer.

Everything blocks have in common (fixed padding, conv/BN arguments, naming, shortcut choice)
lives here so block bodies stay short and cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
else:  # FusedBatchNormalization is Keras's BatchNormalization there
    tf = None

from resnet_blocks.errors import SpecError
from resnet_blocks.registry import get_shortcut


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


@dataclass(frozen=True)
class BuildContext:
    """What every block and shortcut needs besides its own arguments.

    Blocks call these helpers instead of creating Keras layers with their own arguments, so
    padding, batch-norm settings, data format and layer names are the same everywhere.
    """

    data_format: str = "channels_last"
    shortcut_name: str = "projection"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    kernel_initializer: str = "he_normal"
    subsample_shortcut: bool = False  # stride_position='last': a stride-only change subsamples
    fused_norm: bool = True  # FusedBatchNormalization instead of Keras's BatchNormalization

    @property
    def channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def channels(self, x) -> int:
        return int(x.shape[self.channel_axis])

    def conv(self, x, filters: int, kernel_size: int, stride: int = 1, *, name: str):
        """Bias-free conv. Strided convs pad a fixed ``(k-1)//2`` on each side first.

        Fixed symmetric padding makes the output ``ceil(size / stride)`` for odd and even
        inputs alike ("same" padding would pad asymmetrically, depending on the input size).
        """
        if stride > 1 and kernel_size > 1:
            pad = (kernel_size - 1) // 2
            x = layers.ZeroPadding2D(
                ((pad, kernel_size - 1 - pad), (pad, kernel_size - 1 - pad)),
                data_format=self.data_format,
                name=f"{name}_pad",
            )(x)
            padding = "valid"
        else:
            padding = "same" if kernel_size > 1 else "valid"
        return layers.Conv2D(
            filters,
            kernel_size,
            strides=stride,
            padding=padding,
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            data_format=self.data_format,
            name=name,
        )(x)

    def norm(self, x, *, name: str):
        norm_layer = FusedBatchNormalization if self.fused_norm else layers.BatchNormalization
        return norm_layer(axis=self.channel_axis, momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name)(x)

    def relu(self, x, *, name: str):
        return layers.Activation("relu", name=name)(x)

    def add(self, tensors, *, name: str):
        return layers.Add(name=name)(list(tensors))

    def avg_pool(self, x, stride: int, *, name: str):
        """``stride`` x ``stride`` average pooling; "same" padding gives ``ceil(size / stride)``,
        the size of the strided residual branch."""
        pool = layers.AveragePooling2D(stride, strides=stride, padding="same", data_format=self.data_format, name=name)
        return pool(x)

    def subsample_pad(self, x, stride: int, extra: int, *, name: str):
        """Every ``stride``-th pixel, then ``extra`` zero channels (:class:`SubsampleChannelPad`)."""
        return SubsampleChannelPad(stride, extra, self.data_format, name=name)(x)

    def shortcut(self, x, filters: int, stride: int, *, name: str, norm: bool):
        """Identity when the shape is unchanged, else the configured shortcut."""
        if stride == 1 and self.channels(x) == filters:
            return x
        if self.subsample_shortcut and self.channels(x) == filters:
            return layers.MaxPooling2D(1, strides=stride, data_format=self.data_format, name=f"{name}_subsample")(x)
        entry = get_shortcut(self.shortcut_name)
        return entry.fn(x, filters=filters, stride=stride, name=name, ctx=self, norm=norm)

    def shape_change_error(self, x, filters: int, stride: int, *, cannot: str = "change shape") -> SpecError:
        """The error a shortcut raises for a shape change it cannot make."""
        return SpecError(
            "shortcut",
            self.shortcut_name,
            f"a shortcut that can {cannot.replace('cannot ', '')}: '{self.shortcut_name}' cannot {cannot}, but a "
            f"block goes from {self.channels(x)} to {filters} channels with stride {stride} "
            "(projection and avg_down handle any change)",
        )

"""Shared building pieces: the build context every block uses, and our one custom layer.

Everything blocks have in common (fixed padding, conv/BN arguments, naming, shortcut choice)
lives here so block bodies stay short and cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

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
        return layers.BatchNormalization(
            axis=self.channel_axis, momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name
        )(x)

    def relu(self, x, *, name: str):
        return layers.Activation("relu", name=name)(x)

    def add(self, tensors, *, name: str):
        return layers.Add(name=name)(list(tensors))

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

"""The build context every block and shortcut uses.

Everything blocks have in common (fixed padding, conv/BN arguments, naming, shortcut choice)
lives here so block bodies stay short and cannot drift apart. Keras is imported when a layer
is made, not when this module is: registering blocks, validating specs and counting their
cost (:mod:`resnet_blocks.spec_cost`) need no Keras backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_blocks.errors import SpecError
from resnet_blocks.registry import get_shortcut


def _layers():
    from keras import layers

    return layers


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
            x = _layers().ZeroPadding2D(
                ((pad, kernel_size - 1 - pad), (pad, kernel_size - 1 - pad)),
                data_format=self.data_format,
                name=f"{name}_pad",
            )(x)
            padding = "valid"
        else:
            padding = "same" if kernel_size > 1 else "valid"
        return _layers().Conv2D(
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
        from resnet_blocks.layers import FusedBatchNormalization

        norm_layer = FusedBatchNormalization if self.fused_norm else _layers().BatchNormalization
        return norm_layer(axis=self.channel_axis, momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name)(x)

    def relu(self, x, *, name: str):
        return _layers().Activation("relu", name=name)(x)

    def add(self, tensors, *, name: str):
        return _layers().Add(name=name)(list(tensors))

    def avg_pool(self, x, stride: int, *, name: str):
        """``stride`` x ``stride`` average pooling; "same" padding gives ``ceil(size / stride)``,
        the size of the strided residual branch."""
        pool = _layers().AveragePooling2D(
            stride, strides=stride, padding="same", data_format=self.data_format, name=name
        )
        return pool(x)

    def subsample_pad(self, x, stride: int, extra: int, *, name: str):
        """Every ``stride``-th pixel, then ``extra`` zero channels (:class:`SubsampleChannelPad`)."""
        from resnet_blocks.layers import SubsampleChannelPad

        return SubsampleChannelPad(stride, extra, self.data_format, name=name)(x)

    def shortcut(self, x, filters: int, stride: int, *, name: str, norm: bool):
        """Identity when the shape is unchanged, else the configured shortcut."""
        if stride == 1 and self.channels(x) == filters:
            return x
        if self.subsample_shortcut and self.channels(x) == filters:
            return _layers().MaxPooling2D(1, strides=stride, data_format=self.data_format, name=f"{name}_subsample")(x)
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

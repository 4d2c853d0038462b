"""Assemble a validated :class:`ResNetSpec` into a ``keras.Model``."""

from __future__ import annotations

import functools

import keras
from keras import layers

from resnet_blocks.context import BuildContext
from resnet_blocks.errors import SpecError
from resnet_blocks.registry import get_block
from resnet_blocks.spec import ResNetSpec


@functools.cache
def _channels_first_supported() -> bool:
    """Whether this device runs NCHW convolutions (TensorFlow's CPU kernels do not)."""
    try:
        x = keras.ops.zeros((1, 1, 4, 4))
        keras.ops.convert_to_numpy(keras.ops.conv(x, keras.ops.zeros((3, 3, 1, 1)), data_format="channels_first"))
        return True
    except Exception:  # noqa: BLE001 - any backend failure means "not supported here"
        return False


def build_resnet(spec: ResNetSpec, *, name: str = "resnet") -> keras.Model:
    """Build the network described by ``spec``.

    Layer names are deterministic: ``stem_conv``, ``stage2_block1_conv1``,
    ``stage2_block1_shortcut_conv``, ``head_dense``, ... so weights and per-stage costs can be
    addressed by name.
    """
    if not isinstance(spec, ResNetSpec):
        raise TypeError(f"build_resnet expects a ResNetSpec; received {type(spec).__name__}")
    if spec.data_format == "channels_first" and not _channels_first_supported():
        raise SpecError(
            "data_format",
            spec.data_format,
            "'channels_last' on this device (its convolution kernels do not support channels_first; use a GPU for NCHW)",
        )
    ctx = BuildContext(
        data_format=spec.data_format,
        shortcut_name=spec.shortcut,
        bn_momentum=spec.bn_momentum,
        bn_epsilon=spec.bn_epsilon,
        subsample_shortcut=spec.stride_position == "last",
        fused_norm=spec.fused_norm,
    )
    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = inputs
    if spec.data_format == "channels_first":
        x = layers.Permute((3, 1, 2), name="to_channels_first")(x)

    x = _stem(x, spec, ctx)
    for i, stage in enumerate(spec.stages, start=1):
        entry = get_block(stage.block)
        kwargs = spec.block_args_for(stage.block)
        width = spec.stage_width(stage)
        strided = 1 if spec.stride_position == "first" else stage.depth
        for j in range(1, stage.depth + 1):
            x = entry.fn(
                x, width=width, stride=stage.stride if j == strided else 1, name=f"stage{i}_block{j}", ctx=ctx, **kwargs
            )

    if spec.use_final_norm_act:
        x = ctx.relu(ctx.norm(x, name="head_bn"), name="head_relu")
    x = layers.GlobalAveragePooling2D(data_format=spec.data_format, name="head_pool")(x)
    if spec.dropout > 0:
        x = layers.Dropout(spec.dropout, name="head_dropout")(x)
    x = layers.Dense(spec.num_classes, name="head_dense")(x)
    # Softmax in float32 keeps probabilities stable under mixed precision.
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _stem(x, spec: ResNetSpec, ctx: BuildContext):
    stem = spec.stem
    if stem.kind == "imagenet":
        x = ctx.conv(x, stem.width, 7, 2, name="stem_conv")
    else:
        x = ctx.conv(x, stem.width, 3, 1, name="stem_conv")
    if spec.stem_norm_act:
        x = ctx.relu(ctx.norm(x, name="stem_bn"), name="stem_relu")
    if stem.kind == "imagenet":
        x = layers.ZeroPadding2D(((1, 1), (1, 1)), data_format=spec.data_format, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, data_format=spec.data_format, name="stem_pool")(x)
    return x

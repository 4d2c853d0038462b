"""A user-defined block: pre-activation basic block with squeeze-and-excitation (Hu et al. 2018).

Use it by naming the module in the config, e.g.
``python -m experiments.describe model.plugins=[examples.se_block] model.block=se_regular``.
"""

from keras import layers

from resnet_blocks import register_block


@register_block("se_regular", preactivation=True)
def se_regular(x, *, width, stride, name, ctx, reduction: int = 4):
    """Pre-activation basic block whose residual branch is rescaled per channel (SE)."""
    y = ctx.relu(ctx.norm(x, name=f"{name}_bn1"), name=f"{name}_relu1")
    # A shape-changing shortcut takes the pre-activated input; identity takes x itself.
    reshape = stride != 1 or ctx.channels(x) != width
    shortcut = ctx.shortcut(y if reshape else x, width, stride, name=f"{name}_shortcut", norm=False)
    y = ctx.conv(y, width, 3, stride, name=f"{name}_conv1")
    y = ctx.relu(ctx.norm(y, name=f"{name}_bn2"), name=f"{name}_relu2")
    y = ctx.conv(y, width, 3, 1, name=f"{name}_conv2")
    # Squeeze to one number per channel, excite to a gate in (0, 1) per channel.
    s = layers.GlobalAveragePooling2D(data_format=ctx.data_format, name=f"{name}_se_pool")(y)
    s = layers.Dense(max(1, width // reduction), activation="relu", name=f"{name}_se_reduce")(s)
    s = layers.Dense(width, activation="sigmoid", name=f"{name}_se_expand")(s)
    shape = (1, 1, width) if ctx.data_format == "channels_last" else (width, 1, 1)
    s = layers.Reshape(shape, name=f"{name}_se_shape")(s)
    y = layers.Multiply(name=f"{name}_se_scale")([y, s])
    return ctx.add([shortcut, y], name=f"{name}_add")

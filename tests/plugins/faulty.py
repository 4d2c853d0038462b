"""Fault-injecting blocks for failure-path tests.

``nan_regular`` makes the activations non-finite, so the training loss (or, where fused
batch norm + ReLU zeroes NaN activations, the batch-norm statistics) becomes NaN.
``crash_regular`` raises while the model is built when its width is ``crash_width``.
"""

from keras import layers

from resnet_blocks import register_block
from resnet_blocks.blocks import regular


@register_block("nan_regular", preactivation=True)
def nan_regular(x, *, width, stride, name, ctx):
    """A regular block whose output is scaled by infinity (loss becomes NaN)."""
    y = regular(x, width=width, stride=stride, name=name, ctx=ctx)
    return layers.Rescaling(float("inf"), name=f"{name}_inf")(y)


@register_block("crash_regular", preactivation=True)
def crash_regular(x, *, width, stride, name, ctx, crash_width: int = 8):
    """A regular block that raises for one width (a trial that fails)."""
    if width == crash_width:
        raise RuntimeError(f"injected failure for width {width}")
    return regular(x, width=width, stride=stride, name=name, ctx=ctx)


@register_block("eager_variable_regular", preactivation=True)
def eager_variable_regular(x, *, width, stride, name, ctx):
    """A regular block that creates a weight from an array while the model is built (which
    Keras's StatelessScope, where weights are only declared, refuses)."""
    import keras
    import numpy as np

    keras.Variable(np.ones((width,), "float32"), trainable=False, name=f"{name}_buffer")
    return regular(x, width=width, stride=stride, name=name, ctx=ctx)

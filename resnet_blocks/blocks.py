"""The shipped residual blocks.

All four are one residual unit (:func:`residual_unit`) with a different list of convolutions
and a different ordering of BN/ReLU, so their bodies cannot drift apart. Their bodies use only
the context's helpers, so the same functions count them from a spec (``cost=True``, see
:mod:`resnet_blocks.spec_cost`).
"""

from __future__ import annotations

from collections.abc import Sequence

from resnet_blocks.context import BuildContext
from resnet_blocks.errors import SpecError
from resnet_blocks.registry import register_block

ConvPlan = Sequence[tuple[int, int, int]]  # (kernel_size, filters, stride) per conv


def residual_unit(x, convs: ConvPlan, *, preactivation: bool, name: str, ctx: BuildContext):
    """One residual unit: ``convs`` in sequence plus a shortcut.

    Pre-activation (He et al. 2016): BN-ReLU before each conv, no activation after the add;
    a shape-changing shortcut takes the pre-activated input. Post-activation (He et al.
    2015): conv-BN(-ReLU) and ReLU after the add; the shortcut takes the raw input.
    """
    out_channels = convs[-1][1]
    stride = max(s for _, _, s in convs)
    reshape = stride != 1 or ctx.channels(x) != out_channels
    y = x
    if preactivation:
        y = ctx.relu(ctx.norm(y, name=f"{name}_bn1"), name=f"{name}_relu1")
        shortcut = ctx.shortcut(y if reshape else x, out_channels, stride, name=f"{name}_shortcut", norm=False)
        for i, (kernel, filters, s) in enumerate(convs, start=1):
            if i > 1:
                y = ctx.relu(ctx.norm(y, name=f"{name}_bn{i}"), name=f"{name}_relu{i}")
            y = ctx.conv(y, filters, kernel, s, name=f"{name}_conv{i}")
        return ctx.add([shortcut, y], name=f"{name}_add")

    shortcut = ctx.shortcut(x, out_channels, stride, name=f"{name}_shortcut", norm=True)
    for i, (kernel, filters, s) in enumerate(convs, start=1):
        y = ctx.norm(ctx.conv(y, filters, kernel, s, name=f"{name}_conv{i}"), name=f"{name}_bn{i}")
        if i < len(convs):
            y = ctx.relu(y, name=f"{name}_relu{i}")
    y = ctx.add([shortcut, y], name=f"{name}_add")
    return ctx.relu(y, name=f"{name}_out")


def _basic(width: int, stride: int) -> ConvPlan:
    return [(3, width, stride), (3, width, 1)]


def _bottleneck(width: int, stride: int, expansion: int) -> ConvPlan:
    # Stride on the 3x3 conv (ResNet v1.5 / torchvision), not on the first 1x1.
    if not isinstance(expansion, int) or isinstance(expansion, bool) or expansion < 1:
        raise SpecError("block_args.expansion", expansion, "an integer >= 1")
    return [(1, width, 1), (3, width, stride), (1, width * expansion, 1)]


@register_block("regular", preactivation=True, cost=True)
def regular(x, *, width: int, stride: int, name: str, ctx: BuildContext):
    """Pre-activation basic block: BN-ReLU-conv3x3(stride), BN-ReLU-conv3x3(1), + shortcut."""
    return residual_unit(x, _basic(width, stride), preactivation=True, name=name, ctx=ctx)


@register_block("bottleneck", preactivation=True, cost=True)
def bottleneck(x, *, width: int, stride: int, name: str, ctx: BuildContext, expansion: int = 4):
    """Pre-activation bottleneck: 1x1(width), 3x3(width, stride), 1x1(width * expansion)."""
    return residual_unit(x, _bottleneck(width, stride, expansion), preactivation=True, name=name, ctx=ctx)


@register_block("regular_v1", cost=True)
def regular_v1(x, *, width: int, stride: int, name: str, ctx: BuildContext):
    """Post-activation basic block (He et al. 2015): conv-BN-ReLU, conv-BN, add, ReLU."""
    return residual_unit(x, _basic(width, stride), preactivation=False, name=name, ctx=ctx)


@register_block("bottleneck_v1", cost=True)
def bottleneck_v1(x, *, width: int, stride: int, name: str, ctx: BuildContext, expansion: int = 4):
    """Post-activation bottleneck (He et al. 2015), stride on the 3x3 conv."""
    return residual_unit(x, _bottleneck(width, stride, expansion), preactivation=False, name=name, ctx=ctx)

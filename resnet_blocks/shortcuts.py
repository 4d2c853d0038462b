"""Shortcut connections. ``identity`` is used automatically wherever shapes match; the
others are used where a block changes width or resolution. Each uses only the context's
helpers, so the same functions count them from a spec (``cost=True``)."""

from __future__ import annotations

from resnet_blocks.context import BuildContext
from resnet_blocks.registry import register_shortcut


@register_shortcut("identity", cost=True)
def identity(x, *, filters: int, stride: int, name: str, ctx: BuildContext, norm: bool):
    """x itself; cannot change shape (choose another shortcut for stages that do)."""
    if stride == 1 and ctx.channels(x) == filters:
        return x
    raise ctx.shape_change_error(x, filters, stride)


@register_shortcut("projection", cost=True)
def projection(x, *, filters: int, stride: int, name: str, ctx: BuildContext, norm: bool):
    """Option B: 1x1 conv with stride (plus BN in post-activation blocks)."""
    y = ctx.conv(x, filters, 1, stride, name=f"{name}_conv")
    return ctx.norm(y, name=f"{name}_bn") if norm else y


@register_shortcut("zero_pad", cost=True)
def zero_pad(x, *, filters: int, stride: int, name: str, ctx: BuildContext, norm: bool):
    """Option A: strided subsampling plus zero channels; no parameters."""
    extra = filters - ctx.channels(x)
    if extra < 0:
        raise ctx.shape_change_error(x, filters, stride, cannot="reduce channels")
    return ctx.subsample_pad(x, stride, extra, name=f"{name}_pad")


@register_shortcut("avg_down", cost=True)
def avg_down(x, *, filters: int, stride: int, name: str, ctx: BuildContext, norm: bool):
    """ResNet-D: 2x2 average pool (when strided), then 1x1 conv (plus BN post-activation)."""
    if stride > 1:
        x = ctx.avg_pool(x, stride, name=f"{name}_pool")
    y = ctx.conv(x, filters, 1, 1, name=f"{name}_conv")
    return ctx.norm(y, name=f"{name}_bn") if norm else y

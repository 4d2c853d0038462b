"""Parameters, MACs and activations of a :class:`ResNetSpec`, counted from the spec alone.

No Keras model is built: the builder's plan is replayed on feature-map sizes by a
:class:`CostContext`, which offers the helpers of :class:`~resnet_blocks.context.BuildContext`
(``conv``, ``norm``, ``relu``, ``add``, ``shortcut``, ``avg_pool``, ``subsample_pad``) and
counts what each layer they would create holds and computes. A block or shortcut says how it
is counted when it is registered (``cost=``); the shipped ones are counted by their own
functions, whose bodies use only those helpers. :func:`spec_cost` equals
``model_cost(build_resnet(spec))`` field for field (tested over every preset and a random grid
of specs); for a block or shortcut registered without a cost function it returns None, and
only a build can count the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resnet_blocks.context import BuildContext
from resnet_blocks.cost import ModelCost, StageCost
from resnet_blocks.registry import get_block, get_shortcut
from resnet_blocks.spec import ResNetSpec

_GROUP = re.compile(r"^(stem|stage\d+|head)")  # (as resnet_blocks.cost groups a model's layers)


@dataclass(frozen=True)
class FeatureMap:
    """What a :class:`CostContext` passes between layers instead of a tensor: one image's
    feature map, whatever the data format."""

    height: int
    width: int
    channels: int

    @property
    def elements(self) -> int:
        return self.height * self.width * self.channels


class Uncounted(Exception):
    """A block or shortcut without a cost function, or a combination only a build can judge."""


class CostContext:
    """The builder's context for counting: each helper returns the output's
    :class:`FeatureMap` and adds its layer's weights, MACs (batch 1) and output elements."""

    def __init__(self, spec: ResNetSpec):
        self.data_format = spec.data_format
        self.shortcut_name = spec.shortcut
        self.subsample_shortcut = spec.stride_position == "last"
        self.trainable = self.non_trainable = self.macs = self.activations = 0
        self._groups: dict[str, dict] = {}

    channel_axis = BuildContext.channel_axis
    shape_change_error = BuildContext.shape_change_error  # (the same message as a build's)

    def channels(self, x: FeatureMap) -> int:
        return x.channels

    def layer(self, name: str, out, *, trainable: int = 0, non_trainable: int = 0, macs: int = 0):
        """Count one layer named ``name`` whose output is ``out`` (a FeatureMap, or a vector length)."""
        elements = out.elements if isinstance(out, FeatureMap) else int(out)
        self.trainable += trainable
        self.non_trainable += non_trainable
        self.macs += macs
        self.activations += elements
        if m := _GROUP.match(name):
            g = self._groups.setdefault(m.group(1), {"params": 0, "macs": 0, "shape": None})
            g["params"] += trainable + non_trainable
            g["macs"] += macs
            g["shape"] = self._shape(out)
        return out

    def _shape(self, out) -> tuple[int, ...]:
        if not isinstance(out, FeatureMap):
            return (int(out),)
        if self.data_format == "channels_last":
            return (out.height, out.width, out.channels)
        return (out.channels, out.height, out.width)

    def stages(self) -> list[StageCost]:
        return [StageCost(name, g["shape"], g["params"], g["macs"]) for name, g in self._groups.items()]

    # -- the BuildContext helpers -----------------------------------------------------------
    def conv(self, x: FeatureMap, filters: int, kernel_size: int, stride: int = 1, *, name: str) -> FeatureMap:
        if stride > 1 and kernel_size > 1:  # fixed padding first (BuildContext.conv)
            grow = kernel_size - 1
            x = self.layer(f"{name}_pad", FeatureMap(x.height + grow, x.width + grow, x.channels))
            out = FeatureMap(_valid(x.height, kernel_size, stride), _valid(x.width, kernel_size, stride), filters)
        else:
            out = FeatureMap(_ceil(x.height, stride), _ceil(x.width, stride), filters)
        weights = kernel_size * kernel_size * x.channels * filters
        return self.layer(name, out, trainable=weights, macs=out.height * out.width * weights)

    def norm(self, x: FeatureMap, *, name: str) -> FeatureMap:
        # gamma and beta are trained; the moving mean and variance are not.
        return self.layer(name, x, trainable=2 * x.channels, non_trainable=2 * x.channels)

    def relu(self, x: FeatureMap, *, name: str) -> FeatureMap:
        return self.layer(name, x)

    def add(self, tensors, *, name: str) -> FeatureMap:
        tensors = list(tensors)
        if any(t != tensors[0] for t in tensors):
            raise Uncounted(f"{name}: inputs of different shapes {tensors} (a build raises the real error)")
        return self.layer(name, tensors[0])

    def avg_pool(self, x: FeatureMap, stride: int, *, name: str) -> FeatureMap:
        return self.layer(name, FeatureMap(_ceil(x.height, stride), _ceil(x.width, stride), x.channels))

    def subsample_pad(self, x: FeatureMap, stride: int, extra: int, *, name: str) -> FeatureMap:
        return self.layer(name, FeatureMap(_ceil(x.height, stride), _ceil(x.width, stride), x.channels + extra))

    def shortcut(self, x: FeatureMap, filters: int, stride: int, *, name: str, norm: bool) -> FeatureMap:
        """As :meth:`BuildContext.shortcut`, counted by the shortcut's cost function."""
        if stride == 1 and x.channels == filters:
            return x
        if self.subsample_shortcut and x.channels == filters:  # a 1x1 max-pool with stride
            return self.layer(f"{name}_subsample", FeatureMap(_ceil(x.height, stride), _ceil(x.width, stride), filters))
        entry = get_shortcut(self.shortcut_name)
        if entry.cost is None:
            raise Uncounted(f"shortcut {entry.name!r} has no cost function")
        return entry.cost(x, filters=filters, stride=stride, name=name, ctx=self, norm=norm)


def _ceil(size: int, stride: int) -> int:
    return -(-size // stride)


def _valid(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def spec_cost(spec: ResNetSpec) -> ModelCost | None:
    """``model_cost(build_resnet(spec))`` without building the model; None when a block or
    shortcut of ``spec`` has no cost function (build the model to count it).

    Raises what the build would raise for a combination its blocks refuse (a SpecError, e.g.
    a zero-pad shortcut asked to reduce channels). The device check of ``channels_first``
    is the builder's alone: counting does not run anything on a device.
    """
    if not isinstance(spec, ResNetSpec):
        raise TypeError(f"spec_cost expects a ResNetSpec; received {type(spec).__name__}")
    if not all(get_block(s.block).cost is not None for s in spec.stages):
        return None
    ctx = CostContext(spec)
    h, w, c = spec.input_shape
    x = FeatureMap(h, w, c)
    if spec.data_format == "channels_first":
        x = ctx.layer("to_channels_first", x)
    try:
        x = _stem(x, spec, ctx)
        for i, stage in enumerate(spec.stages, start=1):
            counter = get_block(stage.block).cost
            kwargs = spec.block_args_for(stage.block)
            width = spec.stage_width(stage)
            strided = 1 if spec.stride_position == "first" else stage.depth
            for j in range(1, stage.depth + 1):
                stride = stage.stride if j == strided else 1
                x = counter(x, width=width, stride=stride, name=f"stage{i}_block{j}", ctx=ctx, **kwargs)
    except Uncounted:
        return None
    if spec.use_final_norm_act:
        x = ctx.relu(ctx.norm(x, name="head_bn"), name="head_relu")
    ctx.layer("head_pool", x.channels)
    if spec.dropout > 0:
        ctx.layer("head_dropout", x.channels)
    n = spec.num_classes
    ctx.layer("head_dense", n, trainable=x.channels * n + n, macs=x.channels * n)
    ctx.layer("predictions", n)
    return ModelCost(
        trainable_params=ctx.trainable,
        non_trainable_params=ctx.non_trainable,
        macs=ctx.macs,
        stages=ctx.stages(),
        activations=ctx.activations,
    )


def _stem(x: FeatureMap, spec: ResNetSpec, ctx: CostContext) -> FeatureMap:
    imagenet = spec.stem.kind == "imagenet"
    x = ctx.conv(x, spec.stem.width, 7 if imagenet else 3, 2 if imagenet else 1, name="stem_conv")
    if spec.stem_norm_act:
        x = ctx.relu(ctx.norm(x, name="stem_bn"), name="stem_relu")
    if imagenet:  # ZeroPadding2D(1), then a 3x3 max-pool with stride 2
        x = ctx.layer("stem_pool_pad", FeatureMap(x.height + 2, x.width + 2, x.channels))
        x = ctx.layer("stem_pool", FeatureMap(_valid(x.height, 3, 2), _valid(x.width, 3, 2), x.channels))
    return x

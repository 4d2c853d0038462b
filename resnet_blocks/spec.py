"""Typed, validated architecture specs.

Validation lives here, so the builder can trust a spec: every invalid value raises
:class:`SpecError` naming the field, the value received and what is allowed.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resnet_blocks.errors import SpecError
from resnet_blocks.registry import BLOCKS, SHORTCUTS, get_block

STEMS = ("imagenet", "cifar")
DATA_FORMATS = ("channels_last", "channels_first")
STRIDES = (1, 2)
STRIDE_POSITIONS = ("first", "last")
# Arguments every block function receives from the builder (not from block_args).
_BUILDER_ARGS = {"x", "width", "stride", "name", "ctx"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise SpecError(name, value, f"an integer >= {minimum}")


def _one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(name, value, "one of " + ", ".join(repr(a) for a in allowed))


@dataclass(frozen=True)
class StemSpec:
    """The layers before the first stage.

    ``imagenet``: 7x7/2 conv plus 3x3/2 max-pool (4x downsampling); ``cifar``: one 3x3 conv.
    BN-ReLU follows the conv when the first block is post-activation.
    """

    kind: str = "cifar"
    width: int = 16

    @property
    def downsampling(self) -> int:
        return 4 if self.kind == "imagenet" else 1


@dataclass(frozen=True)
class StageSpec:
    """``depth`` blocks of type ``block``; the first has ``stride``, the rest stride 1
    (the last one instead with ``ResNetSpec.stride_position='last'``).

    ``width`` is the block's width argument: output channels for basic blocks, the bottleneck
    width for bottlenecks (whose output is ``width * expansion``).
    """

    block: str
    depth: int
    width: int
    stride: int = 1


@dataclass(frozen=True)
class ResNetSpec:
    """A whole network: stem, stages, shortcut, head, input and numerics.

    ``final_norm_act`` (v2's BN-ReLU before pooling) defaults to whether the last stage's
    block is pre-activation. ``input_shape`` is always (height, width, channels); with
    ``data_format='channels_first'`` the model transposes once after the input.

    ``stride_position``: ``first`` (default; He et al., torchvision, the published counts)
    puts each stage's stride on its first block; ``last`` puts it on its last block, whose
    shortcut then subsamples (a 1x1 max-pool with stride) where only the resolution changes,
    as TF-slim's and ``keras.applications``' ResNet V2 do.

    ``fused_norm`` (default true) computes batch norm with TensorFlow's fused kernel
    (``FusedBatchNormalization``, same weights and updates as Keras's layer, faster);
    false uses ``keras.layers.BatchNormalization``.
    """

    stages: tuple[StageSpec, ...]
    num_classes: int
    input_shape: tuple[int, int, int]
    stem: StemSpec = field(default_factory=StemSpec)
    shortcut: str = "projection"
    width_multiplier: float = 1.0
    final_norm_act: bool | None = None
    data_format: str = "channels_last"
    block_args: Mapping[str, Any] = field(default_factory=dict)
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dropout: float = 0.0
    stride_position: str = "first"
    fused_norm: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if isinstance(self.input_shape, (list, tuple)):
            object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if not isinstance(self.block_args, Mapping) and self.block_args is not None:
            raise SpecError("block_args", self.block_args, "a mapping of block argument names to values")
        object.__setattr__(self, "block_args", dict(self.block_args or {}))
        self._validate()

    # -- derived values -------------------------------------------------------------------
    def stage_width(self, stage: StageSpec) -> int:
        """The stage's width after the width multiplier (at least 1)."""
        return max(1, int(round(stage.width * self.width_multiplier)))

    @property
    def stem_norm_act(self) -> bool:
        return not get_block(self.stages[0].block).preactivation

    @property
    def use_final_norm_act(self) -> bool:
        if self.final_norm_act is not None:
            return self.final_norm_act
        return get_block(self.stages[-1].block).preactivation

    def feature_sizes(self) -> list[tuple[int, int]]:
        """(height, width) after the stem and after each stage."""
        h, w = self.input_shape[0], self.input_shape[1]
        h, w = math.ceil(h / self.stem.downsampling), math.ceil(w / self.stem.downsampling)
        sizes = [(h, w)]
        for stage in self.stages:
            h, w = math.ceil(h / stage.stride), math.ceil(w / stage.stride)
            sizes.append((h, w))
        return sizes

    def block_args_for(self, block: str) -> dict[str, Any]:
        """The subset of ``block_args`` that ``block`` accepts."""
        params = inspect.signature(get_block(block).fn).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return dict(self.block_args)
        return {k: v for k, v in self.block_args.items() if k in params}

    # -- validation -----------------------------------------------------------------------
    def _validate(self) -> None:
        if not self.stages:
            raise SpecError("stages", list(self.stages), "at least one stage")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, StageSpec):
                raise SpecError(f"stages[{i}]", stage, "a StageSpec(block, depth, width, stride)")
            if not isinstance(stage.block, str) or stage.block not in BLOCKS:
                raise SpecError(f"stages[{i}].block", stage.block, "a registered block: " + ", ".join(BLOCKS.names()))
            _check_int(f"stages[{i}].depth", stage.depth, 1)
            _check_int(f"stages[{i}].width", stage.width, 1)
            if not _is_int(stage.stride) or stage.stride not in STRIDES:
                raise SpecError(f"stages[{i}].stride", stage.stride, "1 or 2")
        _one_of("shortcut", self.shortcut, SHORTCUTS.names())
        if not isinstance(self.stem, StemSpec):
            raise SpecError("stem", self.stem, "a StemSpec(kind, width)")
        _one_of("stem.kind", self.stem.kind, STEMS)
        _check_int("stem.width", self.stem.width, 1)
        _check_int("num_classes", self.num_classes, 2)
        if (
            not isinstance(self.input_shape, tuple)
            or len(self.input_shape) != 3
            or not all(_is_int(v) and v >= 1 for v in self.input_shape)
        ):
            shown = list(self.input_shape) if isinstance(self.input_shape, tuple) else self.input_shape
            raise SpecError("input_shape", shown, "[height, width, channels], each an integer >= 1")
        if not _is_number(self.width_multiplier) or self.width_multiplier <= 0:
            raise SpecError("width_multiplier", self.width_multiplier, "a number > 0")
        if self.final_norm_act is not None and not isinstance(self.final_norm_act, bool):
            raise SpecError("final_norm_act", self.final_norm_act, "true, false or null (automatic)")
        _one_of("data_format", self.data_format, DATA_FORMATS)
        _one_of("stride_position", self.stride_position, STRIDE_POSITIONS)
        if not _is_number(self.bn_momentum) or not 0.0 <= self.bn_momentum < 1.0:
            raise SpecError("bn_momentum", self.bn_momentum, "a number in [0, 1)")
        if not _is_number(self.bn_epsilon) or not self.bn_epsilon > 0:
            raise SpecError("bn_epsilon", self.bn_epsilon, "a number > 0")
        if not isinstance(self.fused_norm, bool):
            raise SpecError("fused_norm", self.fused_norm, "true or false")
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise SpecError("dropout", self.dropout, "a number in [0, 1)")
        self._validate_block_args()
        self._validate_resolution()

    def _validate_block_args(self) -> None:
        accepted: set[str] = set()
        open_ended = False
        for name in {s.block for s in self.stages}:
            params = inspect.signature(get_block(name).fn).parameters
            open_ended |= any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
            accepted |= {
                p for p, v in params.items() if p not in _BUILDER_ARGS and v.kind is not inspect.Parameter.VAR_KEYWORD
            }
        for key, value in self.block_args.items():
            if not open_ended and key not in accepted:
                allowed = ", ".join(sorted(accepted)) or "none (these blocks take no extra arguments)"
                raise SpecError(f"block_args.{key}", value, f"arguments of the selected blocks: {allowed}")

    def _validate_resolution(self) -> None:
        h, w = self.input_shape[0], self.input_shape[1]
        if self.stem.kind == "imagenet" and min(h, w) < 4:
            raise SpecError(
                "input_shape", list(self.input_shape), "at least 4x4 for the 'imagenet' stem (it downsamples 4x)"
            )
        size = min(self.feature_sizes()[0])
        for i, stage in enumerate(self.stages):
            if stage.stride == 2 and size < 2:
                raise SpecError(
                    f"stages[{i}].stride",
                    stage.stride,
                    f"1 here: the feature map is already 1x1 before stage {i + 1}, so a stride-2 "
                    "stage would shrink it below 1x1 (use fewer stride-2 stages or a larger input)",
                )
            size = math.ceil(size / stage.stride)

    # -- construction from flat lists (the config form) ----------------------------------
    @classmethod
    def from_lists(
        cls, *, block: str, depths: Sequence[int], widths: Sequence[int], strides: Sequence[int], **options: Any
    ) -> ResNetSpec:
        """Build a spec from per-stage lists, as configs and sweeps write it.

        ``options``: ``stage_blocks`` (one block name per stage instead of ``block``), ``stem``
        (``"cifar"``), ``stem_width`` (16), ``field_prefix`` (``""``: errors name the list
        entries, ``depths[1]``, prefixed with it, for example ``"model."``), and any other
        :class:`ResNetSpec` field (``num_classes``, ``input_shape``, ``shortcut``, ...).
        """
        stage_blocks: Sequence[str] | None = options.pop("stage_blocks", None)
        stem: str = options.pop("stem", "cifar")
        stem_width: int = options.pop("stem_width", 16)
        field_prefix: str = options.pop("field_prefix", "")
        kwargs = options
        p = field_prefix
        for key, values in (("depths", depths), ("widths", widths), ("strides", strides)):
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise SpecError(p + key, values, "a non-empty list with one entry per stage")
        n = len(depths)
        for key, values in (("widths", widths), ("strides", strides)):
            if len(values) != n:
                raise SpecError(p + key, list(values), f"{n} entries, one per stage (depths has {n})")
        if stage_blocks is not None and len(stage_blocks) != n:
            raise SpecError(p + "stage_blocks", list(stage_blocks), f"null or {n} block names, one per stage")
        blocks = list(stage_blocks) if stage_blocks is not None else [block] * n
        try:
            return cls(
                stages=tuple(StageSpec(b, d, w, s) for b, d, w, s in zip(blocks, depths, widths, strides)),
                stem=StemSpec(stem, stem_width),
                **kwargs,
            )
        except SpecError as err:
            raise SpecError(p + _flat_field(err.field, stage_blocks is not None), err.value, err.allowed) from None


_STAGE_FIELD = re.compile(r"^stages\[(\d+)\]\.(\w+)$")


def _flat_field(name: str, per_stage_blocks: bool) -> str:
    """Map a spec field (``stages[1].depth``) to its flat-list name (``depths[1]``)."""
    m = _STAGE_FIELD.match(name)
    if m:
        i, attr = m.groups()
        if attr == "block":
            return f"stage_blocks[{i}]" if per_stage_blocks else "block"
        return {"depth": "depths", "width": "widths", "stride": "strides"}[attr] + f"[{i}]"
    if name.startswith("stem."):
        return {"stem.kind": "stem", "stem.width": "stem_width"}.get(name, name)
    return name

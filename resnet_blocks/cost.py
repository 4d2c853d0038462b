"""Parameter and multiply-accumulate counts, for the model and per stage.

MACs count convolutions and dense layers at batch size 1 (the convention of published
ResNet figures); batch norm, activations, pooling and additions are not counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

_GROUP = re.compile(r"^(stem|stage\d+|head)")


@dataclass(frozen=True)
class StageCost:
    name: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelCost:
    trainable_params: int
    non_trainable_params: int
    macs: int
    stages: list[StageCost] = field(default_factory=list)
    activations: int = 0  # output elements of every layer for one image (what training keeps per image)

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    def to_dict(self) -> dict:
        return asdict(self)


def _count(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


def layer_macs(layer) -> int:
    """MACs of one Keras layer at batch size 1 (0 for layers that are not conv or dense)."""
    import keras

    if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
        out = layer.output.shape
        kh, kw, cin_per_group, cout = layer.kernel.shape
        spatial = out[1] * out[2] if layer.data_format == "channels_last" else out[2] * out[3]
        return int(spatial * kh * kw * cin_per_group * cout)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = layer.output.shape
        kh, kw, cin, mult = layer.kernel.shape
        spatial = out[1] * out[2] if layer.data_format == "channels_last" else out[2] * out[3]
        return int(spatial * kh * kw * cin * mult)
    if isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        positions = math.prod(d for d in layer.input.shape[1:-1] if d)
        return int(positions * fan_in * units)
    return 0


def model_cost(model) -> ModelCost:
    """Totals plus one row per group of layers (``stem``, ``stage1``..., ``head``)."""
    groups: dict[str, dict] = {}
    for layer in model.layers:
        m = _GROUP.match(layer.name)
        if not m:
            continue
        g = groups.setdefault(m.group(1), {"params": 0, "macs": 0, "shape": None})
        g["params"] += _count(layer.weights)
        g["macs"] += layer_macs(layer)
        g["shape"] = tuple(layer.output.shape[1:])
    stages = [StageCost(name, tuple(int(d) for d in g["shape"]), g["params"], g["macs"]) for name, g in groups.items()]
    return ModelCost(
        trainable_params=_count(model.trainable_weights),
        non_trainable_params=_count(model.non_trainable_weights),
        macs=sum(layer_macs(layer) for layer in model.layers),
        stages=stages,
        activations=sum(_output_elements(layer) for layer in model.layers),
    )


def _output_elements(layer) -> int:
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return 0
    try:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
    except (AttributeError, ValueError):  # a layer used more than once, or not called
        return 0
    return int(sum(math.prod(d for d in t.shape[1:] if d) for t in outputs))


def format_cost_table(cost: ModelCost) -> str:
    """A plain-text table: one row per stage, then the totals."""
    rows = [("group", "output shape", "params", "MACs")]
    for s in cost.stages:
        rows.append((s.name, "x".join(str(d) for d in s.output_shape), f"{s.params:,}", f"{s.macs:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"trainable params:     {cost.trainable_params:,}")
    lines.append(f"non-trainable params: {cost.non_trainable_params:,}")
    lines.append(f"MACs (batch 1):       {cost.macs:,} ({cost.macs / 1e9:.3f} G)")
    return "\n".join(lines)

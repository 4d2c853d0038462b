"""Every invalid architecture value raises SpecError naming the field, the value and what is allowed."""

import keras
import pytest

from resnet_blocks import ResNetSpec, SpecError, StageSpec, StemSpec, available_blocks, build_resnet

BASE = dict(
    block="regular",
    depths=[1, 1],
    widths=[4, 8],
    strides=[1, 2],
    num_classes=3,
    input_shape=(8, 8, 1),
    stem_width=4,
)

# (id, overrides of BASE, field, received value as printed, hint of what is allowed)
FLAT_CASES = [
    ("depth-zero", {"depths": [0, 1]}, "model.depths[0]", "0", "an integer >= 1"),
    ("depth-negative", {"depths": [1, -2]}, "model.depths[1]", "-2", "an integer >= 1"),
    ("depth-bool", {"depths": [True, 1]}, "model.depths[0]", "True", "an integer >= 1"),
    ("depth-float", {"depths": [1.5, 1]}, "model.depths[0]", "1.5", "an integer >= 1"),
    ("depths-empty", {"depths": []}, "model.depths", "[]", "a non-empty list"),
    ("depths-string", {"depths": "11"}, "model.depths", "'11'", "a non-empty list"),
    ("stride-three", {"strides": [1, 3]}, "model.strides[1]", "3", "1 or 2"),
    ("stride-zero", {"strides": [0, 2]}, "model.strides[0]", "0", "1 or 2"),
    ("widths-too-short", {"widths": [4]}, "model.widths", "[4]", "2 entries, one per stage"),
    ("strides-too-long", {"strides": [1, 2, 2]}, "model.strides", "[1, 2, 2]", "2 entries, one per stage"),
    ("stage-blocks-length", {"stage_blocks": ["regular"]}, "model.stage_blocks", "['regular']", "2 block names"),
    ("width-zero", {"widths": [4, 0]}, "model.widths[1]", "0", "an integer >= 1"),
    ("unknown-block", {"block": "resnext"}, "model.block", "'resnext'", "a registered block: bottleneck"),
    (
        "unknown-stage-block",
        {"stage_blocks": ["regular", "resnext"]},
        "model.stage_blocks[1]",
        "'resnext'",
        "a registered block",
    ),
    ("unknown-shortcut", {"shortcut": "conv"}, "model.shortcut", "'conv'", "'projection'"),
    ("width-multiplier-zero", {"width_multiplier": 0}, "model.width_multiplier", "0", "a number > 0"),
    ("width-multiplier-negative", {"width_multiplier": -0.5}, "model.width_multiplier", "-0.5", "a number > 0"),
    ("width-multiplier-nan", {"width_multiplier": float("nan")}, "model.width_multiplier", "nan", "a number > 0"),
    ("num-classes-one", {"num_classes": 1}, "model.num_classes", "1", "an integer >= 2"),
    ("input-shape-two-entries", {"input_shape": (8, 8)}, "model.input_shape", "[8, 8]", "[height, width, channels]"),
    ("input-shape-zero", {"input_shape": (8, 0, 1)}, "model.input_shape", "[8, 0, 1]", "each an integer >= 1"),
    ("stem-kind", {"stem": "foo"}, "model.stem", "'foo'", "one of 'imagenet', 'cifar'"),
    ("stem-width-zero", {"stem_width": 0}, "model.stem_width", "0", "an integer >= 1"),
    ("data-format-nchw", {"data_format": "nchw"}, "model.data_format", "'nchw'", "'channels_last', 'channels_first'"),
    (
        "too-many-stride-two-stages",
        {"depths": [1] * 5, "widths": [4] * 5, "strides": [1, 2, 2, 2, 2]},
        "model.strides[4]",
        "2",
        "already 1x1 before stage 5",
    ),
    (
        "imagenet-stem-on-2x2",
        {"stem": "imagenet", "input_shape": (2, 2, 3), "strides": [1, 1]},
        "model.input_shape",
        "[2, 2, 3]",
        "at least 4x4 for the 'imagenet' stem",
    ),
    (
        "unknown-block-arg",
        {"block": "bottleneck", "block_args": {"groups": 32}},
        "model.block_args.groups",
        "32",
        "arguments of the selected blocks: expansion",
    ),
    (
        "block-arg-for-block-without-args",
        {"block_args": {"expansion": 2}},
        "model.block_args.expansion",
        "2",
        "none (these blocks take no extra arguments)",
    ),
    ("bn-momentum-too-big", {"bn_momentum": 1.5}, "model.bn_momentum", "1.5", "a number in [0, 1)"),
    ("bn-momentum-negative", {"bn_momentum": -0.1}, "model.bn_momentum", "-0.1", "a number in [0, 1)"),
    ("bn-epsilon-zero", {"bn_epsilon": 0.0}, "model.bn_epsilon", "0.0", "a number > 0"),
    ("dropout-one", {"dropout": 1.0}, "model.dropout", "1.0", "a number in [0, 1)"),
    ("final-norm-act-string", {"final_norm_act": "yes"}, "model.final_norm_act", "'yes'", "true, false or null"),
    ("fused-norm-string", {"fused_norm": "yes"}, "model.fused_norm", "'yes'", "true or false"),
]


def assert_spec_error(err: SpecError, field: str, value: str, allowed: str) -> None:
    message = str(err)
    assert err.field == field
    assert message.startswith(f"{field}: received {value}; allowed: "), message
    assert allowed in message, message


@pytest.mark.parametrize(
    ("overrides", "field", "value", "allowed"), [c[1:] for c in FLAT_CASES], ids=[c[0] for c in FLAT_CASES]
)
def test_from_lists_rejects(overrides, field, value, allowed):
    with pytest.raises(SpecError) as info:
        ResNetSpec.from_lists(**{**BASE, **overrides}, field_prefix="model.")
    assert_spec_error(info.value, field, value, allowed)


def test_from_lists_without_prefix_names_bare_fields():
    with pytest.raises(SpecError) as info:
        ResNetSpec.from_lists(**{**BASE, "depths": [1, 0]})
    assert_spec_error(info.value, "depths[1]", "0", "an integer >= 1")


def test_unknown_block_lists_every_registered_block(temp_block):
    with pytest.raises(SpecError) as info:
        ResNetSpec.from_lists(**{**BASE, "block": "resnext"}, field_prefix="model.")
    for name in available_blocks():
        assert name in info.value.allowed
    assert temp_block in info.value.allowed


def stages(*specs):
    return tuple(StageSpec(*s) for s in specs)


GOOD_STAGES = stages(("regular", 1, 4, 1), ("regular", 1, 8, 2))
SPEC_BASE = dict(stages=GOOD_STAGES, num_classes=3, input_shape=(8, 8, 1), stem=StemSpec("cifar", 4))

# The dataclass API names the spec's own fields (stages[i].depth, stem.kind, ...).
DATACLASS_CASES = [
    ("depth-zero", {"stages": stages(("regular", 0, 4, 1))}, "stages[0].depth", "0", "an integer >= 1"),
    (
        "depth-negative",
        {"stages": stages(("regular", 1, 4, 1), ("regular", -1, 8, 2))},
        "stages[1].depth",
        "-1",
        ">= 1",
    ),
    ("depth-bool", {"stages": stages(("regular", False, 4, 1))}, "stages[0].depth", "False", "an integer >= 1"),
    ("stride-three", {"stages": stages(("regular", 1, 4, 3))}, "stages[0].stride", "3", "1 or 2"),
    ("stride-bool", {"stages": stages(("regular", 1, 4, True))}, "stages[0].stride", "True", "1 or 2"),
    ("no-stages", {"stages": ()}, "stages", "[]", "at least one stage"),
    ("stage-not-a-spec", {"stages": ({"block": "regular"},)}, "stages[0]", "{'block': 'regular'}", "a StageSpec"),
    ("unknown-block", {"stages": stages(("resnext", 1, 4, 1))}, "stages[0].block", "'resnext'", "a registered block"),
    ("width-zero", {"stages": stages(("regular", 1, 0, 1))}, "stages[0].width", "0", "an integer >= 1"),
    ("unknown-shortcut", {"shortcut": "conv"}, "shortcut", "'conv'", "'zero_pad'"),
    ("stem-not-a-spec", {"stem": "cifar"}, "stem", "'cifar'", "a StemSpec"),
    ("stem-kind", {"stem": StemSpec("foo", 4)}, "stem.kind", "'foo'", "'imagenet', 'cifar'"),
    ("stem-width", {"stem": StemSpec("cifar", -1)}, "stem.width", "-1", "an integer >= 1"),
    ("num-classes-one", {"num_classes": 1}, "num_classes", "1", "an integer >= 2"),
    ("input-shape-two-entries", {"input_shape": [8, 8]}, "input_shape", "[8, 8]", "[height, width, channels]"),
    ("input-shape-zero", {"input_shape": (0, 8, 1)}, "input_shape", "[0, 8, 1]", "each an integer >= 1"),
    ("width-multiplier-zero", {"width_multiplier": 0.0}, "width_multiplier", "0.0", "a number > 0"),
    ("width-multiplier-bool", {"width_multiplier": True}, "width_multiplier", "True", "a number > 0"),
    ("data-format-nchw", {"data_format": "nchw"}, "data_format", "'nchw'", "'channels_first'"),
    (
        "too-many-stride-two-stages",
        {"stages": stages(*[("regular", 1, 4, 2)] * 4)},
        "stages[3].stride",
        "2",
        "1 here",
    ),
    (
        "imagenet-stem-on-2x2",
        {"stem": StemSpec("imagenet", 4), "input_shape": (2, 2, 3), "stages": stages(("regular", 1, 4, 1))},
        "input_shape",
        "[2, 2, 3]",
        "at least 4x4",
    ),
    ("unknown-block-arg", {"block_args": {"groups": 2}}, "block_args.groups", "2", "none"),
    ("bn-momentum-too-big", {"bn_momentum": 1.5}, "bn_momentum", "1.5", "a number in [0, 1)"),
]


@pytest.mark.parametrize(
    ("overrides", "field", "value", "allowed"), [c[1:] for c in DATACLASS_CASES], ids=[c[0] for c in DATACLASS_CASES]
)
def test_dataclass_api_rejects(overrides, field, value, allowed):
    with pytest.raises(SpecError) as info:
        ResNetSpec(**{**SPEC_BASE, **overrides})
    assert_spec_error(info.value, field, value, allowed)


def test_spec_error_is_a_value_error_with_attributes():
    err = SpecError("model.depths[0]", 0, "an integer >= 1")
    assert isinstance(err, ValueError)
    assert (err.field, err.value, err.allowed) == ("model.depths[0]", 0, "an integer >= 1")
    assert str(err) == "model.depths[0]: received 0; allowed: an integer >= 1"


def test_valid_specs_construct():
    spec = ResNetSpec.from_lists(**BASE, field_prefix="model.")
    assert spec == ResNetSpec(**SPEC_BASE)
    assert spec.stages == GOOD_STAGES
    # Exactly as many stride-2 stages as the input allows: 8 -> 4 -> 2 -> 1.
    ResNetSpec.from_lists(**{**BASE, "depths": [1] * 4, "widths": [4] * 4, "strides": [1, 2, 2, 2]})
    ResNetSpec.from_lists(**{**BASE, "stem": "imagenet", "input_shape": (4, 4, 3), "strides": [1, 1]})


def test_errors_are_raised_before_any_keras_layer_is_created(monkeypatch):
    created = []
    original = keras.layers.Layer.__init__

    def recording_init(self, *args, **kwargs):
        created.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__init__", recording_init)
    for _, overrides, *_ in FLAT_CASES:
        with pytest.raises(SpecError):
            build_resnet(ResNetSpec.from_lists(**{**BASE, **overrides}, field_prefix="model."))
    for _, overrides, *_ in DATACLASS_CASES:
        with pytest.raises(SpecError):
            build_resnet(ResNetSpec(**{**SPEC_BASE, **overrides}))
    assert created == []
    # The recorder works: a valid spec does create layers.
    build_resnet(ResNetSpec.from_lists(**BASE))
    assert "Conv2D" in created


# Wrong *types* through the Python API (configs are typed by the Hydra schema) are SpecErrors
# too, not TypeErrors from a comparison or len().
TYPE_CASES = [
    ("bn-momentum-string", {"bn_momentum": "0.9"}, "bn_momentum"),
    ("dropout-none", {"dropout": None}, "dropout"),
    ("input-shape-int", {"input_shape": 32}, "input_shape"),
    ("block-unhashable", {"stages": stages((["regular"], 1, 4, 1))}, "stages[0].block"),
]


@pytest.mark.parametrize(("overrides", "field"), [c[1:] for c in TYPE_CASES], ids=[c[0] for c in TYPE_CASES])
def test_wrong_types_raise_spec_error(overrides, field):
    with pytest.raises(SpecError) as info:
        ResNetSpec(**{**SPEC_BASE, **overrides})
    assert info.value.field == field


def test_stride_position_must_be_first_or_last():
    with pytest.raises(SpecError) as err:
        ResNetSpec.from_lists(block="regular", depths=[1], widths=[8], strides=[2], num_classes=2,
                              input_shape=(8, 8, 1), stride_position="middle", field_prefix="model.")  # fmt: skip
    assert err.value.field == "model.stride_position" and "'first', 'last'" in str(err.value)

"""Costs counted from the spec equal those of the built model, field for field."""

from __future__ import annotations

import random

import keras
import pytest
from hydra import compose, initialize_config_dir

from resnet_blocks import (
    CostContext,
    RegistryError,
    ResNetSpec,
    SpecError,
    build_resnet,
    model_cost,
    register_shortcut,
    spec_cost,
)
from resnet_blocks.blocks import residual_unit
from resnet_blocks.registry import BLOCKS, SHORTCUTS
from tests.conftest import CONF_DIR
from tests.resnet_blocks.test_cost import PRESET_PINS, preset_overrides

BLOCK_NAMES = ["regular", "bottleneck", "regular_v1", "bottleneck_v1"]
SHORTCUT_NAMES = ["identity", "projection", "zero_pad", "avg_down"]


def built_cost(spec: ResNetSpec):
    """``model_cost(build_resnet(spec))``, declared without allocating weights (as a dry build)."""
    with keras.StatelessScope(initialize_variables=False):
        return model_cost(build_resnet(spec))


@pytest.fixture
def any_device(monkeypatch):
    """channels_first models build symbolically on any device (only running them needs NCHW kernels)."""
    monkeypatch.setattr("resnet_blocks.builder._channels_first_supported", lambda: True)


@pytest.mark.parametrize("preset", sorted(PRESET_PINS))
def test_every_preset_counts_as_built(preset, describe_overrides):
    overrides = preset_overrides(preset)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("describe", overrides=overrides)
    from experiments.config import model_spec
    from experiments.data import data_signature

    shape, classes = data_signature(cfg.data)
    counted = spec_cost(model_spec(cfg.model, input_shape=shape, num_classes=classes)).to_dict()
    built = describe_overrides(*overrides)  # (the model built, as describe prints it)
    counted["stages"] = [{**s, "output_shape": list(s["output_shape"])} for s in counted["stages"]]
    assert counted == {k: v for k, v in built.items() if k not in ("model", "input_shape", "num_classes")}
    assert counted["trainable_params"] == PRESET_PINS[preset]


def random_spec_kwargs(rng: random.Random) -> dict:
    n = rng.randint(1, 4)
    blocks = [rng.choice(BLOCK_NAMES) for _ in range(n)]
    kwargs = dict(
        block=blocks[0],
        stage_blocks=blocks if rng.random() < 0.5 else None,
        depths=[rng.randint(1, 3) for _ in range(n)],
        widths=[rng.choice([1, 2, 3, 4, 6, 8, 12, 16]) for _ in range(n)],
        strides=[rng.choice([1, 2]) for _ in range(n)],
        shortcut=rng.choice(SHORTCUT_NAMES),
        stem=rng.choice(["cifar", "imagenet"]),
        stem_width=rng.choice([1, 3, 4, 8, 16]),
        width_multiplier=rng.choice([0.3, 0.5, 1.0, 1.0, 1.5, 2.0]),
        stride_position=rng.choice(["first", "last"]),
        final_norm_act=rng.choice([None, None, True, False]),
        dropout=rng.choice([0.0, 0.0, 0.3]),
        num_classes=rng.randint(2, 12),
        input_shape=(rng.randint(4, 37), rng.randint(4, 37), rng.randint(1, 4)),
        data_format=rng.choice(["channels_last", "channels_last", "channels_first"]),
        fused_norm=rng.random() < 0.5,
    )
    used = kwargs["stage_blocks"] or [kwargs["block"]]
    if any(b.startswith("bottleneck") for b in used) and rng.random() < 0.7:
        kwargs["block_args"] = {"expansion": rng.choice([1, 2, 4])}
    return kwargs


def test_random_specs_count_as_built(any_device):
    """A seeded random grid over blocks, shortcuts, stems, widths, multipliers, stride
    positions, block arguments, heads, input shapes and data formats: the counts (and the
    refusals: identity or zero-pad shortcuts asked for what they cannot do) are the build's."""
    rng = random.Random(24)
    checked = refused = 0
    while checked < 300:
        try:
            spec = ResNetSpec.from_lists(**random_spec_kwargs(rng))
        except SpecError:  # (refused by the spec itself: a feature map below 1x1)
            continue
        try:
            built = built_cost(spec)
        except SpecError as err:
            with pytest.raises(SpecError) as counted:
                spec_cost(spec)
            assert str(counted.value) == str(err), spec
            refused += 1
        else:
            assert spec_cost(spec) == built, spec
        checked += 1
        if checked % 50 == 0:
            keras.backend.clear_session()
    assert 20 <= refused <= 150  # the grid reaches both outcomes


def test_a_zero_pad_shortcut_asked_to_reduce_channels_is_refused_as_the_build_does():
    spec = ResNetSpec.from_lists(
        block="bottleneck", depths=[1, 1], widths=[16, 8], strides=[1, 2], shortcut="zero_pad",
        num_classes=10, input_shape=(8, 8, 1),
    )  # fmt: skip
    with pytest.raises(SpecError) as built:
        build_resnet(spec)
    with pytest.raises(SpecError) as counted:
        spec_cost(spec)
    assert str(counted.value) == str(built.value) and "cannot reduce channels" in str(counted.value)


def test_a_block_without_a_cost_function_is_left_to_a_build(temp_block):
    spec = ResNetSpec.from_lists(
        block=temp_block, depths=[1, 1], widths=[4, 8], strides=[1, 2], num_classes=3, input_shape=(8, 8, 1)
    )
    assert BLOCKS.get(temp_block).cost is None
    assert spec_cost(spec) is None
    from experiments.run import dry_build

    assert dry_build(spec) == built_cost(spec)  # (built: the fallback)
    assert dry_build(spec, build=False) is None


def test_a_block_declared_countable_is_counted_by_its_own_function():
    @BLOCKS.register("tmp_counted_block", preactivation=True, cost=True)
    def _tmp(x, *, width, stride, name, ctx, kernel: int = 3):
        """A temporary single-conv block, using only the context's helpers."""
        return residual_unit(x, [(kernel, width, stride)], preactivation=True, name=name, ctx=ctx)

    try:
        spec = ResNetSpec.from_lists(
            block="tmp_counted_block", depths=[2, 1], widths=[4, 8], strides=[1, 2], num_classes=3,
            input_shape=(9, 9, 2), block_args={"kernel": 5}, shortcut="avg_down",
        )  # fmt: skip
        assert BLOCKS.get("tmp_counted_block").cost is _tmp
        assert spec_cost(spec) == built_cost(spec)
    finally:
        BLOCKS.unregister("tmp_counted_block")


def test_a_shortcut_without_a_cost_function_is_left_to_a_build_only_where_it_is_used():
    @register_shortcut("tmp_uncounted_shortcut")
    def _tmp(x, *, filters, stride, name, ctx, norm):
        """A projection, registered without a cost function."""
        return ctx.conv(x, filters, 1, stride, name=f"{name}_conv")

    try:
        common = dict(block="regular", depths=[1, 1], strides=[1, 2], shortcut="tmp_uncounted_shortcut",
                      num_classes=3, input_shape=(8, 8, 1), stem_width=4)  # fmt: skip
        assert spec_cost(ResNetSpec.from_lists(widths=[4, 8], **common)) is None  # a shape change: needed
        same = ResNetSpec.from_lists(**{**common, "strides": [1, 1]}, widths=[4, 4])  # never needed
        assert spec_cost(same) == built_cost(same)
    finally:
        SHORTCUTS.unregister("tmp_uncounted_shortcut")


def test_a_cost_that_is_not_callable_is_refused():
    with pytest.raises(RegistryError, match="cost received 'yes'"):
        BLOCKS.register("tmp_bad_cost", cost="yes")(lambda x, *, width, stride, name, ctx: x)
    assert "tmp_bad_cost" not in BLOCKS


def test_the_context_offers_the_build_contexts_helpers():
    """A block written with BuildContext's helpers runs on a CostContext: none may be missing."""
    from resnet_blocks.context import BuildContext

    spec = ResNetSpec.from_lists(
        block="regular", depths=[1], widths=[4], strides=[1], num_classes=3, input_shape=(8, 8, 1)
    )
    numerics = {"kernel_initializer", "bn_momentum", "bn_epsilon", "fused_norm"}  # (they change no count)
    helpers = {n for n in vars(BuildContext) if not n.startswith("_")} - numerics
    assert helpers <= set(dir(CostContext(spec))), helpers - set(dir(CostContext(spec)))

"""Every registered block with every registered shortcut builds, trains and is named sanely.

The block/shortcut lists are read at collection time, so a newly registered block (a plugin
imported before collection, or one added to ``resnet_blocks.blocks``) is tested too.
"""

import math

import keras
import numpy as np
import pytest

from resnet_blocks import ResNetSpec, SpecError, available_blocks, available_shortcuts, build_resnet, get_block
from resnet_blocks.builder import _channels_first_supported

BLOCK_NAMES = available_blocks()
SHORTCUT_NAMES = available_shortcuts()
SHAPE_CHANGING = [s for s in SHORTCUT_NAMES if s != "identity"]
POST_ACTIVATION = [b for b in BLOCK_NAMES if not get_block(b).preactivation]
PRE_ACTIVATION = [b for b in BLOCK_NAMES if get_block(b).preactivation]


def tiny_spec(block="regular", shortcut="projection", **overrides) -> ResNetSpec:
    kwargs = dict(
        block=block,
        depths=[1, 1],
        widths=[4, 8],
        strides=[1, 2],
        shortcut=shortcut,
        num_classes=3,
        input_shape=(9, 9, 1),
        stem_width=4,
    )
    kwargs.update(overrides)
    return ResNetSpec.from_lists(**kwargs)


def output_channels(block: str, width: int) -> int:
    """Output channels of one block of ``block`` at ``width`` (built, not assumed)."""
    model = build_resnet(tiny_spec(block, depths=[1], widths=[width], strides=[1], input_shape=(4, 4, 1)))
    return model.get_layer("stage1_block1_add").output.shape[-1]


def train_one_step(model: keras.Model, input_shape, num_classes: int = 3) -> float:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=8)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    return float(model.train_on_batch(x, y))


def weights_by_name(model: keras.Model) -> dict[str, np.ndarray]:
    return {w.path: np.array(w) for w in model.trainable_weights}


@pytest.mark.parametrize("shortcut", SHORTCUT_NAMES)
@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_block_with_shortcut_trains_one_step(block, shortcut):
    keras.utils.set_random_seed(0)
    spec = tiny_spec(block, shortcut)
    if shortcut == "identity":
        # Stage 2 changes channels and resolution (bottlenecks already change channels in
        # stage 1): identity cannot be the shortcut there.
        with pytest.raises(SpecError, match="shortcut") as info:
            build_resnet(spec)
        assert info.value.field == "shortcut"
        assert "'identity'" in str(info.value)
        assert "projection" in info.value.allowed  # names a shortcut that would work
        return
    model = build_resnet(spec)
    before = weights_by_name(model)
    loss = train_one_step(model, spec.input_shape)
    assert math.isfinite(loss)
    after = weights_by_name(model)
    assert before.keys() == after.keys()
    unchanged = [k for k in before if np.array_equal(before[k], after[k])]
    assert not unchanged, f"weights not updated by one SGD step: {unchanged}"
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_identity_shortcut_where_shapes_never_change(block):
    keras.utils.set_random_seed(0)
    # Every block keeps the stem's channel count and the resolution, so identity is valid.
    out = output_channels(block, 4)
    spec = tiny_spec(block, "identity", depths=[2, 1], widths=[4, 4], strides=[1, 1], stem_width=out)
    model = build_resnet(spec)
    assert not any("shortcut" in layer.name for layer in model.layers)
    loss = train_one_step(model, spec.input_shape)
    assert math.isfinite(loss)


@pytest.mark.parametrize("n", [7, 8, 9, 16, 17])
@pytest.mark.parametrize("shortcut", SHAPE_CHANGING)
@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_stride_two_gives_ceil_half_for_odd_and_even_sizes(block, shortcut, n):
    spec = tiny_spec(block, shortcut, depths=[1, 1, 1], widths=[4, 8, 8], strides=[1, 2, 2], input_shape=(n, n, 1))
    model = build_resnet(spec)
    half, quarter = math.ceil(n / 2), math.ceil(math.ceil(n / 2) / 2)
    assert model.get_layer("stage1_block1_add").output.shape[1:3] == (n, n)
    assert model.get_layer("stage2_block1_add").output.shape[1:3] == (half, half)
    assert model.get_layer("stage3_block1_add").output.shape[1:3] == (quarter, quarter)
    assert [s[:2] for s in spec.feature_sizes()] == [(n, n), (n, n), (half, half), (quarter, quarter)]


@pytest.mark.parametrize("n", [7, 8, 9, 224, 225])
def test_imagenet_stem_downsamples_by_four_with_ceil(n):
    spec = tiny_spec("regular_v1", stem="imagenet", depths=[1], widths=[4], strides=[1], input_shape=(n, n, 3))
    model = build_resnet(spec)
    size = math.ceil(math.ceil(n / 2) / 2)
    assert model.get_layer("stem_conv").output.shape[1:3] == (math.ceil(n / 2),) * 2
    assert model.get_layer("stem_pool").output.shape[1:3] == (size, size)


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_zero_pad_shortcut_has_no_parameters(block):
    model = build_resnet(tiny_spec(block, "zero_pad"))
    pads = [layer for layer in model.layers if layer.name.endswith("_shortcut_pad")]
    # Stage 2 always changes shape; bottlenecks also widen in stage 1.
    assert "stage2_block1_shortcut_pad" in [layer.name for layer in pads]
    assert all(layer.count_params() == 0 and not layer.weights for layer in pads)
    assert not [layer for layer in model.layers if "shortcut_conv" in layer.name or "shortcut_bn" in layer.name]


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros():
    model = build_resnet(tiny_spec("regular_v1", "zero_pad", input_shape=(8, 8, 1)))
    pad = model.get_layer("stage2_block1_shortcut_pad")
    x = np.arange(2 * 8 * 8 * 4, dtype="float32").reshape(2, 8, 8, 4)
    y = np.asarray(pad(x))
    assert y.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
    assert not y[..., :2].any() and not y[..., 6:].any()


@pytest.mark.parametrize("shortcut", ["projection", "avg_down"])
@pytest.mark.parametrize("block", POST_ACTIVATION)
def test_post_activation_shortcut_has_batch_norm(block, shortcut):
    model = build_resnet(tiny_spec(block, shortcut))
    assert isinstance(model.get_layer("stage2_block1_shortcut_bn"), keras.layers.BatchNormalization)
    # The shortcut takes the block's raw input (the previous block's output).
    conv = model.get_layer("stage2_block1_shortcut_conv")
    previous = model.get_layer("stage1_block1_out")
    source = conv.input if shortcut == "projection" else model.get_layer("stage2_block1_shortcut_pool").input
    assert source is previous.output


# The first layer of each shipped shape-changing shortcut in stage 2.
SHORTCUT_ENTRY_LAYER = {
    "projection": "stage2_block1_shortcut_conv",
    "avg_down": "stage2_block1_shortcut_pool",
    "zero_pad": "stage2_block1_shortcut_pad",
}


@pytest.mark.parametrize("shortcut", sorted(SHORTCUT_ENTRY_LAYER))
@pytest.mark.parametrize("block", PRE_ACTIVATION)
def test_pre_activation_shortcut_has_no_batch_norm_and_takes_preactivated_input(block, shortcut):
    model = build_resnet(tiny_spec(block, shortcut))
    names = [layer.name for layer in model.layers]
    assert not [n for n in names if n.endswith("shortcut_bn")]
    first = SHORTCUT_ENTRY_LAYER[shortcut]
    relu1 = model.get_layer("stage2_block1_relu1")
    assert model.get_layer(first).input is relu1.output
    # Same check through the functional graph's inbound node.
    (node,) = model.get_layer(first)._inbound_nodes
    assert [t._keras_history.operation.name for t in node.input_tensors] == ["stage2_block1_relu1"]


@pytest.mark.parametrize("block", PRE_ACTIVATION)
def test_pre_activation_identity_shortcut_takes_raw_input(block):
    model = build_resnet(tiny_spec(block, depths=[2, 1]))
    add = model.get_layer("stage1_block2_add")
    assert add.input[0] is model.get_layer("stage1_block1_add").output


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_layer_names_are_deterministic(block):
    spec = tiny_spec(block, "projection", depths=[2, 1])
    first = [layer.name for layer in build_resnet(spec).layers]
    second = [layer.name for layer in build_resnet(spec).layers]
    assert first == second
    for name in (
        "input",
        "stem_conv",
        "stage1_block1_conv1",
        "stage1_block2_conv2",
        "stage2_block1_conv1",
        "stage2_block1_shortcut_conv",
        "stage2_block1_add",
        "head_pool",
        "head_dense",
        "predictions",
    ):
        assert name in first
    assert len(set(first)) == len(first)


def test_pre_and_post_activation_stem_and_head():
    pre = [layer.name for layer in build_resnet(tiny_spec("regular")).layers]
    post = [layer.name for layer in build_resnet(tiny_spec("regular_v1")).layers]
    # Pre-activation: bare stem conv, BN-ReLU before pooling; post-activation the reverse.
    assert "stem_bn" not in pre and {"head_bn", "head_relu"} <= set(pre)
    assert {"stem_bn", "stem_relu"} <= set(post) and "head_bn" not in post
    assert "stage1_block1_out" in post and "stage1_block1_out" not in pre


@pytest.mark.parametrize("block", ["bottleneck", "bottleneck_v1"])
@pytest.mark.parametrize("expansion", [None, 1, 2])
def test_bottleneck_expansion_sets_output_channels(block, expansion):
    block_args = {} if expansion is None else {"expansion": expansion}
    model = build_resnet(tiny_spec(block, block_args=block_args))
    factor = 4 if expansion is None else expansion
    assert model.get_layer("stage1_block1_add").output.shape[-1] == 4 * factor
    assert model.get_layer("stage2_block1_add").output.shape[-1] == 8 * factor
    assert model.get_layer("stage2_block1_conv2").output.shape[-1] == 8  # the bottleneck width


def test_block_args_reach_only_blocks_that_accept_them():
    spec = tiny_spec("regular", stage_blocks=["regular", "bottleneck"], block_args={"expansion": 2})
    model = build_resnet(spec)
    assert model.get_layer("stage1_block1_add").output.shape[-1] == 4
    assert model.get_layer("stage2_block1_add").output.shape[-1] == 16


def test_width_multiplier_scales_every_stage():
    model = build_resnet(tiny_spec("regular", width_multiplier=1.5))
    assert model.get_layer("stage1_block1_add").output.shape[-1] == 6
    assert model.get_layer("stage2_block1_add").output.shape[-1] == 12


def test_temporary_block_builds(temp_block):
    model = build_resnet(tiny_spec(temp_block, block_args={"kernel": 1}))
    assert model.get_layer("stage1_block1_conv1").kernel.shape[:2] == (1, 1)
    assert "stage1_block1_conv2" not in [layer.name for layer in model.layers]


def test_channels_first():
    spec = tiny_spec("regular", data_format="channels_first")
    if _channels_first_supported():
        model = build_resnet(spec)
        assert model.get_layer("to_channels_first").output.shape[1:] == (1, 9, 9)
        assert model.get_layer("stage2_block1_add").output.shape[1:] == (8, 5, 5)
        assert model.output_shape == (None, 3)
    else:
        with pytest.raises(SpecError, match="data_format") as info:
            build_resnet(spec)
        assert info.value.field == "data_format"
        assert "'channels_first'" in str(info.value)
        assert "channels_last" in str(info.value)


def test_build_resnet_rejects_non_spec():
    with pytest.raises(TypeError, match="ResNetSpec"):
        build_resnet({"block": "regular"})

"""Saved models reload in a fresh process with safe_mode=True and compute the same outputs."""

import json

import keras
import numpy as np
import pytest

from resnet_blocks import ResNetSpec, SubsampleChannelPad, build_resnet

SHORTCUTS = ["zero_pad", "avg_down", "projection"]
INPUT_SHAPE = (15, 15, 2)  # odd, so every stride-2 stage exercises the ceil(n / 2) padding

# A fresh interpreter: only `import resnet_blocks` (registers SubsampleChannelPad), then load.
RELOAD = """
import json, sys
import numpy as np
import keras
import resnet_blocks  # noqa: F401
x = np.load(sys.argv[1])
for name in json.loads(sys.argv[2]):
    model = keras.saving.load_model(sys.argv[3] + "/" + name + ".keras", safe_mode=True)
    logits = keras.Model(model.input, model.get_layer("head_dense").output)
    np.save(sys.argv[3] + "/" + name + ".reloaded.npy", np.asarray(logits(x, training=False)))
    np.save(sys.argv[3] + "/" + name + ".reloaded_probs.npy", np.asarray(model(x, training=False)))
"""


def mixed_spec(shortcut: str) -> ResNetSpec:
    # Every shipped block type in one network, pre- and post-activation mixed. Channels never
    # shrink (4 -> 16 -> 32 -> 32) so zero_pad is valid everywhere.
    return ResNetSpec.from_lists(
        block="regular",
        stage_blocks=["regular", "bottleneck_v1", "bottleneck", "regular_v1"],
        depths=[1, 2, 1, 1],
        widths=[4, 4, 8, 32],
        strides=[1, 2, 2, 1],
        shortcut=shortcut,
        num_classes=5,
        input_shape=INPUT_SHAPE,
        stem_width=4,
    )


@pytest.fixture(scope="module")
def saved_and_reloaded(tmp_path_factory, run_python):
    """Build, train one step (so BN statistics move), save; then reload all in one child process."""
    root = tmp_path_factory.mktemp("saved")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, *INPUT_SHAPE)).astype("float32")
    np.save(root / "x.npy", x)
    expected = {}
    for shortcut in SHORTCUTS:
        keras.utils.set_random_seed(0)
        model = build_resnet(mixed_spec(shortcut))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, rng.integers(0, 5, size=4))
        logits = keras.Model(model.input, model.get_layer("head_dense").output)
        expected[shortcut] = (np.asarray(logits(x, training=False)), np.asarray(model(x, training=False)), model)
        model.save(root / f"{shortcut}.keras")
    proc = run_python("-c", RELOAD, str(root / "x.npy"), json.dumps(SHORTCUTS), str(root))
    assert proc.returncode == 0, proc.stderr
    reloaded = {s: (np.load(root / f"{s}.reloaded.npy"), np.load(root / f"{s}.reloaded_probs.npy")) for s in SHORTCUTS}
    return expected, reloaded


@pytest.mark.parametrize("shortcut", SHORTCUTS)
def test_reloaded_model_matches(shortcut, saved_and_reloaded):
    expected, reloaded = saved_and_reloaded
    logits, probs, _ = expected[shortcut]
    assert np.abs(logits).max() > 0  # not a degenerate all-zero comparison
    np.testing.assert_allclose(reloaded[shortcut][0], logits, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(reloaded[shortcut][1], probs, atol=1e-6)


def test_zero_pad_model_contains_the_custom_layer(saved_and_reloaded):
    expected, _ = saved_and_reloaded
    model = expected["zero_pad"][2]
    pads = [layer for layer in model.layers if isinstance(layer, SubsampleChannelPad)]
    assert {layer.name for layer in pads} >= {"stage2_block1_shortcut_pad", "stage3_block1_shortcut_pad"}
    for shortcut in ("avg_down", "projection"):
        assert not any(isinstance(layer, SubsampleChannelPad) for layer in expected[shortcut][2].layers)


def test_every_block_type_is_in_the_saved_model(saved_and_reloaded):
    names = {layer.name for layer in saved_and_reloaded[0]["projection"][2].layers}
    assert "stage1_block1_relu1" in names  # pre-activation basic block
    assert "stage2_block1_conv3" in names and "stage2_block1_out" in names  # post-activation bottleneck
    assert "stage3_block1_conv3" in names and "stage3_block1_out" not in names  # pre-activation bottleneck
    assert "stage4_block1_out" in names and "stage4_block1_conv3" not in names  # post-activation basic block


def test_subsample_channel_pad_config_round_trip():
    layer = SubsampleChannelPad(2, 6, "channels_last", name="pad")
    clone = SubsampleChannelPad.from_config(layer.get_config())
    assert (clone.stride, clone.pad_channels, clone.data_format, clone.name) == (2, 6, "channels_last", "pad")
    assert clone.compute_output_shape((None, 7, 8, 3)) == (None, 4, 4, 9)
    assert keras.saving.get_registered_name(SubsampleChannelPad) == "resnet_blocks>SubsampleChannelPad"


@pytest.mark.parametrize("order", ["import resnet_blocks, keras", "import keras, resnet_blocks"])
def test_saved_models_reload_after_import_resnet_blocks_in_either_order(tmp_path, order):
    """resnet_blocks imports Keras lazily, yet registers its layers once Keras is imported."""
    import subprocess
    import sys

    from resnet_blocks import ResNetSpec, build_resnet

    spec = ResNetSpec.from_lists(block="regular", depths=[1, 1], widths=[4, 8], strides=[1, 2], shortcut="zero_pad",
                                 num_classes=2, input_shape=(8, 8, 1), stem_width=4)  # fmt: skip
    path = tmp_path / "m.keras"
    build_resnet(spec).save(path)
    code = f"{order}\nm = keras.saving.load_model({str(path)!r}, safe_mode=True)\nprint(type(m.layers[2]).__module__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

"""The worked plugin example (examples/se_block.py): config use, CLI, training, save/reload, errors."""

import json
import math
from importlib.metadata import EntryPoint

import keras
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import resnet_blocks.plugins
from experiments.describe import describe
from resnet_blocks import ResNetSpec, SpecError, build_resnet, load_plugins
from resnet_blocks.registry import BLOCKS

PLUGIN = ["model.plugins=[examples.se_block]", "model.block=se_regular"]


@pytest.fixture
def se_block(examples_importable):
    """Import the example plugin (once per process: Python caches the module)."""
    load_plugins(["examples.se_block"])
    return "se_regular"


def compose_describe(repo_root, *overrides):
    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        return compose("describe", overrides=list(overrides))


def se_extra(widths, blocks_per_stage, reduction=4):
    """Parameters and MACs that SE adds to a network of basic blocks (two Dense layers per block)."""
    params = sum(blocks_per_stage * (w * (w // reduction) + w // reduction + (w // reduction) * w + w) for w in widths)
    macs = sum(blocks_per_stage * 2 * w * (w // reduction) for w in widths)
    return params, macs


def test_plugin_block_in_process(examples_importable, describe_overrides):
    se = describe_overrides(*PLUGIN)
    plain = describe_overrides()
    assert "se_regular" in BLOCKS
    assert se["model"] == "cifar_resnet20"
    params, macs = se_extra([16, 32, 64], 3)
    assert se["trainable_params"] == plain["trainable_params"] + params
    assert se["non_trainable_params"] == plain["non_trainable_params"]
    assert se["macs"] == plain["macs"] + macs
    assert [s["output_shape"] for s in se["stages"]] == [s["output_shape"] for s in plain["stages"]]


def test_plugin_block_args_are_validated_and_used(repo_root, se_block):
    cfg = compose_describe(repo_root, *PLUGIN, "+model.block_args.reduction=8")
    params8, _ = se_extra([16, 32, 64], 3, reduction=8)
    params4, _ = se_extra([16, 32, 64], 3, reduction=4)
    assert describe(cfg)["trainable_params"] - describe(compose_describe(repo_root, *PLUGIN))["trainable_params"] == (
        params8 - params4
    )
    with pytest.raises(SpecError) as info:
        describe(compose_describe(repo_root, *PLUGIN, "+model.block_args.ratio=8"))
    assert info.value.field == "model.block_args.ratio"
    assert "reduction" in info.value.allowed


def test_plugin_block_from_the_command_line(run_python):
    proc = run_python("-m", "experiments.describe", *PLUGIN, "format=json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    params, _ = se_extra([16, 32, 64], 3)
    assert result["trainable_params"] == 269_434 + params  # cifar_resnet20 on digits (8x8x1) plus SE
    assert "Traceback" not in proc.stderr


RELOAD = """
import sys
import numpy as np
import keras
import resnet_blocks  # noqa: F401  (the SE block itself needs nothing: only standard layers)
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]), training=False)))
"""


def test_plugin_block_trains_saves_and_reloads(se_block, tmp_path, run_python):
    keras.utils.set_random_seed(0)
    spec = ResNetSpec.from_lists(
        block=se_block, depths=[1, 1], widths=[8, 16], strides=[1, 2], shortcut="projection",
        num_classes=3, input_shape=(9, 9, 2), stem_width=4,
    )  # fmt: skip
    model = build_resnet(spec)
    names = {layer.name for layer in model.layers}
    assert {"stage2_block1_se_pool", "stage2_block1_se_reduce", "stage2_block1_se_scale", "head_bn"} <= names
    assert model.get_layer("stage2_block1_se_reduce").units == 4  # 16 // reduction
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 9, 9, 2)).astype("float32")
    before = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    loss = float(model.train_on_batch(x, rng.integers(0, 3, size=8)))
    assert math.isfinite(loss)
    after = [np.array(w) for w in model.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))

    expected = np.asarray(model(x, training=False))
    np.save(tmp_path / "x.npy", x)
    model.save(tmp_path / "se.keras")
    proc = run_python("-c", RELOAD, str(tmp_path / "se.keras"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-6)


def test_unknown_plugin_module_is_a_spec_error(repo_root):
    with pytest.raises(SpecError) as info:
        describe(compose_describe(repo_root, "model.plugins=[no_such_plugin_module]"))
    assert info.value.field == "model.plugins[0]"
    assert info.value.value == "no_such_plugin_module"
    assert "importable module" in info.value.allowed and "PYTHONPATH" in info.value.allowed


def test_unknown_plugin_module_error_names_model_plugins(repo_root, examples_importable):
    with pytest.raises(SpecError) as info:
        describe(compose_describe(repo_root, "model.plugins=[examples.se_block, no_such_plugin_module]"))
    assert info.value.field == "model.plugins[1]"
    assert str(info.value).startswith("model.plugins[1]: received 'no_such_plugin_module'; allowed: ")


def test_plugin_block_without_the_plugin_lists_known_blocks(repo_root, monkeypatch):
    # Another test may have imported the plugin in this process; hide its registration here.
    monkeypatch.delitem(BLOCKS._entries, "se_regular", raising=False)
    with pytest.raises(SpecError) as info:
        describe(compose_describe(repo_root, "model.block=se_regular"))
    assert info.value.field == "model.block"
    assert info.value.value == "se_regular"
    for name in ("regular", "bottleneck", "regular_v1", "bottleneck_v1"):
        assert name in info.value.allowed
    assert "se_regular" not in info.value.allowed


@pytest.mark.parametrize("module", ["", 3, None])
def test_load_plugins_rejects_non_module_names(module, examples_importable):
    with pytest.raises(SpecError) as info:
        load_plugins([module])
    assert info.value.field == "plugins[0]"
    with pytest.raises(SpecError) as info:
        load_plugins(["examples", module], field_prefix="model.")
    assert info.value.field == "model.plugins[1]"


def test_load_plugins_from_entry_points(examples_importable, monkeypatch):
    group = resnet_blocks.ENTRY_POINT_GROUP
    ep = EntryPoint(name="se", value="examples.se_block", group=group)
    monkeypatch.setattr(resnet_blocks.plugins, "entry_points", lambda group: [ep] if group == ep.group else [])
    assert load_plugins() == ["examples.se_block"]
    assert "se_regular" in BLOCKS
    assert load_plugins(["examples"], entry_point_group="another.group") == ["examples"]

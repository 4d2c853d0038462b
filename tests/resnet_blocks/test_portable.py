"""standard_layers_copy: the same network in stock Keras layers, for every block and shortcut."""

import keras
import numpy as np
import pytest

from resnet_blocks import FusedBatchNormalization, SubsampleChannelPad, build_resnet
from resnet_blocks.portable import standard_layers_copy
from tests.resnet_blocks.test_blocks import BLOCK_NAMES, SHORTCUT_NAMES, tiny_spec

OURS = (FusedBatchNormalization, SubsampleChannelPad)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.parametrize("shortcut", [s for s in SHORTCUT_NAMES if s != "identity"])
@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_copy_computes_the_same_outputs_with_standard_layers(block, shortcut):
    keras.utils.set_random_seed(0)
    # Odd input and channels that only grow, so zero_pad is valid and subsamples with ceil(n / 2).
    model = build_resnet(tiny_spec(block, shortcut, widths=[4, 8], input_shape=(9, 9, 2), stem_width=4))
    rng = np.random.default_rng(0)
    for w in model.non_trainable_weights:  # moving statistics away from their initial values
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    x = rng.standard_normal((3, 9, 9, 2)).astype("float32")
    copy = standard_layers_copy(model)
    assert not [layer for layer in _all_layers(copy) if isinstance(layer, OURS)]
    assert any(isinstance(layer, OURS) for layer in model.layers)  # (the test is not vacuous)
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert copy.count_params() == model.count_params()


def test_copy_saves_without_any_reference_to_this_package(tmp_path):
    model = build_resnet(tiny_spec("regular_v1", "zero_pad", widths=[4, 8], stem_width=4))
    standard_layers_copy(model).save(tmp_path / "m.keras")
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config = z.read("config.json").decode()
    assert "resnet_blocks" not in config and "SubsampleChannelPad" not in config

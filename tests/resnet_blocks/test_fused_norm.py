"""FusedBatchNormalization computes what keras.layers.BatchNormalization computes, only fused."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from resnet_blocks import FusedBatchNormalization, ResNetSpec, build_resnet


def pair_of_layers(**kwargs):
    """A Keras BN and a fused BN with identical, non-trivial weights and moving statistics."""
    ours, theirs = FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    shape = (2, 5, 5, 6) if kwargs.get("axis", -1) in (-1, 3) else (2, 6, 5, 5)
    for layer in (ours, theirs):
        layer.build(shape)
    rng = np.random.default_rng(0)
    weights = [rng.normal(1, 0.3, w.shape).astype("float32") for w in theirs.get_weights()]
    weights[-1] = np.abs(weights[-1])  # moving variance
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs, shape


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("options", [{}, {"center": False}, {"scale": False}, {"axis": 1}])
def test_same_outputs_and_moving_statistics_as_keras(training, options):
    ours, theirs, shape = pair_of_layers(momentum=0.8, epsilon=1e-3, **options)
    x = np.random.default_rng(1).normal(2.0, 3.0, shape).astype("float32")
    np.testing.assert_allclose(ours(x, training=training), theirs(x, training=training), rtol=1e-4, atol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if training:  # the moving statistics really moved (with Keras's biased variance)
        assert not np.allclose(ours.moving_mean.numpy(), pair_of_layers(momentum=0.8)[0].moving_mean.numpy())


def test_same_gradients_as_keras():
    ours, theirs, shape = pair_of_layers()
    x = tf.constant(np.random.default_rng(2).normal(size=shape).astype("float32"))
    upstream = tf.constant(np.random.default_rng(3).normal(size=shape).astype("float32"))
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x, training=True) * upstream)
        grads.append(tape.gradient(y, [x, layer.gamma, layer.beta]))
    for g_ours, g_theirs in zip(*grads):
        np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-4)


def test_frozen_layer_normalises_with_moving_statistics_in_training():
    ours, theirs, shape = pair_of_layers()
    ours.trainable = theirs.trainable = False
    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    before = ours.moving_mean.numpy().copy()
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ours.moving_mean.numpy(), before)


def test_bfloat16_inputs_give_bfloat16_outputs_and_float32_statistics():
    ours = FusedBatchNormalization(dtype="mixed_bfloat16")
    theirs = keras.layers.BatchNormalization(dtype="mixed_bfloat16")
    x = np.random.default_rng(5).normal(size=(4, 3, 3, 8)).astype("float32")
    y_ours, y_theirs = ours(x, training=True), theirs(x, training=True)
    assert y_ours.dtype == tf.bfloat16 and ours.moving_variance.dtype == "float32"
    np.testing.assert_allclose(tf.cast(y_ours, tf.float32), tf.cast(y_theirs, tf.float32), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=1e-3)


def spec(fused: bool) -> ResNetSpec:
    return ResNetSpec.from_lists(block="regular", stage_blocks=["regular", "bottleneck"], depths=[1, 1],
                                 widths=[4, 4], strides=[1, 2], num_classes=3, input_shape=(8, 8, 3),
                                 fused_norm=fused)  # fmt: skip


def test_fused_and_keras_networks_train_to_the_same_weights():
    x = np.random.default_rng(6).normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 3
    models = []
    for fused in (True, False):
        keras.utils.set_random_seed(0)
        model = build_resnet(spec(fused))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        models.append(model)
    norm_types = [
        {type(layer) for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)} for m in models
    ]
    assert norm_types == [{FusedBatchNormalization}, {keras.layers.BatchNormalization}]
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)

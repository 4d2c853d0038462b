"""FusedSGD makes exactly Keras's SGD updates, with one fused kernel per variable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from resnet_blocks import FusedSGD, ResNetSpec, build_resnet

SPEC = ResNetSpec.from_lists(
    block="regular", depths=[1, 1], widths=[4, 8], strides=[1, 2], num_classes=3, input_shape=(8, 8, 3)
)
X = np.random.default_rng(0).random((16, 8, 8, 3)).astype("float32")
Y = np.arange(16) % 3


def trained_weights(optimizer_class, strategy=None, **kwargs):
    keras.utils.set_random_seed(0)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = build_resnet(SPEC)
        optimizer = optimizer_class(keras.optimizers.schedules.CosineDecay(0.1, 10), **kwargs)
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta"])
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        {"momentum": 0.9},
        {"momentum": 0.0, "weight_decay": 1e-3},
    ],
    ids=["nesterov+decay", "momentum", "plain+decay"],
)
def test_same_weights_as_keras_sgd(kwargs):
    ours, theirs = trained_weights(FusedSGD, **kwargs), trained_weights(keras.optimizers.SGD, **kwargs)
    assert any(not np.allclose(a, b) for a, b in zip(ours, trained_weights(FusedSGD, momentum=0.5)))  # it trains
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_uses_one_fused_kernel_per_variable(monkeypatch):
    calls = []
    kernel = tf.raw_ops.ResourceApplyKerasMomentum
    monkeypatch.setattr(tf.raw_ops, "ResourceApplyKerasMomentum", lambda **kw: (calls.append(1), kernel(**kw))[1])
    model = build_resnet(SPEC)
    model.compile(optimizer=FusedSGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    assert calls and len(calls) % len(model.trainable_variables) == 0  # once per variable per trace


def test_distribution_strategy_takes_keras_update():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    kwargs = {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
    ours = trained_weights(FusedSGD, strategy=strategy, **kwargs)
    for a, b in zip(ours, trained_weights(keras.optimizers.SGD, **kwargs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_compiled_model_saves_and_reloads(tmp_path):
    model = build_resnet(SPEC)
    model.compile(optimizer=FusedSGD(0.1, momentum=0.9, nesterov=True), loss="sparse_categorical_crossentropy")
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(reloaded.optimizer, FusedSGD) and reloaded.optimizer.nesterov
    np.testing.assert_allclose(reloaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-5, atol=1e-6)

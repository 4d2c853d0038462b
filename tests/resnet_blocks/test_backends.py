"""``resnet_blocks`` on Keras 3's other backends: the registry-driven tests pass under JAX, and a
model saved on one backend loads on another with the same outputs (TensorFlow's fused kernels
are used on TensorFlow only; elsewhere the same layers take Keras's path)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

SAVE = """
import sys, numpy as np, keras
from resnet_blocks import ResNetSpec, build_resnet
print(keras.backend.backend())
spec = ResNetSpec.from_lists(block="{block}", depths=[1, 1, 1], widths=[8, 16, 32], strides=[1, 2, 2],
                             shortcut="{shortcut}", stem="cifar", stem_width=8, num_classes=10, input_shape=(16, 16, 3))
model = build_resnet(spec)
x = np.random.default_rng(0).random((4, 16, 16, 3), dtype="float32")
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
model.fit(x, np.arange(4), epochs=1, verbose=0)  # moving statistics away from their start
model.save(sys.argv[1] + "/model.keras")
np.save(sys.argv[1] + "/x.npy", x)
np.save(sys.argv[1] + "/y.npy", model.predict(x, verbose=0))
"""
LOAD = """
import sys, numpy as np, keras
import resnet_blocks  # registers the custom layers
print(keras.backend.backend())
model = keras.models.load_model(sys.argv[1] + "/model.keras")
np.save(sys.argv[1] + "/y_loaded.npy", model.predict(np.load(sys.argv[1] + "/x.npy"), verbose=0))
"""


@pytest.fixture(scope="module", autouse=True)
def jax_block_tests():
    """The registry-driven block tests under JAX, started as the module starts: they run while
    the save/load tests below run (each mostly waits on imports), and their test reads them."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/resnet_blocks/test_blocks.py"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc
    proc.kill()
    proc.communicate()


def _python(code: str, backend: str, *args: str) -> str:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[0]


@pytest.mark.parametrize(
    "saved_on, loaded_on, block, shortcut",
    [("tensorflow", "jax", "regular", "zero_pad"), ("jax", "tensorflow", "bottleneck_v1", "projection")],
)
def test_a_model_saved_on_one_backend_loads_on_another(tmp_path, saved_on, loaded_on, block, shortcut):
    assert _python(SAVE.format(block=block, shortcut=shortcut), saved_on, str(tmp_path)) == saved_on
    assert _python(LOAD, loaded_on, str(tmp_path)) == loaded_on
    np.testing.assert_allclose(np.load(tmp_path / "y_loaded.npy"), np.load(tmp_path / "y.npy"), atol=2e-5)


def test_the_registry_driven_block_tests_pass_under_jax(jax_block_tests):
    proc = jax_block_tests
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-3000:]
    assert " passed" in out and "failed" not in out

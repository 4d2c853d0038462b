"""Fixtures that compose the real Hydra configs with small overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"

# Small and fast: 2 epochs of a narrow ResNet on digits.
FAST = [
    "model.depths=[1,1,1]",
    "model.widths=[16,16,32]",
    "trainer.epochs=2",
    "trainer.batch_size=128",
    "tracking.log_model=true",
]


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_cfg(tracking_uri):
    """Compose ``conf/config.yaml`` with overrides, tracking into a temporary store."""

    def _make(*overrides: str, config_name: str = "config", fast: bool = True):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                config_name,
                overrides=[*(FAST if fast else []), f"tracking.tracking_uri={tracking_uri}", *overrides],
            )

    return _make


@pytest.fixture
def mlflow_client(tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def runs_of(client, experiment="resnet-blocks"):
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


@pytest.fixture
def cifar_cache(tmp_path, monkeypatch) -> Path:
    """Small random CIFAR-10 files in the Keras loader's cache layout (python-pickle batches of
    40 training images each and 50 test images), found by ``data=cifar10``."""
    import pickle

    import keras
    import numpy as np

    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path / "keras"))
    cache = tmp_path / "keras" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in [*((f"data_batch_{i}", 40) for i in range(1, 6)), ("test_batch", 50)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}  # fmt: skip
        (cache / name).write_bytes(pickle.dumps(batch))
    return cache

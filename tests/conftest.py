"""Shared fixtures. Kept light: nothing here builds a model at import time."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

# experiments mutes TensorFlow's import chatter, so it must come before anything importing
# keras/tensorflow (resnet_blocks does; test modules do after this conftest has run).
import experiments  # noqa: F401
from resnet_blocks.blocks import residual_unit
from resnet_blocks.registry import BLOCKS

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
TEMP_BLOCK = "tmp_test_block"


def subprocess_env() -> dict[str, str]:
    """Environment for child Pythons: repo root importable (for ``examples``), TF quiet."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def run_python():
    """Run ``python <args>`` in a fresh interpreter from the repo root; returns CompletedProcess."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def examples_importable(monkeypatch):
    """Make the repo's ``examples`` package importable however pytest was started."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))


@pytest.fixture
def temp_block():
    """Register a throw-away pre-activation block for one test, then remove it."""

    @BLOCKS.register(TEMP_BLOCK, preactivation=True)
    def _tmp(x, *, width, stride, name, ctx, kernel: int = 3):
        """A temporary single-conv block."""
        return residual_unit(x, [(kernel, width, stride)], preactivation=True, name=name, ctx=ctx)

    yield TEMP_BLOCK
    BLOCKS.unregister(TEMP_BLOCK)


@contextlib.contextmanager
def zero_init():
    """Skip random weight initialisation while building models that are only counted.

    Conv and dense kernels (he_normal, glorot_uniform: both VarianceScaling) become zeros, which
    roughly halves the build time of the big presets; shapes, and so every count, are unchanged.
    """
    import keras

    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype)

    with mock.patch.object(keras.initializers.VarianceScaling, "__call__", zeros):
        yield


@pytest.fixture(scope="session")
def counting_only():
    """The :func:`zero_init` context manager, for tests that build models only to count them."""
    return zero_init


@pytest.fixture(scope="session")
def describe_overrides():
    """``experiments.describe.describe`` on composed overrides, cached for the session.

    Big presets are built once (with :func:`zero_init`: the results are counts) and shared by
    the cost and describe tests.
    """
    import keras
    from hydra import compose, initialize_config_dir

    from experiments.describe import describe

    cache: dict[tuple[str, ...], dict] = {}

    def run(*overrides: str) -> dict:
        key = tuple(overrides)
        if key not in cache:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose("describe", overrides=list(overrides))
            with zero_init():
                cache[key] = describe(cfg)
            keras.backend.clear_session()
        return cache[key]

    return run


# End-to-end tests: real sweeps, servers, browsers, signals and faults in child processes, and
# modules that train models or start Pythons (most of their tests take seconds each).
# ``./dev test -m "not slow"`` leaves them out for a check in under a minute (the registry,
# blocks, spec errors, search space, reports, the sweep's parts); CI runs everything.
SLOW = (
    "distributed", "faults", "ui", "benchmarks",
    "experiments/sweep/test_sweep.py", "experiments/sweep/test_finalize.py", "experiments/sweep/test_any_app.py",
    "experiments/sweep/test_checks.py", "experiments/sweep/test_launcher.py",
    "experiments/test_run.py", "experiments/test_describe.py", "experiments/test_model_logging.py",
    "experiments/test_cli_help.py", "experiments/test_command.py", "experiments/test_plugins.py",
    "experiments/test_system_metrics.py",
    "resnet_blocks/test_backends.py", "resnet_blocks/test_cost.py", "resnet_blocks/test_plugin_files.py",
    "resnet_blocks/test_fused_sgd.py", "resnet_blocks/test_save_load.py",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    tests_dir = REPO_ROOT / "tests"
    for item in items:
        where = Path(item.path).relative_to(tests_dir).as_posix()
        if any(where == s or where.startswith(s + "/") for s in SLOW):
            item.add_marker(pytest.mark.slow)

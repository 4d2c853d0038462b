"""The process launcher's fork server: what it imports must leave TensorFlow's runtime alone."""

from __future__ import annotations

import subprocess
import sys

from tests.experiments.conftest import REPO

PROBE = """
import importlib
from experiments.sweep.launcher import _PRELOAD
for name in _PRELOAD:
    importlib.import_module(name)
from tensorflow.python.eager import context
print("runtime started:", context.context()._initialized)
import tensorflow as tf
tf.constant(1.0) + 1  # the probe itself can tell a started runtime
print("runtime started:", context.context()._initialized)
"""


def test_fork_server_preload_starts_no_tensorflow_runtime():
    # Workers are forked from the fork server; a TensorFlow runtime (thread pools) started
    # there would not survive the fork. So its imports must not run any TensorFlow op.
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-2:] == ["runtime started: False", "runtime started: True"], proc.stdout


def test_fork_server_guard_is_imported_first():
    from experiments.sweep.launcher import _PRELOAD

    assert _PRELOAD[0] == "experiments.sweep.forkserver_guard"

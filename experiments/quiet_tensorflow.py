"""TensorFlow's C++ start-up chatter muted, whenever TensorFlow is first imported.

TF 2.21 writes its start-up lines (CUDA probing, CPU features, absl's "All log messages
before absl::InitializeLog()") to file descriptor 2 before it reads ``TF_CPP_MIN_LOG_LEVEL``,
so the level alone cannot hide them. Commands that never train must not import TensorFlow at
all (seconds on a loaded machine), so the muting cannot be an import at package import
either: a one-shot import hook wraps TensorFlow's own import, wherever it happens (Keras's
backend, a data pipeline), with stderr pointed at /dev/null. Import errors still raise.
``RESNET_BLOCKS_VERBOSE_TF=1`` leaves TensorFlow's output alone.
``tests/experiments/test_quiet_tensorflow.py`` fails once TensorFlow no longer needs this.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from contextlib import contextmanager


@contextmanager
def _stderr_muted():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _MutedLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _stderr_muted():
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self._loader, name)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, through the finders after it, and mutes its execution."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        uninstall()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _MutedLoader(spec.loader)
        return spec


_HOOK = _QuietTensorFlow()


def install() -> None:
    """Mute TensorFlow's first import from now on (idempotent; a no-op once it is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("RESNET_BLOCKS_VERBOSE_TF") or "tensorflow" in sys.modules or _HOOK in sys.meta_path:
        return
    sys.meta_path.insert(0, _HOOK)


def uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)

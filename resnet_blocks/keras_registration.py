"""Our Keras classes registered with Keras as soon as Keras is imported, not before.

Saved models that hold :class:`~resnet_blocks.FusedBatchNormalization`,
:class:`~resnet_blocks.SubsampleChannelPad` or :class:`~resnet_blocks.FusedSGD` reload after
``import resnet_blocks``, in either order with ``import keras``; but importing the package
must not import Keras (validating and counting specs need no backend). So: if Keras is
imported already, the classes are registered now; else a one-shot import hook registers them
right after Keras's own import finishes. ``tests/resnet_blocks/test_save_load.py`` checks both
orders.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys


def _register() -> None:
    import resnet_blocks.layers  # (registers the serializable classes)
    import resnet_blocks.optimizers  # noqa: F401


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _AfterKeras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        # The finders after this one (another hook, such as experiments' TensorFlow muting, may
        # wrap what they find; this one wraps the result).
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def register_when_keras_is_imported() -> None:
    if "keras" in sys.modules:
        _register()
    elif not any(isinstance(f, _AfterKeras) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())

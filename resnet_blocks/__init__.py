"""resnet_blocks: a registry of residual blocks and shortcuts, and a builder for ResNets.

>>> from resnet_blocks import ResNetSpec, build_resnet
>>> spec = ResNetSpec.from_lists(block="regular", depths=[3, 3, 3], widths=[16, 32, 64],
...                              strides=[1, 2, 2], num_classes=10, input_shape=(32, 32, 3))
>>> model = build_resnet(spec)
"""

from resnet_blocks import blocks as _blocks  # noqa: F401  (registers the shipped blocks)
from resnet_blocks import keras_registration as _keras_registration
from resnet_blocks import shortcuts as _shortcuts  # noqa: F401  (registers the shipped shortcuts)
from resnet_blocks.context import BuildContext
from resnet_blocks.cost import ModelCost, StageCost, format_cost_table, model_cost
from resnet_blocks.errors import RegistryError, SpecError
from resnet_blocks.plugins import ENTRY_POINT_GROUP, load_plugins
from resnet_blocks.registry import (
    available_blocks,
    available_shortcuts,
    get_block,
    get_shortcut,
    register_block,
    register_shortcut,
)
from resnet_blocks.spec import ResNetSpec, StageSpec, StemSpec
from resnet_blocks.spec_cost import CostContext, spec_cost

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuildContext",
    "CostContext",
    "FusedBatchNormalization",
    "FusedSGD",
    "ModelCost",
    "RegistryError",
    "ResNetSpec",
    "SpecError",
    "StageCost",
    "StemSpec",
    "StageSpec",
    "SubsampleChannelPad",
    "available_blocks",
    "available_shortcuts",
    "build_resnet",
    "format_cost_table",
    "get_block",
    "get_shortcut",
    "load_plugins",
    "model_cost",
    "register_block",
    "register_shortcut",
    "spec_cost",
    "standard_layers_copy",
]
__version__ = "0.1.0"

# Names whose modules import Keras: loaded on first use, so that importing the package (to
# register blocks, validate a spec or count its cost) initialises no Keras backend.
_KERAS = {
    "build_resnet": "resnet_blocks.builder",
    "FusedBatchNormalization": "resnet_blocks.layers",
    "SubsampleChannelPad": "resnet_blocks.layers",
    "FusedSGD": "resnet_blocks.optimizers",
    "standard_layers_copy": "resnet_blocks.portable",
}


def __getattr__(name: str):
    if name in _KERAS:
        import importlib

        value = getattr(importlib.import_module(_KERAS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resnet_blocks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_KERAS])


_keras_registration.register_when_keras_is_imported()

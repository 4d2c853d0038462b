"""Loading user modules that register blocks and shortcuts.

Configs name modules to import (``model.plugins=[my_pkg.blocks]``) or Python files
(``model.plugins=[/path/to/blocks.py]``, usable from any directory); installed packages can
instead expose them in the ``resnet_blocks.plugins`` entry-point group. A plugin is code: a
config that names one is as trusted as that code (the README's trust model).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from resnet_blocks.errors import SpecError

ENTRY_POINT_GROUP = "resnet_blocks.plugins"


def load_plugins(
    modules: Iterable[str] = (), *, entry_point_group: str = ENTRY_POINT_GROUP, field_prefix: str = ""
) -> list[str]:
    """Import ``modules`` and every module in the entry-point group; return what was loaded.

    Errors name ``{field_prefix}plugins[i]`` (e.g. ``model.plugins[0]``).
    """
    loaded = []
    for i, module in enumerate(modules):
        if not isinstance(module, str) or not module:
            raise SpecError(f"{field_prefix}plugins[{i}]", module, "an importable module name such as 'my_pkg.blocks'")
        if module.endswith(".py"):
            _load_file(module, f"{field_prefix}plugins[{i}]")
            loaded.append(module)
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise SpecError(
                f"{field_prefix}plugins[{i}]",
                module,
                f"an importable module (import failed: {err}); is it installed or on PYTHONPATH? "
                "A file works from anywhere: plugins=[/path/to/module.py]",
            ) from err
        loaded.append(module)
    for ep in entry_points(group=entry_point_group):
        ep.load()
        loaded.append(ep.value)
    return loaded


def _load_file(path: str, field: str) -> None:
    """Execute the plugin file ``path`` once per process, as module ``resnet_blocks_plugin_<stem>``."""
    import importlib.util
    import sys
    import zlib
    from pathlib import Path

    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise SpecError(field, path, "an existing Python file (not found), or an importable module name")
    name = f"resnet_blocks_plugin_{file.stem}_{zlib.crc32(str(file).encode()):08x}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (before executing: dataclasses and pickling look it up)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise

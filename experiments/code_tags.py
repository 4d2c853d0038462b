"""What code a config brought in, as tags for the runs it affects.

A config is as trusted as code (the README's trust model): it imports code through
``model.plugins`` (and installed packages' ``resnet_blocks.plugins`` entry points), a sweep's
``custom_search_space`` and Hydra's ``hydra.callbacks``. Each run records which, so a result
can be traced to the code that shaped it; a plugin file is named with its SHA-256, since the
same path can hold different code tomorrow.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from resnet_blocks.plugins import ENTRY_POINT_GROUP


def plugin_tags(plugins: Iterable[str]) -> dict[str, str]:
    """``code.plugins``: each plugin module (with its file) or file (with its SHA-256), then
    the entry points of installed packages; nothing when there are none."""
    shown = [_plugin(str(p)) for p in plugins or ()]
    shown += [f"{ep.value} (entry point {ep.name})" for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return {"code.plugins": "; ".join(shown)[:5000]} if shown else {}


def _plugin(name: str) -> str:
    if name.endswith(".py"):
        file = Path(name).expanduser().resolve()
        digest = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else "missing"
        return f"{file} (sha256 {digest})"
    module = sys.modules.get(name)
    where = getattr(module, "__file__", None)
    return f"{name} ({where})" if where else name


def hook_tags(custom_search_space: Any = None, hydra_callbacks: Mapping | None = None) -> dict[str, str]:
    """``code.search_space`` (a dotted path or a registered name) and ``code.hydra_callbacks``
    (each callback's ``_target_``), where set."""
    tags = {}
    if isinstance(custom_search_space, str) and custom_search_space:
        tags["code.search_space"] = custom_search_space
    elif isinstance(custom_search_space, Mapping) and custom_search_space.get("name"):
        tags["code.search_space"] = f"registered {custom_search_space['name']}"
    targets = [f"{k}={v.get('_target_')}" for k, v in (hydra_callbacks or {}).items() if isinstance(v, Mapping)]
    if targets:
        tags["code.hydra_callbacks"] = "; ".join(targets)[:5000]
    return tags


def current_hook_tags() -> dict[str, str]:
    """:func:`hook_tags` of the running Hydra job (its sweeper's ``custom_search_space`` and
    its ``hydra.callbacks``); empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    from omegaconf import OmegaConf

    hydra = OmegaConf.to_container(HydraConfig.get(), resolve=False)
    return hook_tags((hydra.get("sweeper") or {}).get("custom_search_space"), hydra.get("callbacks"))


def refuse_targets(cfg: Any) -> None:
    """A ``_target_`` key in the run config (outside ``hydra``): refused (SpecError), since
    nothing in the project instantiates the run config; a mistaken one would otherwise do
    nothing, silently."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    _refuse_targets(plain, "")


def _refuse_targets(node: Any, where: str) -> None:
    from resnet_blocks import SpecError

    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                raise SpecError(
                    path, value, "no _target_ in the run config: the project instantiates nothing from it; code "
                    "comes in through model.plugins, hydra.sweeper.custom_search_space or hydra.callbacks",
                )  # fmt: skip
            _refuse_targets(value, path)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _refuse_targets(item, f"{where}[{i}]")

"""Values written back as Hydra overrides (``key=value`` in Hydra's override grammar), and
configs composed from overrides outside a Hydra run (evaluate, finalize, reports)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def format_override(key: str, value: Any) -> str:
    """``key=value`` in Hydra's override grammar (lists as ``[1,2,2]``, strings quoted if needed)."""
    return f"{key}={_format_value(value)}"


def _format_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_format_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        plain = value.replace("_", "").replace("-", "").replace(".", "").replace("/", "")
        return value if plain.isalnum() else json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def config_composer(config_dir: str | None = None, config_name: str = "config", searchpath: Sequence[str] = ()):
    """``compose(overrides)`` for :func:`retrain_overrides`: Hydra's compose API inside a
    running Hydra app (``config_dir`` None), else from ``config_dir``; ``searchpath``: the
    sweep's ``hydra.searchpath`` (where its overlay may live)."""
    extra = [format_override("hydra.searchpath", list(searchpath))] if searchpath else []

    def compose(overrides: list[str]) -> DictConfig:
        overrides = [*extra, *overrides]
        from hydra import compose as hydra_compose
        from hydra import initialize_config_dir

        import experiments.config  # noqa: F401 - registers the schemas
        from experiments.config_check import composition_errors

        with composition_errors(overrides, config_name):
            if config_dir is None:
                return hydra_compose(config_name, overrides=list(overrides))
            with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
                return hydra_compose(config_name, overrides=list(overrides))

    return compose

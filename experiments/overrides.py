"""Values written back as Hydra overrides (``key=value`` in Hydra's override grammar)."""

from __future__ import annotations

import json
from typing import Any


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

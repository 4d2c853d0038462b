"""Error types raised by :mod:`resnet_blocks`."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    return repr(value)


class SpecError(ValueError):
    """An invalid architecture value.

    The message always names the field, the value received and what is allowed, e.g.
    ``model.stages[1].stride: received 3; allowed: 1 or 2``.
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: received {_fmt(value)}; allowed: {allowed}")


class RegistryError(KeyError):
    """An unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""
